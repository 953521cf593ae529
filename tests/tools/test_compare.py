"""The comparison table: its arithmetic by hand, and a tiny end-to-end run whose rerun
trains and measures nothing and whose finished runs are never trained again."""

import hashlib
import json
import os

import numpy as np
import pytest

from experiments import autoencoder, simclr
from jaxssl.eval import representation
from tests.experiments.helpers import evals, smoke
from tools import compare, encoders


def test_table_is_mean_and_sample_std_over_seeds():
  rows = {'a': [{'linear_probe_accuracy': 0.5, 'knn_accuracy': 1.0, 'kmeans_ari': 0.1},
                {'linear_probe_accuracy': 0.7, 'knn_accuracy': 1.0, 'kmeans_ari': 0.4}]}
  (row,) = compare.table(rows)
  # mean 0.6; std with ddof=1: sqrt(((0.5 - 0.6)^2 + (0.7 - 0.6)^2) / 1) = 0.141421
  assert row['linear_probe_accuracy_mean'] == pytest.approx(0.6)
  assert row['linear_probe_accuracy_std'] == pytest.approx(0.1414213562)
  assert row['knn_accuracy_std'] == 0.0
  assert row['kmeans_ari_std'] == pytest.approx(0.2121320344)
  assert compare.markdown([row]).splitlines()[2] == (
      '| a | 0.6000 +- 0.1414 | 1.0000 +- 0.0000 | 0.2500 +- 0.2121 |')


def test_methods_from_the_command_line_may_be_one_comma_separated_string():
  config = compare.get_config()
  config.methods = ('autoencoder, simclr',)  # --config.methods=autoencoder,simclr
  assert compare._methods(config) == ('autoencoder', 'simclr')  # pylint: disable=protected-access
  config.methods = ('vae', 'byol')
  assert compare._methods(config) == ('vae', 'byol')  # pylint: disable=protected-access


def test_tiny_comparison_writes_tables_and_reuses_its_runs(cache_dir, tmp_path, monkeypatch):
  config = compare.get_config()
  config.smoke = True
  config.methods = ('autoencoder',)
  config.seeds = (0, 1)
  config.max_train_steps = 4
  config.data.cache_dir = cache_dir
  config.eval = smoke(simclr, cache_dir).eval
  workdir = str(tmp_path)
  summary = compare.train_and_evaluate(config, workdir)
  names = ['raw pixels', 'autoencoder', 'autoencoder (random init)']
  lines = open(os.path.join(workdir, 'results.md'), encoding='utf-8').read().splitlines()
  assert [line.split(' | ')[0][2:] for line in lines[2:]] == names
  runs = json.load(open(os.path.join(workdir, 'results.json'), encoding='utf-8'))['runs']
  for name in names:  # the summary's means are those of the per-seed metrics
    for metric in compare.METRICS:
      assert summary[f'eval/{name}/{metric}'] == pytest.approx(
          np.mean([r[metric] for r in runs[name]]))
  run_dirs = [os.path.join(workdir, 'autoencoder', 'steps_4', f'seed_{s}') for s in (0, 1)]
  run_summary = json.load(open(os.path.join(run_dirs[1], 'summary.json')))
  assert run_summary['step'] == 4 and run_summary['seed'] == 1
  run_files = [os.path.join(d, name) for d in run_dirs
               for name in ('summary.json', 'run_info.json')]
  files = run_files + [os.path.join(workdir, n) for n in ('summary.json', 'run_info.json')]
  stamps = {f: os.stat(f).st_mtime_ns for f in files}

  def must_not_run(*args, **kwargs):
    raise AssertionError('a finished comparison must not train, load or measure again')

  # The same comparison again: read back, nothing trained, restored or measured.
  with monkeypatch.context() as m:
    for target, name in [(autoencoder, 'train_and_evaluate'), (encoders, 'load'),
                         (representation, 'evaluate_representation')]:
      m.setattr(target, name, must_not_run)
    again = compare.train_and_evaluate(config, workdir)
  assert evals(again) == evals(summary)
  assert {f: os.stat(f).st_mtime_ns for f in files} == stamps

  # Another protocol over the same finished runs: measured again, no run trained or evaluated.
  config.eval.knn_k = 3
  measured = []
  evaluate = representation.evaluate_representation

  def counting(*args, **kwargs):
    measured.append(1)
    return evaluate(*args, **kwargs)

  with monkeypatch.context() as m:
    m.setattr(autoencoder, 'train_and_evaluate', must_not_run)
    m.setattr(representation, 'evaluate_representation', counting)
    compare.train_and_evaluate(config, workdir)
  assert len(measured) == 2 * 3  # per seed: raw pixels, the trained and the random encoder
  assert {f: os.stat(f).st_mtime_ns for f in run_files} == {f: stamps[f] for f in run_files}
  assert json.load(open(os.path.join(workdir, 'summary.json')))['config']['eval']['knn_k'] == 3

  # A run retrained in place (same config, so still finished; a new summary.json): the stored
  # rows are stale, so the comparison measures again, without training; then it reads back.
  retrained = os.path.join(run_dirs[0], 'summary.json')
  run_summary = json.load(open(retrained, encoding='utf-8'))
  run_summary['eval/mse'] = run_summary['eval/mse'] + 1.0
  with open(retrained, 'w', encoding='utf-8') as f:
    json.dump(run_summary, f)
  measured.clear()
  with monkeypatch.context() as m:
    m.setattr(autoencoder, 'train_and_evaluate', must_not_run)
    m.setattr(representation, 'evaluate_representation', counting)
    compare.train_and_evaluate(config, workdir)
  assert len(measured) == 2 * 3
  stored = json.load(open(os.path.join(workdir, 'results.json')))['run_summaries']
  with open(retrained, 'rb') as f:
    assert stored['autoencoder/steps_4/seed_0'] == hashlib.sha256(f.read()).hexdigest()
  with monkeypatch.context() as m:
    for target, name in [(autoencoder, 'train_and_evaluate'), (encoders, 'load'),
                         (representation, 'evaluate_representation')]:
      m.setattr(target, name, must_not_run)
    compare.train_and_evaluate(config, workdir)

  config.max_train_steps = 3  # another run length: new runs beside the old ones
  compare.train_and_evaluate(config, workdir)
  run_dir = os.path.join(workdir, 'autoencoder', 'steps_3', 'seed_1')
  run_summary = json.load(open(os.path.join(run_dir, 'summary.json')))
  assert run_summary['step'] == 3 and run_summary['restored_from_step'] is None


