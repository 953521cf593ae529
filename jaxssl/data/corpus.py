"""Loading a text corpus, split into training and held-out documents.

Sources (``load_corpus``): ``data.files`` (UTF-8 text globs); ``data.name == 'pydoc'``, the
Python reference text embedded in Python (default); other names, a TFDS text dataset already
prepared on disk (never downloaded: offline, ``tfds.load`` retries for minutes). Local sources
are built once as ``local_text`` under ``<cache_dir>/tfds``; documents are cleaned and cut by
``jaxssl.data.text``, exact duplicates dropped (first kept). Held-out documents depend only on
``data.split_seed`` and the text. Shared parts with the image loader: ``jaxssl.data.sources``.
"""

import dataclasses
import os
from collections.abc import Iterator, Sequence

import ml_collections

from jaxssl.data import sources
from jaxssl.data import text
from jaxssl.data.builders import local_text

PYDOC = 'pydoc'


@dataclasses.dataclass(frozen=True)
class Corpus:
  """Documents of a corpus, split once into training and held-out documents.

  Attributes:
    train: documents for training (and for training the tokenizer).
    validation: held-out documents, disjoint from ``train``.
    sha256: hex sha256 of the raw source: the files' bytes in sorted path order (each framed
      by its length, ``local_text.content_sha256``), the embedded text, or for TFDS a JSON of
      the full name (name/config/version), splits and sizes, and the splits and cap read.
    source: ``'pydoc'``, ``'files:<abs glob>[,...]'`` or ``'tfds:<name>'``.
  """

  train: list[str]
  validation: list[str]
  sha256: str
  source: str


def load_corpus(data: ml_collections.ConfigDict) -> Corpus:
  """Loads the documents ``data`` names and holds some of them out.

  Args:
    data: the ``data`` config (fields as ``lm_data.data_config``). Defaults of missing fields:
      ``name='pydoc'`` (ignored if ``files`` set), ``files=None`` (comma-separated globs,
      ``~`` and ``**`` work, read in sorted path order), ``data_dir=None`` (TFDS default),
      ``cache_dir=None`` (``$JAXSSL_CACHE_DIR``, else ``~/.cache/jaxssl``),
      ``text_key='text'``, ``train_split='train'``, ``eval_split=None`` (with it, held out =
      that split less documents also in training; local sources always hold out a fraction),
      ``validation_fraction=0.05`` (exactly ``ceil(fraction * n)`` of n unique documents),
      ``split_seed=0``, ``max_document_chars=2000``, ``max_documents=None`` (TFDS: first
      documents of each split in stored order, after cutting, before deduplication).

  Returns:
    The corpus; its documents keep source order.

  Raises:
    FileNotFoundError: ``data.files`` matches no file (naming the pattern), or TFDS
      ``data.name`` is not prepared in ``data.data_dir`` (saying how to prepare it).
    ValueError: a file is not UTF-8 or the source has no text (naming it); ``data.name`` not in
      TFDS; a missing split or ``data.text_key``; ``validation_fraction`` not in (0, 1);
      ``max_documents`` < 1; or too few documents to hold out one and train on one.
  """
  files = data.get('files')
  if files:
    paths = sources.glob_files(files)
    return _local_corpus(paths, source=sources.files_source(files), data=data)
  if data.get('name', PYDOC) == PYDOC:
    return _local_corpus((), source=PYDOC, data=data)
  return _tfds_corpus(data)


# Shared with the image loader (`jaxssl.data.images`).
cache_dir = sources.cache_dir


def held_out_mask(documents: Sequence[str], *, fraction: float, seed: int) -> list[bool]:
  """Marks ``ceil(fraction * n)`` of n distinct documents as held out (True).

  The smallest ``sha256(seed, text)``, independent of order (``sources.held_out_mask``).
  Raises ValueError if ``fraction`` is not in (0, 1).
  """
  return sources.held_out_mask([doc.encode('utf-8') for doc in documents], fraction=fraction,
                               seed=seed, field='data.validation_fraction')


def _dedup(documents: Sequence[str]) -> list[str]:
  """Drops exact duplicates, keeping the first occurrence (order preserved)."""
  return list(dict.fromkeys(documents))


