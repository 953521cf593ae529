"""A labelled image dataset, split into train and test, from one of three sources.

``data.files``: IDX files (MNIST and kin, paired by ``idx.find_idx_pairs``; local or in a
bucket); ``data.name == 'digits'``: scikit-learn's 8x8 digits (default); other names: a TFDS
dataset already prepared on disk (never downloaded). Every source takes the same path: decoded
once into ``image_cache`` row files, then the training split is read by index, a batch at a
time, so host memory does not grow with the image set. Evaluation reads a bounded, seeded
sample (``data.max_eval_examples``). Without a test split, the held-out examples depend only
on ``data.split_seed`` and the images' bytes, never on a training seed.
"""

import dataclasses

import jax
import ml_collections
import numpy as np
from jax.experimental import multihost_utils
from ml_collections import config_dict

from jaxssl.data import image_cache, pipeline, rowfile
from jaxssl.data import sources
from jaxssl import config_checks

DIGITS = image_cache.DIGITS
_CHUNK = 4096  # images per read when reducing over a split


@dataclasses.dataclass(frozen=True)
class ImageData:
  """A labelled image dataset split once into train and test examples.

  Attributes:
    train: ``{'image': uint8 [N, H, W, C] read from disk by index (``rowfile.Selection``),
      'label': int32 [N]}`` in source order.
    test: ``{'image': uint8 [M, H, W, C], 'label': int32 [M]}`` in memory, disjoint from
      ``train`` (when held out): the whole test split, or a fixed seeded sample of
      ``data.max_eval_examples`` of it, in split order.
    num_classes: labels lie in [0, num_classes).
    sha256: hex sha256 of what was read: a local source's content (split names and shapes,
      image bytes, int64 labels, each framed by its length), or for TFDS a JSON of the full
      name, splits and sizes, splits read and ``max_examples``; with ``max_examples`` on a
      local source, JSON of both.
    source: ``'digits'``, ``'files:<abs glob>[,...]'`` or ``'tfds:<name>'``.
    info: ``data/source``, ``data/sha256``, ``data/num_train``, ``data/num_test`` (the whole
      split), ``data/num_test_evaluated``, ``data/image_shape`` ([H, W, C]),
      ``data/num_classes`` and ``data/prepared`` (the cache entry), for ``summary.json``.
  """

  train: dict
  test: dict[str, np.ndarray]
  num_classes: int
  sha256: str
  source: str
  info: dict


def data_config(*, name: str = DIGITS) -> ml_collections.ConfigDict:
  """The ``config.data`` of an image experiment (scikit-learn's digits by default)."""
  c = ml_collections.ConfigDict()
  c.name = name  # 'digits' (embedded) or a prepared TFDS image dataset, e.g. 'mnist'.
  c.files = config_dict.placeholder(str)  # Glob(s) of IDX files (local or gs://); overrides name.
  c.data_dir = config_dict.placeholder(str)  # TFDS data_dir of a prepared dataset.
  c.cache_dir = config_dict.placeholder(str)  # Decoded images ($JAXSSL_CACHE_DIR; or gs://).
  c.train_split = 'train'  # TFDS split read for training (named datasets).
  c.test_split = config_dict.placeholder(str)  # TFDS test split; else held out of train.
  c.test_fraction = 0.2  # Held out when the source has no test split (digits, one pair).
  c.split_seed = 0  # Fixes the held-out examples and evaluation samples; not `seed`.
  c.max_examples = config_dict.placeholder(int)  # Cap on examples read from each split.
  # Evaluation reads at most this many test images, and evaluators that fit on training
  # images (probe, kNN, FD classifier) at most this many of those: fixed seeded samples.
  c.max_eval_examples = 50_000
  return c


def check_config(config: ml_collections.ConfigDict) -> None:
  """Checks ``config.data`` (from ``data_config``); ValueError names the first bad field."""
  data = config.data
  if not data.files:
    for field in ('name', 'train_split'):
      if not isinstance(data[field], str) or not data[field]:
        raise ValueError(f'data.{field}={data[field]!r} must be a non-empty string')
  if data.test_split is not None and data.test_split == data.train_split:
    raise ValueError(f'data.test_split={data.test_split!r} must differ from data.train_split')
  config_checks.non_negative(config, 'data.split_seed')
  config_checks.in_open_unit_interval(config, 'data.test_fraction')
  if data.max_examples is not None:
    config_checks.positive(config, 'data.max_examples')
  config_checks.positive(config, 'data.max_eval_examples')


def _prepared(data: ml_collections.ConfigDict) -> image_cache.PreparedImages:
  """The cache entry of ``data``; process 0 builds it first in a run of several processes."""
  cache = sources.cache_dir(data)
  if jax.process_count() > 1:
    # A bad source fails on every process alike, not on process 0 alone at the barrier.
    image_cache.open_source(data)
    if jax.process_index() == 0:
      image_cache.prepare(data, cache_dir=cache)
    multihost_utils.sync_global_devices('jaxssl: images prepared')
  return image_cache.prepare(data, cache_dir=cache)


