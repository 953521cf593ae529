"""A labelled image task: an image set split into a labelled subset, validation and test.

The image twin of ``text_tasks``. The images are the image experiments' (``images``: the
bundled digits, IDX files, a prepared TFDS set), decoded once into the image cache; the test
split is the source's (or the cache's held-out part). Validation is ``validation_fraction``
of the training split, the same for every label fraction, and the labelled subset the
stratified, nested ``label_fraction`` of the rest (``label_splits``), both keyed by the
images' positions in the prepared split (``label_splits.index_keys``: no pixel is read to
split a set of any size). Training and validation images stay on disk, read a batch at a
time; test images are held in memory (a fixed sample of at most ``max_eval_examples``).
"""

from __future__ import annotations

import ml_collections
import numpy as np

from jaxssl import config_checks
from jaxssl.data import images, label_splits, rowfile, sources


def data_config() -> ml_collections.ConfigDict:
  """``images.data_config()`` plus the validation split and the labelled fraction."""
  c = images.data_config()
  c.validation_fraction = 0.1  # Of the training split, the same for every label fraction.
  c.label_fraction = 1.0  # Stratified share of the remaining training labels used.
  return c


def check_config(config: ml_collections.ConfigDict) -> None:
  """Checks ``config.data`` (from ``data_config``); ValueError names the first bad field."""
  images.check_config(config)
  config_checks.in_open_unit_interval(config, 'data.validation_fraction')
  if not 0 < config.data.label_fraction <= 1:
    raise ValueError(f'data.label_fraction={config.data.label_fraction} must be in (0, 1]')


def rows(split: dict, positions: np.ndarray) -> dict:
  """{'image': uint8 [n, H, W, C] on disk (``rowfile.Selection``), 'label': int32 [n]}: the
  examples of ``split`` (a ``Selection`` and its labels) at int [n] ``positions``."""
  image = split['image']
  return {'image': rowfile.Selection(image.rows, image.index[positions]),
          'label': split['label'][positions]}


def split_training(train: dict, data: ml_collections.ConfigDict) -> tuple[dict, dict, int]:
  """(labelled subset, validation, pool size) of the training split (module docstring);
  validation is evaluated on a fixed sample of at most ``data.max_eval_examples`` of it.

  Args:
    train: {'image': ``rowfile.Selection`` uint8 [N, H, W, C], 'label': int32 [N]}.
    data: ``data_config()`` fields ``split_seed``, ``validation_fraction``,
      ``label_fraction``, ``max_eval_examples``.

  Raises:
    ValueError: an empty pool or validation split.
  """
  labels, n = train['label'], len(train['label'])
  is_validation = label_splits.held_out_by_keys(
      label_splits.index_keys(n, data.split_seed, 'validation'), data.validation_fraction)
  pool, validation = np.flatnonzero(~is_validation), np.flatnonzero(is_validation)
  if not len(pool) or not len(validation):
    raise ValueError(f'{n} training images leave {len(pool)} to train on and '
                     f'{len(validation)} for validation; each needs at least 1.')
  keys = label_splits.index_keys(n, data.split_seed, 'labels')[pool]
  labelled = pool[label_splits.label_subset_by_keys(keys, labels[pool], data.label_fraction)]
  validation = validation[sources.eval_sample(len(validation), data.max_eval_examples,
                                              data.split_seed, 3)]
  return rows(train, labelled), rows(train, validation), len(pool)


def load(data: ml_collections.ConfigDict) -> dict:
  """The task ``data`` names (``data_config``).

  Returns:
    {'train': the labelled subset and 'validation' (``rows``: on disk), 'test': {'image':
    uint8 [M, H, W, C], 'label': int32 [M]} in memory, 'num_classes', 'info': the
    ``data/*`` facts of ``images.load_images`` and the split sizes}.

  Raises:
    As ``images.load_images`` and ``split_training``; ValueError for fewer than 2 classes.
  """
  loaded = images.load_images(data)
  if loaded.num_classes < 2:
    raise ValueError(f'{loaded.source} has {loaded.num_classes} class: nothing to classify')
  train, validation, pool = split_training(loaded.train, data)
  info = dict(loaded.info, **{
      'data/train_pool_examples': pool, 'data/train_examples': len(train['label']),
      'data/validation_examples': len(validation['label']),
      'data/test_examples': len(loaded.test['label'])})
  return dict(train=train, validation=validation, test=loaded.test,
              num_classes=loaded.num_classes, info=info)
