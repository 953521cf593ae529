"""Sample quality of image generators: Fréchet distance in a classifier's features, class coverage.

The Fréchet distance of Gaussians (Dowson & Landau 1982) fitted to real and generated features
is FID's quantity (Heusel et al. 2017, arXiv:1706.08500), but here in the penultimate layer of
a small classifier trained on the same dataset: ``fd_classifier``, comparable between runs
sharing the classifier, not with published FIDs. The predicted-class histogram of samples
shows mode collapse.
"""

from __future__ import annotations

import functools
import json
import logging
from typing import Sequence

import flax.serialization
import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from jaxssl import fileio
from jaxssl.models import classifier as classifier_lib
from jaxssl.train import state as state_lib

CACHE_FORMAT = 1  # bump when the cached classifier's file layout changes


def feature_statistics(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """(mean float64 [F], covariance float64 [F, F]) of features [N, F], ddof = 1.

  Raises:
    ValueError: not [N, F] with N >= 2, or non-finite values.
  """
  features = np.asarray(features, np.float64)
  if features.ndim != 2 or features.shape[0] < 2:
    raise ValueError(f'features {features.shape} must be [N, F] with N >= 2')
  if not np.all(np.isfinite(features)):
    raise ValueError('features hold NaN or inf')
  return features.mean(axis=0), np.cov(features, rowvar=False, ddof=1).reshape(
      features.shape[1], features.shape[1])


def _psd_sqrt(cov: np.ndarray) -> np.ndarray:
  """Symmetric square root of a symmetric PSD matrix (negative rounding noise clipped)."""
  w, v = np.linalg.eigh((cov + cov.T) / 2)
  return (v * np.sqrt(np.clip(w, 0.0, None))) @ v.T


def frechet_distance(mean1: np.ndarray, cov1: np.ndarray, mean2: np.ndarray,
                     cov2: np.ndarray) -> float:
  """Squared 2-Wasserstein (Fréchet) distance between N(mean1, cov1) and N(mean2, cov2).

  ||mean1 - mean2||^2 + tr(cov1) + tr(cov2) - 2 tr((cov1 cov2)^(1/2)), the trace from the
  eigenvalues of the PSD cov1^(1/2) cov2 cov1^(1/2): no complex ``sqrtm``, exact when singular.
  Means float [F], covariances float [F, F] symmetric PSD; ValueError if shapes do not match.

  Returns:
    The distance (squared feature units), >= 0 up to rounding; 0 for identical Gaussians.
  """
  mean1, mean2 = np.asarray(mean1, np.float64), np.asarray(mean2, np.float64)
  cov1, cov2 = np.asarray(cov1, np.float64), np.asarray(cov2, np.float64)
  f = mean1.shape[0]
  if mean1.shape != (f,) or mean2.shape != (f,) or cov1.shape != (f, f) or cov2.shape != (f, f):
    raise ValueError(f'means {mean1.shape}, {mean2.shape} and covariances {cov1.shape}, '
                     f'{cov2.shape} must be [F] and [F, F]')
  root1 = _psd_sqrt(cov1)
  middle = root1 @ cov2 @ root1
  trace_root = np.sum(np.sqrt(np.clip(np.linalg.eigvalsh((middle + middle.T) / 2), 0.0, None)))
  distance = np.sum((mean1 - mean2) ** 2) + np.trace(cov1) + np.trace(cov2) - 2 * trace_root
  return float(max(distance, 0.0))


def fd_between(features1: np.ndarray, features2: np.ndarray) -> float:
  """``frechet_distance`` of the Gaussians fitted to two feature sets [N1, F] and [N2, F]."""
  return frechet_distance(*feature_statistics(features1), *feature_statistics(features2))


def class_coverage(predicted: np.ndarray, num_classes: int, *,
                   min_fraction: float = 0.01) -> dict[str, float]:
  """How evenly samples spread over the classes a classifier assigns them to.

  Args:
    predicted: int [N] predicted classes in [0, num_classes); num_classes: K.
    min_fraction: a class is covered when at least this fraction of the N samples gets it.

  Returns:
    {'classes_covered': covered classes (0..K, a float), 'class_entropy': entropy of the
    predicted-class histogram in nats (ln K when uniform, 0 for one class)}.

  Raises:
    ValueError: no predictions, or a class outside [0, num_classes).
  """
  predicted = np.asarray(predicted)
  if predicted.ndim != 1 or not predicted.size:
    raise ValueError(f'predicted {predicted.shape} must be a non-empty [N] array')
  if predicted.min() < 0 or predicted.max() >= num_classes:
    raise ValueError(f'predicted classes must lie in [0, {num_classes})')
  p = np.bincount(predicted, minlength=num_classes) / predicted.size
  nonzero = p[p > 0]
  return {'classes_covered': float(np.sum(p >= min_fraction)),
          'class_entropy': float(-np.sum(nonzero * np.log(nonzero)))}


# ----------------------------------------------------------------------------- classifier

def _as_input(images: np.ndarray) -> np.ndarray:
  return np.asarray(images, np.float32) / 255.0


def train_classifier(images: np.ndarray, labels: np.ndarray, num_classes: int, *, seed: int,
                     num_steps: int, batch_size: int, learning_rate: float,
                     widths: Sequence[int], feature_dim: int):
  """Trains a ``ConvClassifier`` by Adam on softmax cross-entropy (one device, jitted).

  Args:
    images: uint8 [N, H, W, C]; labels: int [N] in [0, num_classes); num_classes: K.
    seed: initialisation key and batch order (epoch-wise permutations).
    num_steps, batch_size, learning_rate: the optimisation (constant rate).
    widths, feature_dim: the classifier's size.

  Returns:
    (graphdef, params), as ``state.split_model`` returns them.

  Raises:
    ValueError: fewer images than one batch, or labels that do not match the images.
  """
  if len(images) < batch_size or len(labels) != len(images):
    raise ValueError(f'{len(images)} images and {len(labels)} labels cannot fill a batch of '
                     f'{batch_size}')
  def make_model(rngs):
    return classifier_lib.ConvClassifier(images.shape[1:], num_classes, widths, feature_dim,
                                         rngs=rngs)

  graphdef = state_lib.split_model(nnx.eval_shape(lambda: make_model(nnx.Rngs(0))))[0]
  tx = optax.adam(learning_rate)

  @jax.jit
  def init(key):  # one compiled call instead of an eager dispatch per initializer op
    params = state_lib.split_model(make_model(nnx.Rngs(params=key)))[1]
    return params, tx.init(params)

  @jax.jit
  def step(params, opt_state, x, y):
    def loss_fn(p):
      logits, _ = state_lib.merge_model(graphdef, p)(x)
      return jnp.mean(optax.softmax_cross_entropy_with_integer_labels(logits, y))
    grads = jax.grad(loss_fn)(params)
    updates, opt_state = tx.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state

  params, opt_state = init(jax.random.key(seed))
  rng = np.random.default_rng(seed)
  per_epoch = len(images) // batch_size
  x_all, y_all = _as_input(images), np.asarray(labels, np.int32)
  order = None
  for i in range(num_steps):
    if i % per_epoch == 0:
      order = rng.permutation(len(images))
    rows = order[(i % per_epoch) * batch_size:(i % per_epoch + 1) * batch_size]
    params, opt_state = step(params, opt_state, x_all[rows], y_all[rows])
  return graphdef, jax.device_get(params)


@functools.partial(jax.jit, static_argnums=0)
def _apply(graphdef, params, x):
  return state_lib.merge_model(graphdef, params)(x)


def classify(graphdef, params, images: np.ndarray, *,
             batch_size: int = 512) -> tuple[np.ndarray, np.ndarray]:
  """(logits float32 [N, K], features float32 [N, F]) of uint8 images [N, H, W, C].

  Fixed-size batches (the last padded): one compilation per graphdef and batch size.
  """
  apply = functools.partial(_apply, graphdef)
  logits, features = [], []
  for start in range(0, len(images), batch_size):
    chunk = _as_input(images[start:start + batch_size])
    n = len(chunk)
    padded = np.concatenate([chunk, np.zeros((batch_size - n,) + chunk.shape[1:], np.float32)])
    out = jax.device_get(apply(params, padded))
    logits.append(out[0][:n])
    features.append(out[1][:n])
  return np.concatenate(logits), np.concatenate(features)


def load_or_train_classifier(folder: str, images: np.ndarray, labels: np.ndarray,
                             num_classes: int, *, data_sha256: str, seed: int, num_steps: int,
                             batch_size: int, learning_rate: float, widths: Sequence[int],
                             feature_dim: int):
  """The (graphdef, params) of ``train_classifier``, cached in ``folder``.

  ``classifier.msgpack`` holds the parameters, ``classifier.json`` the data hash and settings;
  a cache for other data or settings, or unreadable, is retrained (with a warning) and
  overwritten, atomically by process 0.
  """
  record = dict(format=CACHE_FORMAT, data_sha256=data_sha256, num_classes=num_classes, seed=seed,
                num_steps=num_steps, batch_size=batch_size, learning_rate=learning_rate,
                widths=list(widths), feature_dim=feature_dim,
                image_shape=list(images.shape[1:]))
  params_path = fileio.path(folder) / 'classifier.msgpack'
  record_path = fileio.path(folder) / 'classifier.json'
  abstract = nnx.eval_shape(lambda: classifier_lib.ConvClassifier(
      images.shape[1:], num_classes, widths, feature_dim, rngs=nnx.Rngs(0)))
  graphdef, target = state_lib.split_model(abstract)
  if record_path.exists() and params_path.exists():
    try:
      saved = json.loads(record_path.read_text(encoding='utf-8'))
      if saved != record:
        logging.warning('%s was made for other data or settings; retraining', record_path)
      else:
        params = flax.serialization.msgpack_restore(params_path.read_bytes())
        shapes = jax.tree.map(np.shape, params)
        if shapes == jax.tree.map(np.shape, target):
          return graphdef, params
        logging.warning('%s does not match the classifier; retraining', params_path)
    except (OSError, ValueError, TypeError) as e:  # damaged cache: retrain
      logging.warning('cannot read the cached classifier in %s (%s); retraining', folder, e)
  graphdef, params = train_classifier(
      images, labels, num_classes, seed=seed, num_steps=num_steps, batch_size=batch_size,
      learning_rate=learning_rate, widths=widths, feature_dim=feature_dim)
  if jax.process_index() == 0:
    fileio.write_atomic(params_path, flax.serialization.msgpack_serialize(params))
    fileio.write_atomic(record_path, json.dumps(record, indent=2) + '\n')
  return graphdef, params


def sample_quality(sample_features: np.ndarray, sample_logits: np.ndarray,
                   real_features: np.ndarray, *, min_fraction: float = 0.01) -> dict[str, float]:
  """{'fd_classifier', 'classes_covered', 'class_entropy'} of samples against real images.

  Args:
    sample_features, sample_logits: classifier features [N, F] and logits [N, K] of samples.
    real_features: float [M, F] classifier features of real (held-out) images.
    min_fraction: see ``class_coverage``.
  """
  coverage = class_coverage(np.argmax(sample_logits, axis=-1), sample_logits.shape[-1],
                            min_fraction=min_fraction)
  return dict(fd_classifier=fd_between(sample_features, real_features), **coverage)


def reference_features(folder: str, train: dict, test: dict, num_classes: int, *,
                       data_sha256: str, seed: int, **settings) -> dict:
  """The feature classifier fitted to ``train`` (``load_or_train_classifier``, cached in
  ``folder``) and what samples are compared with.

  Args:
    train, test: {'image': uint8 [N, H, W, C], 'label': int [N]}.
    settings: ``num_steps``, ``batch_size``, ``learning_rate``, ``widths``, ``feature_dim``.

  Returns:
    dict: ``classify`` (uint8 images -> (logits, features)), ``test_features`` float [M, F],
    ``accuracy`` on ``test``, ``fd_train_images`` (Fréchet distance, train vs test features).
  """
  graphdef, params = load_or_train_classifier(folder, train['image'], train['label'],
                                              num_classes, data_sha256=data_sha256, seed=seed,
                                              **settings)
  apply = functools.partial(classify, graphdef, params)
  test_logits, test_features = apply(test['image'])
  return dict(classify=apply, test_features=test_features,
              accuracy=float(np.mean(np.argmax(test_logits, -1) == test['label'])),
              fd_train_images=fd_between(apply(train['image'])[1], test_features))
