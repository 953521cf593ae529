"""Labelled images decoded once into uint8 row files, read by index, reused by every run.

``prepare`` turns an image source (scikit-learn's digits, IDX files local or in a bucket, a
prepared TFDS dataset) into ``<cache_dir>/images/<key>/``: per source split ``<split>.images``
(``rowfile`` rows of H*W*C uint8) and ``<split>.labels.npy`` (int32), ``held_out.npy`` (bool
over train) when the test split is held out of train, and ``meta.json``, written last: an
entry without it is incomplete and never read. ``<key>`` hashes the source's fingerprint
(metadata, not bytes) and the settings, so a prepared set starts a run without reading it.
Preparation streams chunks (TFDS examples are decoded in worker processes); a run then reads
only the rows of its batches, so host memory does not grow with the image set.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import hashlib
import io
import json
import logging
import multiprocessing
import os
import time
from collections.abc import Callable, Iterator

import ml_collections
import numpy as np
from etils import epath

from jaxssl import fileio
from jaxssl.data import corpus, idx, rowfile, sources

FORMAT_VERSION = 1
DIGITS = 'digits'
_CHUNK = 4096  # examples per read and write
_WORKER_MIN_EXAMPLES = 20_000  # TFDS splits this large are decoded by a process pool
_MAX_WORKERS = 8

# A split as a source gives it: (number of examples, chunk iterator of (uint8 [k, H, W(, C)]
# images, int [k] labels)); the image shape is read off the first chunk.
_Split = tuple[int, Iterator[tuple[np.ndarray, np.ndarray]]]


@dataclasses.dataclass(frozen=True)
class ImageSource:
  """Where the images come from, identified without reading them.

  Attributes:
    source: ``'digits'``, ``'files:<glob>[,...]'`` or ``'tfds:<name>'``.
    fingerprint: JSON-able identity from metadata: the embedded set's name, each IDX file's
      path, size and mtime, or a TFDS dataset's ``sources.tfds_sha256``.
    splits: source split names in order, ``'train'`` first (``'test'`` if the source has one).
    read: ``split -> _Split``.
    tfds_sha256: for TFDS, the ``data/sha256`` reported (names what was read); else None,
      and ``data/sha256`` is the content hash computed while preparing.
    builder: the TFDS builder, for ``num_classes`` (None otherwise).
  """

  source: str
  fingerprint: dict
  splits: tuple[str, ...]
  read: Callable[[str], _Split]
  tfds_sha256: str | None = None
  builder: object = None


def _digits() -> ImageSource:
  """scikit-learn's 1,797 digits, values 0..16 scaled to uint8 by round(v * 255 / 16)."""
  def read(split):
    del split
    from sklearn import datasets  # Imported here: it takes a second and few callers need it.
    digits = datasets.load_digits()
    images = np.round(digits.images * (255.0 / 16.0)).astype(np.uint8)[..., None]
    return len(images), iter([(images, digits.target)])
  return ImageSource(DIGITS, {'embedded': DIGITS}, (idx.TRAIN,), read)


def _idx_files(files: str) -> ImageSource:
  """IDX pairs (``idx.find_idx_pairs``); each split's pairs concatenated in order."""
  pairs = idx.find_idx_pairs(files)
  stats = {}
  for pair in pairs:
    for p in (pair.images, pair.labels):
      stat = fileio.path(p).stat()
      stats[p] = [p, int(stat.length), float(stat.mtime)]

  def read(split):
    chosen = [p for p in pairs if p.split == split]

    def chunks():
      for pair in chosen:
        labels = idx.read_idx(pair.labels)
        start = 0
        for images in idx.iter_chunks(pair.images, _CHUNK):
          yield images, labels[start:start + len(images)]
          start += len(images)
    return sum(p.num_examples for p in chosen), chunks()

  splits = tuple(s for s in (idx.TRAIN, idx.TEST) if any(p.split == s for p in pairs))
  return ImageSource(sources.files_source(files), {'files': sorted(stats.values())}, splits,
                     read)


def _decode_range(name: str, data_dir: str | None, split: str, start: int,
                  stop: int) -> tuple[np.ndarray, np.ndarray]:
  """Decodes examples [start, stop) of a TFDS split (run in a worker process)."""
  builder = sources.tfds_builder(name, data_dir)
  examples = builder.as_data_source(split=split).__getitems__(range(start, stop))
  return _stack(examples, f'tfds:{name}', split)