def load_images(data: ml_collections.ConfigDict) -> ImageData:
  """Loads the labelled images ``data`` names (``data_config``; missing fields take its defaults).

  A ``test``/``t10k`` IDX pair or ``test_split`` is the test split; else ``ceil(test_fraction
  * n)`` training examples are held out (``split_seed``, image bytes). ``max_examples`` keeps
  the first examples of each split read, before holding out. Images are uint8 [N, H, W, C]
  (a channel axis is added to [N, H, W]), labels int32 [N]. The first call for a source
  decodes it into the cache (``image_cache.prepare``); later ones only open the entry.

  Raises:
    FileNotFoundError: ``data.files`` matches no file, or TFDS ``data.name`` is not prepared
      in ``data.data_dir`` (the message names the ``tfds build`` command).
    ValueError: a bad IDX file or pairing (``idx.find_idx_pairs``); ``data.name`` not in
      TFDS, a missing split, no ``image``/``label`` features, images of several shapes or not
      uint8; ``test_fraction`` not in (0, 1); ``max_examples`` < 1; or an empty split.
  """
  max_examples = data.get('max_examples')
  if max_examples is not None and max_examples < 1:
    raise ValueError(f'data.max_examples must be >= 1 or None, got {max_examples}.')
  prepared = _prepared(data)
  meta, splits = prepared.meta, prepared.splits
  train = splits['train']
  if prepared.held_out is not None:
    held = prepared.held_out
    test = {'image': rowfile.Selection(train['image'], np.flatnonzero(held)),
            'label': train['label'][held]}
    train = {'image': rowfile.Selection(train['image'], np.flatnonzero(~held)),
             'label': train['label'][~held]}
  else:
    test = splits['test']
    train = {'image': rowfile.Selection(train['image'], np.arange(len(train['label']))),
             'label': train['label']}
  num_train, num_test = len(train['label']), len(test['label'])
  if not num_train or not num_test:
    raise ValueError(f'{meta["source"]}: too few examples: {num_train} train and {num_test} '
                     'test; each split needs at least 1 (change data.test_fraction or add data).')
  chosen = sources.eval_sample(num_test, data.get('max_eval_examples', 50_000),
                               data.get('split_seed', 0), 1)
  test = {'image': np.asarray(test['image'][chosen]), 'label': test['label'][chosen]}
  info = {
      'data/source': meta['source'],
      'data/sha256': meta['sha256'],
      'data/num_train': num_train,
      'data/num_test': num_test,
      'data/image_shape': list(meta['image_shape']),
      'data/num_classes': meta['num_classes'],
  }
  if len(chosen) < num_test:
    info['data/num_test_evaluated'] = len(chosen)
  return ImageData(train=train, test=test, num_classes=meta['num_classes'],
                   sha256=meta['sha256'], source=meta['source'], info=info)


def eval_train_sample(train: dict, data: ml_collections.ConfigDict) -> dict[str, np.ndarray]:
  """In memory, the training examples evaluators fit on (probe, kNN, FD classifier): all of
  them in order, or a fixed sample of ``data.max_eval_examples`` (``data.split_seed``)."""
  chosen = sources.eval_sample(len(train['label']), data.get('max_eval_examples', 50_000),
                   data.get('split_seed', 0), 2)
  return {'image': np.asarray(train['image'][chosen]), 'label': train['label'][chosen]}


def chunks(images, size: int | None = None):
  """Yields consecutive uint8 [<= size, H, W, C] chunks of ``images`` (an array or rows read
  from disk; ``size`` defaults to 4096), for reductions over a split not held in memory."""
  size = size or _CHUNK
  for start in range(0, len(images), size):
    yield np.asarray(images[start:start + size])


def pixel_mean(images) -> np.ndarray:
  """float64 [H, W, C]: the mean of uint8 images [N, H, W, C] in [0, 255], chunk by chunk."""
  total = sum(chunk.astype(np.float64).sum(axis=0) for chunk in chunks(images))
  return total / len(images)


def for_training(config: ml_collections.ConfigDict, *, train_keep=None,
                 labels_needed_by: str | None = None) -> dict:
  """The images of ``config.data`` as a training experiment takes them.

  Args:
    config: an experiment config (``data``, and ``num_epochs``, ``num_train_steps``,
      ``global_batch_size``, ``optim.warmup_steps`` for the run's length).
    train_keep: optional ``labels int32 [N] -> bool [N]``: the training images kept (e.g. all
      but an anomaly class); the run's length counts the kept ones.
    labels_needed_by: what needs labels of at least 2 classes (named in the error), if any.

  Returns:
    {'train': {'image': uint8 [N, H, W, C] on disk (read by index), 'label': int32 [N]},
    'test': {'image': uint8 [M, H, W, C], 'label': int32 [M]} in memory, 'eval': ``{'train':
    eval_train_sample(train), 'test', 'num_classes'}`` for evaluators, 'num_classes',
    'image_shape': (H, W, C), 'info': the ``data/*`` facts, 'num_train_steps'}.

  Raises:
    ValueError: < 2 classes when ``labels_needed_by``; as ``load_images``, ``steps_for_epochs``.
  """
  data = load_images(config.data)
  if labels_needed_by and data.num_classes < 2:
    raise ValueError(f'{data.source} has {data.num_classes} classes: {labels_needed_by} needs '
                     'labelled images of at least 2 classes')
  train = data.train
  if train_keep is not None:
    keep = train_keep(train['label'])
    train = {'image': rowfile.Selection(train['image'].rows, train['image'].index[keep]),
             'label': train['label'][keep]}
  evaluated = dict(train=eval_train_sample(train, config.data), test=data.test,
                   num_classes=data.num_classes)
  return dict(train=train, test=data.test, eval=evaluated, num_classes=data.num_classes,
              image_shape=tuple(train['image'].shape[1:]), info=dict(data.info),
              num_train_steps=pipeline.steps_for_epochs(config, len(train['label']),
                                                        unit='images'))
