"""Tests for jaxssl.data.images and jaxssl.data.image_cache."""

import gzip
import hashlib
import json
import math
import os
import struct
import subprocess
import sys
import time

import ml_collections
import numpy as np
import pytest
import tensorflow_datasets as tfds

from jaxssl.data import image_cache, images
from tests.data import image_builder

_NO_DOWNLOAD = tfds.download.DownloadConfig(try_download_gcs=False)


def _data(**overrides) -> ml_collections.ConfigDict:
  data = images.data_config()
  data.update(overrides)
  return data


def _reference_digits():
  """scikit-learn's digits scaled by hand: uint8 [1797, 8, 8, 1], int labels [1797]."""
  from sklearn import datasets
  digits = datasets.load_digits()
  scaled = [[round(v * 255 / 16) for v in row] for row in digits.images.reshape(-1, 64)]
  return np.array(scaled, np.uint8).reshape(-1, 8, 8, 1), digits.target


def _held_out(contents, fraction, seed):
  """The held-out rule written out again: the smallest sha256(seed \\0 bytes)."""
  keys = [hashlib.sha256(f'{seed}\0'.encode() + c).digest() for c in contents]
  chosen = sorted(range(len(contents)), key=lambda i: keys[i])[:math.ceil(fraction * len(keys))]
  return np.isin(np.arange(len(contents)), chosen)


@pytest.fixture(scope='module')
def digits(tmp_path_factory):
  cache = tmp_path_factory.mktemp('cache')
  return images.load_images(_data(cache_dir=str(cache))), cache


def test_digits_shapes_and_counts(digits):
  got, _ = digits
  assert got.source == 'digits' and got.num_classes == 10
  assert len(got.train['label']) + len(got.test['label']) == 1797
  assert len(got.test['label']) == math.ceil(0.2 * 1797) == 360
  for split in (got.train, got.test):
    assert split['image'].dtype == np.uint8 and split['image'].shape[1:] == (8, 8, 1)
    assert split['label'].dtype == np.int32
    assert set(split['label'].tolist()) == set(range(10))
  assert got.info == {
      'data/source': 'digits', 'data/sha256': got.sha256, 'data/num_train': 1437,
      'data/num_test': 360, 'data/image_shape': [8, 8, 1], 'data/num_classes': 10}
  json.dumps(got.info)


def test_digits_pixels_and_split_rule(digits):
  got, _ = digits
  expected, labels = _reference_digits()
  held_out = _held_out([image.tobytes() for image in expected], 0.2, seed=0)
  # Both splits keep source order.
  np.testing.assert_array_equal(got.train['image'], expected[~held_out])
  np.testing.assert_array_equal(got.train['label'], labels[~held_out])
  np.testing.assert_array_equal(got.test['image'], expected[held_out])
  np.testing.assert_array_equal(got.test['label'], labels[held_out])
  # By hand: sklearn's first digit (a 0) has top row 0 0 5 13 9 1 0 0, and 5 * 255 / 16 =
  # 79.69 -> 80, 13 -> 207.19 -> 207, 9 -> 143.44 -> 143, 1 -> 15.94 -> 16.
  first = (got.test if held_out[0] else got.train)['image'][0, :, :, 0]
  assert first[0].tolist() == [0, 0, 80, 207, 143, 16, 0, 0]


def test_split_ignores_training_seed_and_follows_split_seed(digits):
  got, cache = digits
  np.random.seed(123)  # Global NumPy state must not matter.
  again = images.load_images(_data(cache_dir=str(cache)))
  np.testing.assert_array_equal(again.test['image'], got.test['image'])
  other = images.load_images(_data(cache_dir=str(cache), split_seed=1))
  assert len(other.test['label']) == 360
  assert not np.array_equal(other.test['image'], got.test['image'])
  assert other.sha256 == got.sha256  # Same source; only the split moved.


