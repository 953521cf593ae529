"""Workdir bookkeeping: a workdir of another experiment or config is refused, and a finished
run is recognised by its summary.json (same experiment, same config); the same in a bucket
(the GCS emulator), and a bad bucket or emulator is one error naming the workdir."""

import json
import os
import re
import time

import ml_collections
import pytest

from experiments import mlm_pretrain
from jaxssl import config_checks, fileio
from jaxssl.train import workdir, writers
from tests import gcs_emulator as emulator_lib


def _config(**changes):
  c = ml_collections.ConfigDict({'seed': 0, 'num_train_steps': 6, 'eval_every_steps': 3,
                                 'model': {'widths': (4, 8), 'activation': 'gelu'}})
  for k, v in changes.items():
    c[k] = v
  return c


def _write(folder, experiment, config):
  record = {'eval/mse': 0.25, 'step': 6, 'experiment': experiment, 'config': config.to_dict()}
  writers.write_json(fileio.join(folder, 'summary.json'), record)  # tuples stored as lists
  return record


def test_same_experiment_and_config_is_finished(tmp_path):
  record = _write(str(tmp_path), 'autoencoder', _config())
  got = workdir.finished_summary(str(tmp_path), 'autoencoder', _config())
  assert got['eval/mse'] == 0.25 and got['step'] == 6
  assert got['config']['model']['widths'] == [4, 8]  # read back as JSON stores it
  assert got == json.loads(json.dumps(record))
  # A plain dict config counts the same as the ConfigDict.
  assert workdir.finished_summary(str(tmp_path), 'autoencoder', _config().to_dict()) == got


@pytest.mark.parametrize('experiment, config', [
    ('vae', _config()),  # another experiment's run
    ('autoencoder', _config(seed=1)),
    ('autoencoder', _config(num_train_steps=12)),  # a longer run: it resumes, not finished
    ('autoencoder', _config(eval_every_steps=2)),  # cadences count too
])
def test_another_experiment_or_config_is_not_finished(tmp_path, experiment, config):
  _write(str(tmp_path), 'autoencoder', _config())
  assert workdir.finished_summary(str(tmp_path), experiment, config) is None


def test_nested_field_difference_is_not_finished(tmp_path):
  _write(str(tmp_path), 'autoencoder', _config())
  config = _config()
  config.model.widths = (4, 16)
  assert workdir.finished_summary(str(tmp_path), 'autoencoder', config) is None


def test_missing_summary_or_workdir_is_not_finished(tmp_path):
  assert workdir.finished_summary(str(tmp_path), 'autoencoder', _config()) is None
  assert workdir.finished_summary(str(tmp_path / 'absent'), 'autoencoder', _config()) is None


@pytest.mark.parametrize('text, reason', [
    ('{"experiment": ', 'Expecting value'),  # cut short
    ('[1, 2]', 'a JSON list, not an object'),
    (b'\xff\xfe{}', "'utf-8' codec can't decode"),
])
def test_unreadable_summary_is_an_error_naming_the_file(tmp_path, text, reason):
  path = tmp_path / 'summary.json'
  if isinstance(text, bytes):
    path.write_bytes(text)
  else:
    path.write_text(text)
  with pytest.raises(ValueError, match=re.escape(f'{path} is not a readable summary (')) as e:
    workdir.finished_summary(str(tmp_path), 'autoencoder', _config())
  assert reason in str(e.value) and 'delete it to run again' in str(e.value)


def test_workdir_with_another_experiments_results_is_refused(tmp_path):
  config = ml_collections.ConfigDict({'seed': 0})
  (tmp_path / 'summary.json').write_text(json.dumps({'experiment': 'kmeans'}))
  with pytest.raises(ValueError, match="holds a run of experiment 'kmeans', not 'simclr'"):
    workdir.start(str(tmp_path), 'simclr', config)
  assert workdir.start(str(tmp_path), 'kmeans', config).saved_meta == {}
  assert not (tmp_path / 'checkpoints').exists()  # nothing made for a run that saves none
  (tmp_path / 'summary.json').write_text('{"experiment": ')
  with pytest.raises(ValueError, match='summary.json is not readable'):
    workdir.start(str(tmp_path), 'kmeans', config)


