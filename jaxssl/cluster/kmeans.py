r"""k-means clustering in JAX: k-means++ seeding, Lloyd iterations and mini-batch k-means.

* Lloyd 1982, "Least squares quantization in PCM" (IEEE Trans. Inf. Theory 28(2)): assign
  each point to its nearest centre, move each centre to the mean of its points, repeat; each
  step lowers the inertia sum_i w_i ||x_i - c_{label_i}||^2.
* Arthur & Vassilvitskii 2007, "k-means++: The Advantages of Careful Seeding" (SODA, section
  2.2): the first centre drawn by weight, each next one with probability proportional to the
  squared distance to the nearest centre chosen so far ("D^2 weighting"), in the greedy form
  of scikit-learn: 2 + int(ln K) candidates per step, keep the one that lowers the potential
  sum_i w_i min_c ||x_i - c||^2 most.
* Hamerly 2010, "Making k-means even faster" (SDM, Algorithm 2): per point, an upper bound
  on the distance to its centre and a lower bound on the distance to every other centre,
  moved by the centre shifts; a point whose bounds prove its label cannot change is
  skipped. ``algorithm='hamerly'`` (the default) gives plain Lloyd's labels (tested) and
  ran 1.6x faster than ``'lloyd'`` on 200,000 x 64 blobs with K = 100 on 2 CPU cores
  (benchmarks/kmeans_vs_sklearn.py), most of the gain in the late iterations where few
  labels change.
* Sculley 2010, "Web-scale k-means clustering" (WWW, Algorithm 1): mini-batches, each centre
  moved towards its new points with a per-centre learning rate 1 / (points it has had).

Lloyd's algorithm follows scikit-learn's ``KMeans(algorithm='lloyd')`` (1.9, ``_kmeans.py``
and ``_k_means_common.pyx``): the data are centred on their mean first (so that
||x||^2 - 2 x.c + ||c||^2 loses little to cancellation), a run stops after ``max_iter``
iterations, when the labels stop changing, or when the total squared centre shift is
<= ``tol`` times the mean per-feature variance of the data; empty clusters are re-seeded with
the points farthest from their centres; the labels and inertia are computed once more from
the final centres. Everything is float32.

The pure functions take ``x`` [N, D] and ``weights`` [N] (1 for a point, 0 for padding) as
jax arrays that may be split over a mesh's batch axes (``sharding.BATCH_AXES``): sums and
counts are plain ``jnp`` reductions over N, which GSPMD turns into per-device partial sums
and an all-reduce, so the same code runs on 1 or 8 devices. `KMeans` and `MiniBatchKMeans`
wrap them with scikit-learn's interface:

  km = kmeans.KMeans(n_clusters=10, n_init=4, seed=0).fit(x)   # x: [N, D] NumPy
  km.labels_, km.inertia_, km.cluster_centers_, km.predict(x_new)
"""

from __future__ import annotations

import functools
import math
import numbers
import warnings
from typing import Iterable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh
from sklearn.exceptions import ConvergenceWarning

from jaxssl.parallel import sharding

INITS = ('k-means++', 'random')
ALGORITHMS = ('hamerly', 'lloyd')
# Centres compared in one unrolled pass of `_nearest`; more are scanned over in such blocks.
CENTER_BLOCK = 128


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


# ----------------------------------------------------------------------------- distances

def _augment(x: jax.Array) -> jax.Array:
  """[N, D] -> [N, D + 1]: x and a column of ones, so that ``_augment(x) @ _center_rows(c).T``
  is ||c||^2 - 2 x.c in one matmul."""
  return jnp.concatenate([x, jnp.ones((x.shape[0], 1), x.dtype)], axis=1)


def _center_rows(centers: jax.Array) -> jax.Array:
  """[K, D] -> [K, D + 1]: -2 c and ||c||^2."""
  return jnp.concatenate([-2.0 * centers, jnp.sum(centers * centers, 1, keepdims=True)], 1)


