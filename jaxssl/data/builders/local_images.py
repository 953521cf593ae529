"""``local_images``: a TFDS dataset of labelled images from local sources, prepared offline.

Sources: ``digits``, scikit-learn's 1,797 8x8 digits (``load_digits``, values 0..16 scaled to
uint8 by ``round(v * 255 / 16)``), one ``train`` split; or IDX files paired by
``idx.find_idx_pairs``, ``train`` and, given a ``t10k`` pair, ``test``. Examples are
``{'image': uint8 [H, W, C], 'label': int64 in [0, num_classes)}`` in source order, as
ArrayRecord. Configs are named after ``content_sha256`` and built by ``offline.prepare``.
"""

import dataclasses
import hashlib
import os
from collections.abc import Mapping, Sequence

import numpy as np
import tensorflow_datasets as tfds

from jaxssl.data import idx
from jaxssl.data.builders import offline

NAME = 'local_images'
DIGITS = 'digits'
IDX = 'idx'
# Bump when the conversion of a source to examples changes (part of each config name).
CONVERSION_VERSION = 1

# split -> (images uint8 [N, H, W, C], labels int64 [N]).
Arrays = Mapping[str, tuple[np.ndarray, np.ndarray]]


@dataclasses.dataclass(eq=False)
class LocalImagesConfig(tfds.core.BuilderConfig):
  """Which local images to prepare. Build it with ``digits_config`` or ``idx_config``.

  Attributes:
    source: ``'digits'`` or ``'idx'``.
    pairs: for IDX, ``(split, images path, labels path)`` per pair, in reading order.
    image_shape: (H, W, C).
    num_classes: labels lie in [0, num_classes).
    source_sha256: hex ``content_sha256`` of the source; checked again when the dataset is
      generated, so a file edited in between fails loudly.
  """

  source: str = DIGITS
  pairs: tuple[tuple[str, str, str], ...] = ()
  image_shape: tuple[int, int, int] = (0, 0, 0)
  num_classes: int = 0
  source_sha256: str = ''


class LocalImages(tfds.core.GeneratorBasedBuilder,
                  skip_registration=offline.is_registered(NAME)):
  """Labelled images from a local source; see the module docstring."""

  name = NAME
  VERSION = tfds.core.Version('1.0.0')
  RELEASE_NOTES = {'1.0.0': 'sklearn digits and IDX file pairs.'}

  def _info(self) -> tfds.core.DatasetInfo:
    config = _checked(self.builder_config)
    return tfds.core.DatasetInfo(
        builder=self,
        description='Labelled images from a local source (see jaxssl.data.builders).',
        features=tfds.features.FeaturesDict({
            'image': tfds.features.Tensor(shape=tuple(config.image_shape), dtype=np.uint8),
            'label': tfds.features.ClassLabel(num_classes=config.num_classes),
        }),
        supervised_keys=('image', 'label'),
        # Keep source order: TFDS would otherwise shuffle examples by key hash.
        disable_shuffling=True,
    )

  def _split_generators(self, dl_manager):
    del dl_manager  # Nothing is downloaded.
    config = _checked(self.builder_config)
    arrays = read_arrays(config)
    found = content_sha256(arrays)
    if found != config.source_sha256:
      raise RuntimeError(
          f'The source of {NAME}/{config.name} changed while it was being prepared '
          f'(sha256 {found}, expected {config.source_sha256}); run again.'
      )
    return {split: self._generate_examples(*arrays[split]) for split in arrays}

  def _generate_examples(self, images: np.ndarray, labels: np.ndarray):
    for index, (image, label) in enumerate(zip(images, labels)):
      yield index, {'image': image, 'label': int(label)}


def _checked(config) -> LocalImagesConfig:
  if not isinstance(config, LocalImagesConfig):
    raise ValueError(f'{NAME} needs a LocalImagesConfig from local_images.digits_config or '
                     f'idx_config, got {config!r}.')
  return config


def digits_arrays() -> Arrays:
  """sklearn's digits: ``{'train': (uint8 [1797, 8, 8, 1] images, int64 [1797] labels 0..9)}``."""
  from sklearn import datasets  # Imported here: it takes a second and few callers need it.
  digits = datasets.load_digits()
  images = np.round(digits.images * (255.0 / 16.0)).astype(np.uint8)[..., None]
  return {idx.TRAIN: (images, digits.target.astype(np.int64))}