def test_workdir_of_a_run_that_stopped_before_any_result_is_refused_to_others(tmp_path):
  # No checkpoint and no summary (e.g. it diverged before its first save): only the start
  # records in run_info.json tell whose workdir it is.
  config = ml_collections.ConfigDict({'seed': 0})
  workdir.start(str(tmp_path), 'vae', config)
  assert sorted(os.listdir(tmp_path)) == ['config.json', 'run_info.json']
  with pytest.raises(ValueError, match="holds a run of experiment 'vae', not 'dcgan'"):
    workdir.start(str(tmp_path), 'dcgan', config)
  workdir.start(str(tmp_path), 'vae', config)  # its own: fine
  with open(tmp_path / 'run_info.json', encoding='utf-8') as f:
    assert [r['experiment'] for r in json.load(f)] == ['vae', 'vae']


def test_configs_compare_as_json_stores_them():
  saved = config_checks.as_json(_config().to_dict())
  assert saved['model']['widths'] == [4, 8]
  assert config_checks.as_json({'x': (1,)}) == {'x': [1]}
  assert config_checks.as_json({'path': type}) == {'path': str(type)}  # not JSON: its str
  current = _config()
  current.num_train_steps = 10  # resumable: ignored
  current.model.widths = (4, 16)
  assert workdir.config_differences(saved, current.to_dict()) == ['model.widths']


def test_switching_remat_resumes_but_a_model_size_does_not():
  saved = mlm_pretrain.get_config().to_dict()
  current = mlm_pretrain.get_config()
  current.model.remat = not saved['model']['remat']  # memory for recomputation, same values
  assert workdir.config_differences(saved, current.to_dict()) == []
  current.model.preset = 'small'
  assert workdir.config_differences(saved, current.to_dict()) == ['model.preset']


def test_a_workdir_in_a_bucket_records_its_starts_and_refuses_other_experiments(
    gcs, gcs_emulator, tmp_path, monkeypatch):
  monkeypatch.chdir(tmp_path)  # a URI taken for a local path would be written here
  config = ml_collections.ConfigDict({'seed': 0})
  workdir.start(gcs, 'vae', config)
  prefix = gcs.removeprefix(f'gs://{gcs_emulator.bucket}/')
  assert gcs_emulator.object_names(prefix) == [f'{prefix}/config.json',
                                               f'{prefix}/run_info.json']
  with pytest.raises(ValueError, match=f"workdir {gcs} holds a run of experiment 'vae'"):
    workdir.start(gcs, 'dcgan', config)
  workdir.start(gcs, 'vae', config)
  records = json.loads(fileio.read_text(fileio.join(gcs, 'run_info.json')))
  assert [r['experiment'] for r in records] == ['vae', 'vae']
  record = _write(gcs, 'vae', config)
  assert workdir.finished_summary(gcs, 'vae', config) == record
  assert not os.listdir(tmp_path)


def test_a_bucket_that_does_not_exist_is_one_error_naming_the_workdir(gcs):
  del gcs  # the emulator, without the bucket below
  start = time.monotonic()
  with pytest.raises(OSError, match='workdir gs://no-such-bucket/run is not writable .*'
                     'does its bucket exist'):
    workdir.start('gs://no-such-bucket/run', 'vae', ml_collections.ConfigDict({'seed': 0}))
  assert time.monotonic() - start < 10


def test_an_emulator_that_does_not_answer_is_one_error_naming_the_workdir(monkeypatch):
  url = f'http://127.0.0.1:{emulator_lib.free_port()}'
  monkeypatch.setenv('STORAGE_EMULATOR_HOST', url)
  start = time.monotonic()
  with pytest.raises(ConnectionError, match=f'gs://b/run: the storage emulator at {url}'):
    workdir.start('gs://b/run', 'vae', ml_collections.ConfigDict({'seed': 0}))
  assert time.monotonic() - start < 10