def _content_sha256(arrays):
  """The content hash written out again: per split its name and shape, the image bytes and
  the int64 labels, each framed by its 8-byte big-endian length."""
  digest = hashlib.sha256()
  for split, (image, label) in arrays.items():
    for part in (f'{split}:{list(image.shape)}'.encode(), image.tobytes(),
                 np.asarray(label, '<i8').tobytes()):
      digest.update(len(part).to_bytes(8, 'big') + part)
  return digest.hexdigest()


def test_second_load_reuses_build(digits, monkeypatch):
  got, cache = digits
  assert got.sha256 == _content_sha256({'train': _reference_digits()})
  entries = os.listdir(cache / 'images')
  monkeypatch.setattr(image_cache, '_build', lambda *a: pytest.fail('prepared again'))
  again = images.load_images(_data(cache_dir=str(cache)))
  np.testing.assert_array_equal(again.train['image'], got.train['image'])
  assert os.listdir(cache / 'images') == entries


def test_cache_dir_from_environment(tmp_path, monkeypatch):
  monkeypatch.setenv('JAXSSL_CACHE_DIR', str(tmp_path / 'env-cache'))
  images.load_images(_data(max_examples=50))
  assert (tmp_path / 'env-cache' / 'images').is_dir()


def test_max_examples(digits):
  _, cache = digits
  got = images.load_images(_data(cache_dir=str(cache), max_examples=100, test_fraction=0.1))
  assert len(got.train['label']) == 90 and len(got.test['label']) == 10
  expected, _ = _reference_digits()
  np.testing.assert_array_equal(
      np.sort(np.concatenate([got.train['image'], got.test['image']]).reshape(100, -1), axis=0),
      np.sort(expected[:100].reshape(100, -1), axis=0))
  assert got.sha256 != _content_sha256({'train': _reference_digits()})


# IDX files.


def _idx(code: int, array_bytes: bytes, shape) -> bytes:
  return (struct.pack('>BBBB', 0, 0, code, len(shape)) + struct.pack(f'>{len(shape)}I', *shape)
          + array_bytes)


def _write_pair(folder, prefix: str, image_array: np.ndarray, labels, *, gzipped=True):
  """Writes <prefix>-images-idx<k>-ubyte[.gz] and <prefix>-labels-idx1-ubyte[.gz]."""
  suffix = '.gz' if gzipped else ''
  pack = gzip.compress if gzipped else bytes
  rank = image_array.ndim
  (folder / f'{prefix}-images-idx{rank}-ubyte{suffix}').write_bytes(
      pack(_idx(0x08, image_array.astype(np.uint8).tobytes(), image_array.shape)))
  (folder / f'{prefix}-labels-idx1-ubyte{suffix}').write_bytes(
      pack(_idx(0x08, bytes(labels), (len(labels),))))


def _distinct_images(n: int, shape) -> np.ndarray:
  return (np.arange(n * int(np.prod(shape))) * 7 % 251).astype(np.uint8).reshape(n, *shape)


def test_single_idx_pair(tmp_path):
  array = _distinct_images(5, (3, 2, 3))  # [N, H, W, C] in the file.
  _write_pair(tmp_path, 'train', array, [0, 1, 2, 3, 4])
  data = _data(files=str(tmp_path / '*-ubyte.gz'), cache_dir=str(tmp_path / 'cache'),
               test_fraction=0.4)
  got = images.load_images(data)
  assert got.source == f'files:{tmp_path}/*-ubyte.gz'
  assert got.info['data/image_shape'] == [3, 2, 3]
  assert got.num_classes == 5
  held_out = _held_out([image.tobytes() for image in array], 0.4, seed=0)
  assert held_out.sum() == 2
  np.testing.assert_array_equal(got.test['image'], array[held_out])
  np.testing.assert_array_equal(got.train['label'], np.arange(5)[~held_out])


