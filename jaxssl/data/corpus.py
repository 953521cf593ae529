"""Loading a text corpus from any source, split into training and held-out documents.

Three sources, chosen by the ``data`` config (see `load_corpus`):

* ``data.files``: the user's UTF-8 text files (globs);
* ``data.name == 'pydoc'``: the Python reference text embedded in Python (the default);
* any other ``data.name``: a TFDS text dataset already prepared on disk (never
  downloaded here: with no network ``tfds.load`` retries for minutes).

Local sources are prepared once as the ``local_text`` TFDS dataset under
``<cache_dir>/tfds`` (see `jaxssl.data.builders.local_text`). Every document is cleaned
and cut by `jaxssl.data.text`; exact duplicates are dropped (first kept). Which
documents are held out depends only on ``data.split_seed`` and the documents' text,
never on a training seed, so every run of an experiment evaluates on the same text.
What the image loader shares with this one (cache dir, globs, named TFDS datasets, the
held-out split) lives in `jaxssl.data.sources`.
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
    validation: held-out documents, disjoint from `train`; training never sees them.
    sha256: hex sha256 of the raw source: the files' bytes in sorted path order
      (each framed by its length, see `local_text.content_sha256`), the embedded text,
      or for TFDS a JSON of the dataset's full name (name/config/version), its splits
      and their sizes, and the splits and document cap read.
    source: where the text came from: ``'pydoc'``, ``'files:<abs glob>[,...]'`` or
      ``'tfds:<name>'``.
  """

  train: list[str]
  validation: list[str]
  sha256: str
  source: str


def load_corpus(data: ml_collections.ConfigDict) -> Corpus:
  """Loads the documents `data` names and holds some of them out.

  Args:
    data: the ``data`` config. Fields read (missing ones take these defaults):
      ``name='pydoc'``: ``'pydoc'`` or a TFDS dataset name such as ``'lm1b'``,
        ``'tiny_shakespeare'``, ``'wikipedia/20230601.en'``; ignored if ``files`` set.
      ``files=None``: glob(s) of UTF-8 text files, comma-separated (``~`` and ``**``
        work). Files are read in sorted path order.
      ``data_dir=None``: TFDS data_dir for named datasets (None: the TFDS default).
      ``cache_dir=None``: where local sources are prepared, under ``<cache_dir>/tfds``;
        None means ``$JAXSSL_CACHE_DIR`` if set, else ``~/.cache/jaxssl``.
      ``text_key='text'``: the TFDS feature holding the text.
      ``train_split='train'``, ``eval_split=None``: TFDS splits. With ``eval_split``
        the held-out documents are that split's (less any that also occur in
        training); otherwise, and always for local sources, a fraction of the
        documents is held out.
      ``validation_fraction=0.05``: held-out fraction, in (0, 1); exactly
        ``ceil(validation_fraction * n)`` of the n unique documents are held out.
      ``split_seed=0``: which documents are held out is a function of this seed and
        each document's text only.
      ``max_document_chars=2000``: the longest document, in characters.
      ``max_documents=None``: for TFDS datasets, read examples of each split in
        stored order and keep only the first ``max_documents`` documents (after
        cleaning and cutting, before removing duplicates); None reads every example.

  Returns:
    The corpus; its documents keep source order.

  Raises:
    FileNotFoundError: ``data.files`` matches no file (naming the pattern), or the
      TFDS dataset ``data.name`` is not prepared in ``data.data_dir`` (saying how to
      prepare it).
    ValueError: a file is not UTF-8 (naming it); the source has no text (naming it);
      ``data.name`` is not a TFDS dataset; a split or ``data.text_key`` does not
      exist; ``data.validation_fraction`` is not in (0, 1); ``data.max_documents``
      is below 1; or the corpus is too
      small to hold out at least one document and train on at least one.
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
  """Marks ``ceil(fraction * n)`` of the documents as held out.

  The held-out documents are those with the smallest ``sha256(seed, text)``: a pure
  function of the seed and the texts, independent of their order (see
  `sources.held_out_mask`).

  Args:
    documents: n distinct documents.
    fraction: the held-out fraction, in (0, 1).
    seed: the split seed.

  Returns:
    n booleans, True where held out.

  Raises:
    ValueError: if `fraction` is not in (0, 1).
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
