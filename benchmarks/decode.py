r"""Decoding throughput: the key/value cache against recomputing the prefix, side by side.

  python benchmarks/decode.py                          # mini preset, 256 new tokens
  python benchmarks/decode.py --preset=small --batch=8 --new_tokens=512

Both paths run ``jaxssl.generation.decode.generate`` (one jit-compiled ``lax.fori_loop``) on a
randomly initialised ``CausalLM`` of the default clm_pretrain shape, greedy, from a short
prompt: ``use_cache=True`` runs one token per iteration against the cache; ``use_cache=False``
runs the whole fixed-size row (prompt + new tokens) through the model for every new token.
Prints new tokens/s of each (median of a few calls after a compiling warm-up) and the ratio,
and checks that both produced the same tokens.
"""

from __future__ import annotations

import argparse
import time

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jaxssl.generation import decode
from jaxssl.models import transformer
from jaxssl.train import state as state_lib


def _time(fn, repeats: int) -> tuple[float, dict]:
  """(median wall seconds over ``repeats`` calls after one warm-up, last output)."""
  out = jax.block_until_ready(fn())
  times = []
  for _ in range(repeats):
    t = time.perf_counter()
    out = jax.block_until_ready(fn())
    times.append(time.perf_counter() - t)
  return float(np.median(times)), out


def main():
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--preset', default='mini', choices=sorted(transformer.PRESETS))
  parser.add_argument('--vocab_size', type=int, default=4096)
  parser.add_argument('--batch', type=int, default=1)
  parser.add_argument('--prompt_len', type=int, default=8)
  parser.add_argument('--new_tokens', type=int, default=256)
  parser.add_argument('--repeats', type=int, default=3)
  args = parser.parse_args()

  total = args.prompt_len + args.new_tokens
  cfg = transformer.TransformerConfig.from_preset(
      args.preset, vocab_size=args.vocab_size, max_len=total, causal=True, pre_norm=True,
      dropout_rate=0.0, position_encoding='rope')
  graphdef, params = state_lib.split_model(transformer.CausalLM(cfg, rngs=nnx.Rngs(0)))
  prompt = jnp.asarray(np.random.default_rng(0).integers(
      5, args.vocab_size, size=(args.batch, args.prompt_len)), jnp.int32)
  print(f'{jax.devices()[0].device_kind}: preset={args.preset} V={args.vocab_size} '
        f'B={args.batch} prompt={args.prompt_len} new={args.new_tokens} (greedy)')
  results = {}
  for use_cache in (True, False):
    run = lambda: decode.generate(graphdef, params, prompt, jax.random.key(0),  # pylint: disable=cell-var-from-loop
                                  max_new_tokens=args.new_tokens, temperature=0.0,
                                  use_cache=use_cache)
    seconds, out = _time(run, args.repeats)
    results[use_cache] = (seconds, np.asarray(out['tokens']))
  new = args.batch * args.new_tokens
  (t_cache, a), (t_full, b) = results[True], results[False]
  print(f'{"path":<22}{"seconds":>10}{"new tokens/s":>15}')
  print(f'{"kv cache":<22}{t_cache:>10.3f}{new / t_cache:>15.1f}')
  print(f'{"recompute prefix":<22}{t_full:>10.3f}{new / t_full:>15.1f}')
  print(f'cache / recompute throughput: {t_full / t_cache:.2f}x; '
        f'same tokens: {bool((a == b).all())}')


if __name__ == '__main__':
  main()
