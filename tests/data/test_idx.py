"""Tests for jaxssl.data.idx: the IDX reader and pairing images with labels."""

import gzip
import struct

import numpy as np
import pytest

from jaxssl.data import idx

# A 2x2x3 uint8 array, written byte by byte below.
_UINT8_VALUES = [0, 1, 2, 3, 127, 128, 200, 201, 202, 253, 254, 255]
_INT32_VALUES = [7, -1, 65536, -2147483648]


def _header(code: int, shape) -> bytes:
  return struct.pack('>BBBB', 0, 0, code, len(shape)) + struct.pack(f'>{len(shape)}I', *shape)


def _uint8_file() -> bytes:
  return _header(0x08, (2, 2, 3)) + bytes(_UINT8_VALUES)


def _int32_file() -> bytes:
  return _header(0x0C, (4,)) + struct.pack('>4i', *_INT32_VALUES)


def _write(path, data: bytes, *, gzipped: bool = False) -> str:
  path.write_bytes(gzip.compress(data) if gzipped else data)
  return str(path)


@pytest.mark.parametrize('gzipped', [False, True])
def test_read_uint8_and_int32(tmp_path, gzipped):
  images = idx.read_idx(_write(tmp_path / 'a', _uint8_file(), gzipped=gzipped))
  labels = idx.read_idx(_write(tmp_path / 'b', _int32_file(), gzipped=gzipped))
  assert images.dtype == np.uint8 and images.shape == (2, 2, 3)
  assert images.tolist() == [[[0, 1, 2], [3, 127, 128]], [[200, 201, 202], [253, 254, 255]]]
  assert labels.dtype == np.int32 and labels.dtype.isnative
  assert labels.tolist() == _INT32_VALUES


def test_gzip_detected_by_content_not_name(tmp_path):
  plain_named_gz = _write(tmp_path / 'plain.gz', _uint8_file())
  gzipped_no_suffix = _write(tmp_path / 'gzipped-ubyte', _uint8_file(), gzipped=True)
  np.testing.assert_array_equal(idx.read_idx(plain_named_gz), idx.read_idx(gzipped_no_suffix))


@pytest.mark.parametrize('code,fmt,values,dtype', [
    (0x09, '>3b', [-128, -1, 127], np.int8),
    (0x0B, '>3h', [-300, 0, 32767], np.int16),
    (0x0D, '>3f', [0.5, -2.25, 1e30], np.float32),
    (0x0E, '>3d', [0.1, -1e300, 3.0], np.float64),
])
def test_other_dtypes_big_endian(tmp_path, code, fmt, values, dtype):
  path = _write(tmp_path / 'x', _header(code, (3,)) + struct.pack(fmt, *values))
  got = idx.read_idx(path)
  assert got.dtype == dtype and got.dtype.isnative
  np.testing.assert_array_equal(got, np.array(values, dtype))


def test_header_only(tmp_path):
  path = _write(tmp_path / 'a.gz', _uint8_file(), gzipped=True)
  header = idx.read_header(path)
  assert header.shape == (2, 2, 3) and header.dtype == np.uint8 and header.size == 16


def test_bad_magic(tmp_path):
  path = _write(tmp_path / 'bad-magic', b'\x01\x00\x08\x01' + struct.pack('>I', 1) + b'\x05')
  with pytest.raises(ValueError, match=r'bad-magic: not an IDX file: bad magic number 01 00'):
    idx.read_idx(path)


def test_too_short(tmp_path):
  with pytest.raises(ValueError, match=r'short: not an IDX file: 2 bytes'):
    idx.read_idx(_write(tmp_path / 'short', b'\0\0'))


def test_unknown_dtype_code(tmp_path):
  path = _write(tmp_path / 'odd-code', _header(0x0A, (1,)) + b'\0')
  with pytest.raises(ValueError, match=r'odd-code: unknown IDX dtype code 0x0A'):
    idx.read_idx(path)


def test_truncated_data(tmp_path):
  path = _write(tmp_path / 'cut', _uint8_file()[:-2], gzipped=True)
  with pytest.raises(ValueError, match=r'cut: truncated IDX data: .*needs 12 bytes .* found 10'):
    idx.read_idx(path)


def test_truncated_header(tmp_path):
  path = _write(tmp_path / 'cut-header', _uint8_file()[:9])
  with pytest.raises(ValueError, match=r'cut-header: truncated IDX header'):
    idx.read_idx(path)


def test_trailing_bytes(tmp_path):
  path = _write(tmp_path / 'long', _int32_file() + b'\0\0')
  with pytest.raises(ValueError, match=r'long: 2 trailing bytes .*needs 16 bytes, found 18'):
    idx.read_idx(path)


def test_damaged_gzip(tmp_path):
  path = _write(tmp_path / 'broken.gz', gzip.compress(_uint8_file())[:-10])
  with pytest.raises(ValueError, match=r'broken\.gz: damaged or truncated gzip'):
    idx.read_idx(path)


