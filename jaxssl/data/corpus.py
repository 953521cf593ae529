"""A text corpus as a stream of documents, split once into training and held-out documents.

Sources (``open_source``): ``data.files`` (UTF-8 text globs, local or ``gs://``);
``data.name == 'pydoc'``, the Python reference text embedded in Python (default); other names,
a TFDS text dataset already prepared on disk, read in place (never downloaded: offline,
``tfds.load`` retries for minutes). Documents are cleaned and cut by ``jaxssl.data.text`` as
they stream; nothing holds the corpus. ``scan`` reads it once and decides which documents are
kept (exact duplicates dropped, first kept) and held out (by ``data.split_seed`` and content
only); ``documents`` streams it again with those decisions.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import time
from collections.abc import Callable, Iterator

import ml_collections
import numpy as np
from etils import epath

from jaxssl.data import sources
from jaxssl.data import text

PYDOC = 'pydoc'
TRAIN, EVAL, DROPPED = 0, 1, 2  # a document's fate in `Plan.split`
_CHUNK_BYTES = 1 << 20


class Progress:
  """Logs ``what: done/total unit (rate)`` at most every ``every_s`` seconds, and at the end."""

  def __init__(self, what: str, total: float, unit: str, scale: float = 1.0,
               every_s: float = 10.0):
    self.what, self.total, self.unit, self.scale = what, total, unit, scale
    self.every_s, self.done = every_s, 0.0
    self.start = self.last = time.monotonic()

  def add(self, amount: float) -> None:
    self.done += amount
    if time.monotonic() - self.last >= self.every_s:
      self.log()

  def log(self) -> None:
    self.last = time.monotonic()
    rate = self.done / max(self.last - self.start, 1e-9) / self.scale
    logging.info('%s: %.1f/%.1f %s (%.1f %s/s)', self.what, self.done / self.scale,
                 self.total / self.scale, self.unit, rate, self.unit)


@dataclasses.dataclass(frozen=True)
class TextSource:
  """Where the documents come from, identified without reading its content.

  Attributes:
    source: ``'pydoc'``, ``'files:<glob>[,...]'`` or ``'tfds:<name>'``.
    fingerprint: JSON-able identity read from metadata only: each file's path, size and
      modification time; the embedded text's sha256; a TFDS dataset's name, version, splits
      and sizes. A file edited in place keeps neither its size nor its mtime in practice.
    total: bytes (files, pydoc) or examples (TFDS) to read, for progress lines.
    unit: ``'MB'`` or ``'examples'``.
    read: ``digest -> iterator of (is_eval_split, raw document text)``; feeds the raw bytes to
      ``digest`` (files, pydoc), each framed by its 8-byte length.
  """

  source: str
  fingerprint: dict
  total: int
  unit: str
  read: Callable[..., Iterator[tuple[bool, str]]]
  described_sha256: str | None = None  # TFDS: the sha256 names the dataset, not its bytes


@dataclasses.dataclass(frozen=True)
class Plan:
  """What ``scan`` decided, per document of the stream (source order, before deduplication).

  Attributes:
    split: uint8 [n]: ``TRAIN``, ``EVAL`` or ``DROPPED`` (a duplicate, or past a cap).
    held_out_key: 'S32' [n]: sha256(f'{split_seed}\\0' + document); the held-out documents
      are the smallest among the kept ones.
    num_chars: int64 [n] characters of each document.
    sha256: hex sha256 of the raw source (files' bytes in sorted path order, each framed by
      its length; the embedded text) or, for TFDS, of a JSON naming what was read.
  """

  split: np.ndarray
  held_out_key: np.ndarray
  num_chars: np.ndarray
  sha256: str

  def count(self, split: int) -> int:
    return int(np.count_nonzero(self.split == split))


def open_source(data: ml_collections.ConfigDict) -> TextSource:
  """The source ``data`` names; reads metadata only (globs, sizes, a TFDS builder).

  Args:
    data: the ``data`` config (``lm_data.data_config``): ``files`` (comma-separated globs,
      ``~`` and ``**`` work, read in sorted path order) else ``name`` (``'pydoc'`` or a
      prepared TFDS dataset in ``data_dir``), ``text_key``, ``train_split``, ``eval_split``,
      ``max_document_chars``, ``max_documents`` (TFDS: first documents of each split in stored
      order, after cutting, before deduplication).

  Raises:
    FileNotFoundError: ``data.files`` matches no file (naming the pattern), or TFDS
      ``data.name`` is not prepared in ``data.data_dir`` (saying how to prepare it).
    ValueError: ``data.name`` not in TFDS; a missing split or ``data.text_key``;
      ``max_documents`` < 1; ``max_document_chars`` < 1.
  """
  if data.get('max_document_chars', 2000) < 1:
    raise ValueError(f'data.max_document_chars must be >= 1, got {data.max_document_chars}.')
  files = data.get('files')
  if files:
    return _files_source(files, data)
  if data.get('name', PYDOC) == PYDOC:
    return _pydoc_source(data)
  return _tfds_source(data)


def _documents(chunks, label: str, data) -> Iterator[str]:
  lines = text.decode_lines(chunks, label)
  return text.iter_documents(lines, max_chars=data.get('max_document_chars', 2000))


def _file_chunks(path: epath.Path, size: int, digest, progress) -> Iterator[bytes]:
  digest.update(size.to_bytes(8, 'big'))
  with path.open('rb') as f:
    while chunk := f.read(_CHUNK_BYTES):
      digest.update(chunk)
      progress.add(len(chunk))
      yield chunk


def _files_source(files: str, data) -> TextSource:
  paths = sources.glob_files(files)
  stats = [epath.Path(p).stat() for p in paths]
  sizes = [int(s.length) for s in stats]

  def read(digest, progress):
    for path, size in zip(paths, sizes):
      for document in _documents(_file_chunks(epath.Path(path), size, digest, progress),
                                 path, data):
        yield False, document

  fingerprint = {'files': [[p, n, float(s.mtime)] for p, n, s in zip(paths, sizes, stats)]}
  return TextSource(sources.files_source(files), fingerprint, sum(sizes), 'MB', read)


def _pydoc_source(data) -> TextSource:
  raw = text.pydoc_text().encode('utf-8')

  def read(digest, progress):
    digest.update(len(raw).to_bytes(8, 'big'))
    digest.update(raw)
    progress.add(len(raw))
    for document in _documents([raw], PYDOC, data):
      yield False, document

  return TextSource(PYDOC, {'pydoc_sha256': hashlib.sha256(raw).hexdigest()}, len(raw), 'MB',
                    read)


def _tfds_source(data) -> TextSource:
  name = data.get('name')
  builder = sources.tfds_builder(name, data.get('data_dir'))
  text_key = data.get('text_key', 'text')
  train_split, eval_split = data.get('train_split', 'train'), data.get('eval_split')
  sources.check_split(builder, train_split, 'data.train_split')
  if eval_split:
    sources.check_split(builder, eval_split, 'data.eval_split')
  if text_key not in builder.info.features:
    raise ValueError(
        f'data.text_key={text_key!r} is not a feature of {builder.info.full_name}; it '
        f'has {sorted(builder.info.features.keys())}.'
    )
  max_documents = data.get('max_documents')
  if max_documents is not None and max_documents < 1:
    raise ValueError(f'data.max_documents must be >= 1, got {max_documents}.')
  splits = [s for s in (train_split, eval_split) if s]
  total = sum(builder.info.splits[s].num_examples for s in splits)

  def read_split(split, is_eval, progress):
    count = 0
    for example in sources.iter_examples(builder, split):
      progress.add(1)
      raw = example[text_key]
      raw = raw.decode('utf-8') if isinstance(raw, bytes) else str(raw)
      for document in _documents([raw.encode('utf-8')], f'{name}/{split}', data):
        yield is_eval, document
        count += 1
        if max_documents is not None and count >= max_documents:
          return

  def read(digest, progress):
    del digest  # The description below names a TFDS dataset.
    yield from read_split(train_split, False, progress)
    if eval_split:
      yield from read_split(eval_split, True, progress)

  sha256 = sources.tfds_sha256(builder, read=[train_split, eval_split],
                               max_documents=max_documents)
  return TextSource(f'tfds:{name}', {'tfds_sha256': sha256}, total, 'examples', read,
                    described_sha256=sha256)


def _progress(source: TextSource, what: str) -> Progress:
  scale = 1e6 if source.unit == 'MB' else 1.0
  return Progress(f'{source.source}: {what}', source.total, source.unit, scale)


def scan(source: TextSource, data: ml_collections.ConfigDict) -> Plan:
  """Reads the source once: hashes it, drops duplicates and picks the held-out documents.

  Held out: the ``ceil(data.validation_fraction * n)`` of the n kept training-split documents
  with the smallest ``held_out_key`` (independent of their order), unless ``data.eval_split``
  names a TFDS split: then its documents, less those also in training, are held out. Memory:
  about 70 bytes per document.

  Raises:
    ValueError: ``validation_fraction`` not in (0, 1); the source has no text, or too few
      documents to hold out one and train on one (naming the source).
  """
  fraction = data.get('validation_fraction', 0.05)
  if not 0.0 < fraction < 1.0:
    raise ValueError(f'data.validation_fraction must be in (0, 1), got {fraction}.')
  prefix = f'{data.get("split_seed", 0)}\0'.encode('utf-8')
  digest, progress = hashlib.sha256(), _progress(source, 'scanning')
  content, keys, is_eval, chars = bytearray(), bytearray(), bytearray(), []
  for from_eval, document in source.read(digest, progress):
    raw = document.encode('utf-8')
    content += hashlib.sha256(raw).digest()
    keys += hashlib.sha256(prefix + raw).digest()
    is_eval.append(from_eval)
    chars.append(len(document))
  progress.log()
  n = len(chars)
  if not n:
    raise ValueError(f'{source.source}: no text (empty, or only whitespace and markup rules).')
  content = np.frombuffer(bytes(content), 'S32')
  keys = np.frombuffer(bytes(keys), 'S32')
  from_eval = np.frombuffer(bytes(is_eval), np.uint8).astype(bool)
  split = np.full(n, DROPPED, np.uint8)
  # First occurrence of each text within the training split, then within the eval split.
  for part, fate in ((~from_eval, TRAIN), (from_eval, EVAL)):
    index = np.flatnonzero(part)
    _, first = np.unique(content[index], return_index=True)
    split[index[first]] = fate
  if from_eval.any():
    in_train = np.isin(content, content[split == TRAIN])
    split[(split == EVAL) & in_train] = DROPPED
  else:
    kept = np.flatnonzero(split == TRAIN)
    held_out = kept[sources.smallest_fraction(keys[kept], fraction)]
    split[held_out] = EVAL
  plan = Plan(split, keys, np.asarray(chars, np.int64),
              source.described_sha256 or digest.hexdigest())
  if not plan.count(TRAIN) or not plan.count(EVAL):
    raise ValueError(
        f'{source.source}: corpus too small: {plan.count(TRAIN)} training and '
        f'{plan.count(EVAL)} held-out documents (after removing duplicates); each needs at '
        'least 1. Add text, or change data.validation_fraction / data.max_document_chars.'
    )
  return plan


def documents(source: TextSource, plan: Plan, what: str,
              select: np.ndarray | None = None) -> Iterator[tuple[int, str]]:
  """Streams ``(split, document)`` for the documents ``select`` marks (default: kept ones).

  Raises:
    RuntimeError: the source changed since ``scan`` (its hash or document count differ).
  """
  select = plan.split != DROPPED if select is None else select
  digest, progress = hashlib.sha256(), _progress(source, what)
  count = 0
  for index, (_, document) in enumerate(source.read(digest, progress)):
    count += 1
    if index < select.size and select[index]:
      yield int(plan.split[index]), document
  progress.log()
  found = source.described_sha256 or digest.hexdigest()
  if found != plan.sha256 or count != plan.split.size:
    raise RuntimeError(f'{source.source} changed while it was being prepared (sha256 {found}, '
                       f'was {plan.sha256}); run again.')