def idx_arrays(pairs: Sequence[tuple[str, str, str]]) -> Arrays:
  """Reads IDX ``(split, images path, labels path)`` pairs and concatenates each split's.

  Returns:
    split -> (uint8 [N, H, W, C] images, int64 [N] labels); C is 1 for [N, H, W] files.

  Raises:
    ValueError: naming the file(s): an unreadable IDX file (``idx.read_idx``), images not
      uint8 [N, H, W(, C)], labels not non-negative integers [N], counts or shapes that differ.
  """
  by_split: dict[str, list[tuple[np.ndarray, np.ndarray]]] = {}
  for split, images_path, labels_path in pairs:
    images, labels = idx.read_idx(images_path), idx.read_idx(labels_path)
    if images.dtype != np.uint8 or images.ndim not in (3, 4):
      raise ValueError(f'{images_path}: images must be uint8 [N, H, W] or [N, H, W, C], '
                       f'found {images.dtype.name} {list(images.shape)}.')
    if labels.dtype.kind not in 'iu' or labels.ndim != 1:
      raise ValueError(f'{labels_path}: labels must be integers [N], found '
                       f'{labels.dtype.name} {list(labels.shape)}.')
    if len(images) != len(labels):
      raise ValueError(f'{images_path} holds {len(images)} images but {labels_path} holds '
                       f'{len(labels)} labels: they are not a pair.')
    if labels.size and labels.min() < 0:
      raise ValueError(f'{labels_path}: negative label {labels.min()}; labels must be >= 0.')
    if images.ndim == 3:
      images = images[..., None]  # [N, H, W, 1]
    by_split.setdefault(split, []).append((images, labels.astype(np.int64)))
  arrays = {}
  for split, parts in by_split.items():
    shapes = {p[0].shape[1:] for p in parts}
    if len(shapes) > 1:
      raise ValueError(f'IDX images of split {split!r} have different shapes: {shapes}.')
    arrays[split] = (np.concatenate([p[0] for p in parts]),
                     np.concatenate([p[1] for p in parts]))
  return arrays


def read_arrays(config: LocalImagesConfig) -> Arrays:
  """Reads the source of `config` (see `digits_arrays` and `idx_arrays`)."""
  if config.source == DIGITS:
    return digits_arrays()
  if config.source == IDX:
    return idx_arrays(config.pairs)
  raise ValueError(f'{NAME}: unknown source {config.source!r}.')


def content_sha256(arrays: Arrays) -> str:
  """Hex sha256 of the examples, split by split (in the given order).

  Per split: name and shape, uint8 images in C order, labels as little-endian int64, framed by
  length (``offline.content_sha256``); gzipped and plain copies of an IDX file hash alike.
  """
  parts = []
  for split, (images, labels) in arrays.items():
    parts.append(f'{split}:{list(images.shape)}'.encode('utf-8'))
    parts.append(np.ascontiguousarray(images, dtype=np.uint8).tobytes())
    parts.append(np.ascontiguousarray(labels, dtype='<i8').tobytes())
  return offline.content_sha256(parts)


def _make_config(source: str, pairs: tuple[tuple[str, str, str], ...],
                 arrays: Arrays) -> LocalImagesConfig:
  """The config of `arrays`, read from `source`, named after their content."""
  if idx.TRAIN not in arrays or not len(arrays[idx.TRAIN][0]):
    raise ValueError(f'{NAME}: the {source} source has no training images.')
  shapes = {images.shape[1:] for images, _ in arrays.values()}
  if len(shapes) > 1:
    raise ValueError(f'{NAME}: the splits of the {source} source have different image '
                     f'shapes: {sorted(shapes)}.')
  source_sha256 = content_sha256(arrays)
  key = f'{source_sha256}|conversion={CONVERSION_VERSION}'
  name_hash = hashlib.sha256(key.encode('utf-8')).hexdigest()[:16]
  counts = ', '.join(f'{len(labels)} {split}' for split, (_, labels) in arrays.items())
  return LocalImagesConfig(
      name=f'{source}_{name_hash}',
      description=f'{source}: {counts} images',
      source=source,
      pairs=pairs,
      image_shape=tuple(int(d) for d in shapes.pop()),
      num_classes=int(max(labels.max(initial=0) for _, labels in arrays.values())) + 1,
      source_sha256=source_sha256,
  )


def digits_config() -> LocalImagesConfig:
  """The config of scikit-learn's digits: 8x8x1 images, 10 classes, one train split."""
  return _make_config(DIGITS, (), digits_arrays())


def idx_config(pairs: Sequence[idx.IdxPair]) -> LocalImagesConfig:
  """The config of some IDX pairs (from ``idx.find_idx_pairs``), named after their content.

  Each split's pairs are concatenated in the given order. The files are read here (to hash
  them) and again in ``prepare``. Raises ValueError as ``idx_arrays``, or with no train pair.
  """
  triples = tuple((p.split, os.path.abspath(p.images), os.path.abspath(p.labels))
                  for p in pairs)
  return _make_config(IDX, triples, idx_arrays(triples))


def prepare(config: LocalImagesConfig, *, data_dir: str | os.PathLike) -> LocalImages:
  """Prepares ``config`` under ``data_dir`` once, offline (``offline.prepare``).

  The dataset goes to ``<data_dir>/local_images/<config.name>/1.0.0``, with a ``train`` split
  and a ``test`` split when the source has one; read the builder with ``as_data_source``.
  """
  return offline.prepare(LocalImages, config, data_dir=data_dir)
