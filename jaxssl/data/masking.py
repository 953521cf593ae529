"""BERT masked-token corruption as a pure JAX function, drawn inside the jitted step.

Devlin et al. 2019 (arXiv:1810.04805), sec. 3.1 and app. A.1: select ``mask_rate`` of the
real (non-special) tokens of each row; 80% become [MASK], 10% a random non-special token, 10%
stay. Row keys are ``fold_in(rng, example_id)``: masks do not depend on batch layout or devices.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def max_predictions(seq_len: int, mask_rate: float) -> int:
  """P: the number of prediction slots per row, ceil(mask_rate * seq_len) (at least 1)."""
  return max(1, int(-(-mask_rate * seq_len // 1)))


def _num_selected(num_real: jax.Array, mask_rate: float, num_slots: int) -> jax.Array:
  # round(rate * n), at least one token per non-empty row, at most the slots available.
  n = jnp.round(mask_rate * num_real).astype(jnp.int32)
  n = jnp.where(num_real > 0, jnp.maximum(n, 1), 0)
  return jnp.minimum(n, num_slots)


def _select_tokens(key, maskable, n_sel, num_slots):
  """Order positions randomly (unmaskable last); the first n_sel slots are selected."""
  scores = jnp.where(maskable, jax.random.uniform(key, maskable.shape), 2.0)
  order = jnp.argsort(scores)
  slots = order[:num_slots]
  return slots, (jnp.arange(num_slots) < n_sel) & maskable[slots]


def _select_words(key, maskable, word_start, n_sel, num_slots):
  """Whole-word masking: whole words in random order while they fit in n_sel tokens."""
  length = maskable.shape[0]
  pos = jnp.arange(length)
  starts = word_start | ~maskable  # a special token also ends the word before it
  start_of = jax.lax.cummax(jnp.where(starts, pos, 0))  # [L] position of each token's word start
  scores = jax.random.uniform(key, (length,))[start_of]  # one score per word
  scores = jnp.where(maskable, scores, 2.0)
  order = jnp.argsort(scores, stable=True)  # a word's pieces stay together, in order
  word_id = jnp.cumsum(starts) - 1
  counted = jnp.cumsum(maskable[order])
  # Tokens selected once every piece of their word fits within n_sel. `counted` grows along
  # `order`, so the selected tokens form a prefix of it.
  word_end = jax.ops.segment_max(counted, word_id[order], num_segments=length)
  chosen = maskable[order] & (word_end[word_id[order]] <= n_sel)
  return order[:num_slots], chosen[:num_slots]


def _mask_row(key, tokens, word_start, *, mask_rate, num_slots, mask_id, vocab_size,
              num_special, replace_prob, random_prob):
  k_select, k_kind, k_random = jax.random.split(key, 3)
  maskable = tokens >= num_special
  n_sel = _num_selected(jnp.sum(maskable), mask_rate, num_slots)
  if word_start is None:
    positions, weights = _select_tokens(k_select, maskable, n_sel, num_slots)
  else:
    positions, weights = _select_words(k_select, maskable, word_start[tokens], n_sel,
                                       num_slots)
  labels = tokens[positions]
  u = jax.random.uniform(k_kind, (num_slots,))
  random_tokens = jax.random.randint(k_random, (num_slots,), num_special, vocab_size)
  corrupted = jnp.where(u < replace_prob, mask_id,
                        jnp.where(u < replace_prob + random_prob, random_tokens, labels))
  inputs = tokens.at[positions].set(jnp.where(weights, corrupted, labels))
  return inputs, positions.astype(jnp.int32), labels, weights.astype(jnp.float32)


def mask_tokens(rng: jax.Array, tokens: jax.Array, example_ids: jax.Array, *,
                mask_rate: float, num_slots: int, mask_id: int, vocab_size: int,
                num_special: int, replace_prob: float = 0.8, random_prob: float = 0.1,
                word_start: jax.Array | None = None) -> dict[str, jax.Array]:
  """Corrupts token rows for masked-LM training or evaluation.

  Args:
    rng: PRNG key for this step (e.g. ``fold_in(rng_mask, step)``).
    tokens: int32 [B, L]; ids < num_special (PAD, CLS, SEP, MASK, UNK) are never selected.
    example_ids: int32 [B] global index of each row; its key is ``fold_in(rng, example_id)``.
    mask_rate: fraction of the real tokens selected per row (rounded, at least one).
    num_slots: P, prediction slots per row (``max_predictions``); extra selections dropped.
    mask_id, num_special: id of [MASK]; ids below ``num_special`` are special.
    vocab_size: V; random replacements are drawn uniformly from [num_special, V).
    replace_prob, random_prob: probability a selected token becomes [MASK] (1.0 for
      evaluation) or a random token; the rest stay unchanged.
    word_start: optional bool [V], True where a piece begins a word: whole-word masking.

  Returns:
    ``inputs`` int32 [B, L] corrupted tokens, ``positions`` int32 [B, P], ``labels`` int32
    [B, P] original tokens, ``weights`` float32 [B, P] (1.0 = selected).

  Raises:
    ValueError: tokens is not 2-D or example_ids does not match its batch size.
  """
  if tokens.ndim != 2 or example_ids.shape != tokens.shape[:1]:
    raise ValueError(f'tokens must be [B, L] and example_ids [B]; got {tokens.shape} and '
                     f'{example_ids.shape}')
  keys = jax.vmap(lambda i: jax.random.fold_in(rng, i))(example_ids)
  row = lambda k, t: _mask_row(
      k, t, word_start, mask_rate=mask_rate, num_slots=num_slots, mask_id=mask_id,
      vocab_size=vocab_size, num_special=num_special, replace_prob=replace_prob,
      random_prob=random_prob)
  inputs, positions, labels, weights = jax.vmap(row)(keys, tokens)
  return dict(inputs=inputs, positions=positions, labels=labels, weights=weights)
