"""A finished run is recognised by its summary.json: same experiment, same config."""

import json
import os
import re

import ml_collections
import pytest

from jaxssl.train import summary, writers


def _config(**changes):
  c = ml_collections.ConfigDict({'seed': 0, 'num_train_steps': 6, 'eval_every_steps': 3,
                                 'model': {'widths': (4, 8), 'activation': 'gelu'}})
  for k, v in changes.items():
    c[k] = v
  return c


def _write(workdir, experiment, config):
  record = {'eval/mse': 0.25, 'step': 6, 'experiment': experiment, 'config': config.to_dict()}
  writers.write_json(os.path.join(workdir, 'summary.json'), record)  # tuples stored as lists
  return record


def test_same_experiment_and_config_is_finished(tmp_path):
  record = _write(str(tmp_path), 'autoencoder', _config())
  got = summary.finished_summary(str(tmp_path), 'autoencoder', _config())
  assert got['eval/mse'] == 0.25 and got['step'] == 6
  assert got['config']['model']['widths'] == [4, 8]  # read back as JSON stores it
  assert got == json.loads(json.dumps(record))
  # A plain dict config counts the same as the ConfigDict.
  assert summary.finished_summary(str(tmp_path), 'autoencoder', _config().to_dict()) == got


@pytest.mark.parametrize('experiment, config', [
    ('vae', _config()),  # another experiment's run
    ('autoencoder', _config(seed=1)),
    ('autoencoder', _config(num_train_steps=12)),  # a longer run: it resumes, not finished
    ('autoencoder', _config(eval_every_steps=2)),  # cadences count too
])
def test_another_experiment_or_config_is_not_finished(tmp_path, experiment, config):
  _write(str(tmp_path), 'autoencoder', _config())
  assert summary.finished_summary(str(tmp_path), experiment, config) is None


def test_nested_field_difference_is_not_finished(tmp_path):
  _write(str(tmp_path), 'autoencoder', _config())
  config = _config()
  config.model.widths = (4, 16)
  assert summary.finished_summary(str(tmp_path), 'autoencoder', config) is None


def test_missing_summary_or_workdir_is_not_finished(tmp_path):
  assert summary.finished_summary(str(tmp_path), 'autoencoder', _config()) is None
  assert summary.finished_summary(str(tmp_path / 'absent'), 'autoencoder', _config()) is None


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
    summary.finished_summary(str(tmp_path), 'autoencoder', _config())
  assert reason in str(e.value) and 'delete it to run again' in str(e.value)