def test_train_and_test_pairs(tmp_path):
  train, test = _distinct_images(6, (4, 3)), _distinct_images(2, (4, 3))[::-1]
  _write_pair(tmp_path, 'train', train, [1, 0, 1, 0, 2, 2])
  _write_pair(tmp_path, 't10k', test, [2, 1])
  got = images.load_images(_data(files=str(tmp_path / '*ubyte*'),
                                 cache_dir=str(tmp_path / 'cache')))
  np.testing.assert_array_equal(got.train['image'], train[..., None])  # Nothing held out.
  np.testing.assert_array_equal(got.test['image'], test[..., None])
  assert got.test['label'].tolist() == [2, 1] and got.num_classes == 3
  assert got.info['data/num_train'] == 6 and got.info['data/num_test'] == 2


def test_gzipped_and_plain_hash_alike(tmp_path):
  array = _distinct_images(4, (2, 2))
  for folder, gzipped in ((tmp_path / 'gz', True), (tmp_path / 'plain', False)):
    folder.mkdir()
    _write_pair(folder, 'train', array, [0, 1, 0, 1], gzipped=gzipped)
  shas = {images.load_images(_data(files=str(tmp_path / name / '*'), cache_dir=str(
      tmp_path / 'cache'), test_fraction=0.5)).sha256 for name in ('gz', 'plain')}
  assert len(shas) == 1


def test_changed_file_is_prepared_again(tmp_path):
  data = _data(files=str(tmp_path / '*ubyte'), cache_dir=str(tmp_path / 'cache'),
               test_fraction=0.5)
  _write_pair(tmp_path, 'train', _distinct_images(4, (2, 2)), [0, 1, 0, 1], gzipped=False)
  before = images.load_images(data)
  _write_pair(tmp_path, 'train', _distinct_images(4, (2, 2)), [1, 1, 0, 1], gzipped=False)
  # Entries are keyed by path, size and mtime: an edit within the clock's tick, same size,
  # is not seen (the README says so); a real edit moves the mtime.
  labels = tmp_path / 'train-labels-idx1-ubyte'
  os.utime(labels, (labels.stat().st_atime, labels.stat().st_mtime + 2))
  after = images.load_images(data)
  assert before.sha256 != after.sha256
  assert len(os.listdir(tmp_path / 'cache' / 'images')) == 2


def test_mislabelled_pair_fails(tmp_path):
  _write_pair(tmp_path, 'train', _distinct_images(6, (2, 2)), [0, 1, 2])
  with pytest.raises(ValueError, match=r'holds 6 images but .* holds 3 labels'):
    images.load_images(_data(files=str(tmp_path / '*'), cache_dir=str(tmp_path / 'cache')))


def test_too_small(tmp_path):
  _write_pair(tmp_path, 'train', _distinct_images(1, (2, 2)), [0])
  with pytest.raises(ValueError, match=r'too few examples: 0 train and 1 test'):
    images.load_images(_data(files=str(tmp_path / '*'), cache_dir=str(tmp_path / 'cache')))


# Named TFDS datasets.


class _GrayNoChannel(tfds.core.GeneratorBasedBuilder, skip_registration=True):
  """A named dataset of [H, W] images without a channel axis, and Scalar labels."""

  name = 'jaxssl_gray_test'
  VERSION = tfds.core.Version('1.0.0')

  def _info(self):
    return tfds.core.DatasetInfo(
        builder=self, disable_shuffling=True,
        features=tfds.features.FeaturesDict({
            'image': tfds.features.Tensor(shape=(3, 2), dtype=np.uint8),
            'label': tfds.features.Scalar(dtype=np.int64)}))

  def _split_generators(self, dl_manager):
    return {'train': self._generate_examples(0, 10), 'test': self._generate_examples(10, 4)}

  def _generate_examples(self, start, n):
    for i in range(start, start + n):
      yield i, {'image': np.full((3, 2), i, np.uint8), 'label': i % 3}


@pytest.fixture(scope='module')
def gray_data_dir(tmp_path_factory):
  data_dir = tmp_path_factory.mktemp('named')
  _GrayNoChannel(data_dir=str(data_dir)).download_and_prepare(
      file_format='array_record', download_config=_NO_DOWNLOAD)
  return str(data_dir)