def _stack(examples, source: str, split: str) -> tuple[np.ndarray, np.ndarray]:
  """(images, labels) arrays of decoded TFDS examples; ValueError for mixed shapes."""
  shapes = {np.shape(e['image']) for e in examples}
  if len(shapes) > 1:
    raise ValueError(f'{source}: split {split!r} holds images of {len(shapes)} shapes, e.g. '
                     f'{sorted(shapes)[:3]}; resize them to one shape first.')
  return (np.stack([np.asarray(e['image']) for e in examples]),
          np.asarray([e['label'] for e in examples]))


def _tfds(data: ml_collections.ConfigDict) -> ImageSource:
  """A prepared TFDS image dataset, read in place (``sources.tfds_builder``: never downloaded)."""
  name, data_dir = data.get('name'), data.get('data_dir')
  builder = sources.tfds_builder(name, data_dir)
  train_split, test_split = data.get('train_split', 'train'), data.get('test_split')
  sources.check_split(builder, train_split, 'data.train_split')
  if test_split:
    sources.check_split(builder, test_split, 'data.test_split')
  features = builder.info.features
  if 'image' not in features or 'label' not in features:
    raise ValueError(f"data.name={name!r}: needs features 'image' and 'label'; "
                     f'{builder.info.full_name} has {sorted(features.keys())}.')
  split_names = {idx.TRAIN: train_split, idx.TEST: test_split}
  source = f'tfds:{name}'

  def read(split):
    tfds_split = split_names[split]
    n = builder.info.splits[tfds_split].num_examples
    if sources.uses_array_record(builder) and n >= _WORKER_MIN_EXAMPLES:
      return n, _pooled(name, data_dir, tfds_split, n)
    def chunks():
      batch = []
      for example in sources.iter_examples(builder, tfds_split):
        batch.append(example)
        if len(batch) == _CHUNK:
          yield _stack(batch, source, tfds_split)
          batch = []
      if batch:
        yield _stack(batch, source, tfds_split)
    return n, chunks()

  sha256 = sources.tfds_sha256(builder, read=[train_split, test_split],
                               max_examples=data.get('max_examples'))
  splits = (idx.TRAIN, idx.TEST) if test_split else (idx.TRAIN,)
  return ImageSource(source, {'tfds': sha256}, splits, read, tfds_sha256=sha256,
                     builder=builder)


def _pooled(name, data_dir, split, n) -> Iterator[tuple[np.ndarray, np.ndarray]]:
  """Chunks of a TFDS split decoded by worker processes, yielded in order."""
  workers = max(1, min(_MAX_WORKERS, (os.cpu_count() or 2) - 1))
  # 'spawn': a forked copy of a process running JAX threads can deadlock.
  context = multiprocessing.get_context('spawn')
  with concurrent.futures.ProcessPoolExecutor(workers, mp_context=context) as pool:
    starts = range(0, n, _CHUNK)
    # At most 2 chunks per worker in flight bounds memory.
    pending = []
    for start in starts:
      pending.append(pool.submit(_decode_range, name, data_dir, split, start,
                                 min(start + _CHUNK, n)))
      if len(pending) >= 2 * workers:
        yield pending.pop(0).result()
    for future in pending:
      yield future.result()


def open_source(data: ml_collections.ConfigDict) -> ImageSource:
  """The ``ImageSource`` of ``data``: ``files`` (IDX), else ``name`` ('digits' or TFDS).

  Raises:
    FileNotFoundError, ValueError: as ``idx.find_idx_pairs`` and ``sources.tfds_builder``;
      a TFDS dataset without ``image``/``label`` features or a missing split.
  """
  if data.get('files'):
    return _idx_files(data.files)
  if data.get('name', DIGITS) == DIGITS:
    return _digits()
  return _tfds(data)


def cache_key(source: ImageSource, data: ml_collections.ConfigDict) -> str:
  """Hex name of the entry: the source's fingerprint and every setting the result depends on."""
  settings = {'format': FORMAT_VERSION, 'source': source.source,
              'fingerprint': source.fingerprint,
              **{k: data.get(k) for k in ('max_examples', 'test_fraction', 'split_seed',
                                           'train_split', 'test_split')}}
  return sources.settings_key(settings)


