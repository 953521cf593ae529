"""Loading a labelled image dataset from any source, split into train and test.

Three sources, chosen by the ``data`` config (see `load_images` and `data_config`):

* ``data.files``: IDX files (MNIST, Fashion-MNIST, KMNIST, ...), paired by
  `idx.find_idx_pairs`;
* ``data.name == 'digits'``: scikit-learn's bundled 8x8 digits (the default);
* any other ``data.name``: a TFDS image dataset already prepared on disk (never
  downloaded here), e.g. ``'mnist'``, ``'fashion_mnist'``, ``'cifar10'``.

Local sources are prepared once as the ``local_images`` TFDS dataset under
``<cache_dir>/tfds`` (see `jaxssl.data.builders.local_images`). When the source has no
test split, a fraction of the training examples is held out; which ones depends only on
``data.split_seed`` and the images' bytes, never on a training seed, so every run
evaluates on the same images.
"""

import dataclasses
import hashlib
import json
import os

import ml_collections
import numpy as np
import tensorflow_datasets as tfds
from ml_collections import config_dict

from jaxssl.data import idx
from jaxssl.data import sources
from jaxssl.data.builders import local_images
from jaxssl.train import config_checks

DIGITS = local_images.DIGITS


@dataclasses.dataclass(frozen=True)
class ImageData:
  """A labelled image dataset split once into train and test examples.

  Attributes:
    train: ``{'image': uint8 [N, H, W, C], 'label': int32 [N]}`` in source order.
    test: the same for the test examples, disjoint from `train` (when held out).
    num_classes: labels lie in [0, num_classes).
    sha256: hex sha256 of what was read: the content of a local source (see
      `local_images.content_sha256`), or for TFDS a JSON of the dataset's full name,
      its splits and their sizes, the splits read and ``max_examples``; with
      ``max_examples`` set for a local source, a JSON of both.
    source: ``'digits'``, ``'files:<abs glob>[,...]'`` or ``'tfds:<name>'``.
    info: flat JSON-able facts for ``summary.json``: ``data/source``, ``data/sha256``,
      ``data/num_train``, ``data/num_test``, ``data/image_shape`` ([H, W, C]) and
      ``data/num_classes``.
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
  """Checks the ``config.data`` fields of an image experiment's config.

  Args:
    config: the experiment's config, with a ``data`` sub-dict from `data_config`.

  Raises:
    ValueError: naming the first bad ``data.<field>``.
  """
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
  """Loads the labelled images `data` names, with a fixed test split.

  Args:
    data: the ``data`` config (see `data_config`; missing fields take its defaults).
      ``files``, if set, are globs of IDX files (comma-separated); a ``test``/``t10k``
      pair is the test split. Otherwise ``name`` is ``'digits'`` or a TFDS dataset
      prepared in ``data_dir``, read from ``train_split`` and, if set, ``test_split``.
      With no test split (digits, a single IDX pair, or ``test_split`` unset),
      ``ceil(test_fraction * n)`` of the n training examples are held out, chosen by
      ``split_seed`` and each image's bytes. ``max_examples`` keeps only the first
      examples of each split read, in stored order, before holding any out.

  Returns:
    The dataset. Images are uint8 [N, H, W, C] (a channel axis is added to [N, H, W]),
    labels int32 [N].

  Raises:
    FileNotFoundError: ``data.files`` matches no file, or the TFDS dataset
      ``data.name`` is not prepared in ``data.data_dir`` (the message names the
      ``tfds build`` command; nothing is downloaded).
    ValueError: a bad IDX file or pairing (see `idx.find_idx_pairs`); ``data.name``
      is not a TFDS dataset, a split does not exist, or the dataset has no ``image``
      and ``label`` features, images of one shape, or uint8 pixels; ``test_fraction``
      is not in (0, 1); ``max_examples`` is below 1; or a split is left empty.
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