def test_named_dataset_gets_channel_axis(gray_data_dir):
  got = images.load_images(_data(name='jaxssl_gray_test', data_dir=gray_data_dir,
                                 test_split='test'))
  assert got.source == 'tfds:jaxssl_gray_test'
  assert got.train['image'].shape == (10, 3, 2, 1) and got.test['image'].shape == (4, 3, 2, 1)
  assert got.test['image'][:, 0, 0, 0].tolist() == [10, 11, 12, 13]
  assert got.train['label'].tolist() == [i % 3 for i in range(10)]
  assert got.num_classes == 3  # No ClassLabel: the largest label + 1.


def test_named_dataset_held_out_and_cap(gray_data_dir):
  got = images.load_images(_data(name='jaxssl_gray_test', data_dir=gray_data_dir,
                                 max_examples=5, test_fraction=0.2))
  assert len(got.train['label']) == 4 and len(got.test['label']) == 1
  values = sorted(got.train['image'][:, 0, 0, 0].tolist() + got.test['image'][:, 0, 0, 0].tolist())
  assert values == [0, 1, 2, 3, 4]
  full = images.load_images(_data(name='jaxssl_gray_test', data_dir=gray_data_dir))
  assert full.sha256 != got.sha256


def test_named_dataset_bad_split(gray_data_dir):
  with pytest.raises(ValueError, match=r"data\.test_split='validation' is not a split"):
    images.load_images(_data(name='jaxssl_gray_test', data_dir=gray_data_dir,
                             test_split='validation'))


def test_named_image_dataset_decoded(tmp_path):
  name = image_builder.prepare(str(tmp_path))
  got = images.load_images(_data(name=name, data_dir=str(tmp_path), cache_dir=str(
      tmp_path / 'cache'), train_split='train[:1000]', test_split='train[1000:]'))
  expected, _ = _reference_digits()
  np.testing.assert_array_equal(got.train['image'], expected[:1000])
  np.testing.assert_array_equal(got.test['image'], expected[1000:])
  assert got.num_classes == 10


def test_unprepared_dataset_fails_fast(tmp_path):
  start = time.monotonic()
  with pytest.raises(FileNotFoundError) as info:
    images.load_images(_data(name='mnist', data_dir=str(tmp_path)))
  assert time.monotonic() - start < 10
  message = str(info.value)
  assert "data.name='mnist'" in message and str(tmp_path) in message
  assert 'tfds build mnist' in message


def test_unknown_dataset_name(tmp_path):
  with pytest.raises(ValueError, match=r"data\.name='no_such_images_xyz'"):
    images.load_images(_data(name='no_such_images_xyz', data_dir=str(tmp_path)))


_TFRECORD_SCRIPT = """
import json, sys
import numpy as np
import tensorflow_datasets as tfds
from jaxssl.data import images
from tests.data import image_builder
data = images.data_config(name=image_builder.prepare(sys.argv[1], file_format='tfrecord'))
data.data_dir = sys.argv[1]
data.cache_dir = sys.argv[1] + '/cache'
got = images.load_images(data)
print(json.dumps([np.asarray(got.train['image']).tolist(), got.test['label'].tolist(), got.num_classes]))
"""


def test_named_dataset_tfrecord(tmp_path, digits):
  # In a subprocess: reading tfrecord imports TensorFlow, kept out of this process.
  out = subprocess.run([sys.executable, '-c', _TFRECORD_SCRIPT, str(tmp_path)],
                       capture_output=True, text=True, timeout=180, check=True).stdout
  train_images, test_labels, num_classes = json.loads(out.strip().split('\n')[-1])
  got, _ = digits
  np.testing.assert_array_equal(np.array(train_images, np.uint8), got.train['image'])
  assert test_labels == got.test['label'].tolist() and num_classes == 10


# Config.