def _check_chunk(images: np.ndarray, labels: np.ndarray, where: str) -> tuple[np.ndarray,
                                                                               np.ndarray]:
  """uint8 [k, H, W, C] images (a channel axis added to [k, H, W]) and int64 labels."""
  if images.ndim == 3:
    images = images[..., None]
  if images.dtype != np.uint8 or images.ndim != 4:
    raise ValueError(f'{where}: images must be uint8 [H, W] or [H, W, C], found '
                     f'{images.dtype.name} {list(images.shape[1:])}.')
  labels = np.asarray(labels)
  if labels.dtype.kind not in 'iu' or labels.ndim != 1 or (labels.size and labels.min() < 0):
    raise ValueError(f'{where}: labels must be non-negative integer scalars, found '
                     f'{labels.dtype.name} {list(labels.shape)}.')
  return images, labels.astype(np.int64)


class _ContentHash:
  """sha256 of a local source's content, fed chunk by chunk: per split its name and shape
  (``'train:[N, H, W, C]'``), image bytes and int64 labels, each part framed by its 8-byte
  big-endian length (so bytes cannot move between parts unseen)."""

  def __init__(self):
    self.digest = hashlib.sha256()

  def frame_start(self, size: int) -> None:
    """Starts a part of ``size`` bytes, fed next by ``update``."""
    self.digest.update(size.to_bytes(8, 'big'))

  def update(self, data: bytes) -> None:
    self.digest.update(data)

  def frame_bytes(self, data: bytes) -> None:
    self.frame_start(len(data))
    self.update(data)


def _write_split(entry: epath.Path, source: ImageSource, split: str, data, content,
                 held_out_keys: list | None) -> dict:
  """Writes ``<split>.images`` and ``<split>.labels.npy``; returns the split's facts.

  With ``max_examples`` only the first examples are written, but the content hash (local
  sources) still covers the whole split, as the hash of the source always has.
  """
  n, chunks = source.read(split)
  limit = data.get('max_examples')
  where = f'{source.source} split {split!r}'
  progress = corpus.Progress(f'decoding {where}', n, 'k examples', 1e3)
  seed_prefix = f'{data.get("split_seed", 0)}\0'.encode('utf-8')
  writer, image_shape, labels, all_labels, count = None, None, [], [], 0
  try:
    for images, chunk_labels in chunks:
      images, chunk_labels = _check_chunk(images, chunk_labels, where)
      if writer is None:
        image_shape = images.shape[1:]
        if content is not None:
          content.frame_bytes(f'{split}:{[n, *image_shape]}'.encode('utf-8'))
          content.frame_start(n * int(np.prod(image_shape)))
        writer = rowfile.RowWriter(entry / f'{split}.images', width=int(np.prod(image_shape)),
                                   dtype=np.uint8)
      if images.shape[1:] != image_shape:
        raise ValueError(f'{where} holds images of several shapes: {list(image_shape)} and '
                         f'{list(images.shape[1:])}; resize them to one shape first.')
      if content is not None:
        content.update(np.ascontiguousarray(images).tobytes())
      all_labels.append(chunk_labels)
      progress.add(len(images))
      keep = len(images) if limit is None else max(0, min(len(images), limit - count))
      if keep:
        flat = images[:keep].reshape(keep, -1)
        writer.write(flat)
        labels.append(chunk_labels[:keep])
        if held_out_keys is not None:
          held_out_keys.extend(hashlib.sha256(seed_prefix + row.tobytes()).digest()
                               for row in flat)
        count += keep
      elif content is None:
        break  # capped, and nothing is left to hash
  except BaseException:
    if writer is not None:
      writer.abort()
    raise
  progress.log()
  if writer is None or not count:
    if writer is not None:
      writer.abort()
    raise ValueError(f'{source.source}: split {split!r} has no examples.')
  writer.close()
  all_labels = np.concatenate(all_labels)
  if content is not None:
    content.frame_bytes(all_labels.astype('<i8').tobytes())
  buffer = io.BytesIO()
  np.save(buffer, np.concatenate(labels).astype(np.int32))
  fileio.write_atomic(entry / f'{split}.labels.npy', buffer.getvalue())
  return {'num_examples': count, 'image_shape': [int(d) for d in image_shape],
          'max_label': int(all_labels.max())}


def _held_out(keys: list[bytes], fraction: float) -> np.ndarray:
  """bool [n]: the ``ceil(fraction * n)`` examples with the smallest keys
  ``sha256(f'{split_seed}\\0' + image bytes)`` held out (exact duplicates in index order): a
  split fixed by the seed and the images alone, whatever their order or the training seed."""
  mask = np.zeros(len(keys), bool)
  mask[sources.smallest_fraction(np.array(keys, dtype='S32'), fraction)] = True
  return mask


