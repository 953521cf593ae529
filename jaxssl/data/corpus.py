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
"""

import dataclasses
import glob
import hashlib
import json
import math
import os
from collections.abc import Iterator, Sequence

import ml_collections
import tensorflow_datasets as tfds

from jaxssl.data import text
from jaxssl.data.builders import local_text

PYDOC = 'pydoc'
_READ_CHUNK = 1024  # examples per ArrayRecord read


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
    paths = _glob_files(files)
    patterns = ','.join(os.path.abspath(os.path.expanduser(p)) for p in _patterns(files))
    return _local_corpus(paths, source=f'files:{patterns}', data=data)
  if data.get('name', PYDOC) == PYDOC:
    return _local_corpus((), source=PYDOC, data=data)
  return _tfds_corpus(data)


def cache_dir(data: ml_collections.ConfigDict) -> str:
  """``data.cache_dir``, else ``$JAXSSL_CACHE_DIR``, else ``~/.cache/jaxssl``."""
  path = data.get('cache_dir') or os.environ.get('JAXSSL_CACHE_DIR') or '~/.cache/jaxssl'
  return os.path.abspath(os.path.expanduser(path))


def held_out_mask(documents: Sequence[str], *, fraction: float, seed: int) -> list[bool]:
  """Marks ``ceil(fraction * n)`` of the documents as held out.

  The held-out documents are those with the smallest ``sha256(seed, text)``: a pure
  function of the seed and the texts, independent of their order.

  Args:
    documents: n distinct documents.
    fraction: the held-out fraction, in (0, 1).
    seed: the split seed.

  Returns:
    n booleans, True where held out.

  Raises:
    ValueError: if `fraction` is not in (0, 1).
  """
  if not 0.0 < fraction < 1.0:
    raise ValueError(f'data.validation_fraction must be in (0, 1), got {fraction}.')
  keys = [hashlib.sha256(f'{seed}\0{doc}'.encode('utf-8')).digest() for doc in documents]
  num_held_out = math.ceil(fraction * len(documents))
  held_out = set(sorted(range(len(documents)), key=keys.__getitem__)[:num_held_out])
  return [i in held_out for i in range(len(documents))]


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


def _patterns(files: str) -> list[str]:
  """The comma-separated globs of ``data.files``."""
  return [p.strip() for p in files.split(',') if p.strip()]


def _glob_files(files: str) -> list[str]:
  """Expands the globs of ``data.files`` into sorted, unique absolute file paths.

  Raises:
    FileNotFoundError: naming ``data.files`` and the pattern, if a glob matches no file.
    ValueError: if ``data.files`` holds no pattern.
  """
  patterns = _patterns(files)
  if not patterns:
    raise ValueError(f'data.files={files!r} holds no glob pattern.')
  paths = set()
  for pattern in patterns:
    matches = glob.glob(os.path.expanduser(pattern), recursive=True)
    matches = [os.path.abspath(m) for m in matches if os.path.isfile(m)]
    if not matches:
      raise FileNotFoundError(f'data.files: no file matches {pattern!r}.')
    paths.update(matches)
  return sorted(paths)


def _local_corpus(paths: Sequence[str], *, source: str, data) -> Corpus:
  """Prepares local text as a `local_text` dataset in the cache, reads and splits it."""
  try:
    config = local_text.make_config(paths, max_chars=data.get('max_document_chars', 2000))
  except ValueError as e:
    raise ValueError(f'{source}: {e}') from e
  data_dir = os.path.join(cache_dir(data), 'tfds')
  builder = local_text.prepare(config, data_dir=data_dir)
  documents = local_text.read_documents(builder)
  return _split_corpus(documents, data=data, sha256=config.source_sha256, source=source)


# Named TFDS datasets, read from disk only.


def _tfds_builder(name: str, data_dir: str | None) -> tfds.core.DatasetBuilder:
  """The builder of a prepared TFDS dataset; never downloads.

  Raises:
    ValueError: if `name` is not a TFDS dataset (or config) known here.
    FileNotFoundError: if it is not prepared in `data_dir`.
  """
  try:
    builder = tfds.builder(name, data_dir=data_dir)
  except ValueError as e:  # Includes tfds' DatasetNotFoundError.
    first_line = str(e).strip().split('\n')[0]
    raise ValueError(f'data.name={name!r} is not a known TFDS dataset: {first_line}') from e
  if not builder.is_prepared():
    where = data_dir or builder.data_dir_root
    raise FileNotFoundError(
        f'data.name={name!r}: TFDS dataset not prepared in data_dir {where} '
        f'(looked for {builder.data_dir}). Nothing is downloaded here: on a machine with '
        f'network run `tfds build {name} --data_dir={where}` (or `tfds.builder(...)'
        '.download_and_prepare()`), copy the data_dir here, and set data.data_dir.'
    )
  return builder


def _check_split(builder, split: str, field: str) -> None:
  """Raises ValueError naming `field` if `split` is not a split of `builder`."""
  try:
    builder.info.splits[split]
  except (KeyError, ValueError) as e:
    raise ValueError(
        f'{field}={split!r} is not a split of {builder.info.full_name}; it has '
        f'{sorted(builder.info.splits)}.'
    ) from e


def _uses_array_record(builder) -> bool:
  """True if the prepared files include ArrayRecord (read without TensorFlow)."""
  formats = [builder.info.file_format, *builder.info.alternative_file_formats]
  return tfds.core.FileFormat.ARRAY_RECORD in formats


def _iter_texts(builder, split: str, text_key: str) -> Iterator[str]:
  """Yields the text feature of each example of `split`, in stored order, decoded."""
  if _uses_array_record(builder):
    source = builder.as_data_source(split=split)
    for start in range(0, len(source), _READ_CHUNK):
      keys = range(start, min(start + _READ_CHUNK, len(source)))
      for example in source.__getitems__(keys):
        yield _decode(example[text_key])
  else:  # tfrecord: read through tf.data (needs TensorFlow).
    dataset = builder.as_dataset(split=split, shuffle_files=False)
    for example in tfds.as_numpy(dataset):
      yield _decode(example[text_key])


def _decode(value) -> str:
  """TFDS Text features come back as UTF-8 bytes."""
  return value.decode('utf-8') if isinstance(value, bytes) else str(value)


def _read_split(builder, split: str, *, field: str, data) -> list[str]:
  """Cleans and cuts the examples of one split into documents (at most max_documents)."""
  _check_split(builder, split, field)
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


def _tfds_sha256(builder, *, train_split: str, eval_split: str | None, data) -> str:
  """Hex sha256 naming what was read: dataset, version, splits and the document cap."""
  described = {
      'dataset': builder.info.full_name,
      'splits': {k: v.num_examples for k, v in sorted(builder.info.splits.items())},
      'read': [train_split, eval_split],
      'max_documents': data.get('max_documents'),
  }
  return hashlib.sha256(json.dumps(described, sort_keys=True).encode('utf-8')).hexdigest()


def _tfds_corpus(data) -> Corpus:
  """Reads a prepared TFDS text dataset (see `load_corpus`)."""
  name = data.get('name')
  builder = _tfds_builder(name, data.get('data_dir'))
  source = f'tfds:{name}'
  train_split = data.get('train_split', 'train')
  eval_split = data.get('eval_split')
  sha256 = _tfds_sha256(builder, train_split=train_split, eval_split=eval_split, data=data)
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
