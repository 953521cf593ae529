"""Hamerly's bounds for the k-means E-step: skip the points whose label cannot change.

Hamerly 2010, "Making k-means even faster" (SDM, Algorithm 2). Gives plain Lloyd's labels
(tested); the default ``algorithm`` of ``jaxssl.cluster.algorithms`` (timings:
benchmarks/kmeans_vs_sklearn.py).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from jaxssl.cluster import distances

# Relative slack on Hamerly's bounds, far above float32 rounding of the matmul distances, so
# a pruned point's label is the one the full computation would give.
_BOUND_SLACK = 1e-5


def _bounds(best, runner, x_sq, centers):
  """(upper [M], lower [M]) distance bounds to the nearest and second-nearest centre.

  From ``distances._nearest``'s scores and ||x||^2 [M], widened by the float32 error of
  ||x||^2 - 2 x.c + ||c||^2; in units of x.
  """
  slack = _BOUND_SLACK * (x_sq + jnp.max(jnp.sum(centers * centers, axis=1)))
  return (jnp.sqrt(jnp.maximum(best + x_sq + slack, 0.0)),
          jnp.sqrt(jnp.maximum(runner + x_sq - slack, 0.0)))


def _capacities(n: int) -> tuple[int, ...]:
  """Static subset sizes for ``_reassign_some``: N/64, N/16, N/4 (above N/4: all N)."""
  return tuple(sorted({-(-n // f) for f in (64, 16, 4)}))


def _reassign_all(x_aug, x_sq, weights, centers):
  """Every point's label and bounds, and fresh totals: (labels, upper, lower, totals)."""
  labels, best, runner = jax.lax.optimization_barrier(distances._nearest(x_aug, centers))
  upper, lower = _bounds(best, runner, x_sq, centers)
  return labels, upper, lower, distances._cluster_totals(x_aug, weights, labels, centers.shape[0])


def _reassign_some(cap: int, x_aug, x_sq, weights, centers, labels, upper, lower, totals,
                   need):
  """Labels and bounds of the (at most ``cap``) points in ``need``, gathered.

  Totals change by the points that changed cluster (as Hamerly 2010; within f32 rounding of a
  recomputation, reset by every ``_reassign_all``). Returns (labels, upper, lower, totals).

  Args:
    cap: static capacity, >= the number of points in ``need``.
    x_aug: [N, D + 1]; x_sq, weights: [N]; centers: [K, D]; labels: int32 [N];
    upper, lower: [N]; totals: [K, D + 1]; need: bool [N].
  """
  n, k = x_aug.shape[0], centers.shape[0]
  index = jnp.nonzero(need, size=cap, fill_value=n)[0]  # [cap]; n marks an unused slot
  # The barriers keep XLA from fusing the gather and the unrolled comparison into every
  # consumer (it would run them again for each).
  rows = jax.lax.optimization_barrier(jnp.take(x_aug, index, axis=0, mode='clip'))
  new, best, runner = jax.lax.optimization_barrier(distances._nearest(rows, centers))
  u, l = _bounds(best, runner, jnp.take(x_sq, index, mode='clip'), centers)
  old = jnp.take(labels, index, mode='clip')
  w = jnp.where((index < n) & (new != old), jnp.take(weights, index, mode='clip'), 0.0)
  moved = rows * w[:, None]  # [cap, D + 1]; zero unless the point changed cluster
  totals = (totals + jax.ops.segment_sum(moved, new, num_segments=k)
            - jax.ops.segment_sum(moved, old, num_segments=k))
  return (labels.at[index].set(new, mode='drop'), upper.at[index].set(u, mode='drop'),
          lower.at[index].set(l, mode='drop'), totals)


def _hamerly_labels(data: distances._Prepared, centers, old_centers, labels, upper, lower, totals,
                    first):
  """E-step with Hamerly's bounds (Hamerly 2010, SDM, Alg. 2); labels equal full recomputation.

  After the centres move by delta_j, upper += delta_a and lower -= max_{j != a} delta_j; a
  point with upper <= max(lower, half the gap from its centre to the nearest other) keeps its
  label. The rest are recomputed in the smallest ``_capacities`` subset that holds them
  (``lax.switch``, static shapes) or all N.

  Args:
    data: from ``distances._prepare``; centers, old_centers: [K, D], K >= 2; labels: int32 [N];
    upper, lower: [N] bounds as of ``old_centers``; totals: [K, D + 1]
    ``distances._cluster_totals`` of ``labels``; first: bool [], True on the first iteration
    (every point is then recomputed).

  Returns:
    (labels, upper, lower, totals, changed): changed is a bool [], True if a real point got
    another label.
  """
  x_aug, x_sq, weights = data.x_aug, data.x_sq, data.weights
  real = weights > 0
  delta = jnp.sqrt(jnp.sum((centers - old_centers) ** 2, axis=1))  # [K]
  top, which = jax.lax.top_k(delta, 2)
  upper = upper + delta[labels]
  lower = lower - jnp.where(labels == which[0], top[1], top[0])
  gaps = jnp.sqrt(jnp.sum((centers[:, None] - centers[None]) ** 2, axis=-1))  # [K, K]
  half_gap = 0.5 * jnp.min(jnp.where(jnp.eye(len(centers), dtype=bool), jnp.inf, gaps), 1)
  need = real & (upper > jnp.maximum(lower, half_gap[labels]) * (1.0 - _BOUND_SLACK))
  caps = _capacities(x_aug.shape[0])
  branches = [functools.partial(_reassign_some, cap, x_aug, x_sq, weights, centers, labels,
                                upper, lower, totals, need) for cap in caps]
  branches.append(lambda: _reassign_all(x_aug, x_sq, weights, centers))
  branch = jnp.where(first, len(caps), jnp.sum(jnp.sum(need) > jnp.asarray(caps, jnp.int32)))
  new, upper, lower, totals = jax.lax.switch(branch, branches)
  return new, upper, lower, totals, jnp.any(real & (new != labels))