def _build(entry: epath.Path, source: ImageSource, data) -> None:
  """Writes every file of the entry, ``meta.json`` last."""
  hold_out = idx.TEST not in source.splits
  content = _ContentHash() if source.tfds_sha256 is None else None
  facts, keys = {}, ([] if hold_out else None)
  for split in source.splits:
    facts[split] = _write_split(entry, source, split, data, content,
                                keys if split == idx.TRAIN else None)
  shapes = {tuple(f['image_shape']) for f in facts.values()}
  if len(shapes) > 1:
    raise ValueError(f'{source.source}: train images are {facts[idx.TRAIN]["image_shape"]} '
                     f'but test images are {facts[idx.TEST]["image_shape"]}.')
  if hold_out:
    fraction = data.get('test_fraction', 0.2)
    if not 0.0 < fraction < 1.0:
      raise ValueError(f'data.test_fraction must be in (0, 1), got {fraction}.')
    mask = _held_out(keys, fraction)
    buffer = io.BytesIO()
    np.save(buffer, mask)
    fileio.write_atomic(entry / 'held_out.npy', buffer.getvalue())
  sha256 = source.tfds_sha256
  if sha256 is None:
    sha256 = content.digest.hexdigest()
    if data.get('max_examples') is not None:
      described = {'sha256': sha256, 'max_examples': data.get('max_examples')}
      sha256 = hashlib.sha256(json.dumps(described, sort_keys=True).encode()).hexdigest()
  meta = {'format': FORMAT_VERSION, 'source': source.source, 'sha256': sha256,
          'held_out': hold_out, 'splits': facts, 'num_classes': _num_classes(source, facts),
          'image_shape': facts[idx.TRAIN]['image_shape']}
  fileio.write_atomic(entry / 'meta.json', json.dumps(meta, indent=1).encode('utf-8'))


def _num_classes(source: ImageSource, facts: dict) -> int:
  """A TFDS ``ClassLabel``'s count, else the largest label of the source plus one."""
  if source.builder is not None:
    import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
    feature = source.builder.info.features['label']
    if isinstance(feature, tfds.features.ClassLabel) and feature.num_classes:
      return int(feature.num_classes)
  return max(f['max_label'] for f in facts.values()) + 1


@dataclasses.dataclass(frozen=True)
class PreparedImages:
  """A prepared image set: ``meta.json`` and per source split ``{'image': rowfile.RowFile
  uint8 [N, H, W, C], 'label': int32 [N]}``, plus ``held_out`` (bool [N_train]) or None."""

  path: epath.Path
  meta: dict
  splits: dict
  held_out: np.ndarray | None


def _read_entry(entry: epath.Path) -> PreparedImages:
  meta = json.loads((entry / 'meta.json').read_text())
  shape = tuple(meta['image_shape'])
  splits = {}
  for split, facts in meta['splits'].items():
    images = rowfile.RowFile(entry / f'{split}.images', width=int(np.prod(shape)),
                             dtype=np.uint8, num_rows=facts['num_examples'],
                             read_dtype=np.uint8, row_shape=shape)
    labels = np.load(io.BytesIO((entry / f'{split}.labels.npy').read_bytes()))
    splits[split] = {'image': images, 'label': labels}
  held_out = None
  if meta['held_out']:
    held_out = np.load(io.BytesIO((entry / 'held_out.npy').read_bytes()))
  return PreparedImages(entry, meta, splits, held_out)


def prepare(data: ml_collections.ConfigDict, *, cache_dir: epath.PathLike) -> PreparedImages:
  """The prepared entry of ``data``'s images, built once if missing (see module docstring).

  Safe when several processes prepare at once: each file appears whole, the entry only with
  ``meta.json``, and their results are byte-identical. Progress lines are logged while
  preparing.

  Raises:
    As ``open_source``; ValueError for images that are not uint8 [H, W(, C)] of one shape,
    labels that are not non-negative integers, an empty split, ``data.test_fraction`` not in
    (0, 1), or a ``cache_dir`` that is a file.
  """
  if fileio.path(cache_dir).is_file():  # fail before the preparation, not after
    raise ValueError(f'data.cache_dir={cache_dir!r} is a file; give a folder.')
  source = open_source(data)
  entry = fileio.path(cache_dir) / 'images' / cache_key(source, data)
  if not (entry / 'meta.json').exists():
    start = time.monotonic()
    logging.info('preparing %s in %s (once per image set and settings)', source.source, entry)
    _build(entry, source, data)
    logging.info('prepared %s in %.1f s', source.source, time.monotonic() - start)
  return _read_entry(entry)
