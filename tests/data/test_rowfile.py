"""Tests for jaxssl.data.rowfile: rows written once, read back by index."""

import numpy as np
import pytest

from jaxssl.data import pipeline
from jaxssl.data import rowfile


def _write(path, rows, dtype, chunks=(3,)):
  writer = rowfile.RowWriter(path, width=rows.shape[1], dtype=dtype)
  for part in np.split(rows, chunks):
    writer.write(part)
  writer.close()
  return rowfile.RowFile(path, width=rows.shape[1], dtype=dtype, num_rows=len(rows))


@pytest.mark.parametrize('dtype', [np.uint16, np.int32])
def test_rows_read_back_in_any_order(tmp_path, dtype):
  rows = np.random.default_rng(0).integers(0, 60000, size=(11, 5))
  stored = _write(tmp_path / 'r.bin', rows, dtype)
  indices = np.array([7, 0, 1, 2, 10, 7, 3])
  got = stored[indices]
  assert got.dtype == np.int32
  np.testing.assert_array_equal(got, rows[indices])
  np.testing.assert_array_equal(stored.read_all(), rows)
  assert (len(stored), stored.shape, stored.ndim) == (11, (11, 5), 2)
  # uint16 is 2 bytes a value: the file is exactly the rows.
  assert (tmp_path / 'r.bin').stat().st_size == rows.size * np.dtype(dtype).itemsize
  assert [p.name for p in tmp_path.iterdir()] == ['r.bin']  # no temporary file left


def test_storage_dtype():
  assert rowfile.storage_dtype(65535) == np.uint16
  assert rowfile.storage_dtype(65536) == np.int32


def test_bad_rows_and_damaged_files(tmp_path):
  writer = rowfile.RowWriter(tmp_path / 'w.bin', width=3, dtype=np.uint16)
  with pytest.raises(ValueError, match='width 3'):
    writer.write(np.zeros((2, 4), int))
  with pytest.raises(ValueError, match='outside uint16'):
    writer.write(np.full((1, 3), 70000))
  writer.abort()
  assert not list(tmp_path.iterdir())
  stored = _write(tmp_path / 'r.bin', np.zeros((4, 3), int), np.uint16)
  with pytest.raises(IndexError, match=r'\[0, 4\)'):
    stored[np.array([4])]
  with open(tmp_path / 'r.bin', 'ab') as f:
    f.write(b'x')  # a torn or foreign file
  with pytest.raises(ValueError, match='r.bin.*damaged'):
    rowfile.RowFile(tmp_path / 'r.bin', width=3, dtype=np.uint16, num_rows=4)
  with pytest.raises(FileNotFoundError, match='missing.bin'):
    rowfile.RowFile(tmp_path / 'missing.bin', width=3, dtype=np.uint16, num_rows=4)


def test_train_batches_from_a_row_file_equal_those_from_memory(tmp_path):
  rows = np.arange(40 * 4).reshape(40, 4)
  stored = _write(tmp_path / 'r.bin', rows, np.uint16, chunks=(17,))
  for step in (0, 3, 9, 25):
    for process in (0, 1):
      args = dict(seed=5, global_batch_size=8, process_index=process, process_count=2)
      np.testing.assert_array_equal(
          pipeline.train_batch({'tokens': stored}, step, **args)['tokens'],
          pipeline.train_batch({'tokens': rows}, step, **args)['tokens'])


def test_numpy_style_indexing(tmp_path):
  rows = np.arange(6 * 4).reshape(6, 4)
  stored = _write(tmp_path / 'r.bin', rows, np.uint16)
  for key in (slice(None, 3), slice(1, None, 2), (slice(None), slice(1, None)), 2, (3, 1),
              (np.array([4, 0]), slice(None, 2))):
    np.testing.assert_array_equal(stored[key], rows[key])


def test_two_processes_read_disjoint_rows_whose_union_is_the_global_batch(tmp_path):
  rows = np.arange(50 * 2).reshape(50, 2)
  _write(tmp_path / 'r.bin', rows, np.uint16)
  read = {0: [], 1: []}
  files = {}
  for process in (0, 1):
    files[process] = rowfile.RowFile(tmp_path / 'r.bin', width=2, dtype=np.uint16, num_rows=50)
    real = files[process]._read  # pylint: disable=protected-access

    def recording(offset, size, real=real, seen=read[process]):
      seen.extend(range(offset // 4, (offset + size) // 4))  # 4 bytes a row
      return real(offset, size)

    files[process]._read = recording  # pylint: disable=protected-access
  for step in (0, 4, 6, 13):  # an epoch is 6 steps of 8: steps 0-5, 6-11, 12-17
    read[0].clear()
    read[1].clear()
    for process in (0, 1):
      pipeline.train_batch({'tokens': files[process]}, step, seed=2, global_batch_size=8,
                           process_index=process, process_count=2)
    epoch, position = divmod(step, 6)
    expected = pipeline.epoch_permutation(50, seed=2, epoch=epoch)[position * 8:position * 8 + 8]
    assert len(read[0]) == len(read[1]) == 4 and not set(read[0]) & set(read[1])
    assert sorted(read[0] + read[1]) == sorted(expected)


def test_image_rows_and_a_selection_of_them(tmp_path):
  # uint8 images [N, 2, 3, 2] as rows of 12 bytes, read back as images, and a Selection (a
  # split) reading through an index: each agrees with the NumPy array it stands for.
  images = np.random.default_rng(1).integers(0, 256, size=(9, 2, 3, 2)).astype(np.uint8)
  writer = rowfile.RowWriter(tmp_path / 'i.bin', width=12, dtype=np.uint8)
  writer.write(images.reshape(9, 12))
  writer.close()
  stored = rowfile.RowFile(tmp_path / 'i.bin', width=12, dtype=np.uint8, num_rows=9,
                           read_dtype=np.uint8, row_shape=(2, 3, 2))
  assert (stored.shape, stored.ndim, stored.dtype) == ((9, 2, 3, 2), 4, np.uint8)
  assert (tmp_path / 'i.bin').stat().st_size == images.size  # one byte a value
  index = np.array([8, 2, 5, 0])
  split = rowfile.Selection(stored, index)
  expected = images[index]
  assert (len(split), split.shape, split.dtype) == (4, (4, 2, 3, 2), np.uint8)
  for key in (np.array([3, 0, 0]), slice(1, 3), 2, (1, 0, slice(1, None)), (slice(None), 1)):
    got = split[key]
    assert got.dtype == np.uint8
    np.testing.assert_array_equal(got, expected[key])
  np.testing.assert_array_equal(np.asarray(split), expected)
  np.testing.assert_array_equal(stored[7, 1], images[7, 1])
  with pytest.raises(ValueError, match='row_shape'):
    rowfile.RowFile(tmp_path / 'i.bin', width=12, dtype=np.uint8, num_rows=9, row_shape=(5,))
