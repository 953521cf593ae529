"""Distances to k-means centres, as float32 matrix products.

The nearest centre minimises ||c||^2 - 2 x.c: one matmul of the points with a ones column
(``_augment``) by the centres' rows (``_center_rows``); the same rows give per-cluster sums of
w x and w in one segment sum. ``_prepare`` builds them once per fit, centred on the mean.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

# Centres compared in one unrolled pass of `_nearest`; more are scanned over in such blocks.
CENTER_BLOCK = 128


def _augment(x: jax.Array) -> jax.Array:
  """[N, D] -> [N, D + 1]: x and a column of ones (see ``_center_rows``)."""
  return jnp.concatenate([x, jnp.ones((x.shape[0], 1), x.dtype)], axis=1)


def _center_rows(centers: jax.Array) -> jax.Array:
  """[K, D] -> [K, D + 1]: -2 c and ||c||^2."""
  return jnp.concatenate([-2.0 * centers, jnp.sum(centers * centers, 1, keepdims=True)], 1)


def _argmin_rows(scores: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
  """(index int32 [N], value f32 [N], runner-up f32 [N]) of the smallest of K rows of [K, N].

  The runner-up is +inf when K = 1; ties go to the lowest index. Unrolled over K: on XLA:CPU
  ~6x faster than ``jnp.argmin``.
  """
  best, index = scores[0], jnp.zeros(scores.shape[1], jnp.int32)
  runner = jnp.full_like(best, jnp.inf)
  for j in range(1, scores.shape[0]):
    better = scores[j] < best
    runner = jnp.where(better, best, jnp.minimum(runner, scores[j]))
    best = jnp.where(better, scores[j], best)
    index = jnp.where(better, j, index)
  return index, best, runner


def _nearest(x_aug: jax.Array, centers: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
  """Nearest centre of each row of x_aug [N, D + 1] among centers [K, D].

  Returns (labels int32 [N], best scores f32 [N], runner-up scores f32 [N]), ties to the lowest
  index. Centres go ``CENTER_BLOCK`` at a time: no [K, N] array for large K.
  """
  k = centers.shape[0]
  rows = _center_rows(centers)  # [K, D + 1]
  if k <= CENTER_BLOCK:
    return _argmin_rows(rows @ x_aug.T)  # [K, N]
  num_blocks = -(-k // CENTER_BLOCK)
  # Filler centres score the largest float32, so they never win (and never make inf - inf).
  filler = jnp.zeros((num_blocks * CENTER_BLOCK - k, rows.shape[1]), rows.dtype)
  filler = filler.at[:, -1].set(jnp.finfo(rows.dtype).max)
  blocks = jnp.concatenate([rows, filler]).reshape(num_blocks, CENTER_BLOCK, -1)

  def body(carry, block):
    labels, best, runner = carry
    b, rows_b = block
    index, value, value_runner = _argmin_rows(rows_b @ x_aug.T)  # [N] each
    better = value < best
    runner = jnp.where(better, jnp.minimum(best, value_runner), jnp.minimum(runner, value))
    return (jnp.where(better, index + b * CENTER_BLOCK, labels),
            jnp.where(better, value, best), runner), None

  n = x_aug.shape[0]
  inf = jnp.full(n, jnp.inf, x_aug.dtype)
  (labels, best, runner), _ = jax.lax.scan(body, (jnp.zeros(n, jnp.int32), inf, inf),
                                           (jnp.arange(num_blocks), blocks))
  return labels, best, runner


def _check_features(x, centers) -> None:
  if x.ndim != 2 or centers.ndim != 2 or x.shape[1] != centers.shape[1]:
    raise ValueError(f'x {x.shape} and centers {centers.shape} must be [N, D] and [K, D] '
                     'with the same D')


def _shift(x: jax.Array, centers: jax.Array) -> tuple[jax.Array, jax.Array]:
  """Both moved by the mean centre (distances unchanged, less cancellation in float32)."""
  origin = jnp.mean(centers, axis=0)
  return x - origin, centers - origin


@jax.jit
def squared_distances(x: jax.Array, centers: jax.Array) -> jax.Array:
  """Squared Euclidean distances of x [N, D] to centers [K, D]: f32 [N, K], clipped at 0.

  Computed as ||x||^2 - 2 x.c + ||c||^2 after moving both by the mean centre.

  Raises:
    ValueError: x and centers are not [N, D] and [K, D] with the same D.
  """
  _check_features(x, centers)
  x, centers = _shift(x.astype(jnp.float32), centers.astype(jnp.float32))
  d = (jnp.sum(x * x, 1)[:, None] - 2.0 * (x @ centers.T)
       + jnp.sum(centers * centers, 1)[None])  # [N, K]
  return jnp.maximum(d, 0.0)


@jax.jit
def assign(x: jax.Array, centers: jax.Array) -> tuple[jax.Array, jax.Array]:
  """Nearest centre of each point and the squared distance to it (the E-step; ``predict``).

  x [N, D], centers [K, D] -> (labels int32 [N], squared distances f32 [N]); ties go to the
  lowest index. The distance is exact, sum_d (x - c)^2 (sklearn ``_inertia_dense``): a point on
  its centre is at 0. ValueError unless [N, D] and [K, D] with the same D.
  """
  _check_features(x, centers)
  x, centers = x.astype(jnp.float32), centers.astype(jnp.float32)
  x_shifted, centers_shifted = _shift(x, centers)
  labels, _, _ = _nearest(_augment(x_shifted), centers_shifted)
  return labels, jnp.sum((x - centers[labels]) ** 2, axis=1)


def _weighted_mean(x: jax.Array, weights: jax.Array) -> jax.Array:
  """[N, D], [N] -> [D] (a fused sum: faster on XLA:CPU than ``weights @ x``)."""
  return jnp.sum(weights[:, None] * x, axis=0) / jnp.sum(weights)


class _Prepared(NamedTuple):
  """The data as the Lloyd loop reads it, built once per fit and shared by the restarts.

  ``mean`` [D] weighted mean; ``x_aug`` [N, D + 1] ``_augment(x - mean)``; ``x_sq`` [N]
  ||x - mean||^2; ``weights`` [N].
  """
  mean: jax.Array
  x_aug: jax.Array
  x_sq: jax.Array
  weights: jax.Array


def _prepare(x: jax.Array, weights: jax.Array) -> _Prepared:
  mean = _weighted_mean(x, weights)
  x_aug = _augment(x - mean)
  # Read from x_aug (its ones column masked) so that XLA keeps no second copy of x - mean.
  features = jnp.arange(x_aug.shape[1]) < x.shape[1]
  x_sq = jnp.sum(jnp.where(features, x_aug * x_aug, 0.0), axis=1)
  return _Prepared(mean, x_aug, x_sq, weights)


def _cluster_totals(x_aug, weights, labels, k: int) -> jax.Array:
  """[K, D + 1] per-cluster sums of w x (first D columns) and of w (last: x_aug's ones)."""
  return jax.ops.segment_sum(x_aug * weights[:, None], labels, num_segments=k)
