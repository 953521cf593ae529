"""Packing tokenized documents into fixed-length rows ("full sentences" packing).

RoBERTa (Liu et al. 2019, arXiv:1907.11692, Sec. 4.2 FULL-SENTENCES): documents, each followed
by [SEP], form one stream cut into rows regardless of document boundaries (padding only in the
last row); each row starts with [CLS] as in BERT (Devlin et al. 2019, arXiv:1810.04805). The
causal form cuts ``[BOS] doc [EOS]`` streams into overlapping windows, as nanoGPT's x/y pairs.
``RowPacker`` packs a stream of document batches with memory of one row; ``pack_documents`` and
``pack_causal`` are it applied to a whole list.
"""

from collections.abc import Sequence

import numpy as np

MLM, CAUSAL = 'mlm', 'causal'


class RowPacker:
  """Packs documents given a batch at a time into the rows of the whole stream.

  ``add`` returns the rows completed so far, ``finish`` the padded rest; their concatenation
  is ``pack_documents`` (``kind='mlm'``) or ``pack_causal`` (``kind='causal'``) of every
  document added, in order. Rows: ``tokens`` and ``segment_ids``, int32 [n, L].

  Raises (at construction):
    ValueError: ``kind`` unknown, or ``seq_len`` < 3 (mlm) / < 2 (causal).
  """

  def __init__(self, kind: str, *, seq_len: int, start_id: int, end_id: int, pad_id: int):
    minimum = {MLM: 3, CAUSAL: 2}.get(kind)
    if minimum is None:
      raise ValueError(f'packing kind must be {MLM!r} or {CAUSAL!r}, got {kind!r}.')
    if seq_len < minimum:
      raise ValueError(f'seq_len must be >= {minimum} for {kind} rows, got {seq_len}.')
    self.kind, self.seq_len = kind, seq_len
    self._start, self._end, self._pad = start_id, end_id, pad_id
    self._tokens = np.zeros(0, np.int32)  # stream not yet in a row
    self._docs = np.zeros(0, np.int64)  # index of each stream token's document
    self._num_docs = 0  # non-empty documents so far

  def add(self, docs: Sequence[np.ndarray]) -> dict[str, np.ndarray]:
    """Adds int [n_i] token ids of documents (empty ones skipped); returns complete rows."""
    docs = [np.asarray(d).reshape(-1) for d in docs]
    docs = [d for d in docs if d.size]
    if docs:
      if self.kind == MLM:
        pieces = [np.append(d, self._end) for d in docs]
      else:
        pieces = [np.concatenate([[self._start], d, [self._end]]) for d in docs]
      index = self._num_docs + np.repeat(np.arange(len(docs)), [p.size for p in pieces])
      self._tokens = np.concatenate([self._tokens, *pieces]).astype(np.int32)
      self._docs = np.concatenate([self._docs, index])
      self._num_docs += len(docs)
    return self._emit(final=False)

  def finish(self) -> dict[str, np.ndarray]:
    """The last rows, padded with ``pad_id`` (segment 0).

    Raises:
      ValueError: if no document had a token.
    """
    if not self._num_docs:
      raise ValueError(f'pack {self.kind}: no tokens (every document is empty).')
    return self._emit(final=True)

  def _emit(self, *, final: bool) -> dict[str, np.ndarray]:
    """Cuts every complete row (every row, padded, when ``final``) off the pending stream."""
    stride = self.seq_len - 1
    # MLM rows are disjoint stream windows of `stride`; causal rows are windows of L that
    # share one token with the next, so a window needs one token beyond its stride.
    overlap = 0 if self.kind == MLM else 1
    available = self._tokens.size - overlap
    num_rows = -(-available // stride) if final else available // stride
    num_rows = max(num_rows, 0)
    width = stride + overlap
    length = num_rows * stride + overlap if num_rows else 0
    padding = max(length - self._tokens.size, 0)
    stream = np.pad(self._tokens, (0, padding), constant_values=self._pad)
    docs = np.pad(self._docs, (0, padding), constant_values=-1)
    windows = np.arange(num_rows)[:, None] * stride + np.arange(width)[None, :]
    tokens, index = stream[windows], docs[windows]
    # A row's first token belongs to its lowest document: segments count from 1 there.
    segments = np.where(index >= 0, index - index[:, :1] + 1, 0)
    if self.kind == MLM:
      tokens = np.concatenate([np.full((num_rows, 1), self._start, np.int32), tokens], axis=1)
      segments = np.concatenate([np.ones((num_rows, 1), np.int64), segments], axis=1)
    keep = num_rows * stride if num_rows else 0
    self._tokens, self._docs = self._tokens[keep:], self._docs[keep:]
    if final:
      self._tokens, self._docs = self._tokens[:0], self._docs[:0]
    return {'tokens': tokens.astype(np.int32).reshape(num_rows, self.seq_len),
            'segment_ids': segments.astype(np.int32).reshape(num_rows, self.seq_len)}


def _pack_all(kind, docs, **ids) -> dict[str, np.ndarray]:
  packer = RowPacker(kind, **ids)
  parts = [packer.add(docs), packer.finish()]
  return {key: np.concatenate([p[key] for p in parts]) for key in parts[0]}


def pack_documents(
    docs: Sequence[np.ndarray], *, seq_len: int, cls_id: int, sep_id: int, pad_id: int
) -> dict[str, np.ndarray]:
  """Packs documents into rows of ``seq_len`` tokens: [CLS] + ``seq_len - 1`` stream tokens.

  Empty documents are skipped; the last row is padded with ``pad_id``. E.g. L=5, [a b c], [d e]:
  tokens [C a b c S] [C d e S P], segment_ids [1 1 1 1 1] [1 1 1 1 0].

  Args:
    docs: token ids of each document, int [n_i].
    seq_len: L, tokens per row, including [CLS].
    cls_id, sep_id, pad_id: first in every row; after every document; end of the last row.

  Returns:
    ``tokens`` int32 [N, L], N = ceil(stream length / (L - 1)), and ``segment_ids`` int32
    [N, L]: 1-based index within the row of each token's document (its [SEP] included; [CLS]
    gets 1), 0 for padding.

  Raises:
    ValueError: if ``seq_len < 3`` or every document is empty.
  """
  return _pack_all(MLM, docs, seq_len=seq_len, start_id=cls_id, end_id=sep_id, pad_id=pad_id)


def count_real_tokens(tokens: np.ndarray, *, pad_id: int) -> int:
  """The number of non-padding tokens of int [..., L] ([CLS] and [SEP] included), a Python int."""
  return int(np.count_nonzero(np.asarray(tokens) != pad_id))


def pack_causal(
    docs: Sequence[np.ndarray], *, seq_len: int, bos_id: int, eos_id: int, pad_id: int
) -> dict[str, np.ndarray]:
  """Packs documents for next-token prediction: ``[BOS] doc [EOS]`` each, rows overlapping.

  The stream ``BOS d1 EOS BOS d2 EOS ...`` is cut into windows of L tokens with stride L - 1
  (a row's first token is the previous row's last and never a target), so every stream token
  after the first is a target in exactly one row, as nanoGPT's x/y windows. With the segment
  ids nothing crosses documents. E.g. L=4, [a b], [c]: [B a b E] [E B c E], segments [1 1 1 1]
  [1 2 2 2]. Empty documents are skipped; ``pad_id`` (segment 0) fills the end.

  Returns:
    ``tokens`` int32 [N, L] and ``segment_ids`` int32 [N, L] (1-based document index within
    the row, 0 at padding), N = ceil((stream length - 1) / (L - 1)).

  Raises:
    ValueError: ``seq_len < 2`` or every document is empty.
  """
  return _pack_all(CAUSAL, docs, seq_len=seq_len, start_id=bos_id, end_id=eos_id,
                   pad_id=pad_id)
