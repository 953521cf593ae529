r"""k-means clustering in JAX: Lloyd iterations and mini-batch k-means, pure and jitted.

Lloyd 1982 (IEEE Trans. Inf. Theory 28(2)), seeded by ``jaxssl.cluster.seeding``, with
Hamerly's bounds optional (``jaxssl.cluster.hamerly``); Sculley 2010 (WWW, Algorithm 1) for
mini-batches. Lloyd follows scikit-learn 1.9 ``KMeans(algorithm='lloyd')``: data centred on
their mean, stop at ``max_iter``, unchanged labels, or total squared centre shift <= ``tol``
times the mean per-feature variance; empty clusters re-seeded with the farthest points; labels
and inertia recomputed from the final centres. float32 throughout.

``x`` [N, D] and ``weights`` [N] (0 = padding) may be split over ``sharding.BATCH_AXES``:
reductions over N become all-reduces under GSPMD. ``jaxssl.cluster.kmeans`` wraps these
with scikit-learn's interface.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp

from jaxssl.cluster import distances
from jaxssl.cluster import hamerly as hamerly_lib
from jaxssl.cluster import seeding

INITS = ('k-means++', 'random')
ALGORITHMS = ('hamerly', 'lloyd')


class KMeansResult(NamedTuple):
  """One k-means fit (a pytree of jax arrays).

  Attributes:
    cluster_centers: [K, D] centres.
    labels: int32 [N] index of each point's nearest centre (padding rows too).
    inertia: f32 [] sum over points of weight x squared Euclidean distance to their centre.
    n_iter: int32 [] Lloyd iterations run (of the restart kept).
  """
  cluster_centers: jax.Array
  labels: jax.Array
  inertia: jax.Array
  n_iter: jax.Array


def tolerance(x: jax.Array, weights: jax.Array, tol) -> jax.Array:
  """Absolute stop threshold on the total squared centre shift, f32 [] (sklearn ``_tolerance``).

  ``tol`` (0 disables the test) times the mean over features of the weighted population
  variance of x [N, D], in squared units of x.
  """
  centred = x - distances._weighted_mean(x, weights)
  return _tolerance_centred(jnp.sum(centred * centred, axis=1), weights, x.shape[1], tol)


def _tolerance_centred(x_sq, weights, num_features: int, tol):
  """``tolerance`` from the squared norms [N] of the centred points."""
  return tol * jnp.sum(weights * x_sq) / (num_features * jnp.sum(weights))


def _relocate_empty_clusters(x_aug, weights, centers, labels, totals):
  """Re-seeds empty clusters as scikit-learn's ``_relocate_empty_clusters_dense`` does.

  The e-th empty cluster takes the e-th farthest real point from its centre (ties to the lower
  index): its weighted row moves between the clusters' totals for one iteration (labels kept).
  Nothing moves if every point is on its centre; a donor left empty is re-seeded next time.

  Args:
    x_aug: [N, D + 1] centred points (``distances._augment``); weights: [N].
    centers: [K, D] centres the labels were computed from; labels: int32 [N].
    totals: [K, D + 1] per-cluster sums of w x and (last column) of w; returned updated.
  """
  k = centers.shape[0]
  # ||x - c||^2 over the D + 1 columns of x_aug: the ones column adds (1 - 1)^2 = 0.
  dist = jnp.sum((x_aug - distances._augment(centers)[labels]) ** 2, axis=1)  # [N]
  dist = jnp.where(weights > 0, dist, -1.0)
  _, far = jax.lax.top_k(dist, k)  # [K] descending
  empty = totals[:, -1] == 0
  point = far[jnp.maximum(jnp.cumsum(empty) - 1, 0)]  # [K]: the e-th far point for empty e
  w = jnp.where(empty & (jnp.max(dist) > 0), weights[point], 0.0)  # [K]
  moved = x_aug[point] * w[:, None]  # [K, D + 1]: w x and w
  return totals + moved - jax.ops.segment_sum(moved, labels[point], num_segments=k)


def _update_centers(x_aug, weights, centers, labels, totals):
  """M-step: [K, D] weighted means, empty clusters re-seeded first; still-empty ones stay put."""
  totals = jax.lax.cond(
      jnp.any(totals[:, -1] == 0),
      lambda t: _relocate_empty_clusters(x_aug, weights, centers, labels, t),
      lambda t: t, totals)
  counts = totals[:, -1:]  # [K, 1]
  return jnp.where(counts > 0, totals[:, :-1] / jnp.where(counts > 0, counts, 1.0), centers)


def _lloyd_centred(data: distances._Prepared, centers: jax.Array, max_iter, tol_abs,
                   algorithm: str = 'hamerly') -> tuple[jax.Array, jax.Array]:
  """Lloyd iterations on centred data, as scikit-learn's ``_kmeans_single_lloyd``.

  Stops after ``max_iter``, when no real label changed (never on the first iteration), or when
  sum_k ||c_new - c_old||^2 <= ``tol_abs``. 'hamerly' computes only the distances its bounds
  cannot rule out (``hamerly._hamerly_labels``): same labels, centres equal to f32 rounding.

  Args:
    data: from ``distances._prepare`` (weights 0 = padding: ignored by every test and sum).
    centers: [K, D] initial centres, centred like the data.
    max_iter: int (may be traced); tol_abs: f32 (see ``tolerance``).
    algorithm: 'hamerly' or 'lloyd' (static; K = 1 always runs 'lloyd').

  Returns (centred centres [K, D], n_iter int32 []).
  """
  x_aug, weights = data.x_aug, data.weights
  n, k = x_aug.shape[0], centers.shape[0]
  real = weights > 0
  hamerly = algorithm == 'hamerly' and k > 1

  def cond(state):
    return (state[0] < max_iter) & ~state[-1]

  def body(state):
    i, centers, old_centers, labels, upper, lower, totals, _ = state
    if hamerly:
      labels, upper, lower, totals, changed = hamerly_lib._hamerly_labels(
          data, centers, old_centers, labels, upper, lower, totals, i == 0)
    else:
      new_labels = distances._nearest(x_aug, centers)[0]
      changed, labels = jnp.any(real & (new_labels != labels)), new_labels
      totals = distances._cluster_totals(x_aug, weights, labels, k)
    new = _update_centers(x_aug, weights, centers, labels, totals)
    # As scikit-learn, whose labels start at -1: the first iteration never counts as
    # "labels unchanged", only the shift can stop it.
    done = (~changed & (i > 0)) | (jnp.sum((new - centers) ** 2) <= tol_abs)
    return i + 1, new, centers, labels, upper, lower, totals, done

  # The first iteration recomputes every point (`hamerly._reassign_all`); bounds (inf, 0) agree.
  state = (jnp.int32(0), centers, centers, jnp.zeros(n, jnp.int32),
           jnp.full(n, jnp.inf, x_aug.dtype), jnp.zeros(n, x_aug.dtype),
           jnp.zeros((k, x_aug.shape[1]), x_aug.dtype), jnp.bool_(False))
  state = jax.lax.while_loop(cond, body, state)
  return state[1], state[0]


def _finish(x, weights, centers, n_iter) -> KMeansResult:
  """Labels and inertia recomputed from the final centres by ``distances.assign``."""
  labels, sq_dist = distances.assign(x, centers)
  return KMeansResult(centers, labels, jnp.sum(weights * sq_dist), n_iter)


@functools.partial(jax.jit, static_argnames=('algorithm',))
def lloyd(x: jax.Array, weights: jax.Array, centers: jax.Array, max_iter=300, tol=1e-4, *,
          algorithm: str = 'hamerly') -> KMeansResult:
  """k-means (Lloyd 1982) from given initial centres (sklearn's ``KMeans(init=array, n_init=1)``).

  Args:
    x: [N, D] points, optionally split over a mesh's batch axes.
    weights: [N] >= 0 (1 for points, 0 for padding rows), sharded like x.
    centers: [K, D] initial centres.
    max_iter: most Lloyd iterations (traced: changing it does not recompile).
    tol: relative tolerance on the total squared centre shift (see ``tolerance``).
    algorithm: 'hamerly' (bounds skip most distances) or 'lloyd'; same result (static).

  Returns the fit, labels [N] including padding rows. ValueError if x and centers are not
  [N, D] and [K, D] with the same D, or for an unknown algorithm.
  """
  distances._check_features(x, centers)
  _check_algorithm(algorithm)
  data = distances._prepare(x, weights)
  tol_abs = _tolerance_centred(data.x_sq, weights, x.shape[1], tol)
  out, n_iter = _lloyd_centred(data, centers - data.mean, max_iter, tol_abs, algorithm)
  return _finish(x, weights, out + data.mean, n_iter)


def _check_algorithm(algorithm: str) -> None:
  if algorithm not in ALGORITHMS:
    raise ValueError(f'algorithm={algorithm!r} must be one of {ALGORITHMS}')


@functools.partial(jax.jit, static_argnames=('n_clusters', 'init', 'n_init', 'algorithm'))
def kmeans(key: jax.Array, x: jax.Array, weights: jax.Array, *, n_clusters: int,
           init: str = 'k-means++', n_init: int = 1, max_iter=300, tol=1e-4,
           algorithm: str = 'hamerly') -> KMeansResult:
  """k-means: ``n_init`` seeded runs of Lloyd's algorithm, the lowest inertia kept (ties: first).

  Args:
    key: PRNG key; restart r is seeded from ``jax.random.split(key, n_init)[r]``.
    x, weights: as in ``lloyd``; weights positive for at least K rows.
    n_clusters: K (static).
    init: 'k-means++' (``seeding.kmeans_plusplus``) or 'random' (``seeding.random_init``).
    max_iter, tol, algorithm: as in ``lloyd``.

  Returns the kept fit, labels [N] including padding rows; ValueError for an unknown ``init``
  or ``algorithm``.
  """
  if init not in INITS:
    raise ValueError(f'init={init!r} must be one of {INITS} or an array of centres')
  _check_algorithm(algorithm)
  seed = seeding.kmeans_plusplus if init == 'k-means++' else seeding.random_init
  data = distances._prepare(x, weights)
  centred = data.x_aug[:, :-1]
  tol_abs = _tolerance_centred(data.x_sq, weights, x.shape[1], tol)

  def restart(key):
    centers, n_iter = _lloyd_centred(data, seed(key, centred, weights, n_clusters), max_iter,
                                     tol_abs, algorithm)
    _, sq_dist = distances.assign(centred, centers)
    return centers, n_iter, jnp.sum(weights * sq_dist)

  centers, n_iter, inertia = jax.lax.map(restart, jax.random.split(key, n_init))
  best = jnp.argmin(inertia)
  return _finish(x, weights, centers[best] + data.mean, n_iter[best])


@jax.jit
def minibatch_step(centers: jax.Array, counts: jax.Array, x: jax.Array,
                   weights: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
  """One mini-batch update (Sculley 2010, Algorithm 1, the batch done at once).

  Each centre stays the running mean of all its points: with batch weight m_c and mean mu_c,
  c += m_c / (v_c + m_c) (mu_c - c), v_c += m_c; centres with no point in the batch stay.
  centers [K, D], counts [K] (weight each centre has had), x [B, D], weights [B] (0 = padding)
  -> (centres [K, D], counts [K], batch inertia f32 [] before the update).
  """
  labels, sq_dist = distances.assign(x, centers)
  wx = jnp.concatenate([x * weights[:, None], weights[:, None]], axis=1)  # [B, D + 1]
  totals = jax.ops.segment_sum(wx, labels, num_segments=centers.shape[0])  # [K, D + 1]
  sums, batch_counts = totals[:, :-1], totals[:, -1]
  counts = counts + batch_counts
  rate = batch_counts / jnp.where(counts > 0, counts, 1.0)  # [K]
  means = sums / jnp.where(batch_counts > 0, batch_counts, 1.0)[:, None]
  return centers + rate[:, None] * (means - centers), counts, jnp.sum(weights * sq_dist)
