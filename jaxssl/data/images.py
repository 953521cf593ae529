"""Loading a labelled image dataset, split into train and test, from one of three sources.

``data.files``: IDX files (MNIST and kin, paired by ``idx.find_idx_pairs``); ``data.name ==
'digits'``: scikit-learn's 8x8 digits (default); other names: a TFDS dataset already prepared
on disk (never downloaded). Local sources are built once as ``local_images`` under
``<cache_dir>/tfds``. Without a test split, the held-out examples depend only on
``data.split_seed`` and the images' bytes, never on a training seed.
"""

import dataclasses
import hashlib
import json
import os

import ml_collections
import numpy as np
import tensorflow_datasets as tfds
from ml_collections import config_dict

from jaxssl.data import idx, pipeline
from jaxssl.data import sources
from jaxssl.data.builders import local_images
from jaxssl import config_checks

DIGITS = local_images.DIGITS


@dataclasses.dataclass(frozen=True)
class ImageData:
  """A labelled image dataset split once into train and test examples.

  Attributes:
    train: ``{'image': uint8 [N, H, W, C], 'label': int32 [N]}`` in source order.
    test: the same for the test examples, disjoint from ``train`` (when held out).
    num_classes: labels lie in [0, num_classes).
    sha256: hex sha256 of what was read: a local source's content
      (``local_images.content_sha256``), or for TFDS a JSON of the full name, splits and sizes,
      splits read and ``max_examples``; with ``max_examples`` on a local source, JSON of both.
    source: ``'digits'``, ``'files:<abs glob>[,...]'`` or ``'tfds:<name>'``.
    info: ``data/source``, ``data/sha256``, ``data/num_train``, ``data/num_test``,
      ``data/image_shape`` ([H, W, C]) and ``data/num_classes``, for ``summary.json``.
  """

  train: dict[str, np.ndarray]
  test: dict[str, np.ndarray]
  num_classes: int
  sha256: str
  source: str
  info: dict


def data_config(*, name: str = DIGITS) -> ml_collections.ConfigDict:
  """The ``config.data`` of an image experiment (scikit-learn's digits by default)."""
  c = ml_collections.ConfigDict()
  c.name = name  # 'digits' (embedded) or a prepared TFDS image dataset, e.g. 'mnist'.
  c.files = config_dict.placeholder(str)  # Glob(s) of IDX files; overrides name.
  c.data_dir = config_dict.placeholder(str)  # TFDS data_dir of a prepared dataset.
  c.cache_dir = config_dict.placeholder(str)  # Local TFDS builds ($JAXSSL_CACHE_DIR).
  c.train_split = 'train'  # TFDS split read for training (named datasets).
  c.test_split = config_dict.placeholder(str)  # TFDS test split; else held out of train.
  c.test_fraction = 0.2  # Held out when the source has no test split (digits, one pair).
  c.split_seed = 0  # Fixes the held-out examples; not `seed`.
  c.max_examples = config_dict.placeholder(int)  # Cap on examples read from each split.
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