# Pairing.


def _images(n: int, h: int = 2, w: int = 2, c: int | None = None) -> bytes:
  shape = (n, h, w) if c is None else (n, h, w, c)
  return _header(0x08, shape) + bytes(i % 256 for i in range(int(np.prod(shape))))


def _labels(n: int) -> bytes:
  return _header(0x08, (n,)) + bytes(i % 10 for i in range(n))


def test_pairs_mnist_names(tmp_path):
  _write(tmp_path / 'train-images-idx3-ubyte.gz', _images(3), gzipped=True)
  _write(tmp_path / 'train-labels-idx1-ubyte.gz', _labels(3), gzipped=True)
  _write(tmp_path / 't10k-images-idx3-ubyte.gz', _images(2), gzipped=True)
  _write(tmp_path / 't10k-labels-idx1-ubyte.gz', _labels(2), gzipped=True)
  pairs = idx.find_idx_pairs(str(tmp_path / '*-ubyte.gz'))
  assert [(p.split, p.num_examples, p.image_shape) for p in pairs] == [
      ('train', 3, (2, 2, 1)), ('test', 2, (2, 2, 1))]
  assert pairs[0].images == str(tmp_path / 'train-images-idx3-ubyte.gz')
  assert pairs[0].labels == str(tmp_path / 'train-labels-idx1-ubyte.gz')
  assert pairs[1].labels == str(tmp_path / 't10k-labels-idx1-ubyte.gz')


def test_pairs_by_header_when_names_say_nothing(tmp_path):
  _write(tmp_path / 'x.bin', _images(4, 3, 2, 3))
  _write(tmp_path / 'y.bin', _labels(4))
  (pair,) = idx.find_idx_pairs([str(tmp_path / 'y.bin'), str(tmp_path / 'x.bin')])
  assert pair.images.endswith('x.bin') and pair.labels.endswith('y.bin')
  assert pair.split == 'train' and pair.image_shape == (3, 2, 3)


def test_mismatched_counts(tmp_path):
  _write(tmp_path / 'train-images-idx3-ubyte', _images(6))
  _write(tmp_path / 'train-labels-idx1-ubyte', _labels(4))
  with pytest.raises(ValueError, match=r'train-images-idx3-ubyte holds 6 images but .*'
                                       r'train-labels-idx1-ubyte holds 4 labels'):
    idx.find_idx_pairs(str(tmp_path / '*'))


def test_train_images_with_test_labels(tmp_path):
  # The classic mix-up: 60000 training images given with the 10000 test labels.
  _write(tmp_path / 'train-images-idx3-ubyte', _images(6))
  _write(tmp_path / 't10k-labels-idx1-ubyte', _labels(2))
  with pytest.raises(ValueError, match=r'holds 6 images but .*holds 2 labels: they are not'):
    idx.find_idx_pairs(str(tmp_path / '*'))


def test_labels_file_holding_images(tmp_path):
  _write(tmp_path / 'train-images-idx3-ubyte', _images(3))
  _write(tmp_path / 'train-labels-idx1-ubyte', _images(3))
  with pytest.raises(ValueError, match=r'train-labels-idx1-ubyte is named as labels but holds '
                                       r'images of shape \[3, 2, 2\]'):
    idx.find_idx_pairs(str(tmp_path / '*'))


def test_neither_images_nor_labels(tmp_path):
  _write(tmp_path / 'matrix', _header(0x08, (2, 2)) + bytes(4))
  with pytest.raises(ValueError, match=r'matrix: an IDX array of shape \[2, 2\] is neither'):
    idx.find_idx_pairs(str(tmp_path / 'matrix'))


def test_no_labels_file(tmp_path):
  _write(tmp_path / 'train-images-idx3-ubyte', _images(3))
  with pytest.raises(ValueError, match=r'no IDX labels \[N\] file'):
    idx.find_idx_pairs(str(tmp_path / '*'))


def test_float_images_rejected(tmp_path):
  _write(tmp_path / 'images', _header(0x0D, (1, 1, 1)) + struct.pack('>f', 0.5))
  _write(tmp_path / 'labels', _labels(1))
  with pytest.raises(ValueError, match=r'images: images of shape \[1, 1, 1\] must be uint8'):
    idx.find_idx_pairs(str(tmp_path / '*'))


def test_several_pairs_need_split_names(tmp_path):
  for prefix, n in (('a', 3), ('b', 2)):
    _write(tmp_path / f'{prefix}-images-idx3-ubyte', _images(n))
    _write(tmp_path / f'{prefix}-labels-idx1-ubyte', _labels(n))
  with pytest.raises(ValueError, match=r'2 pairs of files, .*says neither train nor test'):
    idx.find_idx_pairs(str(tmp_path / '*'))


def test_no_match(tmp_path):
  with pytest.raises(FileNotFoundError, match=r'data\.files: no file matches'):
    idx.find_idx_pairs(str(tmp_path / '*-ubyte.gz'))
