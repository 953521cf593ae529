r"""Masked-LM train-step throughput and achieved FLOP/s against a matmul measured in the same run.

  python benchmarks/mlm_step.py                      # mini preset, f32 and bf16 matmuls
  python benchmarks/mlm_step.py --preset=small --steps=5
  python benchmarks/mlm_step.py --seq_len=512 --batch=8 --dtypes=float32 --remat=off,on

Prints, per compute dtype: step time, tokens/s (every position of every row), the step's
FLOPs from XLA's cost analysis of the compiled step (one partition's, times the device
count), achieved FLOP/s and that as a fraction of the peak of a square matmul measured in the
same process (f32, and bf16 inputs with f32 accumulation), and XLA's temporary buffer size
of the compiled step per device (activations kept for the backward pass and scratch: what
``model.remat`` trades for recomputation). Also the 6 x params x tokens estimate of the
FLOPs, for reference. Runs the real ``experiments.mlm_pretrain.train_step`` (masking,
accumulation scan, AdamW) on random ordinary tokens, so no data preparation is timed.
"""

from __future__ import annotations

import argparse
import functools
import time
import types

import jax
import jax.numpy as jnp
import numpy as np

from experiments import mlm_pretrain
from jaxssl.data import tokenizer as tokenizer_lib
from jaxssl.parallel import mesh as mesh_lib
from jaxssl.parallel import sharding
from jaxssl.train import rngs
from jaxssl.train import state as state_lib


def _time(fn, *args, repeats: int) -> float:
  """Median wall seconds of ``fn(*args)`` over ``repeats`` calls, after one warm-up."""
  jax.block_until_ready(fn(*args))
  times = []
  for _ in range(repeats):
    t = time.perf_counter()
    jax.block_until_ready(fn(*args))
    times.append(time.perf_counter() - t)
  return float(np.median(times))


def matmul_peak(n: int, dtype, repeats: int = 5) -> float:
  """FLOP/s of an [n, n] @ [n, n] product with f32 accumulation."""
  a = jnp.ones((n, n), dtype)
  f = jax.jit(lambda x: jnp.matmul(x, x, preferred_element_type=jnp.float32))
  return 2 * n ** 3 / _time(f, a, repeats=repeats)


def step_throughput(preset: str, dtype: str, batch: int, seq_len: int, vocab: int,
                    steps: int, remat: bool = False) -> dict:
  """Times the jitted MLM train step; returns seconds, tokens/s, FLOPs per step and XLA's
  temporary buffer bytes."""
  config = mlm_pretrain.get_config()
  config.model.preset, config.model.dtype, config.model.remat = preset, dtype, remat
  config.global_batch_size, config.data.seq_len = batch, seq_len
  mesh = mesh_lib.make_mesh(config.mesh)
  tokenizer = types.SimpleNamespace(vocab_size=vocab, word_start=np.zeros((vocab,), bool))
  state = mlm_pretrain.create_train_state(config, {'tokenizer': tokenizer}, mesh,
                                          rngs.run_keys(config.seed).init)
  step = sharding.jit_train_step(functools.partial(
      mlm_pretrain.train_step, config=config,
      **mlm_pretrain.step_constants(config, {'tokenizer': tokenizer})),
                                 state_lib.shardings(state), mesh)
  rows = np.random.default_rng(0).integers(tokenizer_lib.NUM_SPECIAL, vocab, (batch, seq_len))
  rows[:, 0] = tokenizer_lib.CLS_ID
  tokens = sharding.put_batch({'tokens': rows.astype(np.int32)}, mesh)
  rng = jax.random.key(0)
  compiled = step.lower(state, tokens, rng).compile()
  cost = compiled.cost_analysis()
  cost = cost[0] if isinstance(cost, list) else cost
  flops = float(cost.get('flops', 0.0)) * jax.device_count()  # cost analysis: one partition
  memory = compiled.memory_analysis()
  temp_bytes = float(memory.temp_size_in_bytes) if memory is not None else float('nan')
  num_params = sum(x.size for x in jax.tree.leaves(state.params))
  seconds = _time(lambda s: step(s, tokens, rng)[1]['loss'], state, repeats=steps)
  return dict(seconds=seconds, tokens_per_s=batch * seq_len / seconds, flops=flops,
              flops_6nd=6.0 * num_params * batch * seq_len, num_params=num_params,
              temp_bytes=temp_bytes)


def main():
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--preset', default='mini')
  parser.add_argument('--batch', type=int, default=32)
  parser.add_argument('--seq_len', type=int, default=128)
  parser.add_argument('--vocab', type=int, default=4096)
  parser.add_argument('--steps', type=int, default=10)
  parser.add_argument('--dtypes', default='float32,bfloat16')
  parser.add_argument('--remat', default='off', help="'off', 'on' or 'off,on'")
  args = parser.parse_args()
  for name, values, allowed in (('--dtypes', args.dtypes, ('float32', 'bfloat16')),
                                ('--remat', args.remat, ('off', 'on'))):
    bad = [v for v in values.split(',') if v not in allowed]
    if bad:
      parser.error(f'{name}: {",".join(bad)} not in {",".join(allowed)}')
  if args.steps < 1:
    parser.error(f'--steps={args.steps} must be >= 1')
  print(f'devices: {jax.devices()}')
  peaks = {'float32': matmul_peak(2048, jnp.float32), 'bfloat16': matmul_peak(2048, jnp.bfloat16)}
  for name, peak in peaks.items():
    print(f'matmul 2048^3 {name} inputs, f32 accumulation: {peak / 1e9:8.1f} GFLOP/s')
  print(f'\n{"dtype":9} {"remat":5} {"step_s":>7} {"tokens/s":>9} {"GFLOP/step":>10} '
        f'{"GFLOP/s":>8} {"of_f32_peak":>11} {"of_own_peak":>11} {"6ND_GFLOP":>9} '
        f'{"temp_MiB":>8}')
  for dtype in args.dtypes.split(','):
    for remat in args.remat.split(','):
      r = step_throughput(args.preset, dtype, args.batch, args.seq_len, args.vocab, args.steps,
                          remat={'off': False, 'on': True}[remat])
      achieved = r['flops'] / r['seconds']
      print(f'{dtype:9} {remat:5} {r["seconds"]:7.3f} {r["tokens_per_s"]:9.0f} '
            f'{r["flops"] / 1e9:10.1f} {achieved / 1e9:8.1f} {achieved / peaks["float32"]:11.2f} '
            f'{achieved / peaks[dtype]:11.2f} {r["flops_6nd"] / 1e9:9.1f} '
            f'{r["temp_bytes"] / 2**20:8.0f}')
  print(f'\npreset={args.preset} params={r["num_params"]:,} batch={args.batch} '
        f'seq_len={args.seq_len} vocab={args.vocab}')


if __name__ == '__main__':
  main()