def _check_sizes(train: Sequence[str], validation: Sequence[str], source: str) -> None:
  """Raises ValueError unless both splits hold at least one document."""
  if not train or not validation:
    raise ValueError(
        f'{source}: corpus too small: {len(train)} training and {len(validation)} '
        'held-out documents (after removing duplicates); each needs at least 1. '
        'Add text, or change data.validation_fraction / data.max_document_chars.'
    )


def _split_corpus(documents: Sequence[str], *, data, sha256: str, source: str) -> Corpus:
  """Deduplicates `documents` and holds out a fraction of them."""
  documents = _dedup(documents)
  held_out = held_out_mask(
      documents,
      fraction=data.get('validation_fraction', 0.05),
      seed=data.get('split_seed', 0),
  )
  train = [d for d, h in zip(documents, held_out) if not h]
  validation = [d for d, h in zip(documents, held_out) if h]
  _check_sizes(train, validation, source)
  return Corpus(train=train, validation=validation, sha256=sha256, source=source)


# Local sources: files or the embedded text, prepared as `local_text`.


def _local_corpus(paths: Sequence[str], *, source: str, data) -> Corpus:
  """Prepares local text as a `local_text` dataset in the cache, reads and splits it."""
  try:
    config = local_text.make_config(paths, max_chars=data.get('max_document_chars', 2000))
  except ValueError as e:
    raise ValueError(f'{source}: {e}') from e
  data_dir = os.path.join(sources.cache_dir(data), 'tfds')
  builder = local_text.prepare(config, data_dir=data_dir)
  documents = local_text.read_documents(builder)
  return _split_corpus(documents, data=data, sha256=config.source_sha256, source=source)


# Named TFDS datasets, read from disk only.


def _iter_texts(builder, split: str, text_key: str) -> Iterator[str]:
  """Yields the text feature of each example of `split`, in stored order, decoded."""
  for example in sources.iter_examples(builder, split):
    yield _decode(example[text_key])


def _decode(value) -> str:
  """TFDS Text features come back as UTF-8 bytes."""
  return value.decode('utf-8') if isinstance(value, bytes) else str(value)


def _read_split(builder, split: str, *, field: str, data) -> list[str]:
  """Cleans and cuts the examples of one split into documents (at most max_documents)."""
  sources.check_split(builder, split, field)
  text_key = data.get('text_key', 'text')
  if text_key not in builder.info.features:
    raise ValueError(
        f'data.text_key={text_key!r} is not a feature of {builder.info.full_name}; it '
        f'has {sorted(builder.info.features.keys())}.'
    )
  max_chars = data.get('max_document_chars', 2000)
  max_documents = data.get('max_documents')
  if max_documents is not None and max_documents < 1:
    raise ValueError(f'data.max_documents must be >= 1 or None, got {max_documents}.')
  documents = []
  for raw in _iter_texts(builder, split, text_key):
    documents.extend(text.split_documents(text.clean_text(raw), max_chars=max_chars))
    if max_documents is not None and len(documents) >= max_documents:
      return documents[:max_documents]
  return documents


def _tfds_corpus(data) -> Corpus:
  """Reads a prepared TFDS text dataset (see `load_corpus`)."""
  name = data.get('name')
  builder = sources.tfds_builder(name, data.get('data_dir'))
  source = f'tfds:{name}'
  train_split = data.get('train_split', 'train')
  eval_split = data.get('eval_split')
  sha256 = sources.tfds_sha256(builder, read=[train_split, eval_split],
                               max_documents=data.get('max_documents'))
  documents = _read_split(builder, train_split, field='data.train_split', data=data)
  if not documents:
    raise ValueError(f'{source}: split {train_split!r} has no text.')
  if not eval_split:
    return _split_corpus(documents, data=data, sha256=sha256, source=source)
  train = _dedup(documents)
  seen = set(train)
  held_out = _read_split(builder, eval_split, field='data.eval_split', data=data)
  validation = [d for d in _dedup(held_out) if d not in seen]
  _check_sizes(train, validation, source)
  return Corpus(train=train, validation=validation, sha256=sha256, source=source)
