"""One evaluation protocol for every image representation learner.

A frozen encoder maps images to features; the same five measurements then compare any two
learners (SimCLR, BYOL, an autoencoder's bottleneck, a classifier's penultimate layer, ...):

* ``linear_probe``: multinomial logistic regression on the standardised frozen features
  (the linear evaluation protocol of Zhang et al. 2016, arXiv:1603.08511, and of SimCLR,
  Chen et al. 2020, arXiv:2002.05709, sec. 4), by scikit-learn's lbfgs.
* ``knn_classify`` / ``knn_accuracy``: the weighted k-nearest-neighbour vote of Wu et al.
  2018, "Unsupervised Feature Learning via Non-Parametric Instance Discrimination"
  (arXiv:1805.01978, sec. 3.4): cosine similarity s_i to the k nearest training features,
  class score w_c = sum_{i in top-k, c_i = c} exp(s_i / T), prediction argmax_c w_c.
* ``cluster_features``: k-means (``jaxssl.cluster.kmeans``) on the L2-normalised features,
  scored against the labels by the adjusted Rand index (Hubert & Arabie 1985) and the
  normalised mutual information.
* ``fine_tune``: the whole encoder and a fresh linear head trained by Adam on softmax
  cross-entropy, on a copy of the encoder's variables.
* ``evaluate_representation`` runs them all from one ``eval_config()`` block.

An encoder is a pure ``embed_fn(variables, images [B, H, W, C] float32) -> [B, D]``; it is
only ever called inside ``jax.jit`` and its ``variables`` are only read, so the encoder is
frozen by construction. For a Flax NNX module, ``split_encoder`` gives
``(graphdef, variables)`` with ``variables = {'params': ..., 'batch_stats': ...}`` and
``nnx_embed_fn(graphdef)`` the matching ``embed_fn``: it merges a private copy of the module
inside the jitted function, switches every BatchNorm to its running averages
(``use_running_average=True``) and Dropout off, and returns only the features, so that no
call can change the caller's BatchNorm statistics, and a row's features do not depend on the
other rows of its batch (padding rows included).

Images may be uint8 (scaled to [0, 1]) or float (passed through as float32), as
``jaxssl.data.images.ImageData`` holds them.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import numbers
from typing import Any, Callable, Mapping, Sequence

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from flax import nnx
from jax.sharding import Mesh
from ml_collections import config_dict
from sklearn import linear_model
from sklearn import metrics as sk_metrics

from jaxssl.cluster import kmeans
from jaxssl.parallel import sharding
from jaxssl.train import state as state_lib

EmbedFn = Callable[[Any, jax.Array], jax.Array]

# ----------------------------------------------------------------------------- config


def eval_config() -> ml_collections.ConfigDict:
  """The ``config.eval`` block read by `evaluate_representation` (see `check_config`)."""
  c = ml_collections.ConfigDict()
  c.global_batch_size = 256  # Images per feature-extraction batch (last one zero-padded).
  c.knn_k = 200  # Neighbours voting in the kNN (Wu et al. 2018); min(knn_k, N_train) used.
  c.knn_temperature = 0.1  # T of the vote weight exp(cosine / T).
  c.knn_chunk_size = 256  # Test queries per jitted kNN call (memory: chunk x N_train).
  c.probe_c = (0.01, 0.1, 1.0, 10.0)  # Inverse L2 strength; >1 values: picked on held-out.
  c.probe_val_fraction = 0.2  # Train fraction held out (per class) to pick probe_c.
  c.probe_max_iter = 1000  # lbfgs iterations of the logistic regression.
  c.kmeans_n_clusters = config_dict.placeholder(int)  # K; None: the dataset's num_classes.
  c.kmeans_n_init = 4  # k-means++ restarts (the lowest inertia is kept).
  c.fine_tune = False  # Also fine-tune encoder + linear head (needs an NnxEmbedFn).
  c.finetune_steps = 300  # Adam steps of fine-tuning.
  c.finetune_lr = 1e-3  # Adam learning rate (constant), encoder and head alike.
  c.finetune_batch_size = 64  # Images per fine-tuning step.
  c.seed = 0  # Probe split, k-means seeding, head init and fine-tuning batch order.
  return c


def check_config(config: ml_collections.ConfigDict) -> None:
  """Checks an `eval_config` block.

  Raises:
    ValueError: naming the first bad field.
  """
  def positive_int(name):
    v = config[name]
    if isinstance(v, bool) or not isinstance(v, int) or v < 1:
      raise ValueError(f'eval.{name}={v!r} must be an integer >= 1')

  for name in ('global_batch_size', 'knn_k', 'knn_chunk_size', 'probe_max_iter', 'kmeans_n_init',
               'finetune_steps', 'finetune_batch_size'):
    positive_int(name)
  if config.kmeans_n_clusters is not None:
    positive_int('kmeans_n_clusters')
  for name in ('knn_temperature', 'finetune_lr'):
    if not (isinstance(config[name], numbers.Real) and 0 < config[name] < math.inf):
      raise ValueError(f'eval.{name}={config[name]!r} must be a finite number > 0')
  _check_c_grid(config.probe_c, 'eval.probe_c')
  if not 0 < config.probe_val_fraction < 1:
    raise ValueError(f'eval.probe_val_fraction={config.probe_val_fraction!r} must be in (0, 1)')


def check_fits(config: ml_collections.ConfigDict, num_test: int) -> None:
  """Checks the `eval_config` block against the data, before anything compiles.

  Args:
    config: an `eval_config` block.
    num_test: examples in the test split (the rows k-means clusters).

  Raises:
    ValueError: ``eval.kmeans_n_clusters`` above ``num_test``.
  """
  k = config.kmeans_n_clusters
  if k is not None and k > num_test:
    raise ValueError(f'eval.kmeans_n_clusters={k} exceeds the {num_test} test examples that '
                     'k-means clusters')


# ----------------------------------------------------------------------------- checks


def _check_features(x, name: str) -> np.ndarray:
  """float32 [N, D] with N, D >= 1 and every value finite, or a ValueError naming ``name``."""
  x = np.asarray(x)
  if x.dtype.kind not in 'biuf':
    raise ValueError(f'{name} must hold numbers, got dtype {x.dtype}')
  if x.ndim != 2 or x.shape[0] == 0 or x.shape[1] == 0:
    raise ValueError(f'{name} {x.shape} must be a non-empty [N, D] array')
  x = x.astype(np.float32)
  if not np.all(np.isfinite(x)):
    row = int(np.argmax(~np.all(np.isfinite(x), axis=1)))
    raise ValueError(f'{name} holds NaN or inf (first in row {row})')
  return x


def _check_labels(y, n: int, name: str, num_classes: int | None = None) -> np.ndarray:
  """int32 [n] (in [0, num_classes) when given), or a ValueError naming ``name``."""
  y = np.asarray(y)
  if y.ndim != 1 or y.dtype.kind not in 'iub':
    raise ValueError(f'{name} {y.shape} ({y.dtype}) must be a 1-D integer array')
  if len(y) != n:
    raise ValueError(f'{name} has {len(y)} labels but the features have {n} rows')
  if num_classes is not None and len(y) and (y.min() < 0 or y.max() >= num_classes):
    raise ValueError(f'{name} must lie in [0, num_classes={num_classes}), got '
                     f'[{y.min()}, {y.max()}]')
  return y.astype(np.int32)


def _check_same_width(a: np.ndarray, b: np.ndarray, name_a: str, name_b: str) -> None:
  if a.shape[1] != b.shape[1]:
    raise ValueError(f'{name_a} {a.shape} and {name_b} {b.shape} have different widths D')


def _check_c_grid(c, name: str = 'C') -> tuple[float, ...]:
  grid = tuple(c) if isinstance(c, (tuple, list)) else (c,)
  if not grid or not all(isinstance(v, numbers.Real) and not isinstance(v, bool)
                         and 0 < v < math.inf for v in grid):
    raise ValueError(f'{name}={c!r} must be a number > 0 or a non-empty sequence of them')
  return tuple(float(v) for v in grid)


def _as_float_images(images: np.ndarray, name: str = 'images') -> np.ndarray:
  """uint8 -> float32 in [0, 1]; float -> float32 unchanged."""
  images = np.asarray(images)
  if images.dtype == np.uint8:
    return images.astype(np.float32) / 255.0
  if images.dtype.kind == 'f':
    return images.astype(np.float32)
  raise ValueError(f'{name} must be uint8 or float, got {images.dtype}')


def _check_images(images, name: str = 'images') -> np.ndarray:
  images = np.asarray(images)
  if images.ndim != 4 or images.shape[0] == 0:
    raise ValueError(f'{name} {images.shape} must be a non-empty [N, H, W, C] array')
  if images.dtype != np.uint8 and images.dtype.kind != 'f':
    raise ValueError(f'{name} must be uint8 or float, got {images.dtype}')
  return images


def _l2_normalize(x):
  """Rows scaled to unit L2 norm (a zero row stays zero); works on NumPy and jax arrays."""
  xp = jnp if isinstance(x, jax.Array) else np
  norm = xp.sqrt(xp.sum(x * x, axis=-1, keepdims=True))
  return x / xp.maximum(norm, 1e-12)


# ----------------------------------------------------------------------------- encoders


def _features_of(out):
  """An encoder's output: features [B, D] as they are, or the features of the
  (features, intermediates dict) pair that jaxssl encoders return."""
  if isinstance(out, tuple) and len(out) == 2 and isinstance(out[1], dict):
    return out[0]
  return out


def _default_method(module: nnx.Module, images: jax.Array, train: bool) -> jax.Array:
  """``module(images)`` (the BatchNorm mode is already set on the module)."""
  del train
  return _features_of(module(images))


@dataclasses.dataclass(frozen=True)
class _MethodByName:
  """``getattr(module, name)(images)``, as a method of `NnxEmbedFn`."""
  name: str

  def __call__(self, module: nnx.Module, images: jax.Array, train: bool) -> jax.Array:
    del train
    return _features_of(getattr(module, self.name)(images))


@dataclasses.dataclass(frozen=True, eq=False)
class NnxEmbedFn:
  """``embed_fn`` of an NNX module: ``(variables, images [B, H, W, C]) -> features [B, D]``.

  Build it with `nnx_embed_fn`. ``variables`` is ``{'params': ..., 'batch_stats': ...}`` as
  `split_encoder` returns it (``batch_stats`` may be absent or empty without BatchNorm).
  Calling it merges a private copy of the module, sets ``use_running_average=True`` (every
  BatchNorm normalises with its running statistics) and ``deterministic=True`` (Dropout
  off), and returns only the features: the caller's variables cannot change.

  Attributes:
    graphdef: the module's static structure.
    method: ``(module, images float32 [B, H, W, C], train: bool) -> features [B, D]``.
      ``train`` is False here and True in `fine_tune`, where BatchNorm layers run on batch
      statistics; the BatchNorm mode is already set on the module, so ``train`` only
      matters for modules that take an explicit flag (``m(x, train=train)``).
  """
  graphdef: nnx.GraphDef
  method: Callable[[nnx.Module, jax.Array, bool], jax.Array] = _default_method

  def module(self, variables: Mapping[str, Any], *, train: bool) -> nnx.Module:
    """A fresh module from ``variables``: BatchNorm on batch statistics (``train``) or on
    running averages; Dropout always off (no RNG is passed per call)."""
    stats = variables.get('batch_stats') or None
    model = state_lib.merge_model(self.graphdef, variables['params'], stats)
    model.set_attributes(use_running_average=not train, deterministic=True,
                         raise_if_not_found=False)
    return model

  def apply(self, variables: Mapping[str, Any], images: jax.Array, *, train: bool
            ) -> tuple[jax.Array, dict]:
    """(features [B, D], the module's BatchNorm statistics after the call: updated from this
    batch when ``train``, unchanged otherwise)."""
    model = self.module(variables, train=train)
    features = self.method(model, images, train)
    if features.ndim != 2 or features.shape[0] != images.shape[0]:
      raise ValueError(f'the encoder method returned {features.shape} for images '
                       f'{images.shape}; it must return features [B, D]')
    return features, state_lib.batch_stats(model)

  def __call__(self, variables: Mapping[str, Any], images: jax.Array) -> jax.Array:
    return self.apply(variables, images, train=False)[0]


def nnx_embed_fn(graphdef: nnx.GraphDef, method: str | Callable | None = None) -> NnxEmbedFn:
  """The frozen-encoder ``embed_fn`` of an NNX module (see `NnxEmbedFn`).

  Args:
    graphdef: from `split_encoder` (or ``state.split_model_with_stats``).
    method: None calls ``module(images)``; a string names a module method called as
      ``getattr(module, method)(images)``; both accept an array [B, D] or jaxssl's
      (features, intermediates dict) pair and keep the features. A callable is ``(module, images, train) -> features [B, D]``, e.g.
      ``lambda m, x, train: m(x)[1]`` for ``ConvClassifier``'s features or
      ``lambda m, x, train: m.encode(x, train=train)`` for a module with a ``train`` flag.

  Returns:
    An `NnxEmbedFn`.
  """
  if method is None:
    return NnxEmbedFn(graphdef)
  if isinstance(method, str):
    return NnxEmbedFn(graphdef, _MethodByName(method))
  return NnxEmbedFn(graphdef, method)


def split_encoder(model: nnx.Module) -> tuple[nnx.GraphDef, dict]:
  """(graphdef, variables ``{'params', 'batch_stats'}``) of an NNX encoder, pure dicts.

  Raises:
    ValueError: the module holds other state (e.g. ``nnx.Rngs``); see
      ``state.split_model_with_stats``.
  """
  graphdef, params, stats = state_lib.split_model_with_stats(model)
  return graphdef, {'params': params, 'batch_stats': stats}


# ----------------------------------------------------------------------------- features


def _jitted(fn: Callable, mesh: Mesh | None):
  """``jax.jit(fn)`` (over the mesh: images split over the batch axes, the variables left
  where they are, e.g. FSDP-sharded as in a TrainState); jax caches compilations by function
  identity, so repeated extractions with the same ``embed_fn`` compile once."""
  if mesh is None:
    return jax.jit(fn)
  return jax.jit(fn, in_shardings=(None, sharding.batch_sharding(mesh)),
                 out_shardings=sharding.replicated(mesh))


def extract_features(embed_fn: EmbedFn, variables: Any, images: np.ndarray, *,
                     batch_size: int, mesh: Mesh | None = None) -> np.ndarray:
  """The frozen encoder's features of every image, in fixed-size batches.

  ``embed_fn`` is jitted and called on batches of exactly
  ``batch_size`` images (the last one padded with zero images whose outputs are dropped), so
  one compilation serves any N. Use an eval-mode ``embed_fn`` (e.g. `nnx_embed_fn`): in
  train mode BatchNorm would mix the padding rows into the real rows' features.

  Args:
    embed_fn: ``(variables, images float32 [B, H, W, C]) -> features [B, D]``, pure.
    variables: its pytree (only read).
    images: uint8 [N, H, W, C] (scaled to [0, 1]) or float [N, H, W, C] (as is).
    batch_size: B, images per call; a multiple of the mesh's device count when given.
    mesh: optional; each batch is split over ``sharding.BATCH_AXES``, ``variables`` used
      as they are placed (host arrays: replicated; a TrainState's may be FSDP-sharded). In a
      multi-process run every process passes the same full ``images``.

  Returns:
    float32 [N, D] NumPy array.

  Raises:
    ValueError: images not a non-empty uint8/float [N, H, W, C] array, batch_size < 1 or
      not divisible over the mesh, or ``embed_fn`` returning something other than [B, D].
  """
  images = _check_images(images)
  if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
    raise ValueError(f'batch_size={batch_size!r} must be an integer >= 1')
  if mesh is not None:
    sharding.check_batch_size(batch_size, mesh, 'batch_size', process_count=1)
  apply = _jitted(embed_fn, mesh)
  out = []
  for start in range(0, len(images), batch_size):
    chunk = _as_float_images(images[start:start + batch_size])
    n = len(chunk)
    if n < batch_size:
      chunk = np.concatenate([chunk, np.zeros((batch_size - n,) + chunk.shape[1:], np.float32)])
    features = apply(variables, chunk)
    if features.ndim != 2 or features.shape[0] != batch_size:
      raise ValueError(f'embed_fn returned {features.shape} for a batch {chunk.shape}; it '
                       'must return features [B, D]')
    out.append(np.asarray(jax.device_get(features), np.float32)[:n])
  return np.concatenate(out)


# ----------------------------------------------------------------------------- linear probe


def _standardise(train: np.ndarray, *others: np.ndarray) -> list[np.ndarray]:
  """float64 copies scaled by the train rows' mean and (population) std; a constant feature
  gets std 1 (as scikit-learn's StandardScaler)."""
  train = train.astype(np.float64)
  mean, std = train.mean(axis=0), train.std(axis=0)
  std = np.where(std > 0, std, 1.0)
  return [(x.astype(np.float64) - mean) / std for x in (train,) + others]


def _stratified_holdout(labels: np.ndarray, fraction: float, seed: int) -> np.ndarray:
  """bool [N]: round(fraction * n_c) random rows of each class c, leaving >= 1 in train."""
  rng = np.random.default_rng(seed)
  held = np.zeros(len(labels), bool)
  for c in np.unique(labels):
    rows = np.flatnonzero(labels == c)
    take = min(int(round(fraction * len(rows))), len(rows) - 1)
    held[rng.permutation(rows)[:take]] = True
  return held


def _fit_logistic(x: np.ndarray, y: np.ndarray, c: float, max_iter: int):
  return linear_model.LogisticRegression(C=c, solver='lbfgs', max_iter=max_iter).fit(x, y)


def linear_probe(train_features: np.ndarray, train_labels: np.ndarray,
                 test_features: np.ndarray, test_labels: np.ndarray, *,
                 C: float | Sequence[float] = (0.01, 0.1, 1.0, 10.0),
                 val_fraction: float = 0.2, max_iter: int = 1000,
                 seed: int = 0) -> dict[str, float]:
  """Accuracy of a multinomial logistic regression on frozen, standardised features.

  Every feature is standardised by the train split's mean and population standard deviation
  (the test split is scaled by the same numbers). With one value of ``C`` the probe is
  scikit-learn's ``LogisticRegression(C=C, solver='lbfgs')`` (multinomial for K > 2, L2
  penalty 1 / (2C) relative to the summed log-loss) fitted on the whole train split. With
  several, each is fitted on the train split minus a stratified ``val_fraction`` (drawn from
  ``seed``), the one with the best held-out accuracy is kept (ties: the smaller C, i.e. the
  stronger penalty), and it is refitted on the whole train split. The held-out rows share
  the whole train split's standardisation (no labels leak). The default grid costs five
  lbfgs fits; pass one C for speed.

  Args:
    train_features: float [N, D].
    train_labels: int [N], at least two distinct classes.
    test_features: float [M, D].
    test_labels: int [M].
    C: inverse regularisation strength, or a grid of them.
    val_fraction: per-class fraction of the train split held out to choose C.
    max_iter: lbfgs iterations.
    seed: the held-out draw.

  Returns:
    {'linear_probe_accuracy': fraction of test rows classified right, in [0, 1],
     'linear_probe_C': the C used}.

  Raises:
    ValueError: features not non-empty [N, D] / [M, D] arrays of the same D, NaN or inf in
      them, label counts that do not match the rows, non-integer labels, one class only in
      train_labels, a C that is not > 0, or val_fraction not in (0, 1).
  """
  train_x = _check_features(train_features, 'train_features')
  test_x = _check_features(test_features, 'test_features')
  _check_same_width(train_x, test_x, 'train_features', 'test_features')
  train_y = _check_labels(train_labels, len(train_x), 'train_labels')
  test_y = _check_labels(test_labels, len(test_x), 'test_labels')
  if len(np.unique(train_y)) < 2:
    raise ValueError(f'train_labels hold one class only ({train_y[0]}): a probe needs two')
  grid = _check_c_grid(C)
  if not 0 < val_fraction < 1:
    raise ValueError(f'val_fraction={val_fraction!r} must be in (0, 1)')
  if isinstance(max_iter, bool) or not isinstance(max_iter, int) or max_iter < 1:
    raise ValueError(f'max_iter={max_iter!r} must be an integer >= 1')
  train_x, test_x = _standardise(train_x, test_x)
  best_c = grid[0]
  if len(grid) > 1:
    held = _stratified_holdout(train_y, val_fraction, seed)
    if held.any() and len(np.unique(train_y[~held])) >= 2:
      scores = [_fit_logistic(train_x[~held], train_y[~held], c, max_iter)
                .score(train_x[held], train_y[held]) for c in grid]
      best = max(scores)
      best_c = min(c for c, s in zip(grid, scores) if s == best)
    else:  # too few rows to hold any out: the middle of the grid
      best_c = sorted(grid)[len(grid) // 2]
  model = _fit_logistic(train_x, train_y, best_c, max_iter)
  accuracy = float(np.mean(model.predict(test_x) == test_y))
  return {'linear_probe_accuracy': accuracy, 'linear_probe_C': best_c}


# ----------------------------------------------------------------------------- kNN


@functools.partial(jax.jit, static_argnames=('k', 'num_classes'))
def _knn_chunk(train_unit: jax.Array, train_labels: jax.Array, queries: jax.Array,
               temperature: jax.Array, *, k: int, num_classes: int) -> jax.Array:
  """Weighted kNN predictions of one chunk of queries.

  Args:
    train_unit: [N, D] unit-norm training features (no padding rows).
    train_labels: int32 [N].
    queries: [Q, D] (any norm; normalised here).
    temperature: T > 0.
    k: neighbours, <= N. num_classes: C.

  Returns:
    int32 [Q] predicted classes.
  """
  sim = jnp.matmul(_l2_normalize(queries), train_unit.T,
                   precision=jax.lax.Precision.HIGHEST)  # [Q, N] cosine
  top_sim, top_index = jax.lax.top_k(sim, k)  # [Q, k], most similar first
  top_labels = train_labels[top_index]  # [Q, k]
  # exp(s / T) divided by the query's largest exp(s_1 / T): the same argmax (one factor per
  # query), never overflows for small T, and the nearest neighbour always has weight 1.
  weights = jnp.exp((top_sim - top_sim[:, :1]) / temperature)  # [Q, k] in (0, 1]
  rows = jnp.arange(queries.shape[0])[:, None]
  scores = jnp.zeros((queries.shape[0], num_classes), jnp.float32).at[rows, top_labels].add(
      weights)  # [Q, C]
  votes = jnp.zeros((queries.shape[0], num_classes), jnp.int32).at[rows, top_labels].add(1)
  # A class no neighbour voted for can never win, even if voted weights underflow to 0.
  scores = jnp.where(votes > 0, scores, -jnp.inf)
  return jnp.argmax(scores, axis=-1).astype(jnp.int32)


def _check_knn_args(k, temperature, num_classes, chunk_size) -> None:
  for name, v in (('k', k), ('num_classes', num_classes), ('chunk_size', chunk_size)):
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
      raise ValueError(f'{name}={v!r} must be an integer >= 1')
  if not (isinstance(temperature, numbers.Real) and 0 < temperature < math.inf):
    raise ValueError(f'temperature={temperature!r} must be a finite number > 0')


def knn_classify(train_features: np.ndarray, train_labels: np.ndarray,
                 test_features: np.ndarray, *, k: int = 200, temperature: float = 0.1,
                 num_classes: int, chunk_size: int = 256) -> np.ndarray:
  """Weighted kNN classification (Wu et al. 2018, arXiv:1805.01978, sec. 3.4).

  Features are L2-normalised; for each query the k training rows of highest cosine
  similarity s_i each vote for their class c_i with weight exp(s_i / T), and the class with
  the largest summed weight w_c = sum_{i: c_i = c} exp(s_i / T) is predicted. ``k`` is
  scaled to the dataset: min(k, N) neighbours vote, so k >= N means every training row.
  Classes that received no vote are never predicted (their score is -inf); among voted
  classes of equal weight the lowest index wins. Wu et al. use k = 200, T = 0.07; the
  defaults here are k = 200, T = 0.1.

  Queries run through one jitted function in chunks of ``chunk_size`` (the last padded
  with zero queries, whose predictions are dropped); training rows are never padded, so
  only real rows vote.

  Args:
    train_features: float [N, D].
    train_labels: int [N] in [0, num_classes).
    test_features: float [M, D].
    k: neighbours (>= 1; min(k, N) used).
    temperature: T > 0 (cosine units).
    num_classes: C.
    chunk_size: queries per call (memory ~ chunk_size x N floats).

  Returns:
    int32 [M] predicted classes.

  Raises:
    ValueError: empty or non-finite features, different widths, labels that do not match
      or lie outside [0, num_classes), k / num_classes / chunk_size < 1, or T not > 0.
  """
  _check_knn_args(k, temperature, num_classes, chunk_size)
  train_x = _check_features(train_features, 'train_features')
  test_x = _check_features(test_features, 'test_features')
  _check_same_width(train_x, test_x, 'train_features', 'test_features')
  train_y = _check_labels(train_labels, len(train_x), 'train_labels', num_classes)
  k = int(min(k, len(train_x)))
  train_unit = _l2_normalize(jnp.asarray(train_x))
  train_y = jnp.asarray(train_y)
  temperature = jnp.float32(temperature)
  out = []
  for start in range(0, len(test_x), chunk_size):
    chunk = test_x[start:start + chunk_size]
    n = len(chunk)
    if n < chunk_size:
      chunk = np.concatenate([chunk, np.zeros((chunk_size - n, chunk.shape[1]), np.float32)])
    out.append(np.asarray(_knn_chunk(train_unit, train_y, jnp.asarray(chunk), temperature,
                                     k=k, num_classes=int(num_classes)))[:n])
  return np.concatenate(out)


def knn_accuracy(train_features: np.ndarray, train_labels: np.ndarray,
                 test_features: np.ndarray, test_labels: np.ndarray, *, k: int = 200,
                 temperature: float = 0.1, num_classes: int,
                 chunk_size: int = 256) -> dict[str, float]:
  """{'knn_accuracy': fraction of test rows that `knn_classify` gets right, in [0, 1]}.

  Raises:
    ValueError: as `knn_classify`, or test_labels that do not match test_features.
  """
  _check_labels(test_labels, len(np.asarray(test_features)), 'test_labels')
  predicted = knn_classify(train_features, train_labels, test_features, k=k,
                           temperature=temperature, num_classes=num_classes,
                           chunk_size=chunk_size)
  return {'knn_accuracy': float(np.mean(predicted == np.asarray(test_labels)))}


# ----------------------------------------------------------------------------- clustering


def cluster_features(features: np.ndarray, labels: np.ndarray, *, n_clusters: int,
                     seed: int = 0, n_init: int = 4,
                     mesh: Mesh | None = None) -> dict[str, float]:
  """How well k-means clusters of the features recover the labels.

  The features are L2-normalised first (the cosine geometry of the kNN and of contrastive
  losses; standardising instead would weight every feature equally, which suits
  reconstruction bottlenecks less), then clustered by ``jaxssl.cluster.kmeans.KMeans``
  (k-means++ seeding, Lloyd, ``n_init`` restarts from ``seed``).

  Args:
    features: float [N, D].
    labels: int [N], the true classes.
    n_clusters: K (usually the number of classes), in [1, N].
    seed: k-means seeding.
    n_init: restarts.
    mesh: optional, passed to KMeans.

  Returns:
    {'kmeans_ari': adjusted Rand index (1 perfect, ~0 chance, can be < 0),
     'kmeans_nmi': normalised mutual information (arithmetic mean; 0..1)}, both from
    ``sklearn.metrics``.

  Raises:
    ValueError: empty or non-finite features, labels that do not match, n_clusters not in
      [1, N], or n_init < 1.
  """
  x = _check_features(features, 'features')
  y = _check_labels(labels, len(x), 'labels')
  if isinstance(n_clusters, bool) or not isinstance(n_clusters, (int, np.integer)) or not (
      1 <= n_clusters <= len(x)):
    raise ValueError(f'n_clusters={n_clusters!r} must be an integer in [1, N={len(x)}]')
  km = kmeans.KMeans(n_clusters=int(n_clusters), n_init=n_init, seed=seed, mesh=mesh).fit(
      _l2_normalize(x))
  return {'kmeans_ari': float(sk_metrics.adjusted_rand_score(y, km.labels_)),
          'kmeans_nmi': float(sk_metrics.normalized_mutual_info_score(y, km.labels_))}


# ----------------------------------------------------------------------------- fine-tuning


def fine_tune(embed_fn: NnxEmbedFn, variables: Mapping[str, Any], train_images: np.ndarray,
              train_labels: np.ndarray, test_images: np.ndarray, test_labels: np.ndarray, *,
              num_classes: int, num_steps: int = 300, batch_size: int = 64,
              learning_rate: float = 1e-3, seed: int = 0,
              eval_batch_size: int = 256) -> dict[str, float]:
  """Test accuracy after fine-tuning the whole encoder with a fresh linear head.

  A copy of ``variables`` and a new head (kernel [D, K] LeCun-normal from ``seed``, bias 0)
  are trained together by ``optax.adam(learning_rate)`` (constant rate, no weight decay) for
  ``num_steps`` steps of softmax cross-entropy on batches of ``batch_size`` train images
  (an epoch-wise permutation from ``seed``, remainder dropped). BatchNorm runs on batch
  statistics and updates the copy's running averages; Dropout stays off. The test split is
  then classified in eval mode (running averages). The caller's ``variables`` are never
  written: the step donates only the copy's buffers.

  Args:
    embed_fn: an `NnxEmbedFn` (fine-tuning needs the module to switch BatchNorm to train
      mode and to read its updated statistics).
    variables: ``{'params', 'batch_stats'}`` from `split_encoder`.
    train_images, test_images: uint8 or float [N, H, W, C] and [M, H, W, C].
    train_labels, test_labels: int [N] and [M] in [0, num_classes).
    num_classes: K >= 2.
    num_steps, batch_size, learning_rate: the optimisation (batch_size capped at N).
    seed: head initialisation and batch order.
    eval_batch_size: test images per eval call.

  Returns:
    {'fine_tune_accuracy': fraction of test images right, in [0, 1],
     'fine_tune_train_loss': mean cross-entropy over the last min(20, num_steps) steps,
     nats per image}.

  Raises:
    ValueError: ``embed_fn`` not an NnxEmbedFn, bad images or labels, num_classes < 2, a
      step count or batch size < 1, or learning_rate not > 0.
    FloatingPointError: the training loss is NaN or inf (diverged).
  """
  if not isinstance(embed_fn, NnxEmbedFn):
    raise ValueError(f'fine_tune needs an NnxEmbedFn (see nnx_embed_fn), got {embed_fn!r}')
  for name, v, least in (('num_classes', num_classes, 2), ('num_steps', num_steps, 1),
                         ('batch_size', batch_size, 1), ('eval_batch_size', eval_batch_size, 1)):
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < least:
      raise ValueError(f'{name}={v!r} must be an integer >= {least}')
  train_images = _check_images(train_images, 'train_images')
  test_images = _check_images(test_images, 'test_images')
  train_y = _check_labels(train_labels, len(train_images), 'train_labels', num_classes)
  test_y = _check_labels(test_labels, len(test_images), 'test_labels', num_classes)
  if not (isinstance(learning_rate, numbers.Real) and 0 < learning_rate < math.inf):
    raise ValueError(f'learning_rate={learning_rate!r} must be a finite number > 0')

  batch_size = min(batch_size, len(train_images))
  probe = jax.eval_shape(embed_fn, variables,
                         jax.ShapeDtypeStruct((1,) + train_images.shape[1:], jnp.float32))
  feature_dim = probe.shape[1]
  # Fresh buffers: the jitted step donates them, and the caller keeps its own arrays.
  copy = functools.partial(jax.tree.map, lambda a: jnp.array(a, copy=True))
  params = {'encoder': copy(variables['params']),
            'head': {'kernel': jax.nn.initializers.lecun_normal()(
                         jax.random.key(seed), (feature_dim, num_classes), jnp.float32),
                     'bias': jnp.zeros((num_classes,), jnp.float32)}}
  stats = copy(variables.get('batch_stats') or {})
  tx = optax.adam(learning_rate)
  opt_state = tx.init(params)

  def head(p, features):
    return features @ p['kernel'] + p['bias']  # [B, K]

  @functools.partial(jax.jit, donate_argnums=(0, 1, 2))
  def train_step(params, opt_state, stats, images, labels):
    def loss_fn(p):
      features, new_stats = embed_fn.apply({'params': p['encoder'], 'batch_stats': stats},
                                           images, train=True)
      logits = head(p['head'], features)
      loss = jnp.mean(optax.softmax_cross_entropy_with_integer_labels(logits, labels))
      return loss, new_stats
    (loss, new_stats), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
    updates, opt_state = tx.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, new_stats, loss

  rng = np.random.default_rng(seed)
  per_epoch = len(train_images) // batch_size
  order, losses = None, []
  for i in range(num_steps):
    if i % per_epoch == 0:
      order = rng.permutation(len(train_images))
    rows = np.sort(order[(i % per_epoch) * batch_size:(i % per_epoch + 1) * batch_size])
    params, opt_state, stats, loss = train_step(
        params, opt_state, stats, _as_float_images(train_images[rows]), train_y[rows])
    if i >= num_steps - 20:
      losses.append(loss)

  def classify(v, images):
    return head(v['head'], embed_fn({'params': v['encoder'], 'batch_stats': v['stats']},
                                    images))

  logits = extract_features(classify, {**params, 'stats': stats}, test_images,
                            batch_size=eval_batch_size)
  train_loss = float(np.mean(jax.device_get(losses)))
  if not math.isfinite(train_loss):
    raise FloatingPointError(f'fine-tuning diverged: train loss {train_loss}')
  return {'fine_tune_accuracy': float(np.mean(np.argmax(logits, axis=1) == test_y)),
          'fine_tune_train_loss': train_loss}


# ----------------------------------------------------------------------------- all


def _split(data, name: str) -> tuple[np.ndarray, np.ndarray]:
  split = data[name] if isinstance(data, Mapping) else getattr(data, name)
  return np.asarray(split['image']), np.asarray(split['label'])


def evaluate_representation(embed_fn: EmbedFn, variables: Any, data,
                            config: ml_collections.ConfigDict, *, prefix: str = '',
                            mesh: Mesh | None = None) -> dict[str, float]:
  """Every measurement of this module for one frozen encoder.

  Features of both splits are extracted once (`extract_features`), then: the linear probe
  (trained on train, scored on test), the weighted kNN (train rows vote for test rows),
  k-means on the test split's features, and, with ``config.fine_tune``, `fine_tune`.

  Args:
    embed_fn: ``(variables, images float32 [B, H, W, C]) -> [B, D]`` in eval mode; an
      `NnxEmbedFn` when ``config.fine_tune``.
    variables: its pytree (left unchanged).
    data: ``jaxssl.data.images.ImageData`` or a mapping with the same fields: ``train`` and
      ``test`` as ``{'image': uint8/float [N, H, W, C], 'label': int [N]}`` and
      ``num_classes``.
    config: an `eval_config` block.
    prefix: prepended to every key, e.g. ``'eval/'``.
    mesh: optional, for feature extraction and k-means.

  Returns:
    {prefix + key: float} for keys ``linear_probe_accuracy``, ``linear_probe_C``,
    ``knn_accuracy``, ``kmeans_ari``, ``kmeans_nmi``, ``feature_dim`` and, with fine-tuning,
    ``fine_tune_accuracy`` and ``fine_tune_train_loss``.

  Raises:
    ValueError: a bad config field (`check_config`, `check_fits`), data, or
      ``config.fine_tune`` without an `NnxEmbedFn`; and as the functions it calls.
  """
  check_config(config)
  if config.fine_tune and not isinstance(embed_fn, NnxEmbedFn):
    raise ValueError('eval.fine_tune=True needs an NnxEmbedFn (see nnx_embed_fn)')
  num_classes = data['num_classes'] if isinstance(data, Mapping) else data.num_classes
  train_images, train_labels = _split(data, 'train')
  test_images, test_labels = _split(data, 'test')
  check_fits(config, len(test_labels))
  train_x = extract_features(embed_fn, variables, train_images, batch_size=config.global_batch_size,
                             mesh=mesh)
  test_x = extract_features(embed_fn, variables, test_images, batch_size=config.global_batch_size,
                            mesh=mesh)
  metrics = {'feature_dim': float(train_x.shape[1])}
  metrics.update(linear_probe(train_x, train_labels, test_x, test_labels,
                              C=tuple(config.probe_c), val_fraction=config.probe_val_fraction,
                              max_iter=config.probe_max_iter, seed=config.seed))
  metrics.update(knn_accuracy(train_x, train_labels, test_x, test_labels, k=config.knn_k,
                              temperature=config.knn_temperature, num_classes=num_classes,
                              chunk_size=config.knn_chunk_size))
  metrics.update(cluster_features(test_x, test_labels,
                                  n_clusters=config.kmeans_n_clusters or num_classes,
                                  seed=config.seed, n_init=config.kmeans_n_init, mesh=mesh))
  if config.fine_tune:
    metrics.update(fine_tune(embed_fn, variables, train_images, train_labels, test_images,
                             test_labels, num_classes=num_classes,
                             num_steps=config.finetune_steps,
                             batch_size=config.finetune_batch_size,
                             learning_rate=config.finetune_lr, seed=config.seed,
                             eval_batch_size=config.global_batch_size))
  return {prefix + k: float(v) for k, v in metrics.items()}
