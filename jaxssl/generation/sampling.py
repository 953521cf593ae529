"""Choosing the next token from logits: greedy, temperature, top-k and top-p (nucleus).

Top-k: Fan, Lewis & Dauphin 2018 (arXiv:1805.04833); top-p: Holtzman et al. 2020
(arXiv:1904.09751), the smallest set of most likely tokens with probability >= p. Both act
on the temperature-scaled distribution.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def check_settings(*, temperature: float, top_k: int, top_p: float) -> None:
  """ValueError naming a bad setting: temperature or top_k < 0, or top_p outside (0, 1]."""
  if temperature < 0:
    raise ValueError(f'temperature={temperature} must be >= 0 (0 = greedy)')
  if top_k < 0:
    raise ValueError(f'top_k={top_k} must be >= 0 (0 = no top-k filter)')
  if not 0 < top_p <= 1:
    raise ValueError(f'top_p={top_p} must be in (0, 1] (1 = no nucleus filter)')


def sample_logits(rng: jax.Array, logits: jax.Array, *, temperature: float = 1.0,
                  top_k: int = 0, top_p: float = 1.0) -> jax.Array:
  """Draws one token per row; ties rank the lower id first, so top_k=1 and temperature=0 are argmax.

  Args:
    rng: PRNG key (unused when greedy).
    logits: float [B, V].
    temperature: divides the logits; 0 = greedy (argmax).
    top_k: keep only the k most likely tokens; 0 = all.
    top_p: keep the smallest most-likely set with probability >= top_p (the top token always
      stays); 1.0 = all. Applied after top_k, renormalised (transformers' order).

  Returns:
    int32 [B] token ids.

  Raises:
    ValueError: a setting out of range (see ``check_settings``).
  """
  check_settings(temperature=temperature, top_k=top_k, top_p=top_p)
  logits = logits.astype(jnp.float32)
  if temperature == 0 or top_k == 1:
    return jnp.argmax(logits, axis=-1).astype(jnp.int32)
  order = jnp.argsort(-logits, axis=-1, stable=True)  # [B, V] most likely first
  ranked = jnp.take_along_axis(logits, order, axis=-1) / temperature  # [B, V]
  rank = jnp.arange(logits.shape[-1])
  keep = rank < top_k if top_k > 0 else jnp.ones_like(rank, bool)
  neg = jnp.finfo(jnp.float32).min
  if top_p < 1:
    probs = jax.nn.softmax(jnp.where(keep, ranked, neg), axis=-1)
    mass_before = jnp.cumsum(probs, axis=-1) - probs  # probability of the better-ranked tokens
    keep = keep & (mass_before < top_p)
  choice = jax.random.categorical(rng, jnp.where(keep, ranked, neg), axis=-1)  # [B]
  return jnp.take_along_axis(order, choice[:, None], axis=-1)[:, 0].astype(jnp.int32)
