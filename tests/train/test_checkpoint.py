"""Opening workdirs: the Orbax tmp-folder sweep is over before the manager is returned, and
a workdir of another experiment is refused."""

import json
import os

import ml_collections
import pytest

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


def test_workdir_with_another_experiments_results_is_refused(tmp_path):
  config = ml_collections.ConfigDict({'seed': 0})
  (tmp_path / 'summary.json').write_text(json.dumps({'experiment': 'kmeans'}))
  with pytest.raises(ValueError, match="holds a run of experiment 'kmeans', not 'simclr'"):
    checkpoint.open_workdir(str(tmp_path), experiment='simclr', config=config)
  assert checkpoint.open_workdir(str(tmp_path), experiment='kmeans', config=config) == {}
  assert not (tmp_path / 'checkpoints').exists()  # nothing made for a run that saves none
  (tmp_path / 'summary.json').write_text('{"experiment": ')
  with pytest.raises(ValueError, match='summary.json is not readable'):
    checkpoint.open_workdir(str(tmp_path), experiment='kmeans', config=config)


def test_workdir_of_a_run_that_stopped_before_any_result_is_refused_to_others(tmp_path):
  # No checkpoint and no summary (e.g. it diverged before its first save): only the start
  # records in run_info.json tell whose workdir it is.
  config = ml_collections.ConfigDict({'seed': 0})
  checkpoint.open_workdir(str(tmp_path), experiment='vae', config=config)
  assert sorted(os.listdir(tmp_path)) == ['config.json', 'run_info.json']
  with pytest.raises(ValueError, match="holds a run of experiment 'vae', not 'dcgan'"):
    checkpoint.open_workdir(str(tmp_path), experiment='dcgan', config=config)
  checkpoint.open_workdir(str(tmp_path), experiment='vae', config=config)  # its own: fine
  with open(tmp_path / 'run_info.json', encoding='utf-8') as f:
    assert [r['experiment'] for r in json.load(f)] == ['vae', 'vae']
