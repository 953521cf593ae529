r"""Host input pipeline vs jitted train step, batches per second, side by side in one run.

  python benchmarks/input_pipeline.py                        # every experiment, default configs
  python benchmarks/input_pipeline.py --quick                # smoke configs, under ~2 minutes
  python benchmarks/input_pipeline.py --experiments=mlm_pretrain,simclr

For each training experiment, built from its own ``prepare_data``, ``create_train_state`` and
``train_step`` (see ``common.build``), prints batches/s of:

* pipeline: the ``get_batch(step)`` the experiment hands to ``loop.train``
  (``pipeline.batch_getter``: ``pipeline.train_batch`` gathers the rows of the step from that
  epoch's permutation, then ``sharding.put_batch`` places them on the mesh); ``gather`` is
  ``pipeline.train_batch`` alone (host NumPy, no device_put).
* step: the jitted train step alone, fed one batch already on the mesh. Every experiment
  augments, masks or corrupts inside the step, so that work is counted here.
* fed: the two as ``loop.train`` interleaves them, ``step(state, get_batch(i), rng)``.

``pipeline/step`` is the headroom of the input pipeline (the goal is >= 5x); ``fed/step``
below 1 is what feeding costs the loop. On the CPU backend the host pipeline and the step
share the same cores, so ``fed`` also carries that contention; on an accelerator the step
runs on the device while the host prepares the next batch.

A second table times ``pipeline.train_batch`` on synthetic row counts N against the same
gather from a permutation held by the caller: ``train_batch`` once drew the epoch's
permutation of all N rows on every call (cost per step growing with N, 30-70 ms at N =
1,000,000); ``epoch_permutation`` is now cached, so the ratio should stay near 1 at every N.
"""

from __future__ import annotations

import argparse
import tempfile
import time

import jax
import numpy as np

import common  # benchmarks/common.py: run these files as scripts
from jaxssl.data import pipeline


def measure(name: str, quick: bool, min_seconds: float, repeats: int) -> dict:
  """Batches/s of the experiment's pipeline, gather alone, step alone and fed step."""
  config = common.config_of(name, quick)
  with tempfile.TemporaryDirectory() as workdir:
    b = common.build(name, config, workdir)
  rows, bsz = b.data['train'], config.global_batch_size
  batch, holder = b.get_batch(0), {'state': common.copy_state(b.state)}

  def gather(i):
    return pipeline.train_batch(rows, i, seed=config.seed, global_batch_size=bsz,
                                process_index=jax.process_index(),
                                process_count=jax.process_count())

  def step(_):
    holder['state'], metrics = b.train_step(holder['state'], batch, b.rng)
    return metrics

  def fed(i):
    holder['state'], metrics = b.train_step(holder['state'], b.get_batch(i), b.rng)
    return metrics

  r = common.rates({'gather': gather, 'pipeline': b.get_batch, 'step': step, 'fed': fed},
                   min_seconds=min_seconds, repeats=repeats)
  shape = {k: v.shape for k, v in batch.items()}
  return dict(r, name=name, batch=bsz, shape=shape, num_rows=len(next(iter(rows.values()))))


def permutation_cost(num_rows: int, batch: int, min_seconds: float,
                     repeats: int) -> tuple[float, float]:
  """(train_batch calls/s, calls/s of the same gather from a permutation drawn once) on
  ``num_rows`` synthetic rows (int32 [N, 1]: the permutation, not the row width, is timed)."""
  rows = {'tokens': np.arange(num_rows, dtype=np.int32)[:, None]}
  order = pipeline.epoch_permutation(num_rows, seed=0, epoch=0)
  steps_per_epoch = num_rows // batch

  def cached(i):
    start = (i % steps_per_epoch) * batch
    return {k: v[order[start:start + batch]] for k, v in rows.items()}

  r = common.rates({'per_call': lambda i: pipeline.train_batch(rows, i, seed=0,
                                                                global_batch_size=batch),
                    'cached': cached}, min_seconds=min_seconds, repeats=repeats)
  return r['per_call'], r['cached']


def main():
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--quick', action='store_true',
                      help="each experiment's smoke_config (tiny models) instead of get_config")
  parser.add_argument('--experiments', default=','.join(common.EXPERIMENTS),
                      help='comma-separated experiment names')
  parser.add_argument('--seconds', type=float, default=None,
                      help='length of each timing window (default 0.5, --quick 0.2)')
  parser.add_argument('--repeats', type=int, default=None,
                      help='timed windows per rate (default 5, --quick 3)')
  args = parser.parse_args()
  names = [n for n in args.experiments.split(',') if n]
  for n in names:
    common.module(n)  # an unknown name fails before anything runs
  seconds = args.seconds or (0.2 if args.quick else 0.5)
  args.repeats = args.repeats or (3 if args.quick else 5)
  t0 = time.perf_counter()
  print(f'devices: {jax.devices()}; configs: {"smoke_config" if args.quick else "get_config"}')
  print(f'batches/s, median of {args.repeats} alternating windows; pipeline = '
        'pipeline.batch_getter (gather + put_batch); step = jitted train step on one placed '
        'batch; fed = step(state, get_batch(i))\n')
  print(f'{"experiment":13} {"B":>4} {"rows":>6} {"gather/s":>9} {"pipeline/s":>10} '
        f'{"step/s":>8} {"pipe/step":>9} {"fed/s":>8} {"fed/step":>8}  batch')
  for name in names:
    r = measure(name, args.quick, seconds, args.repeats)
    shapes = ' '.join(f'{k}{list(v)}' for k, v in r['shape'].items())
    print(f'{name:13} {r["batch"]:4d} {r["num_rows"]:6d} {r["gather"]:9.0f} '
          f'{r["pipeline"]:10.0f} {r["step"]:8.1f} {r["pipeline"] / r["step"]:8.1f}x '
          f'{r["fed"]:8.1f} {r["fed"] / r["step"]:8.2f}  {shapes}', flush=True)

  sizes = (10_000, 100_000, 1_000_000) + (() if args.quick else (10_000_000,))
  print('\npipeline.train_batch on N synthetic rows (B = 32) vs the same gather from a '
        'permutation held by the caller (ratio ~1: the permutation is cached, not redrawn)')
  print(f'{"N":>10} {"train_batch/s":>13} {"cached perm/s":>13} {"ms/call":>8} {"ratio":>7}')
  for n in sizes:
    per_call, cached = permutation_cost(n, 32, seconds, args.repeats)
    print(f'{n:10d} {per_call:13.0f} {cached:13.0f} {1e3 / per_call:8.2f} '
          f'{cached / per_call:6.0f}x', flush=True)
  print(f'\ntotal {time.perf_counter() - t0:.0f} s on {jax.device_count()} device(s); the host '
        'and the CPU "device" share the same cores')


if __name__ == '__main__':
  main()
