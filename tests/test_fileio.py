"""Paths and atomic writes, local and in a bucket (the GCS emulator): the whole new content or
the old file, and no temporary left behind."""

import os

import pytest

from etils.epath import gpath

from jaxssl import fileio
from tests import gcs_emulator as emulator_lib


def test_write_replaces_the_file_and_leaves_no_temporary(tmp_path):
  path = tmp_path / 'sub' / 'summary.json'
  fileio.write_atomic(path, 'old\n')
  fileio.write_atomic(path, b'\x00new')
  assert path.read_bytes() == b'\x00new'
  assert os.listdir(path.parent) == ['summary.json']


def test_a_failed_write_keeps_the_old_file_and_removes_its_temporary(tmp_path):
  path = tmp_path / 'results.md'
  fileio.write_atomic(path, 'good')
  with pytest.raises(TypeError):
    fileio.write_atomic(path, 12345)  # neither str nor bytes: fails while writing
  assert path.read_text() == 'good'
  assert os.listdir(tmp_path) == ['results.md']


def test_paths_keep_a_uri_and_make_local_paths_absolute(tmp_path, monkeypatch):
  monkeypatch.chdir(tmp_path)
  assert str(fileio.path('gs://bucket/run')) == 'gs://bucket/run'
  assert str(fileio.path('gs://bucket/run') / 'checkpoints') == 'gs://bucket/run/checkpoints'
  assert str(fileio.path('run')) == str(tmp_path / 'run')
  assert fileio.join('gs://bucket/run', 'a', 'b') == 'gs://bucket/run/a/b'
  assert fileio.join('runs/lr', 'seed_0') == 'runs/lr/seed_0'  # relative stays relative


def test_the_emulator_variables_are_derived_from_storage_emulator_host():
  assert fileio.derived_environment({}) == {'EPATH_USE_TF': 'false'}
  assert fileio.derived_environment({'STORAGE_EMULATOR_HOST': '127.0.0.1:9'}) == {
      'EPATH_USE_TF': 'false', 'TENSORSTORE_GCS_HTTP_URL': 'http://127.0.0.1:9',
      'GOOGLE_AUTH_TOKEN_FOR_TESTING': 'emulator', 'GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT': 'false'}


def test_gs_paths_go_through_gcsfs_not_tensorflow(monkeypatch):
  # TensorFlow's gfile ignores STORAGE_EMULATOR_HOST; etils picks it when TF is installed,
  # and decides once, on the first path it touches (importing TFDS touches one).
  monkeypatch.delenv('EPATH_USE_TF')
  gpath._is_tf_installed.cache_clear()  # pylint: disable=protected-access
  assert type(fileio.path('gs://bucket/x')._backend).__name__ == '_TfBackend'  # pylint: disable=protected-access
  fileio.configure_storage()
  assert type(fileio.path('gs://bucket/x')._backend).__name__ == '_FileSystemSpecBackend'  # pylint: disable=protected-access


def test_write_atomic_in_a_bucket_replaces_the_object(gcs, gcs_emulator):
  path = f'{gcs}/sub/summary.json'
  fileio.write_atomic(path, 'old\n')
  fileio.write_atomic(path, b'\x00new')
  assert fileio.path(path).read_bytes() == b'\x00new'
  prefix = gcs.removeprefix(f'gs://{gcs_emulator.bucket}/')
  assert gcs_emulator.object_names(prefix) == [f'{prefix}/sub/summary.json']  # no temporary


def test_move_tree_in_a_bucket(gcs):
  for name in ('a/x', 'a/b/y'):
    fileio.write_atomic(f'{gcs}/src/{name}', name)
  fileio.move_tree(f'{gcs}/src', f'{gcs}/dest/1')
  assert not fileio.path(f'{gcs}/src').exists()
  assert fileio.read_text(f'{gcs}/dest/1/a/b/y') == 'a/b/y'
  assert fileio.read_text(f'{gcs}/dest/1/a/x') == 'a/x'


def test_an_emulator_that_does_not_answer_fails_at_once(monkeypatch):
  url = f'http://127.0.0.1:{emulator_lib.free_port()}'
  monkeypatch.setenv('STORAGE_EMULATOR_HOST', url)
  with pytest.raises(ConnectionError, match=f'gs://b/run: the storage emulator at {url} '):
    fileio.check_reachable('gs://b/run')
  fileio.check_reachable('/a/local/path')  # local paths never ask the emulator
