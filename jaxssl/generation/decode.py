"""Autoregressive generation from a causal LM inside one jit-compiled ``jax.lax`` loop.

The cached path prefills the prompt, then decodes one token per step against
``CausalLM.decode``'s key/value cache; the recompute path (reference, benchmark baseline)
reruns the whole row per token. Both draw token i with ``fold_in(rng, i)``, so they give the
same tokens whenever their logits agree.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jaxssl.generation import sampling


def _finish(tokens, eos_id):
  """Lengths before the first EOS (EOS excluded); tokens after it already hold padding."""
  n = tokens.shape[1]
  if eos_id is None:
    return jnp.full((tokens.shape[0],), n, jnp.int32)
  is_eos = tokens == eos_id
  return jnp.where(is_eos.any(axis=1), jnp.argmax(is_eos, axis=1), n).astype(jnp.int32)


@functools.partial(jax.jit, static_argnames=(
    'graphdef', 'max_new_tokens', 'temperature', 'top_k', 'top_p', 'eos_id', 'pad_id',
    'use_cache'))
def generate(graphdef: nnx.GraphDef, params, prompt: jax.Array, rng: jax.Array, *,
             max_new_tokens: int, temperature: float = 1.0, top_k: int = 0,
             top_p: float = 1.0, eos_id: int | None = None, pad_id: int = 0,
             use_cache: bool = True) -> dict[str, jax.Array]:
  """Continues each prompt row by ``max_new_tokens`` tokens.

  Args:
    graphdef, params: a ``transformer.CausalLM`` split by ``train.state.split_model``.
    prompt: int32 [B, P], P >= 1 real tokens per row (same length in every row).
    rng: PRNG key; new token i is drawn with ``fold_in(rng, i)``.
    max_new_tokens: N >= 1.
    temperature, top_k, top_p: see ``sampling.sample_logits`` (temperature 0 = greedy).
    eos_id: a row stops after emitting this id (later slots hold ``pad_id``); None = never.
    pad_id: filler after EOS.
    use_cache: True = key/value cache; False = recompute the whole row each token.

  Returns:
    {'tokens': int32 [B, N] new tokens, 'lengths': int32 [B] tokens before the first EOS}.

  Raises:
    ValueError: empty prompt, N < 1, a bad sampling setting, or P + N past the model's
      max_len (learned positions, or always without the cache).
  """
  sampling.check_settings(temperature=temperature, top_k=top_k, top_p=top_p)
  b, p = prompt.shape
  if p < 1 or max_new_tokens < 1:
    raise ValueError(f'need a non-empty prompt and max_new_tokens >= 1, got P={p}, '
                     f'N={max_new_tokens}')
  model = nnx.merge(graphdef, params)
  sample = functools.partial(sampling.sample_logits, temperature=temperature, top_k=top_k,
                             top_p=top_p)
  n, total = max_new_tokens, p + max_new_tokens

  def emit(out, done, i, logits):  # logits [B, V] for new slot i
    tok = sample(jax.random.fold_in(rng, i), logits)
    tok = jnp.where(done, pad_id, tok)
    out = jax.lax.dynamic_update_slice(out, tok[:, None], (0, i))
    return out, done | ((tok == eos_id) if eos_id is not None else False), tok

  out = jnp.full((b, n), pad_id, jnp.int32)
  done = jnp.zeros((b,), bool)
  if use_cache:
    logits, cache = model.decode(prompt, model.init_cache(b, total), jnp.int32(0))  # prefill
    out, done, tok = emit(out, done, 0, logits[:, -1])

    def body(i, carry):
      out, done, tok, cache = carry
      logits, cache = model.decode(tok[:, None], cache, p + i - 1)  # [B, 1, V]
      out, done, tok = emit(out, done, i, logits[:, 0])
      return out, done, tok, cache

    out, *_ = jax.lax.fori_loop(1, n, body, (out, done, tok, cache))
  else:
    row = jnp.concatenate([prompt.astype(jnp.int32), jnp.full((b, n), pad_id, jnp.int32)], 1)

    def body(i, carry):
      out, done, row = carry
      logits = model(row)  # [B, P + N, V]; causal, so the unwritten tail is never seen
      at = jax.lax.dynamic_index_in_dim(logits, p + i - 1, axis=1, keepdims=False)
      out, done, tok = emit(out, done, i, at)
      return out, done, jax.lax.dynamic_update_slice(row, tok[:, None], (0, p + i))

    out, *_ = jax.lax.fori_loop(0, n, body, (out, done, row))
  return {'tokens': out, 'lengths': _finish(out, eos_id)}


def generate_text(graphdef: nnx.GraphDef, params, tokenizer, prompt: str, *, bos_id: int,
                  eos_id: int, num_samples: int, max_new_tokens: int, rng: jax.Array,
                  temperature: float = 1.0, top_k: int = 0, top_p: float = 1.0) -> list[str]:
  """Continues ``prompt`` (text) ``num_samples`` times; returns only the new text of each.

  The prompt is encoded after ``bos_id`` (as training documents start); a sample ends at
  ``eos_id`` or after ``max_new_tokens`` tokens.

  Args:
    graphdef, params: a split ``transformer.CausalLM``.
    tokenizer: ``data.tokenizer.Tokenizer`` the model was trained with.
    prompt: text; '' samples from [BOS] alone.
    bos_id, eos_id: the document start and end ids.
    num_samples: rows sampled in one batch (the same prompt each).
    max_new_tokens: N, tokens per sample.
    rng: PRNG key; the same key gives the same samples.
    temperature, top_k, top_p: see ``sampling.sample_logits``.

  Raises:
    ValueError: bad settings, or prompt + N past a learned position table.
  """
  prompt_ids = [bos_id] + (tokenizer.encode([prompt])[0].tolist() if prompt else [])
  rows = jnp.asarray(np.tile(np.asarray(prompt_ids, np.int32), (num_samples, 1)))
  out = jax.device_get(generate(graphdef, params, rows, rng, max_new_tokens=max_new_tokens,
                                temperature=temperature, top_k=top_k, top_p=top_p,
                                eos_id=eos_id, pad_id=0))
  head = tokenizer.decode(prompt_ids)
  texts = []
  for tokens, n in zip(out['tokens'], out['lengths']):
    # Decode with the prompt so the first new word keeps its leading space, then cut it off.
    full = tokenizer.decode(prompt_ids + tokens[:n].tolist())
    texts.append(full[len(head):] if full.startswith(head) else full)
  return texts
