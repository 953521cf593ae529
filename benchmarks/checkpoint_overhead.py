r"""Step-time overhead of async Orbax checkpoints in the real training loop, side by side.

  python benchmarks/checkpoint_overhead.py            # MLM and autoencoder, default cadence
  python benchmarks/checkpoint_overhead.py --quick    # smoke configs, saves every 50 steps
  python benchmarks/checkpoint_overhead.py --experiments=vae --steps=400 --every=100

Runs ``loop.train`` (the loop every experiment calls) on the experiment's default
config (``get_config``: model, batch, data; ``--quick``: ``smoke_config``, tiny models),
built from its own functions (``common.build``), twice per round, in fresh temporary
workdirs with a real CLU writer:

* on: ``checkpoint.make_manager`` (async saves) at ``checkpoint_every_steps``, with the
  loop's final save at the last step;
* off: a manager that saves nothing (put in place of the workdir's); the loop is otherwise
  identical (it still flushes the metrics, a host sync, at every checkpoint step).

Both run ``--steps`` steps (default: twice the cadence, so one save lands mid-run and one at
the end, as in a real run) from copies of the same fresh state, after the step and one save
are compiled and warmed up. Rounds alternate off/on. Prints the mean step time (the loop's
wall time, final wait for pending writes included, over the steps) both ways, the overhead
in percent and per save, the overhead that per-save cost gives at ``get_config``'s cadence
(``checkpoint_every_steps``), and for reference one blocking save and how long an async save
blocks its caller. A loop run is short here, so the median over rounds still carries the
machine's noise.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import tempfile
import time
from unittest import mock

import jax
import numpy as np

import common  # benchmarks/common.py: run these files as scripts
from jaxssl.train import checkpoint, loop
from jaxssl.train import workdir as workdir_lib


class NoCheckpoints:
  """Stands in for the Orbax CheckpointManager in ``loop.train``: saves nothing."""

  def save(self, *args, **kwargs) -> bool:
    del args, kwargs
    return False

  def wait_until_finished(self) -> None:
    pass

  def close(self) -> None:
    pass

  def reached_preemption(self, step: int) -> bool:
    del step
    return False


def loop_seconds(b: common.Built, num_steps: int, workdir: str, *, save: bool) -> float:
  """Wall seconds of ``loop.train`` over ``num_steps`` from a copy of ``b.state`` in a fresh
  ``workdir`` (its summary and an empty evaluation included)."""
  run = workdir_lib.Run(workdir, b.module.EXPERIMENT, b.config, {}, time.time())
  state = common.copy_state(b.state)
  jax.block_until_ready(state)
  no_saves = lambda workdir, state, max_to_keep: (NoCheckpoints(), state, None, None)
  with contextlib.nullcontext() if save else mock.patch.object(checkpoint, 'restore_or_keep',
                                                              no_saves):
    t = time.perf_counter()
    loop.train(run, state, b.step, b.get_batch, lambda state, step: {}, rng=b.rng,
               info={'data/sha256': ''}, num_train_steps=num_steps)
    return time.perf_counter() - t


def save_seconds(b: common.Built, workdir: str, *, enable_async: bool) -> tuple[float, float]:
  """(seconds until ``checkpoint.save`` returns, seconds until the save is complete) for one
  save of ``b.state`` into a fresh manager under ``workdir``."""
  manager = checkpoint.make_manager(workdir, enable_async=enable_async)
  try:
    t = time.perf_counter()
    checkpoint.save(manager, 1, b.state, {'experiment': b.module.EXPERIMENT})
    returned = time.perf_counter() - t
    manager.wait_until_finished()
    return returned, time.perf_counter() - t
  finally:
    manager.close()


def measure(name: str, *, quick: bool, steps: int | None, every: int | None,
            rounds: int) -> dict:
  """Loop step times with and without checkpoints, and single-save times, of one experiment."""
  config = common.config_of(name, quick)
  default_every = common.config_of(name, quick=False).checkpoint_every_steps
  config.checkpoint_every_steps = every or default_every
  num_steps = steps or 2 * config.checkpoint_every_steps
  with tempfile.TemporaryDirectory() as tmp:
    b = common.build(name, config, tmp)
    warm = common.copy_state(b.state)
    jax.block_until_ready(b.train_step(warm, b.get_batch(0), b.rng))  # compiles
    save_seconds(b, os.path.join(tmp, 'warm'), enable_async=True)  # Orbax's first-use costs
    _, blocking = save_seconds(b, os.path.join(tmp, 'blocking'), enable_async=False)
    returned, finished = save_seconds(b, os.path.join(tmp, 'async'), enable_async=True)
    loop_seconds(b, num_steps, os.path.join(tmp, 'warm_loop'), save=False)  # loop's first use
    times = {'off': [], 'on': []}
    for r in range(rounds):
      for mode in ('off', 'on'):
        workdir = os.path.join(tmp, f'{mode}{r}')
        times[mode].append(loop_seconds(b, num_steps, workdir, save=mode == 'on'))
  saves = len({s for s in range(1, num_steps + 1)
               if s % config.checkpoint_every_steps == 0 or s == num_steps})
  off, on = (float(np.median(times[m])) for m in ('off', 'on'))
  per_save = (on - off) / saves
  step_off = off / num_steps
  state_mb = sum(x.nbytes for x in jax.tree.leaves(b.state)) / 2**20
  return dict(name=name, steps=num_steps, every=config.checkpoint_every_steps,
              default_every=default_every, saves=saves, state_mb=state_mb,
              step_off=step_off, step_on=on / num_steps, overhead=(on - off) / off,
              per_save=per_save, at_default=per_save / (default_every * step_off),
              blocking=blocking, async_returned=returned, async_finished=finished,
              all_off=times['off'], all_on=times['on'])


def main():
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--quick', action='store_true',
                      help='smoke configs, checkpoint every 50 steps, 100 steps')
  parser.add_argument('--experiments', default='mlm_pretrain,autoencoder',
                      help='comma-separated experiment names')
  parser.add_argument('--steps', type=int, default=None,
                      help='steps per loop run (default: twice the cadence)')
  parser.add_argument('--every', type=int, default=None,
                      help='checkpoint_every_steps (default: the config\'s; --quick: 50)')
  parser.add_argument('--rounds', type=int, default=3, help='off/on pairs of loop runs')
  args = parser.parse_args()
  names = [n for n in args.experiments.split(',') if n]
  for n in names:
    common.module(n)  # an unknown name fails before anything runs
  every = args.every or (50 if args.quick else None)
  rounds = args.rounds
  t0 = time.perf_counter()
  print(f'devices: {jax.devices()}; {"smoke_config" if args.quick else "get_config"} of each '
        'experiment; loop.train with '
        f'async Orbax saves (on) vs a manager that saves nothing (off); median of {rounds} '
        'round(s)\n')
  print(f'{"experiment":13} {"state_MB":>8} {"steps":>5} {"every":>5} {"saves":>5} '
        f'{"off_ms/step":>11} {"on_ms/step":>10} {"overhead":>8} {"ms/save":>8} '
        f'{"at_default":>14}')
  results = []
  for name in names:
    r = measure(name, quick=args.quick, steps=args.steps, every=every, rounds=rounds)
    results.append(r)
    print(f'{name:13} {r["state_mb"]:8.1f} {r["steps"]:5d} {r["every"]:5d} {r["saves"]:5d} '
          f'{1e3 * r["step_off"]:11.2f} {1e3 * r["step_on"]:10.2f} '
          f'{100 * r["overhead"]:7.1f}% {1e3 * r["per_save"]:8.0f} '
          f'{100 * r["at_default"]:6.2f}% @{r["default_every"]:<5d}', flush=True)
  print("\nat_default: ms/save / (off_ms/step x get_config's checkpoint_every_steps, after @): "
        'the overhead at the default cadence\n(a projection when --every or --quick differ from '
        'it; with get_config and its cadence it repeats the overhead column)')
  print('\nsingle saves of the fresh state (reference):')
  print(f'{"experiment":13} {"blocking_ms":>11} {"async_returns_ms":>16} {"async_done_ms":>13}')
  for r in results:
    print(f'{r["name"]:13} {1e3 * r["blocking"]:11.0f} {1e3 * r["async_returned"]:16.0f} '
          f'{1e3 * r["async_finished"]:13.0f}')
  print('\nloop wall seconds per run (off | on): ' + '; '.join(
      f'{r["name"]} {" ".join(f"{s:.2f}" for s in r["all_off"])} | '
      f'{" ".join(f"{s:.2f}" for s in r["all_on"])}' for r in results))
  print(f'total {time.perf_counter() - t0:.0f} s; 2 shared CPU cores: the background write '
        'of an async save competes with the step for them')


if __name__ == '__main__':
  main()