def _argmin_rows(scores: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
  """Index, value and runner-up value of the smallest of the K rows of ``scores`` [K, N].

  Returns:
    (int32 [N], f32 [N], f32 [N]; the runner-up is +inf when K = 1). Ties go to the lowest
    index, as ``jnp.argmin``. Unrolled over K into one elementwise loop: on XLA:CPU (jax
    0.10) ``jnp.argmin`` over [100000, 100] took 17 ms and this 2.6 ms (XLA drops the
    runner-up where it is not used).
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
  """Nearest centre of each row by the score ||c||^2 - 2 x.c (= ||x - c||^2 - ||x||^2).

  Args:
    x_aug: [N, D + 1] rows from `_augment`.
    centers: [K, D].

  Returns:
    (labels int32 [N], best scores f32 [N], runner-up scores f32 [N]); ties go to the lowest
    index. Centres are compared ``CENTER_BLOCK`` at a time, so no [K, N] array is formed
    for large K.
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
  """Squared Euclidean distances ||x - c||^2 as matrix products, clipped at 0.

  Args:
    x: [N, D] points.
    centers: [K, D].

  Returns:
    f32 [N, K] of ||x||^2 - 2 x.c + ||c||^2 (after moving both by the mean centre).

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

  Args:
    x: [N, D] points.
    centers: [K, D].

  Returns:
    (labels int32 [N], squared distances f32 [N]); ties go to the lowest index. The label
    compares ||c||^2 - 2 x.c (after moving both by the mean centre); the distance is then
    computed exactly as sum_d (x - c)^2, as scikit-learn's ``_inertia_dense`` does, so a
    point on its centre is at 0.

  Raises:
    ValueError: x and centers are not [N, D] and [K, D] with the same D.
  """
  _check_features(x, centers)
  x, centers = x.astype(jnp.float32), centers.astype(jnp.float32)
  x_shifted, centers_shifted = _shift(x, centers)
  labels, _, _ = _nearest(_augment(x_shifted), centers_shifted)
  return labels, jnp.sum((x - centers[labels]) ** 2, axis=1)


# ----------------------------------------------------------------------------- seeding

def _sample(key: jax.Array, mass: jax.Array, num: int) -> jax.Array:
  """``num`` indices drawn with replacement with probability mass / sum(mass).

  mass: f32 [N] >= 0 with a positive sum. Inverse-CDF sampling; an index with zero mass is
  never returned (float rounding of the last draw is clipped to the last positive entry).
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

  The first centre is a point drawn with probability w_i / sum(w). Each next one: draw
  ``n_local_trials`` candidates with probability w_i D(x_i)^2 / sum (D = distance to the
  nearest centre so far) and keep the candidate giving the lowest potential
  sum_i w_i min(D(x_i)^2, ||x_i - candidate||^2).

  Args:
    key: PRNG key.
    x: [N, D] points (best centred; distances are ||x||^2 - 2 x.y + ||y||^2).
    weights: [N] >= 0, positive for at least ``n_clusters`` points; 0 rows are never chosen.
    n_clusters: K (static).
    n_local_trials: candidates per centre after the first; default 2 + int(ln K).

  Returns:
    [K, D] rows of x. Distinct points while some point is still at a positive distance from
    every centre; once every point coincides with a centre, further centres are drawn by
    weight.
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
  """K distinct rows of x drawn without replacement with probability w_i / sum(w).

  Args:
    key: PRNG key.
    x: [N, D]; weights: [N] >= 0, positive for at least ``n_clusters`` rows (0 = padding,
      never chosen).
    n_clusters: K (static).

  Returns:
    [K, D] (scikit-learn's ``init='random'``).
  """
  index = jax.random.choice(key, x.shape[0], (n_clusters,), replace=False,
                            p=weights / jnp.sum(weights))
  return x[index]


# ----------------------------------------------------------------------------- Lloyd

def _weighted_mean(x: jax.Array, weights: jax.Array) -> jax.Array:
  """[N, D], [N] -> [D] (a fused sum: faster on XLA:CPU than the matvec ``weights @ x``)."""
  return jnp.sum(weights[:, None] * x, axis=0) / jnp.sum(weights)


def tolerance(x: jax.Array, weights: jax.Array, tol) -> jax.Array:
  """Absolute stopping threshold on the total squared centre shift: ``tol`` times the mean
  over features of the (weighted, population) variance of x; scikit-learn's ``_tolerance``.

  Args:
    x: [N, D]; weights: [N] >= 0.
    tol: relative tolerance (0 disables the shift test).

  Returns:
    f32 [] in squared units of x.
  """
  centred = x - _weighted_mean(x, weights)
  return _tolerance_centred(jnp.sum(centred * centred, axis=1), weights, x.shape[1], tol)


def _tolerance_centred(x_sq, weights, num_features: int, tol):
  """`tolerance` from the squared norms [N] of the centred points: the mean of the D
  per-feature variances is sum_i w_i ||x_i - mean||^2 / (D sum_i w_i)."""
  return tol * jnp.sum(weights * x_sq) / (num_features * jnp.sum(weights))


class _Prepared(NamedTuple):
  """The data as the Lloyd loop reads it (built once per fit, shared by the restarts).

  Attributes:
    mean: [D] weighted mean of x; the loop works on x - mean.
    x_aug: [N, D + 1] `_augment(x - mean)`.
    x_sq: [N] ||x - mean||^2.
    weights: [N].
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


def _relocate_empty_clusters(x_aug, weights, centers, labels, totals):
  """Re-seeds empty clusters as scikit-learn's ``_relocate_empty_clusters_dense`` does.

  The e-th empty cluster (by index) takes the e-th farthest point from its current centre
  (ties to the lower index; padding never): that point's weighted row moves from its old
  cluster's totals to the empty one's (its label is not changed, so the move lasts one
  iteration). Nothing moves if every point is on its centre (more clusters than distinct
  points). A donor cluster left empty keeps its centre (`_update_centers`) and is re-seeded
  on the next iteration.

  Args:
    x_aug: [N, D + 1] centred points (`_augment`); weights: [N].
    centers: [K, D] centres the labels were computed from; labels: int32 [N].
    totals: [K, D + 1] per-cluster sums of w x and (last column) of w.

  Returns:
    [K, D + 1] totals.
  """
  k = centers.shape[0]
  # ||x - c||^2 over the D + 1 columns of x_aug: the ones column adds (1 - 1)^2 = 0.
  dist = jnp.sum((x_aug - _augment(centers)[labels]) ** 2, axis=1)  # [N]
  dist = jnp.where(weights > 0, dist, -1.0)
  _, far = jax.lax.top_k(dist, k)  # [K] descending
  empty = totals[:, -1] == 0
  point = far[jnp.maximum(jnp.cumsum(empty) - 1, 0)]  # [K]: the e-th far point for empty e
  w = jnp.where(empty & (jnp.max(dist) > 0), weights[point], 0.0)  # [K]
  moved = x_aug[point] * w[:, None]  # [K, D + 1]: w x and w
  return totals + moved - jax.ops.segment_sum(moved, labels[point], num_segments=k)


def _cluster_totals(x_aug, weights, labels, k: int) -> jax.Array:
  """[K, D + 1] per-cluster sums of w x (first D columns) and of w (last: x_aug's ones)."""
  return jax.ops.segment_sum(x_aug * weights[:, None], labels, num_segments=k)


def _update_centers(x_aug, weights, centers, labels, totals):
  """M-step: the clusters' weighted means, empty clusters re-seeded first.

  Args:
    x_aug: [N, D + 1] centred points; weights: [N]; centers: [K, D] old centres;
    labels: int32 [N]; totals: [K, D + 1] `_cluster_totals` of the labels.

  Returns:
    [K, D] new centres; a cluster still without weight keeps its old centre (never NaN).
  """
  totals = jax.lax.cond(
      jnp.any(totals[:, -1] == 0),
      lambda t: _relocate_empty_clusters(x_aug, weights, centers, labels, t),
      lambda t: t, totals)
  counts = totals[:, -1:]  # [K, 1]
  return jnp.where(counts > 0, totals[:, :-1] / jnp.where(counts > 0, counts, 1.0), centers)


# Relative slack on Hamerly's bounds, far above float32 rounding of the matmul distances, so
# a pruned point's label is the one the full computation would give.
_BOUND_SLACK = 1e-5


def _bounds(best, runner, x_sq, centers):
  """Upper bound on the distance to the nearest centre and lower bound on the distance to
  the second nearest, from `_nearest`'s scores [M] and ||x||^2 [M], widened by the float32
  error of ||x||^2 - 2 x.c + ||c||^2. Returns (upper [M], lower [M]) in units of x."""
  slack = _BOUND_SLACK * (x_sq + jnp.max(jnp.sum(centers * centers, axis=1)))
  return (jnp.sqrt(jnp.maximum(best + x_sq + slack, 0.0)),
          jnp.sqrt(jnp.maximum(runner + x_sq - slack, 0.0)))


def _capacities(n: int) -> tuple[int, ...]:
  """Static sizes of the subsets `_reassign_some` gathers: N/64, N/16, N/4 (at most 4x the
  points needed; more than N/4 needed recomputes all N)."""
  return tuple(sorted({-(-n // f) for f in (64, 16, 4)}))


def _reassign_all(x_aug, x_sq, weights, centers):
  """Every point's label and bounds, and fresh totals: (labels, upper, lower, totals)."""
  labels, best, runner = jax.lax.optimization_barrier(_nearest(x_aug, centers))
  upper, lower = _bounds(best, runner, x_sq, centers)
  return labels, upper, lower, _cluster_totals(x_aug, weights, labels, centers.shape[0])


def _reassign_some(cap: int, x_aug, x_sq, weights, centers, labels, upper, lower, totals,
                   need):
  """Labels and bounds of the (at most ``cap``) points in ``need``, gathered; the totals
  change by the points that changed cluster (Hamerly 2010 keeps sums the same way; they
  differ from recomputed ones by float32 rounding, reset by every `_reassign_all`).

  Args:
    cap: static capacity, >= the number of points in ``need``.
    x_aug: [N, D + 1]; x_sq, weights: [N]; centers: [K, D]; labels: int32 [N];
    upper, lower: [N]; totals: [K, D + 1]; need: bool [N].

  Returns:
    (labels, upper, lower, totals) updated.
  """
  n, k = x_aug.shape[0], centers.shape[0]
  index = jnp.nonzero(need, size=cap, fill_value=n)[0]  # [cap]; n marks an unused slot
  # The barriers keep XLA from fusing the gather and the unrolled comparison into every
  # consumer (it would run them again for each).
  rows = jax.lax.optimization_barrier(jnp.take(x_aug, index, axis=0, mode='clip'))
  new, best, runner = jax.lax.optimization_barrier(_nearest(rows, centers))
  u, l = _bounds(best, runner, jnp.take(x_sq, index, mode='clip'), centers)
  old = jnp.take(labels, index, mode='clip')
  w = jnp.where((index < n) & (new != old), jnp.take(weights, index, mode='clip'), 0.0)
  moved = rows * w[:, None]  # [cap, D + 1]; zero unless the point changed cluster
  totals = (totals + jax.ops.segment_sum(moved, new, num_segments=k)
            - jax.ops.segment_sum(moved, old, num_segments=k))
  return (labels.at[index].set(new, mode='drop'), upper.at[index].set(u, mode='drop'),
          lower.at[index].set(l, mode='drop'), totals)


def _hamerly_labels(data: _Prepared, centers, old_centers, labels, upper, lower, totals,
                    first):
  """E-step with Hamerly's bounds (Hamerly 2010, "Making k-means even faster", SDM, Alg. 2).

  ``upper`` bounds each point's distance to its centre and ``lower`` its distance to every
  other centre, as of ``old_centers``. After the centres move by delta_j, upper += delta_a
  and lower -= max_{j != a} delta_j; a point whose upper bound is <= max(lower, half the
  distance from its centre to the nearest other centre) keeps its label (triangle
  inequality), the rest are recomputed exactly: gathered into the smallest of
  `_capacities` that holds them (`_reassign_some`, one ``lax.switch`` branch per size so
  shapes stay static), or all N (`_reassign_all`). The labels equal full recomputation.

  Args:
    data: from `_prepare`; centers, old_centers: [K, D], K >= 2; labels: int32 [N];
    upper, lower: [N]; totals: [K, D + 1] `_cluster_totals` of ``labels``; first: bool [],
    True on the first iteration, when labels and totals hold nothing yet (every point is
    then recomputed, however many real points there are).

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


def _lloyd_centred(data: _Prepared, centers: jax.Array, max_iter, tol_abs,
                   algorithm: str = 'hamerly') -> tuple[jax.Array, jax.Array]:
  """Lloyd iterations on centred data, as scikit-learn's ``_kmeans_single_lloyd``.

  Iteration i assigns labels from the centres and moves the centres to the means; the loop
  stops after ``max_iter`` iterations, when no real point's label changed since the
  iteration before (strict convergence; never on the first iteration), or when sum_k ||c_new - c_old||^2 <= ``tol_abs``. 'lloyd' computes every
  distance and sum in every iteration; 'hamerly' only the distances its bounds cannot rule
  out and the sums' changes (`_hamerly_labels`): the same labels, centres equal to float32
  rounding.

  Args:
    data: from `_prepare` (weights 0 = padding: ignored by every test and sum).
    centers: [K, D] initial centres, centred like the data.
    max_iter: int (may be traced); tol_abs: f32 (see `tolerance`).
    algorithm: 'hamerly' or 'lloyd' (static; K = 1 always runs 'lloyd').

  Returns:
    (centred centres [K, D], n_iter int32 []).
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
      labels, upper, lower, totals, changed = _hamerly_labels(
          data, centers, old_centers, labels, upper, lower, totals, i == 0)
    else:
      new_labels = _nearest(x_aug, centers)[0]
      changed, labels = jnp.any(real & (new_labels != labels)), new_labels
      totals = _cluster_totals(x_aug, weights, labels, k)
    new = _update_centers(x_aug, weights, centers, labels, totals)
    # As scikit-learn, whose labels start at -1: the first iteration never counts as
    # "labels unchanged", only the shift can stop it.
    done = (~changed & (i > 0)) | (jnp.sum((new - centers) ** 2) <= tol_abs)
    return i + 1, new, centers, labels, upper, lower, totals, done

  # The first iteration recomputes every point (`_reassign_all`); bounds (inf, 0) agree.
  state = (jnp.int32(0), centers, centers, jnp.zeros(n, jnp.int32),
           jnp.full(n, jnp.inf, x_aug.dtype), jnp.zeros(n, x_aug.dtype),
           jnp.zeros((k, x_aug.shape[1]), x_aug.dtype), jnp.bool_(False))
  state = jax.lax.while_loop(cond, body, state)
  return state[1], state[0]


def _finish(x, weights, centers, n_iter) -> KMeansResult:
  """Labels and inertia recomputed from the final centres by `assign` (as ``predict``)."""
  labels, sq_dist = assign(x, centers)
  return KMeansResult(centers, labels, jnp.sum(weights * sq_dist), n_iter)


@functools.partial(jax.jit, static_argnames=('algorithm',))
def lloyd(x: jax.Array, weights: jax.Array, centers: jax.Array, max_iter=300, tol=1e-4, *,
          algorithm: str = 'hamerly') -> KMeansResult:
  """k-means (Lloyd 1982) from given initial centres (scikit-learn's
  ``KMeans(init=array, n_init=1)``).

  Args:
    x: [N, D] points, optionally split over a mesh's batch axes.
    weights: [N] >= 0 (1 for points, 0 for padding rows), sharded like x.
    centers: [K, D] initial centres.
    max_iter: most Lloyd iterations (traced: changing it does not recompile).
    tol: relative tolerance on the total squared centre shift (see `tolerance`).
    algorithm: 'hamerly' (bounds skip most distances once few labels change) or 'lloyd'
      (every distance, every iteration); same result (static).

  Returns:
    The fit; labels [N] include padding rows.

  Raises:
    ValueError: x and centers are not [N, D] and [K, D] with the same D, or an unknown
      algorithm.
  """
  _check_features(x, centers)
  _check_algorithm(algorithm)
  data = _prepare(x, weights)
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
  """k-means: ``n_init`` seeded runs of Lloyd's algorithm, the lowest inertia kept.

  Args:
    key: PRNG key; restart r is seeded from ``jax.random.split(key, n_init)[r]``.
    x: [N, D] points, optionally split over a mesh's batch axes.
    weights: [N] >= 0 (1 for points, 0 for padding rows), positive for at least K rows.
    n_clusters: K (static).
    init: 'k-means++' (`kmeans_plusplus`) or 'random' (`random_init`) (static).
    n_init: restarts, run one after another (static); ties go to the first.
    max_iter, tol, algorithm: as in `lloyd`.

  Returns:
    The kept fit; labels [N] include padding rows.

  Raises:
    ValueError: an unknown ``init`` or ``algorithm``.
  """
  if init not in INITS:
    raise ValueError(f'init={init!r} must be one of {INITS} or an array of centres')
  _check_algorithm(algorithm)
  seed = kmeans_plusplus if init == 'k-means++' else random_init
  data = _prepare(x, weights)
  centred = data.x_aug[:, :-1]
  tol_abs = _tolerance_centred(data.x_sq, weights, x.shape[1], tol)

  def restart(key):
    centers, n_iter = _lloyd_centred(data, seed(key, centred, weights, n_clusters), max_iter,
                                     tol_abs, algorithm)
    _, sq_dist = assign(centred, centers)
    return centers, n_iter, jnp.sum(weights * sq_dist)

  centers, n_iter, inertia = jax.lax.map(restart, jax.random.split(key, n_init))
  best = jnp.argmin(inertia)
  return _finish(x, weights, centers[best] + data.mean, n_iter[best])


# ----------------------------------------------------------------------------- mini-batch

@jax.jit
def minibatch_step(centers: jax.Array, counts: jax.Array, x: jax.Array,
                   weights: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
  """One mini-batch update (Sculley 2010, Algorithm 1, the batch done at once).

  With the batch's labels from the current centres, Sculley's per-point update
  v_c += 1; c += (x - c) / v_c makes each centre the running mean of every point it has been
  given; for a batch with weight m_c and mean mu_c of centre c's points that is
  c += m_c / (v_c + m_c) (mu_c - c), v_c += m_c. Centres with no point in the batch stay.

  Args:
    centers: [K, D]; counts: [K] points (weight) each centre has had so far.
    x: [B, D] batch; weights: [B] (0 = padding).

  Returns:
    (centres [K, D], counts [K], batch inertia f32 [] before the update).
  """
  labels, sq_dist = assign(x, centers)
  wx = jnp.concatenate([x * weights[:, None], weights[:, None]], axis=1)  # [B, D + 1]
  totals = jax.ops.segment_sum(wx, labels, num_segments=centers.shape[0])  # [K, D + 1]
  sums, batch_counts = totals[:, :-1], totals[:, -1]
  counts = counts + batch_counts
  rate = batch_counts / jnp.where(counts > 0, counts, 1.0)  # [K]
  means = sums / jnp.where(batch_counts > 0, batch_counts, 1.0)[:, None]
  return centers + rate[:, None] * (means - centers), counts, jnp.sum(weights * sq_dist)


class MiniBatchState(NamedTuple):
  """Where a mini-batch run stands: centres [K, D] and counts [K] (NumPy), steps taken."""
  cluster_centers: np.ndarray
  counts: np.ndarray
  n_steps: int


def minibatch_kmeans(batches: Iterable[np.ndarray], n_clusters: int, *,
                     init='k-means++', seed: int = 0, mesh: Mesh | None = None,
                     state: MiniBatchState | None = None) -> MiniBatchState:
  """Mini-batch k-means over a stream of batches (e.g. data that does not fit in memory).

  Args:
    batches: iterable of [B_t, D] arrays (B_t may vary; each is padded to the largest size
      seen, rounded up to the mesh's device count, so shapes rarely recompile).
    n_clusters: K.
    init: 'k-means++' or 'random', run on the first batch (which then needs >= K rows), or
      an array [K, D] of initial centres.
    seed: seeds the initialisation.
    mesh: optional Mesh; batches are split over its batch axes.
    state: a previous run's result, to continue from (``init`` is then unused).

  Returns:
    The centres, counts and number of batches used (including ``state``'s).

  Raises:
    ValueError: a bad batch (see `check_data`), K < 1 or more than the first batch's rows,
      a bad ``init``, feature dimensions that differ between batches, or no batch at all.
  """
  n_steps = 0 if state is None else state.n_steps
  centers = counts = None
  if state is not None:
    centers, counts = jnp.asarray(state.cluster_centers), jnp.asarray(state.counts)
  rows = 0
  for batch in batches:
    batch = check_data(batch, 'batch')
    if centers is None:
      centers = jnp.asarray(initial_centers(batch, n_clusters, init, seed, mesh))
      counts = jnp.zeros(n_clusters, jnp.float32)
    elif batch.shape[1] != centers.shape[1]:
      raise ValueError(f'batch has {batch.shape[1]} features but the centres have '
                       f'{centers.shape[1]}')
    rows = max(rows, len(batch))
    xs, ws, _ = place(batch, mesh, rows=rows)
    centers, counts, _ = minibatch_step(centers, counts, xs, ws)
    n_steps += 1
  if centers is None:
    raise ValueError('batches is empty: no data to cluster')
  return MiniBatchState(np.asarray(centers), np.asarray(counts), n_steps)


# ----------------------------------------------------------------------------- host side

def check_data(x, name: str = 'x') -> np.ndarray:
  """The data as a float32 [N, D] NumPy array, or a ValueError naming the problem.

  Raises:
    ValueError: not numeric, not 2-D, no rows or no features, or NaN/inf (also after the
      cast to float32).
  """
  x = np.asarray(x)
  if x.dtype.kind not in 'biuf':
    raise ValueError(f'{name} must hold numbers, got dtype {x.dtype}')
  if x.ndim != 2:
    raise ValueError(f'{name} must be 2-D [n_samples, n_features], got shape {x.shape}')
  if x.shape[0] == 0 or x.shape[1] == 0:
    raise ValueError(f'{name} is empty: shape {x.shape}')
  with np.errstate(over='ignore'):  # too large for float32 becomes inf: reported below
    x = x.astype(np.float32)
  bad = ~np.isfinite(x)
  if bad.any():
    row = int(np.argmax(bad.any(axis=1)))
    raise ValueError(f'{name} contains NaN or infinity (in float32), first in row {row}')
  return x


def place(x: np.ndarray, mesh: Mesh | None, *, rows: int | None = None):
  """Puts [N, D] data on the device(s) with weights 1, padded to ``rows`` (default N) and
  then to a multiple of the mesh's device count with zero rows of weight 0.

  Returns:
    (x [N', D], weights [N'], N), split over ``sharding.BATCH_AXES`` when ``mesh`` is given.
  """
  n = len(x)
  total = max(n, rows or 0)
  if mesh is not None:
    total = -(-total // mesh.devices.size) * mesh.devices.size
  weights = np.zeros(total, np.float32)
  weights[:n] = 1.0
  if total > n:
    x = np.concatenate([x, np.zeros((total - n, x.shape[1]), x.dtype)])
  if mesh is None:
    return jnp.asarray(x), jnp.asarray(weights), n
  split = sharding.batch_sharding(mesh)
  return jax.device_put(x, split), jax.device_put(weights, split), n


def _check_n_clusters(n_clusters, n: int) -> None:
  if isinstance(n_clusters, bool) or not isinstance(n_clusters, numbers.Integral) or not (
      1 <= n_clusters <= n):
    raise ValueError(f'n_clusters={n_clusters!r} must be an integer in [1, n_samples={n}]')


def initial_centers(x: np.ndarray, n_clusters: int, init, seed: int,
                    mesh: Mesh | None = None) -> np.ndarray:
  """[K, D] starting centres for data x [N, D]: 'k-means++', 'random' or a given array.

  Raises:
    ValueError: K not in [1, N], an unknown init, or an array that is not [K, D] and finite.
  """
  if not isinstance(init, str):
    return check_init(init, n_clusters, x.shape[1])
  _check_n_clusters(n_clusters, len(x))
  if init not in INITS:
    raise ValueError(f'init={init!r} must be one of {INITS} or an array of centres')
  xs, ws, _ = place(x, mesh)
  mean = _weighted_mean(xs, ws)
  seed_fn = kmeans_plusplus if init == 'k-means++' else random_init
  return np.asarray(seed_fn(jax.random.key(seed), xs - mean, ws, n_clusters) + mean)


def check_init(init, n_clusters: int, num_features: int) -> np.ndarray:
  """An explicit init as float32 [K, D], or a ValueError naming what is wrong."""
  if isinstance(n_clusters, bool) or not isinstance(n_clusters, numbers.Integral) or (
      n_clusters < 1):
    raise ValueError(f'n_clusters={n_clusters!r} must be an integer >= 1')
  centers = check_data(init, 'init')
  if centers.shape != (n_clusters, num_features):
    raise ValueError(f'init has shape {centers.shape} but n_clusters={n_clusters} and the '
                     f'data have {num_features} features: expected '
                     f'{(n_clusters, num_features)}')
  return centers


def _check_positive_int(name: str, value) -> None:
  if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
    raise ValueError(f'{name}={value!r} must be an integer >= 1')


class _Centres:
  """``predict``, ``transform`` and ``fit_predict`` over fitted ``cluster_centers_``."""

  mesh: Mesh | None = None
  cluster_centers_: np.ndarray

  def _fitted_input(self, x) -> np.ndarray:
    if getattr(self, 'cluster_centers_', None) is None:
      raise ValueError(f'this {type(self).__name__} is not fitted yet: call fit first')
    x = check_data(x)
    if x.shape[1] != self.cluster_centers_.shape[1]:
      raise ValueError(f'x has {x.shape[1]} features but the model was fitted on '
                       f'{self.cluster_centers_.shape[1]}')
    return x

  def predict(self, x) -> np.ndarray:
    """Index of the nearest centre: x [N, D] -> int32 [N] (see `assign`).

    Raises:
      ValueError: not fitted, bad data (`check_data`), or another feature count.
    """
    xs, _, n = place(self._fitted_input(x), self.mesh)
    return np.asarray(assign(xs, jnp.asarray(self.cluster_centers_))[0])[:n]

  def transform(self, x) -> np.ndarray:
    """Euclidean distance to every centre: x [N, D] -> f32 [N, K] (as scikit-learn's).

    Raises:
      ValueError: as `predict`.
    """
    xs, _, n = place(self._fitted_input(x), self.mesh)
    return np.sqrt(np.asarray(squared_distances(xs, jnp.asarray(self.cluster_centers_))))[:n]

  def fit_predict(self, x) -> np.ndarray:
    """``fit(x).labels_``: int32 [N]."""
    return self.fit(x).labels_


class KMeans(_Centres):
  """k-means (Lloyd) with scikit-learn's interface; float32, on 1 device or a mesh.

  Args:
    n_clusters: K.
    init: 'k-means++' (default), 'random', or an array [K, D] of initial centres (then one
      run: ``n_init`` > 1 warns and is ignored, as scikit-learn does).
    n_init: seeded restarts; the lowest inertia is kept (scikit-learn's default 'auto' is 1
      for k-means++ and 10 for random; here it is always 1 unless set).
    max_iter: most Lloyd iterations per run.
    tol: relative tolerance on the total squared centre shift (see `tolerance`).
    seed: seeds the initialisation (restart r from ``split(key(seed), n_init)[r]``).
    mesh: optional Mesh; the data are split over its batch axes (padded with weight-0 rows).
    algorithm: 'hamerly' (default) or 'lloyd': the same labels (see `lloyd`).

  Attributes (after ``fit``):
    cluster_centers_: f32 [K, D]. labels_: int32 [N]. inertia_: float, sum of squared
    Euclidean distances to the nearest centre. n_iter_: int, iterations of the kept run.
    n_features_in_: D.
  """

  def __init__(self, n_clusters: int = 8, *, init='k-means++', n_init: int = 1,
               max_iter: int = 300, tol: float = 1e-4, seed: int = 0,
               mesh: Mesh | None = None, algorithm: str = 'hamerly'):
    self.n_clusters, self.init, self.n_init = n_clusters, init, n_init
    self.max_iter, self.tol, self.seed, self.mesh = max_iter, tol, seed, mesh
    self.algorithm = algorithm
    self.cluster_centers_ = None

  def _check_params(self, x: np.ndarray) -> np.ndarray | None:
    """Validates the hyperparameters against x; returns the explicit init array if any."""
    _check_n_clusters(self.n_clusters, len(x))
    _check_positive_int('n_init', self.n_init)
    _check_positive_int('max_iter', self.max_iter)
    _check_algorithm(self.algorithm)
    if isinstance(self.tol, bool) or not isinstance(self.tol, numbers.Real) or not (
        0 <= self.tol < math.inf):
      raise ValueError(f'tol={self.tol!r} must be a finite number >= 0')
    if isinstance(self.init, str):
      if self.init not in INITS:
        raise ValueError(f'init={self.init!r} must be one of {INITS} or an array of centres')
      return None
    if self.n_init != 1:
      warnings.warn(f'init is an array of centres: one run, not n_init={self.n_init}',
                    RuntimeWarning, stacklevel=3)
    return check_init(self.init, self.n_clusters, x.shape[1])

  def fit(self, x) -> KMeans:
    """Clusters x [N, D] (any real dtype; computed in float32).

    Warns:
      sklearn.exceptions.ConvergenceWarning: fewer than ``n_clusters`` clusters hold points
        (fewer distinct rows than clusters), as scikit-learn warns.

    Raises:
      ValueError: bad data (`check_data`: not 2-D, empty, NaN/inf), n_clusters not in
        [1, N], n_init or max_iter < 1, tol < 0, an unknown init or a wrong-shaped array.
    """
    x = check_data(x)
    centers = self._check_params(x)
    xs, ws, n = place(x, self.mesh)
    if centers is None:
      result = kmeans(jax.random.key(self.seed), xs, ws, n_clusters=self.n_clusters,
                      init=self.init, n_init=self.n_init, max_iter=self.max_iter, tol=self.tol,
                      algorithm=self.algorithm)
    else:
      result = lloyd(xs, ws, jnp.asarray(centers), self.max_iter, self.tol,
                     algorithm=self.algorithm)
    result = jax.device_get(result)
    self.cluster_centers_ = np.asarray(result.cluster_centers)
    self.labels_ = np.asarray(result.labels)[:n]
    self.inertia_ = float(result.inertia)
    self.n_iter_ = int(result.n_iter)
    self.n_features_in_ = x.shape[1]
    _warn_if_clusters_collapsed(self.labels_, self.n_clusters)
    return self


def _warn_if_clusters_collapsed(labels: np.ndarray, n_clusters: int) -> None:
  """Warns, as scikit-learn does, when fewer than K clusters got points (x has fewer than K
  distinct rows, so some centres are duplicates)."""
  distinct = len(np.unique(labels))
  if distinct < n_clusters:
    warnings.warn(f'only {distinct} distinct clusters found for n_clusters={n_clusters}: '
                  'x has fewer distinct points than clusters, so some centres coincide',
                  ConvergenceWarning, stacklevel=3)


class MiniBatchKMeans(_Centres):
  """Mini-batch k-means (Sculley 2010) with scikit-learn's interface.

  ``fit`` runs ``max_iter`` epochs over x in batches of ``batch_size`` (a fresh permutation
  each epoch, from ``seed``; the last batch of an epoch is padded with weight-0 rows) through
  `minibatch_kmeans`, seeding on the first batch; ``partial_fit`` takes one batch of a
  stream. Unlike scikit-learn there is no early stopping and no random reassignment of
  small clusters.

  Args:
    n_clusters: K. init: 'k-means++', 'random' or an array [K, D]. batch_size: rows per
    step. max_iter: epochs of ``fit``. seed: seeds init and batch order. mesh: optional.

  Attributes (after ``fit``):
    cluster_centers_ f32 [K, D], counts_ [K] (points each centre has had), labels_ int32 [N]
    and inertia_ (float) of x under the final centres, n_iter_ (epochs), n_steps_ (batches).
  """

  def __init__(self, n_clusters: int = 8, *, init='k-means++', batch_size: int = 1024,
               max_iter: int = 100, seed: int = 0, mesh: Mesh | None = None):
    self.n_clusters, self.init, self.batch_size = n_clusters, init, batch_size
    self.max_iter, self.seed, self.mesh = max_iter, seed, mesh
    self.cluster_centers_ = None
    self._state = None

  def _batches(self, x: np.ndarray):
    rng = np.random.default_rng(self.seed)
    for _ in range(self.max_iter):
      order = rng.permutation(len(x))
      for start in range(0, len(x), self.batch_size):
        yield x[order[start:start + self.batch_size]]

  def _set(self, state: MiniBatchState) -> None:
    self._state = state
    self.cluster_centers_, self.counts_ = state.cluster_centers, state.counts
    self.n_steps_ = state.n_steps

  def fit(self, x) -> MiniBatchKMeans:
    """Clusters x [N, D] from scratch (see the class docstring).

    Raises:
      ValueError: bad data, n_clusters not in [1, min(N, batch_size)], batch_size or
        max_iter < 1, or a bad init.
    """
    x = check_data(x)
    _check_positive_int('batch_size', self.batch_size)
    _check_positive_int('max_iter', self.max_iter)
    _check_n_clusters(self.n_clusters, min(len(x), self.batch_size))
    self._set(minibatch_kmeans(self._batches(x), self.n_clusters, init=self.init,
                               seed=self.seed, mesh=self.mesh))
    xs, ws, n = place(x, self.mesh)
    labels, sq_dist = assign(xs, jnp.asarray(self.cluster_centers_))
    self.labels_ = np.asarray(labels)[:n]
    self.inertia_ = float(jnp.sum(ws * sq_dist))
    self.n_iter_ = self.max_iter
    return self

  def partial_fit(self, x) -> MiniBatchKMeans:
    """One update with the batch x [B, D] (the first call seeds from it: B >= K).

    Raises:
      ValueError: bad data, K > B on the first call, or another feature count.
    """
    self._set(minibatch_kmeans([x], self.n_clusters, init=self.init, seed=self.seed,
                               mesh=self.mesh, state=self._state))
    return self
