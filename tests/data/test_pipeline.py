"""Tests for jaxssl.data.pipeline."""

import numpy as np
import pytest

from jaxssl.data import pipeline


def _rows(n, length=3):
  tokens = np.arange(n * length, dtype=np.int32).reshape(n, length) + 10
  return {'tokens': tokens, 'segment_ids': np.ones((n, length), np.int32)}


def test_epoch_permutation_is_default_rng_of_seed_and_epoch():
  perm = pipeline.epoch_permutation(10, seed=3, epoch=2)
  np.testing.assert_array_equal(perm, np.random.default_rng([3, 2]).permutation(10))
  assert perm.dtype == np.int64
  assert sorted(perm) == list(range(10))
  assert not np.array_equal(perm, pipeline.epoch_permutation(10, seed=3, epoch=1))


def test_train_batch_hand_worked():
  rows = _rows(10)  # B=4: 2 steps per epoch, rows 8 positions used, 2 dropped.
  perm0 = np.random.default_rng([7, 0]).permutation(10)
  perm1 = np.random.default_rng([7, 1]).permutation(10)
  perm2 = np.random.default_rng([7, 2]).permutation(10)
  # Step s is in epoch s // 2 at positions [(s % 2) * 4, +4) of its permutation.
  for step, expected in [(0, perm0[0:4]), (1, perm0[4:8]), (2, perm1[0:4]), (5, perm2[4:8])]:
    batch = pipeline.train_batch(rows, step, seed=7, global_batch_size=4)
    np.testing.assert_array_equal(batch['tokens'], rows['tokens'][expected])
    np.testing.assert_array_equal(batch['segment_ids'], np.ones((4, 3), np.int32))


def test_train_batch_epoch_covers_distinct_rows():
  rows = _rows(12)
  seen = np.concatenate([
      pipeline.train_batch(rows, s, seed=0, global_batch_size=4)['tokens'][:, 0]
      for s in range(3)
  ])
  assert sorted(seen) == sorted(rows['tokens'][:, 0])


def test_train_batch_process_slices_make_the_global_batch():
  rows = _rows(16)
  whole = pipeline.train_batch(rows, 5, seed=1, global_batch_size=8)
  parts = [
      pipeline.train_batch(rows, 5, seed=1, global_batch_size=8, process_index=p,
                           process_count=4)
      for p in range(4)
  ]
  assert all(part['tokens'].shape == (2, 3) for part in parts)
  np.testing.assert_array_equal(np.concatenate([p['tokens'] for p in parts]), whole['tokens'])


def test_train_batch_is_pure():
  rows = _rows(9)
  a = pipeline.train_batch(rows, 11, seed=4, global_batch_size=3)
  pipeline.train_batch(rows, 0, seed=4, global_batch_size=3)  # No hidden state.
  b = pipeline.train_batch(rows, 11, seed=4, global_batch_size=3)
  np.testing.assert_array_equal(a['tokens'], b['tokens'])


def test_train_batch_errors():
  rows = _rows(4)
  with pytest.raises(ValueError, match='global_batch_size'):
    pipeline.train_batch(rows, 0, seed=0, global_batch_size=5)
  with pytest.raises(ValueError, match='global_batch_size'):
    pipeline.train_batch(rows, 0, seed=0, global_batch_size=3, process_count=2)
  with pytest.raises(ValueError, match='step'):
    pipeline.train_batch(rows, -1, seed=0, global_batch_size=2)
  with pytest.raises(ValueError, match='leading dimension'):
    pipeline.train_batch({'a': np.zeros(4), 'b': np.zeros(3)}, 0, seed=0, global_batch_size=2)


def test_eval_batches_pads_last_batch():
  rows = _rows(5, length=2)  # tokens 10..19, B=4: batches [0..3], [4, pad x3].
  batches = list(pipeline.eval_batches(rows, global_batch_size=4))
  assert len(batches) == 2
  np.testing.assert_array_equal(batches[0]['tokens'], [[10, 11], [12, 13], [14, 15], [16, 17]])
  np.testing.assert_array_equal(batches[0]['weights'], [1, 1, 1, 1])
  np.testing.assert_array_equal(batches[0]['index'], [0, 1, 2, 3])
  np.testing.assert_array_equal(batches[1]['tokens'], [[18, 19], [0, 0], [0, 0], [0, 0]])
  np.testing.assert_array_equal(batches[1]['segment_ids'], [[1, 1], [0, 0], [0, 0], [0, 0]])
  np.testing.assert_array_equal(batches[1]['weights'], [1, 0, 0, 0])
  np.testing.assert_array_equal(batches[1]['index'], [4, -1, -1, -1])
  assert batches[1]['weights'].dtype == np.float32
  assert batches[1]['index'].dtype == np.int32
  assert batches[1]['tokens'].dtype == np.int32


def test_eval_batches_per_process_cover_every_row_once():
  rows = _rows(7, length=1)
  indices = []
  for p in range(2):
    batches = list(pipeline.eval_batches(
        rows, global_batch_size=4, process_index=p, process_count=2))
    assert len(batches) == 2  # Same count on every process.
    indices.append([b['index'] for b in batches])
  # Global batch 0 = rows 0-3: process 0 gets 0,1; process 1 gets 2,3. Batch 1 = 4-7.
  np.testing.assert_array_equal(indices[0], [[0, 1], [4, 5]])
  np.testing.assert_array_equal(indices[1], [[2, 3], [6, -1]])


def test_eval_batches_rejects_indivisible_batch():
  with pytest.raises(ValueError, match='global_batch_size'):
    next(pipeline.eval_batches(_rows(4), global_batch_size=3, process_count=2))


def test_epoch_permutation_is_drawn_once_and_shared_read_only():
  first = pipeline.epoch_permutation(12, seed=5, epoch=0)
  assert pipeline.epoch_permutation(12, seed=5, epoch=0) is first  # cached, not redrawn
  with pytest.raises(ValueError):
    first[0] = 0  # a caller cannot corrupt the cached order


def test_subset_batch_size_is_the_largest_device_multiple_that_fits():
  # 20 examples over 8 devices: 16 (2 per device); enough examples: the configured 32.
  assert pipeline.subset_batch_size(32, 20, 8) == 16
  assert pipeline.subset_batch_size(32, 100, 8) == 32
  with pytest.raises(ValueError, match='5 labelled training examples.*8 devices'):
    pipeline.subset_batch_size(32, 5, 8)
