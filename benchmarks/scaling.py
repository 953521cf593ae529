r"""MLM train-step throughput on 1, 2, 4 and 8 simulated CPU devices, same global batch.

  python benchmarks/scaling.py             # mlm_pretrain get_config (mini, 32 x 128 tokens)
  python benchmarks/scaling.py --quick     # smoke_config (tiny, 8 x 32 tokens)
  python benchmarks/scaling.py --devices=1,8 --no_fsdp

The devices are simulated (``XLA_FLAGS=--xla_force_host_platform_device_count=N``) and all
share this machine's cores, so this measures what sharding costs (collectives, smaller
per-device matmuls, partitioned programs), not a speedup. The flag must be set before JAX
starts, so each device count runs in its own subprocess (this file with ``--child``), which
builds the experiment from its own functions (``common.build``: ``prepare_data``,
``create_train_state``, ``train_step`` jitted over the mesh) for each mesh
split and times the step alone on one placed batch. Splits: all devices on ``data``
(parameters replicated, gradients all-reduced) and, unless ``--no_fsdp``, all on ``fsdp``
(parameters and optimizer state sharded, ZeRO-3 style; see ``jaxssl.parallel.mesh``). The
batch is split over both axes either way. Prints tokens/s (every position of every row) and
the ratio to one device.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

_RESULT = 'RESULT '  # prefix of the child's one line of JSON on stdout

_NOTE = """\
On a real pod the devices are real and each host holds only its own: every process reads
its slice of the global batch (pipeline.train_batch with process_index/process_count) and
sharding.put_batch assembles the global array with jax.make_array_from_process_local_data,
so host input work is divided across hosts instead of serialised through one. The
data-parallel all-reduce then crosses ICI/NVLink instead of host memory, and the per-device
step time falls as devices are added, which these simulated devices cannot show. For the
`base` preset and larger, set --config.mesh.fsdp (e.g. the devices of one host) so that
parameters and AdamW moments are sharded rather than replicated on every device; `data`
then spans hosts."""


def child(quick: bool, fsdp: bool, workdir: str, min_seconds: float, repeats: int) -> dict:
  """Runs in the subprocess: tokens/s of each mesh split over this process's devices."""
  import jax  # pylint: disable=import-outside-toplevel
  import common  # pylint: disable=import-outside-toplevel  # benchmarks/common.py

  n = jax.device_count()
  splits = [(n, 1)] + ([(1, n)] if fsdp and n > 1 else [])
  config = common.config_of('mlm_pretrain', quick)
  data, rows = None, []
  for d, f in splits:
    config.mesh.data, config.mesh.fsdp = d, f
    b = common.build('mlm_pretrain', config, workdir, data)
    data = b.data
    batch, holder = b.get_batch(0), {'state': b.state}

    def step(_):
      holder['state'], metrics = b.train_step(holder['state'], batch, b.rng)
      return metrics

    rate = common.rates({'step': step}, min_seconds=min_seconds, repeats=repeats)['step']
    tokens = config.global_batch_size * config.data.seq_len
    rows.append(dict(devices=n, data=d, fsdp=f, step_s=1 / rate, tokens_per_s=rate * tokens))
  return dict(rows=rows, preset=config.model.preset, batch=config.global_batch_size,
              seq_len=config.data.seq_len)


def run_child(n: int, args, workdir: str) -> dict:
  """Runs this file with ``--child`` on ``n`` simulated devices; returns its result."""
  env = dict(os.environ)
  env['XLA_FLAGS'] = (env.get('XLA_FLAGS', '') +
                      f' --xla_force_host_platform_device_count={n}').strip()
  cmd = [sys.executable, os.path.abspath(__file__), '--child', f'--workdir={workdir}',
         f'--seconds={args.seconds}', f'--repeats={args.repeats}']
  cmd += ['--quick'] if args.quick else []
  cmd += ['--no_fsdp'] if args.no_fsdp else []
  proc = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
  lines = [l for l in proc.stdout.splitlines() if l.startswith(_RESULT)]
  if proc.returncode or not lines:
    sys.stderr.write(proc.stderr[-4000:])
    raise RuntimeError(f'the {n}-device child failed (exit {proc.returncode})')
  return json.loads(lines[-1][len(_RESULT):])


def main():
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--quick', action='store_true', help='smoke_config (tiny model)')
  parser.add_argument('--devices', default='1,2,4,8', help='simulated device counts')
  parser.add_argument('--no_fsdp', action='store_true', help='data-parallel splits only')
  parser.add_argument('--seconds', type=float, default=None,
                      help='length of each timing window (default 1.0, --quick 0.3)')
  parser.add_argument('--repeats', type=int, default=3, help='timed windows per split')
  parser.add_argument('--child', action='store_true', help=argparse.SUPPRESS)
  parser.add_argument('--workdir', default=None, help=argparse.SUPPRESS)
  args = parser.parse_args()
  args.seconds = args.seconds or (0.3 if args.quick else 1.0)
  if args.child:
    result = child(args.quick, not args.no_fsdp, args.workdir, args.seconds, args.repeats)
    print(_RESULT + json.dumps(result), flush=True)
    return
  counts = [int(n) for n in args.devices.split(',')]
  t0 = time.perf_counter()
  print('simulated devices on 2 cores: this measures sharding overhead, not speedup')
  with tempfile.TemporaryDirectory() as workdir:  # one tokenizer, trained by the first child
    results = [run_child(n, args, workdir) for n in counts]
  first = results[0]
  print(f'mlm_pretrain {"smoke_config" if args.quick else "get_config"}: preset '
        f'{first["preset"]}, global batch {first["batch"]} x {first["seq_len"]} tokens, '
        f'jitted train step alone, median of {args.repeats} windows\n')
  print(f'{"devices":>7} {"data":>4} {"fsdp":>4} {"step_ms":>8} {"tokens/s":>9} '
        f'{"vs_1_device":>11}')
  base = first['rows'][0]['tokens_per_s']
  for r in (row for res in results for row in res['rows']):
    print(f'{r["devices"]:7d} {r["data"]:4d} {r["fsdp"]:4d} {1e3 * r["step_s"]:8.1f} '
          f'{r["tokens_per_s"]:9.0f} {r["tokens_per_s"] / base:10.2f}x')
  print(f'\ntotal {time.perf_counter() - t0:.0f} s\n')
  print(_NOTE)


if __name__ == '__main__':
  main()
