"""A labelled text task split into train / validation / test, with a label-fraction subset.

Sources (``data``): ``files`` (CSV, TSV or JSON lines, ``labelled_text``) with optional
``test_files``; ``name`` 'stdlib_docs' (the offline default, ``stdlib_docs``); any other
``name``, a prepared TFDS text-classification dataset read in place (``text_column`` and
``label_column`` name its features; a ClassLabel's names become the classes).

Splits, by ``data.split_seed`` and the texts only (``label_splits``): training texts repeated
in the training source are kept once (first occurrence); test is the test source (less texts
also in training) or, without one, the ``test_fraction`` held out of training; validation is
``validation_fraction`` held out of the rest, the same for every label fraction (early
stopping sees the same validation examples in every run of a curve); the labelled subset is
the stratified, nested ``label_fraction`` of what remains. Texts are held in memory: about
the size of the files (a GLUE or IMDB-sized task takes tens of MB).
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Iterable, Sequence

import ml_collections
import numpy as np

from jaxssl.data import label_splits, labelled_text, sources, stdlib_docs


def data_config() -> ml_collections.ConfigDict:
  """The ``data`` block of a text-classification run (offline default: ``stdlib_docs``)."""
  c = ml_collections.ConfigDict()
  c.name = stdlib_docs.NAME  # stdlib_docs | a prepared TFDS dataset (ignored with files).
  c.data_dir = ml_collections.FieldReference(None, field_type=str)  # TFDS data_dir.
  c.train_split = 'train'  # TFDS splits.
  c.test_split = 'test'  # e.g. 'validation' for GLUE, whose test labels are hidden.
  c.files = ''  # Labelled training files (globs, comma-separated; local or gs://).
  c.test_files = ''  # Labelled test files; empty: hold out test_fraction of training.
  c.text_column = 'text'
  c.label_column = 'label'
  c.test_fraction = 0.2  # Of the training source, when it has no test split.
  c.validation_fraction = 0.1  # Of the training source after test.
  c.label_fraction = 1.0  # Stratified share of the remaining training labels used.
  c.split_seed = 0  # Fixes test, validation and the label subsets.
  return c


@dataclasses.dataclass(frozen=True)
class Split:
  """``texts`` (N strings) and ``labels`` (int32 [N], indices into ``TextTask.classes``)."""
  texts: tuple[str, ...]
  labels: np.ndarray

  def __len__(self) -> int:
    return len(self.texts)


@dataclasses.dataclass(frozen=True)
class TextTask:
  """A split labelled task.

  Attributes:
    train: the labelled subset (``data.label_fraction`` of the training pool).
    unlabelled: the texts of the whole training pool (labelled or not; no validation or test
      text), for task-adaptive pretraining.
    validation, test: as in the module doc.
    classes: class names, sorted (numerically when every label is an integer).
    info: flat JSON-able facts: ``data/source``, ``data/sha256`` (what was read, in order,
      and the split settings), sizes, ``data/num_classes``.
  """
  train: Split
  unlabelled: tuple[str, ...]
  validation: Split
  test: Split
  classes: tuple[str, ...]
  info: dict


def _class_order(labels: Iterable[str]) -> tuple[str, ...]:
  labels = set(labels)
  try:
    return tuple(sorted(labels, key=int))
  except ValueError:
    return tuple(sorted(labels))


def _tfds_examples(data, split: str, field: str) -> list[labelled_text.Example]:
  builder = sources.tfds_builder(data.name, data.data_dir)
  sources.check_split(builder, split, field)
  features = builder.info.features
  for column in (data.text_column, data.label_column):
    if column not in features:
      raise ValueError(f'data.text_column / data.label_column: {data.name!r} has no feature '
                       f'{column!r} (features: {sorted(features)}).')
  names = getattr(features[data.label_column], 'names', None)
  out = []
  for i, record in enumerate(sources.iter_examples(builder, split)):
    text, label = record[data.text_column], record[data.label_column]
    text = text.decode('utf-8') if isinstance(text, bytes) else text
    label = label.decode('utf-8') if isinstance(label, bytes) else label
    if isinstance(label, np.integer):
      label = int(label)
    if isinstance(label, int) and label < 0:
      raise ValueError(f'{data.name}[{split}] example {i}: label {label} (hidden labels, as '
                       f'in GLUE test splits); set data.{field} to a labelled split.')
    if names is not None and isinstance(label, int):
      label = names[label]
    out.append(labelled_text.make_example(f'{data.name}[{split}]', i, text, label,
                                          data.text_column, data.label_column))
  return out


def _read(data) -> tuple[str, list, list | None]:
  """(source, training examples, test examples or None)."""
  if data.files:
    paths = sources.glob_files(data.files)
    train = list(labelled_text.read_files(paths, text_column=data.text_column,
                                          label_column=data.label_column))
    test = None
    if data.test_files:
      test = list(labelled_text.read_files(sources.glob_files(data.test_files),
                                           text_column=data.text_column,
                                           label_column=data.label_column))
    return sources.files_source(data.files), train, test
  if data.name == stdlib_docs.NAME:
    return stdlib_docs.NAME, list(stdlib_docs.examples()), None
  return (f'tfds:{data.name}', _tfds_examples(data, data.train_split, 'train_split'),
          _tfds_examples(data, data.test_split, 'test_split'))


def _sha256(train: Sequence, test: Sequence | None, data) -> str:
  digest = hashlib.sha256()
  for part in (train, test or ()):
    for e in part:
      digest.update(hashlib.sha256(f'{e.label}\0{e.text}'.encode('utf-8')).digest())
    digest.update(b'\1')
  digest.update(repr((data.split_seed, data.test_fraction, data.validation_fraction,
                      test is None)).encode('utf-8'))
  return digest.hexdigest()


def _split(examples: Sequence, index: np.ndarray, class_id: dict) -> Split:
  return Split(tuple(examples[i].text for i in index),
               np.asarray([class_id[examples[i].label] for i in index], np.int32))


def load(data: ml_collections.ConfigDict) -> TextTask:
  """Reads the task and splits it (module doc).

  Raises:
    labelled_text.LabelledFileError: a malformed file (naming it and the line), or a test
      label never seen in training (naming the test file and line).
    ValueError: a bad fraction; fewer than 2 classes; a split left empty.
  """
  for field, upper in (('test_fraction', 1.0), ('validation_fraction', 1.0)):
    if not 0.0 < data[field] < upper:
      raise ValueError(f'data.{field} must be in (0, 1), got {data[field]}.')
  if not 0.0 < data.label_fraction <= 1.0:
    raise ValueError(f'data.label_fraction must be in (0, 1], got {data.label_fraction}.')
  source, read_train, read_test = _read(data)
  sha256 = _sha256(read_train, read_test, data)
  train = [read_train[i] for i in label_splits.first_occurrences([e.text for e in read_train])]
  duplicates = len(read_train) - len(train)
  if read_test is None:
    is_test = label_splits.held_out([e.text for e in train], data.test_fraction,
                                    data.split_seed, 'test')
    test = [e for e, t in zip(train, is_test) if t]
    train = [e for e, t in zip(train, is_test) if not t]
  else:
    seen = {e.text for e in train}
    test = [e for e in read_test if e.text not in seen]
  classes = _class_order(e.label for e in train)
  if len(classes) < 2:
    raise ValueError(f'{source}: {len(classes)} class(es) in training ({list(classes)}); a '
                     'classification task needs at least 2.')
  class_id = {c: i for i, c in enumerate(classes)}
  for e in test:
    if e.label not in class_id:
      raise labelled_text.LabelledFileError(
          f'{e.file}, line {e.line}: test label {e.label!r} never occurs in training '
          f'(classes: {list(classes)}).')
  is_validation = label_splits.held_out([e.text for e in train], data.validation_fraction,
                                        data.split_seed, 'validation')
  validation = [e for e, v in zip(train, is_validation) if v]
  pool = [e for e, v in zip(train, is_validation) if not v]
  pool_labels = np.asarray([class_id[e.label] for e in pool], np.int32)
  labelled = label_splits.label_subset([e.text for e in pool], pool_labels,
                                       data.label_fraction, data.split_seed)
  if not len(pool) or not validation or not test:
    raise ValueError(f'{source}: too few examples: {len(pool)} training, {len(validation)} '
                     f'validation and {len(test)} test after splitting; each needs at least 1.')
  task = TextTask(
      train=_split(pool, labelled, class_id), unlabelled=tuple(e.text for e in pool),
      validation=_split(validation, np.arange(len(validation)), class_id),
      test=_split(test, np.arange(len(test)), class_id),
      classes=classes, info={})
  info = {'data/source': source, 'data/sha256': sha256, 'data/num_classes': len(classes),
          'data/train_pool_examples': len(pool), 'data/train_examples': len(task.train),
          'data/validation_examples': len(task.validation),
          'data/test_examples': len(task.test),
          'data/duplicates_dropped': duplicates}
  return dataclasses.replace(task, info=info)
