"""Weighted k-nearest-neighbour classification of frozen features.

Wu et al. 2018 (arXiv:1805.01978, sec. 3.4): cosine similarity s_i to the k nearest training
features, class score w_c = sum_{i in top-k, c_i = c} exp(s_i / T), prediction argmax_c w_c.
"""

from __future__ import annotations

import functools
import math
import numbers

import jax
import jax.numpy as jnp
import numpy as np

from jaxssl.eval import features as features_lib


@functools.partial(jax.jit, static_argnames=('k', 'num_classes'))
def _knn_chunk(train_unit: jax.Array, train_labels: jax.Array, queries: jax.Array,
               temperature: jax.Array, *, k: int, num_classes: int) -> jax.Array:
  """int32 [Q] predictions of queries [Q, D] against unit-norm train rows [N, D], k <= N."""
  sim = jnp.matmul(features_lib._l2_normalize(queries), train_unit.T,
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
  """Weighted kNN classification (Wu et al. 2018, see the module docstring): int32 [M] classes.

  min(k, N) neighbours vote (k >= N: every training row). Classes with no vote are never
  predicted; ties go to the lowest index. Wu et al. use k = 200, T = 0.07. Queries run in
  jitted chunks of ``chunk_size`` (zero-padded; memory ~ chunk_size x N floats).

  Args:
    train_features, test_features: float [N, D] and [M, D].
    train_labels: int [N] in [0, num_classes); num_classes: C.
    k: neighbours (>= 1); temperature: T > 0 (cosine units).

  Raises:
    ValueError: empty or non-finite features, different widths, labels that do not match
      or lie outside [0, num_classes), k / num_classes / chunk_size < 1, or T not > 0.
  """
  _check_knn_args(k, temperature, num_classes, chunk_size)
  train_x = features_lib._check_features(train_features, 'train_features')
  test_x = features_lib._check_features(test_features, 'test_features')
  features_lib._check_same_width(train_x, test_x, 'train_features', 'test_features')
  train_y = features_lib._check_labels(train_labels, len(train_x), 'train_labels', num_classes)
  k = int(min(k, len(train_x)))
  train_unit = features_lib._l2_normalize(jnp.asarray(train_x))
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
  """{'knn_accuracy': fraction of test rows ``knn_classify`` gets right, in [0, 1]}.

  Raises:
    ValueError: as ``knn_classify``, or test_labels that do not match test_features.
  """
  features_lib._check_labels(test_labels, len(np.asarray(test_features)), 'test_labels')
  predicted = knn_classify(train_features, train_labels, test_features, k=k,
                           temperature=temperature, num_classes=num_classes,
                           chunk_size=chunk_size)
  return {'knn_accuracy': float(np.mean(predicted == np.asarray(test_labels)))}

