"""Pieces of a train step shared by experiments: gradient accumulation over micro-batches."""

from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp


def accumulate_gradients(sums_fn: Callable, params, batch: dict, rng: jax.Array,
                         num_micro: int):
  """Summed gradients and sums over ``num_micro`` micro-batches (one large batch's update).

  Micro-batch j holds rows j, k + j, 2k + j, ... (k = num_micro), so every device keeps its
  own rows and no data moves. The caller divides by the global count once, so the update
  equals that of the whole batch in one piece.

  Args:
    sums_fn: ``(params, micro_batch, key) -> (loss_sum, aux)``, aux a dict of f32 scalar
      sums (e.g. ``count``); differentiated with respect to params.
    params: parameter pytree.
    batch: dict of arrays with leading dimension B (divisible by num_micro).
    rng: key; micro-batch j gets ``fold_in(rng, j)`` (the key itself when num_micro is 1).
    num_micro: k >= 1.

  Returns:
    (grads, sums): grads of the summed loss (not divided) and aux plus ``loss`` summed.
  """
  def one(mb, key):
    (total, aux), grads = jax.value_and_grad(sums_fn, has_aux=True)(params, mb, key)
    return grads, dict(aux, loss=total)

  if num_micro == 1:
    return one(batch, rng)
  b = next(iter(batch.values())).shape[0]
  micro = jax.tree.map(
      lambda x: x.reshape(b // num_micro, num_micro, *x.shape[1:]).swapaxes(0, 1), batch)

  def add(carry, xs):
    mb, j = xs
    return jax.tree.map(jnp.add, carry, one(mb, jax.random.fold_in(rng, j))), None

  first = jax.tree.map(lambda x: x[0], micro)
  zeros = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), jax.eval_shape(one, first, rng))
  out, _ = jax.lax.scan(add, zeros, (micro, jnp.arange(num_micro)))
  return out


def divide(tree: Any, count: jax.Array) -> Any:
  """``tree / max(count, 1)`` leaf by leaf (a mean over the global count of real items)."""
  count = jnp.maximum(count, 1.0)
  return jax.tree.map(lambda x: x / count, tree)
