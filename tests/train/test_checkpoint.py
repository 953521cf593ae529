"""The Orbax tmp-folder sweep is over before the manager is returned; checkpoints in a bucket
(the GCS emulator): async saves, Orbax's commit marker, restore, damaged ones set aside."""

import os
import time

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxssl import fileio
from jaxssl.train import checkpoint
from tests import gcs_emulator as emulator_lib


def test_stale_tmp_folder_is_gone_when_the_manager_is_returned(tmp_path):
  # A save killed mid-write leaves '<step>.orbax-checkpoint-tmp-<n>'. Orbax sweeps it on a
  # background thread; make_manager must wait for that sweep, or a process that exits right
  # after opening a workdir gets a traceback from the thread at interpreter shutdown.
  stale = tmp_path / 'checkpoints' / '7.orbax-checkpoint-tmp-1234'
  os.makedirs(stale / 'state')
  manager = checkpoint.make_manager(str(tmp_path))
  try:
    assert not stale.exists()
    assert manager.all_steps() == []
  finally:
    manager.close()


def _state(step):
  return {'w': jnp.arange(6.0).reshape(2, 3) + step, 'step': jnp.int32(step)}


def test_checkpoints_in_a_bucket_save_async_restore_and_set_damaged_ones_aside(
    gcs, gcs_emulator, tmp_path, monkeypatch):
  monkeypatch.chdir(tmp_path)  # a URI taken for a local path would be written here
  manager = checkpoint.make_manager(gcs, max_to_keep=2)  # async saves
  try:
    for step in (1, 2, 3):
      checkpoint.save(manager, step, _state(step), {'step': step})
    manager.wait_until_finished()
    assert manager.all_steps() == [2, 3] and manager.latest_step() == 3
    assert checkpoint.latest_meta(manager) == (3, {'step': 3})
  finally:
    manager.close()
  assert not os.listdir(tmp_path)
  prefix = gcs.removeprefix(f'gs://{gcs_emulator.bucket}/')
  names = gcs_emulator.object_names(f'{prefix}/checkpoints/')
  assert {f'{prefix}/checkpoints/{s}/commit_success.txt' for s in (2, 3)} <= set(names)
  assert not [n for n in names if n.startswith(f'{prefix}/checkpoints/1/')]  # max_to_keep

  target = jax.tree.map(jnp.zeros_like, _state(0))
  manager, restored, step, meta = checkpoint.restore_or_keep(gcs, target)
  manager.close()
  assert step == 3 and np.array_equal(restored['w'], _state(3)['w']) and meta == {'step': 3}

  for name in names:  # truncate every file of step 3's state
    if name.startswith(f'{prefix}/checkpoints/3/state/'):
      fileio.write_atomic(f'gs://{gcs_emulator.bucket}/{name}', b'')
  manager, restored, step, meta = checkpoint.restore_or_keep(gcs, target)
  try:
    assert step == 2 and np.array_equal(restored['w'], _state(2)['w']) and meta == {'step': 2}
    assert manager.all_steps() == [2]
  finally:
    manager.close()
  moved = gcs_emulator.object_names(f'{prefix}/damaged_checkpoints/3/')
  assert f'{prefix}/damaged_checkpoints/3/commit_success.txt' in moved
  assert not gcs_emulator.object_names(f'{prefix}/checkpoints/3/')


def test_a_silent_emulator_is_an_error_before_orbax_retries(monkeypatch):
  url = f'http://127.0.0.1:{emulator_lib.free_port()}'
  monkeypatch.setenv('STORAGE_EMULATOR_HOST', url)
  start = time.monotonic()
  with pytest.raises(ConnectionError, match=f'gs://b/run: the storage emulator at {url}'):
    checkpoint.make_manager('gs://b/run')
  assert time.monotonic() - start < 10