def test_config_defaults_and_overrides():
  config = ml_collections.ConfigDict({'data': images.data_config()})
  images.check_config(config)
  config.data.files = '/data/*-ubyte.gz'  # Placeholders take values from flags.
  config.data.max_examples = 10
  config.data.test_split = 'test'
  images.check_config(config)


@pytest.mark.parametrize('field,value', [
    ('test_fraction', 0.0), ('test_fraction', 1.0), ('split_seed', -1), ('max_examples', 0),
    ('name', ''), ('train_split', ''), ('test_split', 'train')])
def test_check_config_names_field(field, value):
  config = ml_collections.ConfigDict({'data': images.data_config()})
  config.data[field] = value
  with pytest.raises(ValueError, match=rf'data\.{field}'):
    images.check_config(config)


def test_decoding_in_worker_processes_equals_decoding_in_process(tmp_path, monkeypatch):
  # A large TFDS split is decoded by spawned workers, chunk by chunk, in order: the prepared
  # rows equal those decoded in this process (forced here with tiny chunks and threshold).
  name = image_builder.prepare(str(tmp_path))
  data = dict(name=name, data_dir=str(tmp_path))
  here = images.load_images(_data(**data, cache_dir=str(tmp_path / 'here')))
  monkeypatch.setattr(image_cache, '_WORKER_MIN_EXAMPLES', 0)
  monkeypatch.setattr(image_cache, '_CHUNK', 500)
  monkeypatch.setattr(image_cache, '_MAX_WORKERS', 2)
  spawned = []
  real = image_cache._pooled
  monkeypatch.setattr(image_cache, '_pooled', lambda *a: spawned.append(a) or real(*a))
  pooled = images.load_images(_data(**data, cache_dir=str(tmp_path / 'pooled')))
  assert len(spawned) == 1
  np.testing.assert_array_equal(np.asarray(pooled.train['image']), np.asarray(here.train['image']))
  np.testing.assert_array_equal(pooled.test['image'], here.test['image'])
  np.testing.assert_array_equal(pooled.train['label'], here.train['label'])
  expected, _ = image_builder.digits()
  np.testing.assert_array_equal(np.sort(np.concatenate(
      [np.asarray(pooled.train['image']), pooled.test['image']]).reshape(-1, 64), axis=0),
      np.sort(expected.reshape(-1, 64), axis=0))


def test_evaluation_reads_a_fixed_seeded_sample_of_a_large_test_split(tmp_path):
  train, test = _distinct_images(30, (2, 2)), _distinct_images(40, (2, 2))[::-1]
  _write_pair(tmp_path, 'train', train, list(range(30)))
  _write_pair(tmp_path, 't10k', test, [i % 7 for i in range(40)])
  data = _data(files=str(tmp_path / '*ubyte*'), cache_dir=str(tmp_path / 'cache'),
               max_eval_examples=8)
  got = images.load_images(data)
  # By hand: the sample is default_rng([split_seed, 1]) choosing 8 of 40, in split order.
  chosen = np.sort(np.random.default_rng([0, 1]).choice(40, 8, replace=False))
  np.testing.assert_array_equal(got.test['image'], test[chosen][..., None])
  assert got.info['data/num_test'] == 40 and got.info['data/num_test_evaluated'] == 8
  assert len(got.train['label']) == 30  # training reads every image
  again = images.load_images(data)
  np.testing.assert_array_equal(again.test['image'], got.test['image'])
  sample = images.eval_train_sample(got.train, data)
  chosen = np.sort(np.random.default_rng([0, 2]).choice(30, 8, replace=False))
  np.testing.assert_array_equal(sample['image'], train[chosen][..., None])
  np.testing.assert_array_equal(sample['label'], chosen)


def test_pixel_mean_reads_rows_in_chunks(digits, monkeypatch):
  got, _ = digits
  monkeypatch.setattr(images, '_CHUNK', 100)  # 1437 images: 15 chunks, the last partial
  expected = np.asarray(got.train['image']).astype(np.float64).mean(axis=0)
  np.testing.assert_allclose(images.pixel_mean(got.train['image']), expected, rtol=1e-12)