@pytest.mark.parametrize('field, value, message', [
    ('seeds', (0,), 'at least 2 seeds'), ('methods', ('dcgan',), "'dcgan' is not an image"),
    ('max_train_steps', 0, 'max_train_steps'), ('eval.knn_k', 0, 'eval.knn_k')])
def test_bad_config_values_are_named(field, value, message, tmp_path):
  config = compare.get_config()
  if '.' in field:
    config.eval[field.split('.')[1]] = value
  else:
    config[field] = value
  with pytest.raises(ValueError, match=message):
    compare.train_and_evaluate(config, str(tmp_path))


def test_transfer_columns_are_the_image_classify_runs_of_each_encoder(cache_dir, tmp_path):
  config = compare.get_config()
  config.smoke = True
  config.methods = ('autoencoder',)
  config.seeds = (0, 1)
  config.max_train_steps = 4
  config.data.cache_dir = cache_dir
  config.eval = smoke(simclr, cache_dir).eval
  config.transfer.label_fractions = (0.5,)
  config.transfer.mode = 'probe'
  config.transfer.data.cache_dir = cache_dir
  workdir = str(tmp_path)
  summary = compare.train_and_evaluate(config, workdir)
  got = {'probe': [], 'scratch': [], 'pixels': []}
  for seed in (0, 1):
    run = os.path.join(workdir, 'autoencoder', 'steps_4', f'seed_{seed}')
    with open(os.path.join(run, 'summary.json'), 'rb') as f:
      fingerprint = hashlib.sha256(f.read()).hexdigest()[:12]
    for mode in ('probe', 'scratch'):
      with open(os.path.join(workdir, 'transfer', 'autoencoder', 'steps_4', f'seed_{seed}',
                             fingerprint, f'{mode}_0.5', 'summary.json')) as f:
        moved = json.load(f)
      assert (moved['config']['pretrained_workdir'], moved['config']['mode'], moved['seed'],
              moved['config']['data']['label_fraction']) == (run, mode, seed, 0.5)
      got[mode].append(moved['test/accuracy'])
    got['pixels'].append(moved['test/pixel_lr_accuracy'])
  for row, values in (('autoencoder', got['probe']), ('autoencoder (random init)',
                                                       got['scratch']),
                      ('raw pixels', got['pixels'])):
    assert summary[f'eval/{row}/transfer_0.5'] == pytest.approx(np.mean(values))
  header = open(os.path.join(workdir, 'results.md'), encoding='utf-8').readline()
  assert header.rstrip().endswith('| kmeans_ari | transfer_0.5 |')
  config.transfer.mode = 'scratch'
  with pytest.raises(ValueError, match='transfer.mode'):
    compare.validate_config(config)
