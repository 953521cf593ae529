"""Cleaning raw text and cutting it into documents.

Pure string functions, no I/O. ``clean_text`` normalises a source; ``split_documents``
cuts the cleaned text at blank lines into documents of at most ``max_chars`` characters.
``pydoc_text`` is the embedded default corpus: the Python reference topics that ship
with the interpreter (``pydoc_data.topics``), so an experiment runs with no download.
"""

import re
import unicodedata

import pydoc_data.topics

# Bump when `clean_text` or `split_documents` change what they return: it is part of the
# hash that names a prepared local dataset, so a new version never serves an old cache.
CLEANING_VERSION = 1

# A markup rule: one non-alphanumeric, non-space character repeated 3+ times (`*****`,
# `=====`, `-----`, `~~~~`), the whole line (after stripping).
_RULE_LINE = re.compile(r'([^\w\s]|_)\1{2,}')
_SPACE_RUN = re.compile(r' {2,}')
# Tabs, vertical tabs and form feeds all become plain spaces.
_SPACE_LIKE = str.maketrans({'\t': ' ', '\v': ' ', '\f': ' '})


def _is_rule_line(line: str) -> bool:
  """True if `line` is only one punctuation character repeated >= 3 times."""
  return _RULE_LINE.fullmatch(line.strip()) is not None


def _clean_line(line: str) -> str:
  """Strips `line` and collapses runs of spaces inside it to one space."""
  return _SPACE_RUN.sub(' ', line.translate(_SPACE_LIKE).strip())


def clean_text(text: str) -> str:
  """Normalises raw text for tokenizer training and language modelling.

  In order: ``\\r\\n`` and ``\\r`` become ``\\n``; Unicode NFKC normalisation; tabs
  (and vertical tabs, form feeds) become spaces; markup rule lines (one punctuation
  character repeated 3+ times, possibly indented, e.g. reST title underlines ``*****``)
  are dropped; every line is stripped and runs of 2+ spaces inside it become one
  space. Blank lines are kept (as empty lines): they delimit documents.

  Args:
    text: raw text, any line endings.

  Returns:
    The cleaned text; its lines are separated by ``\\n``.
  """
  text = text.replace('\r\n', '\n').replace('\r', '\n')
  text = unicodedata.normalize('NFKC', text)
  lines = [line for line in text.split('\n') if not _is_rule_line(line)]
  return '\n'.join(_clean_line(line) for line in lines)


def _blocks(text: str) -> list[list[str]]:
  """Groups the non-blank lines of `text` into blocks separated by blank lines."""
  blocks, current = [], []
  for line in text.split('\n'):
    if line.strip():
      current.append(line)
    elif current:
      blocks.append(current)
      current = []
  if current:
    blocks.append(current)
  return blocks


def _cut_line(line: str, max_chars: int) -> list[str]:
  """Cuts one line into pieces of at most `max_chars` chars, at spaces if possible.

  Each cut is at the last space within the first ``max_chars + 1`` characters (the
  space itself is dropped), or a hard cut at ``max_chars`` when there is none.
  """
  pieces = []
  while len(line) > max_chars:
    cut = line.rfind(' ', 1, max_chars + 1)
    if cut > 0:
      head, line = line[:cut], line[cut + 1:]
    else:
      head, line = line[:max_chars], line[max_chars:]
    if head.strip():
      pieces.append(head)
  if line.strip():
    pieces.append(line)
  return pieces


def _chunk_block(lines: list[str], max_chars: int) -> list[str]:
  """Greedily joins lines (each <= max_chars) into chunks of <= max_chars chars."""
  chunks, current, size = [], [], 0
  for line in lines:
    for piece in _cut_line(line, max_chars):
      # `+ 1` counts the '\n' that joins `piece` to the current chunk.
      if current and size + 1 + len(piece) > max_chars:
        chunks.append('\n'.join(current))
        current = []
      size = size + 1 + len(piece) if current else len(piece)
      current.append(piece)
  if current:
    chunks.append('\n'.join(current))
  return chunks


def split_documents(text: str, *, max_chars: int) -> list[str]:
  """Cuts text into documents at blank lines, each at most `max_chars` characters.

  A block of non-blank lines between blank lines (one or more lines holding only
  whitespace) is one document. A block longer than ``max_chars`` is cut at line
  boundaries into consecutive pieces of at most ``max_chars`` characters; a single line
  longer than ``max_chars`` is cut at the last space before ``max_chars`` (hard cut at
  ``max_chars`` if it has no space). Empty blocks are dropped.

  Args:
    text: text whose lines are separated by ``\\n`` (normally from `clean_text`).
    max_chars: the longest document, in characters (Unicode code points).

  Returns:
    The documents in text order; lines inside a document are joined by ``\\n``.

  Raises:
    ValueError: if ``max_chars < 1``.
  """
  if max_chars < 1:
    raise ValueError(f'max_chars must be >= 1, got {max_chars}.')
  documents = []
  for block in _blocks(text):
    documents.extend(_chunk_block(block, max_chars))
  return documents


def pydoc_text() -> str:
  """The embedded default corpus: the Python reference text shipped with Python.

  Every topic of ``pydoc_data.topics.topics`` (79 topics, about 465k characters in
  Python 3.11) in sorted key order, joined by two blank lines. Raw, not cleaned.

  Returns:
    The raw text.
  """
  topics = pydoc_data.topics.topics
  return '\n\n\n'.join(topics[key] for key in sorted(topics))
