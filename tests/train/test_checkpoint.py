"""The Orbax tmp-folder sweep is over before the manager is returned."""

import os

from jaxssl.train import checkpoint


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
