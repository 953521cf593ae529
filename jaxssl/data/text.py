"""Cleaning raw text and cutting it into documents: pure string functions, no I/O.

Two forms with one result: ``split_documents(clean_text(text))`` on a whole text, and
``iter_documents(decode_lines(chunks))`` on a stream of byte chunks, whose memory is one
document. ``pydoc_text`` is the embedded default corpus, the Python reference topics shipped
with the interpreter (``pydoc_data.topics``), so an experiment runs with no download.
"""

import codecs
import itertools
import re
import unicodedata
from collections.abc import Iterable, Iterator

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


def _clean_raw_line(line: str) -> str | None:
  """One line of ``clean_text`` (NFKC, rule lines dropped as None, spaces collapsed).

  NFKC line by line equals NFKC of the whole text: ``\\n`` is a starter that composes
  with nothing, so normalisation never crosses it.
  """
  line = unicodedata.normalize('NFKC', line)
  return None if _is_rule_line(line) else _clean_line(line)


def clean_text(text: str) -> str:
  """Normalises raw text for tokenizer training and language modelling.

  In order: ``\\r\\n`` and ``\\r`` become ``\\n``; NFKC; tabs, vertical tabs and form feeds
  become spaces; markup rule lines (one punctuation character repeated 3+ times, e.g. ``*****``)
  are dropped; lines are stripped and inner runs of 2+ spaces become one. Blank lines are kept:
  they delimit documents.
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
  """Cuts a line into pieces of <= ``max_chars`` at the last space (dropped), else hard."""
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
  """Cuts text into documents at blank lines, each at most ``max_chars`` characters (code points).

  A block of non-blank lines is one document; a longer block is cut at line boundaries into
  consecutive pieces, a longer line at its last space before ``max_chars`` (hard cut if none).
  Empty blocks are dropped. Input lines are separated by ``\\n`` (normally from
  ``clean_text``); documents come in text order, their lines joined by ``\\n``.

  Raises:
    ValueError: if ``max_chars < 1``.
  """
  if max_chars < 1:
    raise ValueError(f'max_chars must be >= 1, got {max_chars}.')
  documents = []
  for block in _blocks(text):
    documents.extend(_chunk_block(block, max_chars))
  return documents


def decode_lines(chunks: Iterable[bytes], label: str) -> Iterator[str]:
  """The lines of UTF-8 bytes read in chunks, as ``text.split('\\n')`` after ``clean_text``'s
  newline rule (``\\r\\n`` and ``\\r`` are ``\\n``); a leading byte-order mark is dropped.

  Raises:
    ValueError: the bytes are not UTF-8, naming ``label`` (a file) and the byte offset.
  """
  decoder = codecs.getincrementaldecoder('utf-8-sig')()
  offset, pending = 0, ''
  for chunk in itertools.chain(chunks, [None]):
    try:
      piece = decoder.decode(chunk or b'', final=chunk is None)
    except UnicodeDecodeError as e:
      raise ValueError(f'{label} is not valid UTF-8 (byte {offset + e.start}: {e.reason}); '
                       'convert it, e.g. with iconv -t UTF-8.') from e
    offset += len(chunk or b'')
    pending += piece
    # A chunk may end between '\r' and '\n': keep a trailing '\r' for the next one.
    keep = 1 if chunk is not None and pending.endswith('\r') else 0
    ready, pending = pending[:len(pending) - keep], pending[len(pending) - keep:]
    lines = ready.replace('\r\n', '\n').replace('\r', '\n').split('\n')
    pending = lines.pop() + pending
    yield from lines
  yield pending


def iter_documents(lines: Iterable[str], *, max_chars: int) -> Iterator[str]:
  """``split_documents(clean_text('\\n'.join(lines)))``, one document at a time.

  Raises:
    ValueError: if ``max_chars < 1``.
  """
  if max_chars < 1:
    raise ValueError(f'max_chars must be >= 1, got {max_chars}.')
  block = []
  for raw in lines:
    line = _clean_raw_line(raw)
    if line is None:
      continue
    if line.strip():
      block.append(line)
    elif block:
      yield from _chunk_block(block, max_chars)
      block = []
  if block:
    yield from _chunk_block(block, max_chars)


def pydoc_text() -> str:
  """The raw embedded corpus: every ``pydoc_data.topics`` topic, sorted by key, 2 blank lines apart.

  79 topics, about 465k characters in Python 3.11.
  """
  topics = pydoc_data.topics.topics
  return '\n\n\n'.join(topics[key] for key in sorted(topics))
