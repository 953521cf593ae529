"""One evaluation protocol for every image representation learner.

A frozen encoder maps images to features (``jaxssl.eval.features``); ``evaluate_representation``
then runs ``linear_probe``, the weighted kNN of ``knn``, k-means of ``clustering`` (ARI, NMI)
and optionally ``finetune``, from one ``eval_config()`` block.
"""

from __future__ import annotations

import math
import numbers
from typing import Any, Mapping

import ml_collections
import numpy as np
from jax.sharding import Mesh
from ml_collections import config_dict

from jaxssl.eval import clustering
from jaxssl.eval import features as features_lib
from jaxssl.eval import finetune
from jaxssl.eval import knn
from jaxssl.eval import linear_probe

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


def digits_eval_config() -> ml_collections.ConfigDict:
  """``eval_config`` for the 8x8 digits: k = 20 (Wu et al.'s 200 was for 1.28M images), T = 0.1."""
  c = eval_config()
  c.knn_k = 20
  return c


def smoke_eval(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """Makes the ``eval`` block of an experiment ``config`` fast for tests, in place; returns it.

  One probe C, 100 lbfgs iterations, one k-means restart.
  """
  config.eval.probe_c = (1.0,)
  config.eval.probe_max_iter = 100
  config.eval.kmeans_n_init = 1
  return config


def check_config(config: ml_collections.ConfigDict) -> None:
  """Checks an ``eval_config`` block; ValueError names the first bad field."""
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
  linear_probe._check_c_grid(config.probe_c, 'eval.probe_c')
  if not 0 < config.probe_val_fraction < 1:
    raise ValueError(f'eval.probe_val_fraction={config.probe_val_fraction!r} must be in (0, 1)')


def check_fits(config: ml_collections.ConfigDict, num_test: int) -> None:
  """Checks the ``eval_config`` block against the data, before anything compiles.

  Raises:
    ValueError: ``eval.kmeans_n_clusters`` above ``num_test`` (the test rows k-means clusters).
  """
  k = config.kmeans_n_clusters
  if k is not None and k > num_test:
    raise ValueError(f'eval.kmeans_n_clusters={k} exceeds the {num_test} test examples that '
                     'k-means clusters')


# ----------------------------------------------------------------------------- all


def _split(data, name: str) -> tuple[np.ndarray, np.ndarray]:
  split = data[name] if isinstance(data, Mapping) else getattr(data, name)
  return np.asarray(split['image']), np.asarray(split['label'])


def evaluate_representation(embed_fn: features_lib.EmbedFn, variables: Any, data,
                            config: ml_collections.ConfigDict, *, prefix: str = '',
                            mesh: Mesh | None = None) -> dict[str, float]:
  """Every measurement of this module for one frozen encoder.

  Features of both splits are extracted once; the probe trains on train and scores test, train
  rows vote for test rows in the kNN, k-means runs on the test features.

  Args:
    embed_fn: ``(variables, images float32 [B, H, W, C]) -> [B, D]`` in eval mode, reading
      ``variables`` only; a ``features.NnxEmbedFn`` when ``config.fine_tune``.
    data: ``jaxssl.data.images.ImageData`` or a mapping with ``train`` and ``test`` as
      ``{'image': uint8/float [N, H, W, C], 'label': int [N]}`` and ``num_classes``.
    config: an ``eval_config`` block; ``prefix`` is prepended to every key (e.g. ``'eval/'``).

  Returns:
    {prefix + key: float} for keys ``linear_probe_accuracy``, ``linear_probe_C``,
    ``knn_accuracy``, ``kmeans_ari``, ``kmeans_nmi``, ``feature_dim`` and, with fine-tuning,
    ``fine_tune_accuracy`` and ``fine_tune_train_loss``.

  Raises:
    ValueError: a bad config field (``check_config``, ``check_fits``), data, or
      ``config.fine_tune`` without a ``features.NnxEmbedFn``; and as the functions it calls.
  """
  check_config(config)
  if config.fine_tune and not isinstance(embed_fn, features_lib.NnxEmbedFn):
    raise ValueError('eval.fine_tune=True needs an NnxEmbedFn (see nnx_embed_fn)')
  num_classes = data['num_classes'] if isinstance(data, Mapping) else data.num_classes
  train_images, train_labels = _split(data, 'train')
  test_images, test_labels = _split(data, 'test')
  check_fits(config, len(test_labels))
  train_x = features_lib.extract_features(embed_fn, variables, train_images,
                                          batch_size=config.global_batch_size, mesh=mesh)
  test_x = features_lib.extract_features(embed_fn, variables, test_images,
                                         batch_size=config.global_batch_size, mesh=mesh)
  metrics = {'feature_dim': float(train_x.shape[1])}
  metrics.update(linear_probe.linear_probe(train_x, train_labels, test_x, test_labels,
                                           C=tuple(config.probe_c),
                                           val_fraction=config.probe_val_fraction,
                                           max_iter=config.probe_max_iter, seed=config.seed))
  metrics.update(knn.knn_accuracy(train_x, train_labels, test_x, test_labels, k=config.knn_k,
                                  temperature=config.knn_temperature, num_classes=num_classes,
                                  chunk_size=config.knn_chunk_size))
  metrics.update(clustering.cluster_features(test_x, test_labels,
                                             n_clusters=config.kmeans_n_clusters or num_classes,
                                             seed=config.seed, n_init=config.kmeans_n_init,
                                             mesh=mesh))
  if config.fine_tune:
    metrics.update(finetune.fine_tune(embed_fn, variables, train_images, train_labels,
                                      test_images, test_labels, num_classes=num_classes,
                                      num_steps=config.finetune_steps,
                                      batch_size=config.finetune_batch_size,
                                      learning_rate=config.finetune_lr, seed=config.seed,
                                      eval_batch_size=config.global_batch_size))
  return {prefix + k: float(v) for k, v in metrics.items()}
