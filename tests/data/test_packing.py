"""Tests for jaxssl.data.packing (hand-worked arrays)."""

import numpy as np
import pytest

from jaxssl.data import packing

CLS, SEP, PAD = 2, 3, 0


def _pack(docs, seq_len):
  docs = [np.array(d, np.int32) for d in docs]
  return packing.pack_documents(docs, seq_len=seq_len, cls_id=CLS, sep_id=SEP, pad_id=PAD)


def test_pack_two_documents_across_rows():
  # stream: 10 11 12 S 20 21 S (7 tokens) -> rows of 4 + [CLS].
  out = _pack([[10, 11, 12], [20, 21]], seq_len=5)
  np.testing.assert_array_equal(out['tokens'], [
      [CLS, 10, 11, 12, SEP],
      [CLS, 20, 21, SEP, PAD],
  ])
  np.testing.assert_array_equal(out['segment_ids'], [
      [1, 1, 1, 1, 1],
      [1, 1, 1, 1, 0],
  ])
  assert out['tokens'].dtype == np.int32 and out['segment_ids'].dtype == np.int32


def test_pack_segments_within_a_row_and_continuations():
  # stream: 10 S 20 21 22 23 S 30 S (9 tokens), rows of 3 + [CLS].
  out = _pack([[10], [20, 21, 22, 23], [], [30]], seq_len=4)
  np.testing.assert_array_equal(out['tokens'], [
      [CLS, 10, SEP, 20],
      [CLS, 21, 22, 23],
      [CLS, SEP, 30, SEP],
  ])
  # Row 0 holds doc 0 and the start of doc 1; row 2 holds the end of doc 1 (its [SEP])
  # and doc 3 (the empty doc 2 is skipped). [CLS] takes the row's first segment, 1.
  np.testing.assert_array_equal(out['segment_ids'], [
      [1, 1, 1, 2],
      [1, 1, 1, 1],
      [1, 1, 2, 2],
  ])


def test_pack_exact_fit_has_no_padding():
  out = _pack([[5, 6], [7, 8]], seq_len=4)  # stream: 5 6 S 7 8 S = 2 rows of 3.
  np.testing.assert_array_equal(out['tokens'], [[CLS, 5, 6, SEP], [CLS, 7, 8, SEP]])
  np.testing.assert_array_equal(out['segment_ids'], [[1, 1, 1, 1], [1, 1, 1, 1]])
  assert packing.count_real_tokens(out['tokens'], pad_id=PAD) == 8


def test_pack_three_documents_in_one_row():
  out = _pack([[9], [8], [7, 6]], seq_len=10)
  np.testing.assert_array_equal(out['tokens'], [[CLS, 9, SEP, 8, SEP, 7, 6, SEP, PAD, PAD]])
  np.testing.assert_array_equal(out['segment_ids'], [[1, 1, 1, 2, 2, 3, 3, 3, 0, 0]])
  assert packing.count_real_tokens(out['tokens'], pad_id=PAD) == 8


def test_pack_keeps_every_token_in_order():
  rng = np.random.default_rng(0)
  docs = [rng.integers(5, 100, size=n) for n in [0, 7, 1, 30, 12]]
  out = _pack(docs, seq_len=8)
  body = out['tokens'][:, 1:].reshape(-1)
  expected = np.concatenate([np.append(d, SEP) for d in docs if d.size])
  np.testing.assert_array_equal(body[:expected.size], expected)
  assert (body[expected.size:] == PAD).all()
  assert (out['tokens'][:, 0] == CLS).all()


@pytest.mark.parametrize('seq_len', [0, 1, 2])
def test_pack_rejects_short_rows(seq_len):
  with pytest.raises(ValueError, match='seq_len'):
    _pack([[1, 2]], seq_len=seq_len)


def test_pack_rejects_no_tokens():
  with pytest.raises(ValueError, match='no tokens'):
    _pack([[], []], seq_len=8)


def _causal(docs, seq_len):
  docs = [np.array(d, np.int32) for d in docs]
  return packing.pack_causal(docs, seq_len=seq_len, bos_id=CLS, eos_id=SEP, pad_id=PAD)


def test_causal_rows_overlap_by_one_token():
  # stream: B 10 11 E B 20 E (7 tokens), windows of 4 with stride 3.
  out = _causal([[10, 11], [20]], seq_len=4)
  np.testing.assert_array_equal(out['tokens'], [[CLS, 10, 11, SEP], [SEP, CLS, 20, SEP]])
  np.testing.assert_array_equal(out['segment_ids'], [[1, 1, 1, 1], [1, 2, 2, 2]])
  # Padding after the stream: B 10 E is 3 tokens -> one row of 4.
  out = _causal([[10]], seq_len=4)
  np.testing.assert_array_equal(out['tokens'], [[CLS, 10, SEP, PAD]])
  np.testing.assert_array_equal(out['segment_ids'], [[1, 1, 1, 0]])


def test_causal_targets_cover_the_stream_once():
  rng = np.random.default_rng(0)
  docs = [rng.integers(5, 50, size=n) for n in (7, 1, 0, 30, 12, 3)]
  out = _causal(docs, seq_len=8)
  tokens, seg = out['tokens'], out['segment_ids']
  target = (seg[:, 1:] == seg[:, :-1]) & (seg[:, 1:] > 0)  # next_token_loss's weights
  # Targets: every document token and every [EOS]; never a [BOS] or padding.
  assert target.sum() == sum(len(d) + 1 for d in docs if len(d))
  assert (tokens[:, 1:][target] != CLS).all() and (tokens[:, 1:][target] != PAD).all()
  # Reading the targets row by row reproduces the stream without [BOS].
  stream = np.concatenate([np.append(d, SEP) for d in docs if len(d)])
  np.testing.assert_array_equal(tokens[:, 1:][target], stream)
  with pytest.raises(ValueError, match='empty'):
    _causal([[]], seq_len=4)


@pytest.mark.parametrize('kind', [packing.MLM, packing.CAUSAL])
def test_packer_fed_in_batches_equals_whole_list(kind):
  rng = np.random.default_rng(1)
  docs = [rng.integers(5, 100, size=n) for n in rng.integers(0, 40, size=60)]
  ids = dict(seq_len=9, start_id=CLS, end_id=SEP, pad_id=PAD)
  whole = packing.RowPacker(kind, **ids)
  parts = [whole.add(docs), whole.finish()]
  expected = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
  for cuts in ([1, 2, 3], [10, 11, 30, 59], list(range(0, 60, 1))):
    packer = packing.RowPacker(kind, **ids)
    bounds = [0, *cuts, len(docs)]
    parts = [packer.add(docs[a:b]) for a, b in zip(bounds[:-1], bounds[1:])] + [packer.finish()]
    for key in expected:
      np.testing.assert_array_equal(np.concatenate([p[key] for p in parts]), expected[key])
