"""k-means seeding: greedy k-means++ and random rows.

Arthur & Vassilvitskii 2007, "k-means++" (SODA, sec. 2.2), D^2 weighting, in scikit-learn's
greedy form: 2 + int(ln K) candidates per step, keeping the one lowest in potential.
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp


def _sample(key: jax.Array, mass: jax.Array, num: int) -> jax.Array:
  """``num`` indices drawn with replacement with probability mass / sum(mass).

  mass: f32 [N] >= 0 with a positive sum; an index with zero mass is never returned.
  """
  cum = jnp.cumsum(mass)  # [N]
  u = jax.random.uniform(key, (num,), mass.dtype) * cum[-1]
  index = jnp.searchsorted(cum, u, side='right')  # first i with cum[i] > u
  last = mass.shape[0] - 1 - jnp.argmax(mass[::-1] > 0)
  return jnp.minimum(index, last).astype(jnp.int32)


@functools.partial(jax.jit, static_argnames=('n_clusters', 'n_local_trials'))
def kmeans_plusplus(key: jax.Array, x: jax.Array, weights: jax.Array, n_clusters: int, *,
                    n_local_trials: int | None = None) -> jax.Array:
  """Greedy k-means++ seeding (Arthur & Vassilvitskii 2007; scikit-learn's ``_kmeans_plusplus``).

  The first centre is drawn with probability w_i / sum(w); each next one is the best of
  ``n_local_trials`` (default 2 + int(ln K)) candidates drawn by w_i D(x_i)^2 (D: distance to
  the nearest centre so far), lowest in potential sum_i w_i min(D(x_i)^2, ||x_i - cand||^2).

  Args:
    x: [N, D] points (best centred; distances are ||x||^2 - 2 x.y + ||y||^2).
    weights: [N] >= 0, positive for at least ``n_clusters`` points; 0 rows are never chosen.
    n_clusters: K (static).

  Returns:
    [K, D] rows of x, distinct while some point is at a positive distance from every centre;
    after that, drawn by weight.
  """
  if n_local_trials is None:
    n_local_trials = 2 + int(math.log(n_clusters))
  x_sq = jnp.sum(x * x, axis=1)  # [N]

  def sq_dist_to(points):  # [T, D] -> [T, N]
    d = x_sq[None] - 2.0 * (points @ x.T) + jnp.sum(points * points, 1)[:, None]
    return jnp.maximum(d, 0.0)

  key_first, key_rest = jax.random.split(key)
  first = x[_sample(key_first, weights, 1)[0]]  # [D]
  centers = jnp.zeros((n_clusters, x.shape[1]), x.dtype).at[0].set(first)
  closest = sq_dist_to(first[None])[0]  # [N]

  def body(c, state):
    centers, closest = state
    mass = weights * closest
    mass = jnp.where(jnp.sum(mass) > 0, mass, weights)  # every point already on a centre
    candidates = _sample(jax.random.fold_in(key_rest, c), mass, n_local_trials)  # [T]
    d = jnp.minimum(closest[None], sq_dist_to(x[candidates]))  # [T, N]
    best = jnp.argmin(d @ weights)  # lowest potential; ties to the first candidate
    return centers.at[c].set(x[candidates[best]]), d[best]

  centers, _ = jax.lax.fori_loop(1, n_clusters, body, (centers, closest))
  return centers


@functools.partial(jax.jit, static_argnames=('n_clusters',))
def random_init(key: jax.Array, x: jax.Array, weights: jax.Array, n_clusters: int) -> jax.Array:
  """K distinct rows [K, D] of x drawn without replacement by w_i / sum(w) (sklearn ``'random'``).

  weights: [N] >= 0, positive for at least ``n_clusters`` rows (0 = padding, never chosen).
  """
  index = jax.random.choice(key, x.shape[0], (n_clusters,), replace=False,
                            p=weights / jnp.sum(weights))
  return x[index]
