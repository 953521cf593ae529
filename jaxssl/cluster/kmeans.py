"""k-means with scikit-learn's interface, over the pure functions of ``jaxssl.cluster.algorithms``.

Host side: data checked and cast to float32, padded with weight-0 rows to a multiple of the
mesh's device count, placed on the device(s). E.g. ``kmeans.KMeans(n_clusters=10, n_init=4,
seed=0).fit(x).labels_`` for x [N, D].
"""

from __future__ import annotations

import math
import numbers
import warnings
from typing import Iterable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh
from sklearn.exceptions import ConvergenceWarning

from jaxssl.cluster import algorithms
from jaxssl.cluster import distances
from jaxssl.cluster import seeding
from jaxssl.parallel import sharding


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
      an array [K, D] of initial centres; ``seed`` seeds it.
    mesh: optional Mesh; batches are split over its batch axes.
    state: a previous run's result, to continue from (``init`` is then unused).

  Returns:
    The centres, counts and number of batches used (including ``state``'s).

  Raises:
    ValueError: a bad batch (see ``check_data``), K < 1 or more than the first batch's rows,
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
    centers, counts, _ = algorithms.minibatch_step(centers, counts, xs, ws)
    n_steps += 1
  if centers is None:
    raise ValueError('batches is empty: no data to cluster')
  return MiniBatchState(np.asarray(centers), np.asarray(counts), n_steps)


def check_data(x, name: str = 'x') -> np.ndarray:
  """The data as a float32 [N, D] NumPy array.

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
  """Puts [N, D] data on the device(s) with weights 1, padded with weight-0 zero rows.

  Padded to ``rows`` (default N), then to a multiple of the mesh's device count. Returns
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
  if init not in algorithms.INITS:
    raise ValueError(f'init={init!r} must be one of {algorithms.INITS} or an array of centres')
  xs, ws, _ = place(x, mesh)
  mean = distances._weighted_mean(xs, ws)
  seed_fn = seeding.kmeans_plusplus if init == 'k-means++' else seeding.random_init
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
    """Index of the nearest centre: x [N, D] -> int32 [N] (see ``distances.assign``).

    Raises:
      ValueError: not fitted, bad data (``check_data``), or another feature count.
    """
    xs, _, n = place(self._fitted_input(x), self.mesh)
    return np.asarray(distances.assign(xs, jnp.asarray(self.cluster_centers_))[0])[:n]

  def transform(self, x) -> np.ndarray:
    """Euclidean distance to every centre: x [N, D] -> f32 [N, K]; ValueError as ``predict``."""
    xs, _, n = place(self._fitted_input(x), self.mesh)
    return np.sqrt(np.asarray(distances.squared_distances(
        xs, jnp.asarray(self.cluster_centers_))))[:n]

  def fit_predict(self, x) -> np.ndarray:
    """``fit(x).labels_``: int32 [N]."""
    return self.fit(x).labels_


class KMeans(_Centres):
  """k-means (Lloyd) with scikit-learn's interface; float32, on 1 device or a mesh.

  Args:
    n_clusters: K.
    init: 'k-means++' (default), 'random', or an array [K, D] of initial centres (then one
      run: ``n_init`` > 1 warns and is ignored, as scikit-learn does).
    n_init: seeded restarts, the lowest inertia kept; always 1 unless set (sklearn: 'auto').
    max_iter: most Lloyd iterations per run.
    tol: relative tolerance on the total squared centre shift (see ``algorithms.tolerance``).
    seed: seeds the initialisation (restart r from ``split(key(seed), n_init)[r]``).
    mesh: optional Mesh; the data are split over its batch axes (padded with weight-0 rows).
    algorithm: 'hamerly' (default) or 'lloyd': the same labels (see ``algorithms.lloyd``).

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
    """Validates the hyperparameters against x; returns the explicit init array, if any."""
    _check_n_clusters(self.n_clusters, len(x))
    _check_positive_int('n_init', self.n_init)
    _check_positive_int('max_iter', self.max_iter)
    algorithms._check_algorithm(self.algorithm)
    if isinstance(self.tol, bool) or not isinstance(self.tol, numbers.Real) or not (
        0 <= self.tol < math.inf):
      raise ValueError(f'tol={self.tol!r} must be a finite number >= 0')
    if isinstance(self.init, str):
      if self.init not in algorithms.INITS:
        raise ValueError(f'init={self.init!r} must be one of {algorithms.INITS} or an array '
                         'of centres')
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
      ValueError: bad data (``check_data``: not 2-D, empty, NaN/inf), n_clusters not in
        [1, N], n_init or max_iter < 1, tol < 0, an unknown init or a wrong-shaped array.
    """
    x = check_data(x)
    centers = self._check_params(x)
    xs, ws, n = place(x, self.mesh)
    if centers is None:
      result = algorithms.kmeans(jax.random.key(self.seed), xs, ws, n_clusters=self.n_clusters,
                      init=self.init, n_init=self.n_init, max_iter=self.max_iter, tol=self.tol,
                      algorithm=self.algorithm)
    else:
      result = algorithms.lloyd(xs, ws, jnp.asarray(centers), self.max_iter, self.tol,
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
  """Warns, as scikit-learn does, when fewer than K clusters got points (duplicate centres)."""
  distinct = len(np.unique(labels))
  if distinct < n_clusters:
    warnings.warn(f'only {distinct} distinct clusters found for n_clusters={n_clusters}: '
                  'x has fewer distinct points than clusters, so some centres coincide',
                  ConvergenceWarning, stacklevel=3)


class MiniBatchKMeans(_Centres):
  """Mini-batch k-means (Sculley 2010) with scikit-learn's interface.

  ``fit`` runs ``max_iter`` epochs of ``batch_size`` batches (fresh permutation from ``seed``
  each epoch, last batch padded) through ``minibatch_kmeans``, seeding on the first batch;
  ``partial_fit`` takes one batch of a stream. Unlike scikit-learn: no early stopping and no
  random reassignment of small clusters.

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
    labels, sq_dist = distances.assign(xs, jnp.asarray(self.cluster_centers_))
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