def load_images(data: ml_collections.ConfigDict) -> ImageData:
  """Loads the labelled images ``data`` names (``data_config``; missing fields take its defaults).

  A ``test``/``t10k`` IDX pair or ``test_split`` is the test split; else ``ceil(test_fraction
  * n)`` training examples are held out (``split_seed``, image bytes). ``max_examples`` keeps
  the first examples of each split read, before holding out. Images are uint8 [N, H, W, C]
  (a channel axis is added to [N, H, W]), labels int32 [N].

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
  files = data.get('files')
  if files:
    config = local_images.idx_config(idx.find_idx_pairs(files))
    return _local_images(config, source=sources.files_source(files), data=data)
  if data.get('name', DIGITS) == DIGITS:
    return _local_images(local_images.digits_config(), source=DIGITS, data=data)
  return _tfds_images(data)


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
    {'train', 'test': {'image': uint8 [N, H, W, C], 'label': int32 [N]}, 'num_classes',
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
    train = {k: v[keep] for k, v in train.items()}
  return dict(train=train, test=data.test, num_classes=data.num_classes,
              image_shape=tuple(train['image'].shape[1:]), info=dict(data.info),
              num_train_steps=pipeline.steps_for_epochs(config, len(train['image']),
                                                        unit='images'))


def _local_images(config: local_images.LocalImagesConfig, *, source: str, data) -> ImageData:
  """Prepares a local source in the cache once, reads and splits it."""
  data_dir = os.path.join(sources.cache_dir(data), 'tfds')
  builder = local_images.prepare(config, data_dir=data_dir)
  max_examples = data.get('max_examples')
  sha256 = config.source_sha256
  if max_examples is not None:
    described = {'sha256': sha256, 'max_examples': max_examples}
    sha256 = hashlib.sha256(json.dumps(described, sort_keys=True).encode()).hexdigest()
  test_split = idx.TEST if idx.TEST in builder.info.splits else None
  return _split(builder, train_split=idx.TRAIN, test_split=test_split, sha256=sha256,
                source=source, data=data)


def _tfds_images(data) -> ImageData:
  """Reads a prepared TFDS image dataset (see `load_images`)."""
  name = data.get('name')
  builder = sources.tfds_builder(name, data.get('data_dir'))
  train_split = data.get('train_split', 'train')
  test_split = data.get('test_split')
  sources.check_split(builder, train_split, 'data.train_split')
  if test_split:
    sources.check_split(builder, test_split, 'data.test_split')
  features = builder.info.features
  if 'image' not in features or 'label' not in features:
    raise ValueError(f"data.name={name!r}: needs features 'image' and 'label'; "
                     f'{builder.info.full_name} has {sorted(features.keys())}.')
  sha256 = sources.tfds_sha256(builder, read=[train_split, test_split],
                               max_examples=data.get('max_examples'))
  return _split(builder, train_split=train_split, test_split=test_split, sha256=sha256,
                source=f'tfds:{name}', data=data)


def _read(builder, split: str, *, source: str, data) -> dict[str, np.ndarray]:
  """Reads one split as ``{'image': uint8 [N, H, W, C], 'label': int32 [N]}``."""
  images, labels = [], []
  for example in sources.iter_examples(builder, split, limit=data.get('max_examples')):
    images.append(np.asarray(example['image']))
    labels.append(example['label'])
  if not images:
    raise ValueError(f'{source}: split {split!r} has no examples.')
  shapes = {image.shape for image in images}
  if len(shapes) > 1:
    raise ValueError(f'{source}: split {split!r} holds images of {len(shapes)} shapes, e.g. '
                     f'{sorted(shapes)[:3]}; resize them to one shape first.')
  image = np.stack(images)
  if image.ndim == 3:
    image = image[..., None]  # [N, H, W, 1]
  if image.dtype != np.uint8 or image.ndim != 4:
    raise ValueError(f'{source}: images must be uint8 [H, W] or [H, W, C], found '
                     f'{image.dtype.name} {list(image.shape[1:])}.')
  label = np.asarray(labels)
  if label.dtype.kind not in 'iu' or label.ndim != 1 or label.min() < 0:
    raise ValueError(f'{source}: labels must be non-negative integer scalars, found '
                     f'{label.dtype.name} {list(label.shape)} (min {label.min()}).')
  return {'image': image, 'label': label.astype(np.int32)}


def _take(examples: dict[str, np.ndarray], mask: np.ndarray) -> dict[str, np.ndarray]:
  return {k: v[mask] for k, v in examples.items()}


def _split(builder, *, train_split: str, test_split: str | None, sha256: str, source: str,
           data) -> ImageData:
  """Reads the train split and the test split, or holds a fraction of train out."""
  train = _read(builder, train_split, source=source, data=data)
  if test_split:
    test = _read(builder, test_split, source=source, data=data)
    if test['image'].shape[1:] != train['image'].shape[1:]:
      raise ValueError(f'{source}: train images are {list(train["image"].shape[1:])} but '
                       f'test images are {list(test["image"].shape[1:])}.')
  else:
    held_out = np.asarray(sources.held_out_mask(
        [image.tobytes() for image in train['image']], fraction=data.get('test_fraction', 0.2),
        seed=data.get('split_seed', 0), field='data.test_fraction'))
    train, test = _take(train, ~held_out), _take(train, held_out)
  num_train, num_test = len(train['label']), len(test['label'])
  if not num_train or not num_test:
    raise ValueError(f'{source}: too few examples: {num_train} train and {num_test} test; '
                     'each split needs at least 1 (change data.test_fraction or add data).')
  label_feature = builder.info.features['label']
  if isinstance(label_feature, tfds.features.ClassLabel) and label_feature.num_classes:
    num_classes = label_feature.num_classes
  else:
    num_classes = int(max(train['label'].max(), test['label'].max())) + 1
  info = {
      'data/source': source,
      'data/sha256': sha256,
      'data/num_train': num_train,
      'data/num_test': num_test,
      'data/image_shape': [int(d) for d in train['image'].shape[1:]],
      'data/num_classes': num_classes,
  }
  return ImageData(train=train, test=test, num_classes=num_classes, sha256=sha256,
                   source=source, info=info)
