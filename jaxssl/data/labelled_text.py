"""Labelled text files: CSV, TSV or JSON lines, one example (a text and its label) per record.

The format follows the file's extension (``.csv``, ``.tsv``, ``.jsonl`` / ``.json`` /
``.ndjson``, before an optional ``.gz``; gzip is detected from the content, as for IDX files). CSV and TSV files start with a header
row naming the columns (Python's ``csv`` module: quoted fields may span lines); JSON lines
hold one object per line. Files are read as strict UTF-8 a line at a time from a local path
or a bucket (``etils.epath``), so every error names the file and the line. Labels are kept as
strings (JSON numbers as written: ``1`` and ``"1"`` are one label).
"""

from __future__ import annotations

import codecs
import csv
import dataclasses
import gzip
import json
import os
import zlib
from collections.abc import Iterator, Sequence

from etils import epath

from jaxssl import fileio

_FORMATS = {'.csv': 'csv', '.tsv': 'tsv', '.jsonl': 'jsonl', '.json': 'jsonl',
            '.ndjson': 'jsonl'}
# Python's csv refuses fields over 128 KiB by default; a review or an article can be longer.
_MAX_FIELD_CHARS = 1 << 24


class LabelledFileError(ValueError):
  """A labelled file that cannot be used; the message names the file and, where one is at
  fault, the line."""


@dataclasses.dataclass(frozen=True)
class Example:
  """One labelled record: ``text`` (str, stripped of surrounding whitespace), ``label``
  (str) and where it was read, ``file`` and 1-based ``line`` (where the record starts)."""
  text: str
  label: str
  file: str
  line: int


def file_format(path: str) -> str:
  """'csv', 'tsv' or 'jsonl' from the name of ``path`` (a ``.gz`` suffix ignored).

  Raises:
    LabelledFileError: the extension is none of those, naming the file.
  """
  name = os.fspath(path).lower()
  name = name[:-3] if name.endswith('.gz') else name
  ext = epath.Path(name).suffix  # pure: the name of a local file or a gs:// object alike
  if ext not in _FORMATS:
    raise LabelledFileError(f'{path}: unknown labelled-file format {ext!r}; name it '
                            '.csv, .tsv or .jsonl (JSON lines), optionally .gz.')
  return _FORMATS[ext]


def _decoded_lines(path: str) -> Iterator[str]:
  """The file's lines (ends kept), strict UTF-8, a byte-order mark dropped."""
  decoder = codecs.getincrementaldecoder('utf-8-sig')()
  number = 0
  try:
    with fileio.open_read(path) as stream:
      for number, line in enumerate(stream, start=1):
        try:
          yield decoder.decode(line)
        except UnicodeDecodeError as e:
          raise LabelledFileError(f'{path}, line {number}: not valid UTF-8 (byte {e.start} of '
                                  f'the line: {e.reason}); convert the file, e.g. with '
                                  'iconv -t UTF-8.') from e
  except (EOFError, gzip.BadGzipFile, zlib.error) as e:
    raise LabelledFileError(f'{path}, after line {number}: damaged or truncated gzip file '
                            f'({e}).') from e


def make_example(path: str, line: int, text, label, text_column: str,
                 label_column: str) -> Example:
  """An ``Example`` from one record's raw text and label.

  Raises:
    LabelledFileError: naming ``path`` and ``line``: the text is not a string, the label not
      a string or integer, or either is empty after stripping whitespace.
  """
  where = f'{path}, line {line}'
  if not isinstance(text, str):
    raise LabelledFileError(f'{where}: column {text_column!r} holds {type(text).__name__} '
                            f'{text!r}, not text.')
  if isinstance(label, bool) or not isinstance(label, (str, int)):
    raise LabelledFileError(f'{where}: column {label_column!r} holds {label!r}; a label is a '
                            'string or an integer.')
  text, label = text.strip(), str(label).strip()
  if not text:
    raise LabelledFileError(f'{where}: empty text in column {text_column!r}.')
  if not label:
    raise LabelledFileError(f'{where}: empty label in column {label_column!r}.')
  return Example(text, label, path, line)


def _read_table(path: str, delimiter: str, text_column: str,
                label_column: str) -> Iterator[Example]:
  csv.field_size_limit(max(csv.field_size_limit(), _MAX_FIELD_CHARS))
  reader = csv.reader(_decoded_lines(path), delimiter=delimiter)
  try:
    header = next(reader)
  except StopIteration:
    raise LabelledFileError(f'{path}: empty file (a header row naming the columns '
                            'comes first).') from None
  header = [h.strip() for h in header]
  for column in (text_column, label_column):
    if column not in header:
      raise LabelledFileError(f'{path}, line 1: no column {column!r} in the header (columns: '
                              f'{header}); set data.text_column / data.label_column.')
  t, y = header.index(text_column), header.index(label_column)
  start = reader.line_num + 1
  try:
    for row in reader:
      if row:  # a blank line between records
        if len(row) != len(header):
          raise LabelledFileError(f'{path}, line {start}: {len(row)} fields where the header '
                                  f'has {len(header)}.')
        yield make_example(path, start, row[t], row[y], text_column, label_column)
      start = reader.line_num + 1
  except csv.Error as e:
    raise LabelledFileError(f'{path}, line {reader.line_num}: {e}') from e


def _read_json_lines(path: str, text_column: str, label_column: str) -> Iterator[Example]:
  for number, line in enumerate(_decoded_lines(path), start=1):
    if not line.strip():
      continue
    try:
      record = json.loads(line)
    except json.JSONDecodeError as e:
      raise LabelledFileError(f'{path}, line {number}: not JSON ({e.msg}).') from e
    if not isinstance(record, dict):
      raise LabelledFileError(f'{path}, line {number}: a JSON {type(record).__name__}, not '
                              'an object.')
    for column in (text_column, label_column):
      if column not in record:
        raise LabelledFileError(f'{path}, line {number}: no field {column!r} (fields: '
                                f'{sorted(record)}); set data.text_column / '
                                'data.label_column.')
    yield make_example(path, number, record[text_column], record[label_column], text_column,
                   label_column)


def read_file(path: str, *, text_column: str = 'text',
              label_column: str = 'label') -> Iterator[Example]:
  """Streams the examples of one labelled file, in file order.

  Raises:
    LabelledFileError: unknown extension, empty file, missing column, malformed record,
      empty text or label, or invalid UTF-8: each naming the file and the line.
  """
  kind = file_format(path)
  if kind == 'jsonl':
    return _read_json_lines(path, text_column, label_column)
  return _read_table(path, ',' if kind == 'csv' else '\t', text_column, label_column)


def read_files(paths: Sequence[str], *, text_column: str = 'text',
               label_column: str = 'label') -> Iterator[Example]:
  """``read_file`` of each path in turn.

  Raises:
    LabelledFileError: as ``read_file``, or a file that holds no example.
  """
  for path in paths:
    count = 0
    for example in read_file(path, text_column=text_column, label_column=label_column):
      count += 1
      yield example
    if not count:
      raise LabelledFileError(f'{path}: no labelled example (only a header or blank lines).')
