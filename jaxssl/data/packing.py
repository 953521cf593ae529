"""Packing tokenized documents into fixed-length rows ("full sentences" packing).

RoBERTa (Liu et al. 2019, arXiv:1907.11692, Sec. 4.2 FULL-SENTENCES): documents, each followed
by [SEP], form one stream cut into rows regardless of document boundaries (padding only in the
last row); each row starts with [CLS] as in BERT (Devlin et al. 2019, arXiv:1810.04805).
"""

from collections.abc import Sequence

import numpy as np


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
  if seq_len < 3:
    raise ValueError(f'seq_len must be >= 3 ([CLS], a token, [SEP]), got {seq_len}.')
  docs = [np.asarray(d).reshape(-1) for d in docs]
  docs = [d for d in docs if d.size]
  if not docs:
    raise ValueError('pack_documents: no tokens (every document is empty).')
  stream = np.concatenate([np.append(d, sep_id) for d in docs]).astype(np.int32)
  doc_index = np.repeat(np.arange(len(docs)), [d.size + 1 for d in docs])
  width = seq_len - 1
  num_rows = -(-stream.size // width)
  padding = num_rows * width - stream.size
  stream = np.pad(stream, (0, padding), constant_values=pad_id).reshape(num_rows, width)
  doc_index = np.pad(doc_index, (0, padding), constant_values=-1).reshape(num_rows, width)
  # The stream is in document order, so a row's first token has its smallest index.
  segments = np.where(doc_index >= 0, doc_index - doc_index[:, :1] + 1, 0)
  tokens = np.concatenate([np.full((num_rows, 1), cls_id, np.int32), stream], axis=1)
  segment_ids = np.concatenate([np.ones((num_rows, 1), np.int64), segments], axis=1)
  return {'tokens': tokens, 'segment_ids': segment_ids.astype(np.int32)}


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
  if seq_len < 2:
    raise ValueError(f'seq_len must be >= 2 (a token and its target), got {seq_len}.')
  docs = [np.asarray(d).reshape(-1) for d in docs]
  docs = [d for d in docs if d.size]
  if not docs:
    raise ValueError('pack_causal: no tokens (every document is empty).')
  stream = np.concatenate([np.concatenate([[bos_id], d, [eos_id]]) for d in docs])
  doc_index = np.repeat(np.arange(len(docs)), [d.size + 2 for d in docs])
  stride = seq_len - 1
  num_rows = -(-(stream.size - 1) // stride)
  length = num_rows * stride + 1
  stream = np.pad(stream, (0, length - stream.size), constant_values=pad_id)
  doc_index = np.pad(doc_index, (0, length - doc_index.size), constant_values=-1)
  windows = np.arange(num_rows)[:, None] * stride + np.arange(seq_len)[None, :]  # [N, L]
  tokens, index = stream[windows], doc_index[windows]
  segments = np.where(index >= 0, index - index[:, :1] + 1, 0)
  return {'tokens': tokens.astype(np.int32), 'segment_ids': segments.astype(np.int32)}
