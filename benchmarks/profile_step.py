r"""Where an experiment's train step spends its time: XLA's executed ops, grouped and ranked.

  python benchmarks/profile_step.py                          # mlm_pretrain, default config
  python benchmarks/profile_step.py --experiment=vae --steps=20
  python benchmarks/profile_step.py --quick --top=10         # smoke config

Builds the experiment's jitted train step as its ``train_and_evaluate`` does
(``common.build``), runs it ``--steps`` times under ``jax.profiler.trace`` (Perfetto trace),
and prints the time of every executed XLA op (thunk), in ms per step summed over threads:
first grouped by kind (the op name without its number: ``ynn_fusion`` for dots handed to
XNNPACK, ``copy_bitcast_fusion`` for a copy or transpose fused with its producers, ...),
then the ``--top`` single ops with the JAX operation they came from (HLO metadata
``op_name``, from an HLO dump of the same step). A profile, not a speed measurement: it
shows which ops to change, not how fast the step is (see the other benchmarks for that).
"""

from __future__ import annotations

import argparse
import collections
import glob
import gzip
import json
import os
import re
import tempfile

import jax

import common


def thunk_times(trace_dir: str) -> dict[str, float]:
  """{op name: total microseconds} of the XLA ops in the Perfetto trace under ``trace_dir``."""
  path = sorted(glob.glob(os.path.join(trace_dir, '**', '*perfetto_trace.json.gz'),
                          recursive=True))[-1]
  with gzip.open(path) as f:
    trace = json.load(f)
  events = trace['traceEvents'] if isinstance(trace, dict) else trace
  totals = collections.Counter()
  for e in events:
    name = e.get('name', '')
    if e.get('ph') == 'X' and 'dur' in e and not name.startswith(('$', 'Thunk', 'Slinky')):
      totals[name] += e['dur']
  return totals


def op_names(hlo_text: str) -> dict[str, str]:
  """{HLO instruction name: the JAX op_name of its metadata} of an optimized HLO module."""
  out = {}
  for match in re.finditer(r'^\s*%?([\w.-]+) = .*?op_name="([^"]+)"', hlo_text, re.M):
    out.setdefault(match.group(1), match.group(2))
  return out


def main():
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--experiment', default='mlm_pretrain', choices=common.EXPERIMENTS)
  parser.add_argument('--quick', action='store_true', help='the smoke config (tiny model)')
  parser.add_argument('--steps', type=int, default=5, help='profiled steps')
  parser.add_argument('--top', type=int, default=15, help='single ops listed')
  args = parser.parse_args()
  config = common.config_of(args.experiment, args.quick)
  with tempfile.TemporaryDirectory() as tmp:
    b = common.build(args.experiment, config, tmp)
    state, batch = b.state, b.get_batch(0)
    hlo = b.train_step.lower(state, batch, b.rng).compile().as_text()
    state, metrics = b.train_step(state, batch, b.rng)  # compiles, warms up
    jax.block_until_ready(metrics)
    with jax.profiler.trace(os.path.join(tmp, 'trace'), create_perfetto_trace=True):
      for _ in range(args.steps):
        state, metrics = b.train_step(state, batch, b.rng)
        jax.block_until_ready(metrics)
    totals = thunk_times(os.path.join(tmp, 'trace'))
  names = op_names(hlo)
  kinds, counts = collections.Counter(), collections.Counter()
  for name, us in totals.items():
    kind = re.sub(r'\.\d+$', '', name)
    kinds[kind] += us
    counts[kind] += 1
  whole = sum(totals.values())
  print(f'{args.experiment} ({"smoke" if args.quick else "default"} config), {args.steps} '
        f'steps on {jax.device_count()} device(s); op time summed over threads: '
        f'{whole / 1e3 / args.steps:.1f} ms/step')
  print(f'\n{"ms/step":>9} {"share":>6} {"ops":>5}  kind')
  for kind, us in kinds.most_common():
    if us / whole < 0.005:
      break
    print(f'{us / 1e3 / args.steps:9.1f} {us / whole:6.1%} {counts[kind]:5d}  {kind}')
  print(f'\n{"ms/step":>9} {"share":>6}  op (JAX operation)')
  for name, us in totals.most_common(args.top):
    print(f'{us / 1e3 / args.steps:9.1f} {us / whole:6.1%}  {name} ({names.get(name, "?")})')


if __name__ == '__main__':
  main()
