"""The sweep runner: a tiny k-means grid whose tables are recomputed from the runs' own
summaries and whose finished runs are never trained again, value parsing per field type,
the one-line errors, and the commands it prints."""

import csv
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys

import numpy as np
import pytest
from absl import flags
from ml_collections import config_flags

from experiments import autoencoder, kmeans, simclr
from jaxssl.train import preemption
from tools import sweep

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FOLDERS = ('method.init=k-means++', 'method.init=random')
SEEDS = (0, 1, 2)


def _read(path):
  with open(path, encoding='utf-8') as f:
    return f.read()


def test_grid_tables_are_recomputed_from_the_runs_and_finished_runs_never_retrain(
    tmp_path, monkeypatch):
  root = str(tmp_path / 'sweep')
  calls = []
  train = kmeans.train_and_evaluate

  def counting(config, workdir):
    calls.append(os.path.relpath(workdir, root))
    return train(config, workdir)

  monkeypatch.setattr(kmeans, 'train_and_evaluate', counting)
  kwargs = dict(seeds=SEEDS, sets=['method.init=k-means++,random', 'method.max_iter=20'],
                base='smoke')
  summary = sweep.run_sweep('kmeans', root, **kwargs)
  assert calls == [f'{f}/seed_{s}' for f in FOLDERS for s in SEEDS]
  assert summary['experiment'] == 'sweep' and summary['num_runs_trained'] == 6

  # Recompute every cell from the six runs' summary.json files.
  runs = {f: [json.loads(_read(os.path.join(root, f, f'seed_{s}', 'summary.json')))
              for s in SEEDS] for f in FOLDERS}
  assert {r['config']['method']['init'] for r in runs[FOLDERS[1]]} == {'random'}
  assert [r['config']['method']['max_iter'] for r in runs[FOLDERS[0]]] == [20, 20, 20]
  assert [r['seed'] for r in runs[FOLDERS[0]]] == list(SEEDS)
  metrics = sorted(k[len('eval/'):] for k in runs[FOLDERS[0]][0] if k.startswith('eval/'))
  assert {'ari', 'inertia', 'v_measure'} <= set(metrics)
  with open(os.path.join(root, 'results.csv'), newline='', encoding='utf-8') as f:
    rows = list(csv.DictReader(f))
  assert list(rows[0]) == ['method.init', 'seeds'] + [
      f'{m}_{s}' for m in metrics for s in ('mean', 'std')]
  assert [r['method.init'] for r in rows] == ['k-means++', 'random']
  md = _read(os.path.join(root, 'results.md')).splitlines()
  assert md[0] == '| method.init | seeds | ' + ' | '.join(metrics) + ' |'
  spread = []
  for folder, row, line in zip(FOLDERS, rows, md[2:]):
    assert row['seeds'] == '3'
    cells = [line.split(' | ')[0][2:], line.split(' | ')[1]]
    for m in metrics:
      values = np.array([r[f'eval/{m}'] for r in runs[folder]])
      mean, std = values.mean(), np.sqrt(((values - values.mean()) ** 2).sum() / 2)
      assert float(row[f'{m}_mean']) == pytest.approx(mean, rel=1e-12)
      assert float(row[f'{m}_std']) == pytest.approx(std, rel=1e-9, abs=1e-12)
      assert summary[f'eval/{folder}/{m}'] == pytest.approx(mean, rel=1e-12)
      cells.append(f'{mean:.4f} +- {std:.4f}')
      spread.append(std)
    assert line == '| ' + ' | '.join(cells) + ' |'
  assert max(spread) > 0  # the seeds do differ, so the std is really tested

  tables = [_read(os.path.join(root, name)) for name in ('results.md', 'results.csv')]

  def fail(config, workdir):
    raise AssertionError(f'{workdir} was finished and must not train again')

  monkeypatch.setattr(kmeans, 'train_and_evaluate', fail)
  again = sweep.run_sweep('kmeans', root, **kwargs)
  assert again['num_runs_trained'] == 0
  assert [_read(os.path.join(root, n)) for n in ('results.md', 'results.csv')] == tables

  # A deleted run and a run whose summary records another config train again; no other.
  shutil.rmtree(os.path.join(root, FOLDERS[1], 'seed_1'))
  path = os.path.join(root, FOLDERS[0], 'seed_2', 'summary.json')
  edited = json.loads(_read(path))
  edited['config']['method']['max_iter'] = 19
  with open(path, 'w', encoding='utf-8') as f:
    json.dump(edited, f)
  calls.clear()
  monkeypatch.setattr(kmeans, 'train_and_evaluate', counting)
  third = sweep.run_sweep('kmeans', root, **kwargs)
  assert calls == [f'{FOLDERS[0]}/seed_2', f'{FOLDERS[1]}/seed_1']
  assert third['num_runs_trained'] == 2
  assert [_read(os.path.join(root, n)) for n in ('results.md', 'results.csv')] == tables


def test_without_keep_going_the_first_failed_run_stops_the_sweep(tmp_path, monkeypatch):
  root = str(tmp_path / 'sweep')
  calls = []

  def diverging(config, workdir):
    calls.append(os.path.relpath(workdir, root))
    raise FloatingPointError('non-finite train/loss=nan at step 2')

  monkeypatch.setattr(kmeans, 'train_and_evaluate', diverging)
  with pytest.raises(ValueError) as e:
    sweep.run_sweep('kmeans', root, seeds=(0, 1), sets=['method.init=k-means++,random'],
                    base='smoke')
  assert str(e.value) == (f'{root}/{FOLDERS[0]}/seed_0: non-finite train/loss=nan at step 2')
  assert calls == [f'{FOLDERS[0]}/seed_0']
  assert not os.path.exists(os.path.join(root, 'results.md'))


def test_keep_going_records_a_diverged_setting_and_still_trains_the_others(cache_dir,
                                                                         tmp_path):
  # Adam's first steps are about the learning rate in size, so lr=1e30 overflows the weights
  # and the loss or gradient is non-finite within the smoke run's first log steps.
  root = str(tmp_path / 'sweep')
  sets = ['optim.learning_rate=1e30,1e-3', f'data.cache_dir={cache_dir}']
  bad, good = (os.path.join(root, f'optim.learning_rate={lr}', 'seed_0')
               for lr in ('1e+30', '0.001'))
  with pytest.raises(ValueError) as e:
    sweep.run_sweep('autoencoder', root, seeds=(0,), sets=sets, base='smoke', keep_going=True)
  summary = json.loads(_read(os.path.join(root, 'summary.json')))
  assert list(summary['failed_runs']) == [bad] and summary['num_runs_trained'] == 1
  reason = summary['failed_runs'][bad]
  assert 'non-finite' in reason and '\n' not in reason  # one line, e.g. from the loop's check
  assert str(e.value) == (f'1 of 2 runs failed (the tables in {root} hold the others): '
                          f'{bad}: {reason}')
  run = json.loads(_read(os.path.join(good, 'summary.json')))
  assert summary['eval/optim.learning_rate=0.001/mse'] == run['eval/mse']
  assert summary['eval/optim.learning_rate=1e+30/mse'] is None
  with open(os.path.join(root, 'results.csv'), newline='', encoding='utf-8') as f:
    rows = list(csv.DictReader(f))
  assert [(r['optim.learning_rate'], r['seeds'], r['failed']) for r in rows] == [
      ('1e+30', '0', f'seed 0: {reason}'), ('0.001', '1', '')]  # seeds: the finished ones
  assert rows[0]['mse_mean'] == '' and float(rows[1]['mse_mean']) == run['eval/mse']
  metrics = sorted(k[len('eval/'):] for k in run if k.startswith('eval/'))
  md = _read(os.path.join(root, 'results.md')).splitlines()
  assert md[0] == '| optim.learning_rate | seeds | failed | ' + ' | '.join(metrics) + ' |'
  assert md[2] == f'| 1e+30 | 0 | seed 0: {reason} | ' + ' | '.join(['-'] * len(metrics)) + ' |'
  assert md[3].startswith('| 0.001 | 1 |  | ')


def test_a_setting_with_one_finished_seed_shows_its_mean_and_no_std(tmp_path, monkeypatch):
  root = str(tmp_path / 'sweep')
  # Made-up summaries: ari 0.5 and 0.25 for k-means++ (mean 0.375, std with ddof=1
  # sqrt(2 * 0.125^2 / 1) = 0.1768); random finishes seed 0 only (ari 0.125) and diverges at
  # seed 1.
  ari = {('k-means++', 0): 0.5, ('k-means++', 1): 0.25, ('random', 0): 0.125}

  def fake(config, workdir):
    if (config.method.init, config.seed) not in ari:
      raise FloatingPointError('non-finite train/loss=inf at step 1')
    return {'eval/ari': ari[config.method.init, config.seed]}

  monkeypatch.setattr(kmeans, 'train_and_evaluate', fake)
  with pytest.raises(ValueError, match='1 of 4 runs failed'):
    sweep.run_sweep('kmeans', root, seeds=(0, 1), sets=['method.init=k-means++,random'],
                    base='smoke', keep_going=True)
  md = _read(os.path.join(root, 'results.md'))
  assert 'nan' not in md.lower()
  assert md.splitlines()[2:] == [
      '| k-means++ | 2 |  | 0.3750 +- 0.1768 |',
      '| random | 1 | seed 1: non-finite train/loss=inf at step 1 | 0.1250 +- - |']
  with open(os.path.join(root, 'results.csv'), newline='', encoding='utf-8') as f:
    rows = list(csv.DictReader(f))
  assert [(r['seeds'], r['ari_mean']) for r in rows] == [('2', '0.375'), ('1', '0.125')]
  assert float(rows[0]['ari_std']) == pytest.approx(0.25 / np.sqrt(2), rel=1e-12)
  assert rows[1]['ari_std'] == ''  # empty, as for a missing value


@pytest.mark.parametrize('module, field, text, expected', [
    (autoencoder, 'optim.learning_rate', '1e-3', 0.001),
    (autoencoder, 'optim.learning_rate', '2', 2.0),
    (autoencoder, 'num_train_steps', '200', 200),
    (autoencoder, 'model.activation', 'relu', 'relu'),
    (autoencoder, 'model.widths', '(8,16)', (8, 16)),
    (autoencoder, 'model.widths', '( 8, 16, 32 )', (8, 16, 32)),
    (autoencoder, 'model.widths', '(8,)', (8,)),
    (simclr, 'eval.probe_c', '(1,10)', (1.0, 10.0)),
    (kmeans, 'data.standardize', 'false', False),
    (kmeans, 'data.standardize', 'True', True),
    (kmeans, 'data.files', '/data/*-ubyte.gz', '/data/*-ubyte.gz'),  # a placeholder(str)
    (kmeans, 'data.max_examples', '100', 100),  # a placeholder(int)
])
def test_values_are_parsed_as_the_field_type(module, field, text, expected):
  value = sweep.parse_value(module.get_config(), field, text)
  assert value == expected and type(value) is type(expected)
  if isinstance(expected, tuple):
    assert [type(x) for x in value] == [type(x) for x in expected]


def test_sets_split_into_fixed_values_and_grid_axes():
  grid = sweep.parse_sets(autoencoder.get_config(), [
      'model.widths=(8,16),(16,32)', 'optim.learning_rate=3e-4', 'num_train_steps=10,20,30'])
  assert grid.fixed == {'optim.learning_rate': 3e-4}
  assert grid.axes == {'model.widths': ((8, 16), (16, 32)), 'num_train_steps': (10, 20, 30)}
  runs = sweep.plan('autoencoder', 'w', seeds=(4, 5), sets=['model.widths=(8,16),(16,32)',
                                                            'optim.learning_rate=3e-4'])
  assert [(r.workdir, r.seed) for r in runs] == [
      ('w/model.widths=8-16/seed_4', 4), ('w/model.widths=8-16/seed_5', 5),
      ('w/model.widths=16-32/seed_4', 4), ('w/model.widths=16-32/seed_5', 5)]
  assert [r.config.seed for r in runs] == [4, 5, 4, 5]
  assert runs[2].config.model.widths == (16, 32)
  assert runs[2].config.optim.learning_rate == 3e-4


def test_folder_names_are_readable_and_filesystem_safe():
  assert sweep.folder_name({}) == 'base'
  assert sweep.folder_name({'optim.learning_rate': 1e-5, 'data.files': '/a b/*.txt',
                            'model.widths': (), 'data.standardize': False}) == (
      'optim.learning_rate=1e-05,data.files=_a_b__.txt,model.widths=empty,'
      'data.standardize=false')
  long = sweep.folder_name({'data.files': 'x' * 300})
  assert len(long) == sweep.MAX_FOLDER_CHARS and long.startswith('data.files=xxx')
  assert long != sweep.folder_name({'data.files': 'x' * 301})


WIDTHS_HINT = ('--set model.widths: \'8\' is not a tuple of int: write each tuple in '
               'parentheses, e.g. model.widths=(8,16), or model.widths=(8,16),(16,32) for two '
               'values')


@pytest.mark.parametrize('experiment, sets, seeds, message', [
    ('autoencoder', ['optim.learnig_rate=1e-3'], (0,),
     "--set optim.learnig_rate: no such field in autoencoder's config; did you mean "
     'optim.learning_rate?'),
    ('autoencoder', ['num_train_steps=1.5'], (0,), "--set num_train_steps: '1.5' is not an int"),
    ('autoencoder', ['optim.learning_rate=fast'], (0,),
     "--set optim.learning_rate: 'fast' is not a float"),
    ('autoencoder', ['model.widths=8,16'], (0,), WIDTHS_HINT),
    ('autoencoder', ['model.widths=(8,x)'], (0,), "--set model.widths: 'x' is not an int"),
    ('kmeans', ['data.standardize=yes'], (0,),
     "--set data.standardize: 'yes' is not a bool (true or false)"),
    ('autoencoder', ['model=3'], (0,),
     '--set model: a group of fields, not a value; set one of its fields'),
    ('autoencoder', ['num_train_steps='], (0,), '--set num_train_steps=: empty value'),
    ('autoencoder', ['num_train_steps=2,,3'], (0,), '--set num_train_steps=2,,3: empty value'),
    ('autoencoder', ['num_train_steps'], (0,),
     '--set=num_train_steps: expected FIELD=VALUE or FIELD=VALUE1,VALUE2,...'),
    ('autoencoder', ['optim.learning_rate=1e-3', 'optim.learning_rate=3e-4'], (0,),
     '--set optim.learning_rate is given twice: list its values in one --set'),
    ('autoencoder', ['optim.learning_rate=1e-3,0.001'], (0,),
     '--set optim.learning_rate=1e-3,0.001 lists a value twice'),
    ('autoencoder', ['seed=1,2'], (0,), '--set seed: the seed is set by --seeds'),
    ('autoencoder', [], (),
     'no seeds, so the sweep has no runs: give integers >= 0, e.g. --seeds=0,1,2'),
    ('autoencoder', [], (0, -1), '--seeds: -1 is not an integer >= 0'),
    ('autoencoder', [], (1, 1), '--seeds: 1 is listed twice'),
    ('autoencodr', [], (0,), "--experiment='autoencodr' is not one of mlm_pretrain, "
     'clm_pretrain, autoencoder, vae, dcgan, kmeans, simclr, byol, text_classify, '
     'image_classify'),
])
def test_bad_input_is_one_clear_line(experiment, sets, seeds, message):
  with pytest.raises(ValueError) as e:
    sweep.plan(experiment, 'w', seeds=seeds, sets=sets)
  assert str(e.value) == message


def test_bad_seed_text_and_base_are_named():
  assert sweep.parse_seeds(' 0, 1,2 ') == (0, 1, 2) and sweep.parse_seeds('') == ()
  with pytest.raises(ValueError, match=re.escape("--seeds=0,x: 'x' is not an integer")):
    sweep.parse_seeds('0,x')
  with pytest.raises(ValueError, match=re.escape("--base='tiny' is not one of default, smoke")):
    sweep.plan('kmeans', 'w', seeds=(0,), base='tiny')


def test_a_value_the_experiment_rejects_fails_before_anything_is_written(tmp_path):
  root = tmp_path / 'sweep'
  with pytest.raises(ValueError, match=re.escape(
      f"{root}/model.activation=tanh/seed_0: model.activation='tanh' must be one of")):
    sweep.run_sweep('autoencoder', str(root), seeds=(0,), sets=['model.activation=relu,tanh'])
  assert not root.exists()


def test_print_commands_for_a_two_by_two_grid():
  sets = ['optim.learning_rate=1e-3,3e-4', 'model.widths=(4,8),(8,16)']
  runs = sweep.plan('autoencoder', '/runs/s', seeds=(0,), sets=sets)
  prefix = 'python -m experiments.autoencoder --workdir=/runs/s/'
  assert sweep.command_lines('autoencoder', runs, sets) == [
      prefix + 'optim.learning_rate=0.001,model.widths=4-8/seed_0 --config.seed=0 '
      "--config.optim.learning_rate=0.001 '--config.model.widths=(4, 8)'",
      prefix + 'optim.learning_rate=0.001,model.widths=8-16/seed_0 --config.seed=0 '
      "--config.optim.learning_rate=0.001 '--config.model.widths=(8, 16)'",
      prefix + 'optim.learning_rate=0.0003,model.widths=4-8/seed_0 --config.seed=0 '
      "--config.optim.learning_rate=0.0003 '--config.model.widths=(4, 8)'",
      prefix + 'optim.learning_rate=0.0003,model.widths=8-16/seed_0 --config.seed=0 '
      "--config.optim.learning_rate=0.0003 '--config.model.widths=(8, 16)'"]


def test_printed_command_rebuilds_the_runs_config_from_the_smoke_base():
  sets = ['model.widths=(4,8),(8,16)', 'method.noise_std=0.3', 'data.cache_dir=/tmp/c d']
  run = sweep.plan('autoencoder', 'w', seeds=(3,), sets=sets, base='smoke')[1]
  (line,) = sweep.command_lines('autoencoder', [run], sets)
  argv = shlex.split(line)
  assert argv[:4] == ['python', '-m', 'experiments.autoencoder', f'--workdir={run.workdir}']
  args = ['prog', *argv[4:]]
  flag_values = flags.FlagValues()  # the experiment's own flag parsing, on a private registry
  config = config_flags.DEFINE_config_dict('config', autoencoder.get_config(),
                                           flag_values=flag_values, sys_argv=args)
  flag_values(args)
  assert config.value.to_dict() == run.config.to_dict()
  assert run.config.num_train_steps == autoencoder.smoke_config().num_train_steps


def test_every_training_experiment_can_be_swept():
  folder = os.path.join(ROOT, 'experiments')
  trainable = sorted(name[:-3] for name in os.listdir(folder) if name.endswith('.py') and all(
      f'def {fn}(' in _read(os.path.join(folder, name))
      for fn in ('get_config', 'smoke_config', 'train_and_evaluate')))
  assert trainable == sorted(sweep.EXPERIMENTS)


def test_command_line_error_is_one_line(tmp_path):
  proc = subprocess.run(
      [sys.executable, '-m', 'tools.sweep', '--experiment=kmeans',
       f'--workdir={tmp_path / "w"}', '--set=method.n_clusterz=3,4'],
      cwd=ROOT, capture_output=True, text=True, timeout=300, check=False)
  assert proc.returncode == 1
  assert 'Traceback' not in proc.stderr, proc.stderr[-3000:]
  assert proc.stderr.rstrip().splitlines()[-1] == (
      "error: --set method.n_clusterz: no such field in kmeans's config; did you mean "
      'method.n_clusters?')
  assert not (tmp_path / 'w').exists()


def test_preempted_run_exits_143_with_one_line(tmp_path, monkeypatch, capsys):
  def preempted(config, workdir):
    raise preemption.Preempted(3)

  monkeypatch.setattr(kmeans, 'train_and_evaluate', preempted)
  monkeypatch.setattr(sys, 'argv', ['sweep', '--experiment=kmeans', '--base=smoke',
                                    f'--workdir={tmp_path / "w"}', '--seeds=0'])
  previous = signal.getsignal(signal.SIGTERM)
  try:
    with pytest.raises(SystemExit) as e:
      sweep.main()
    # SIGTERM outside a run's loop now exits with one line too (test_cli runs that case).
    assert signal.getsignal(signal.SIGTERM) is preemption._exit_terminated
  finally:
    signal.signal(signal.SIGTERM, previous)
  assert e.value.code == 143
  assert capsys.readouterr().err.rstrip().splitlines()[-1].startswith(
      'preempted (SIGTERM) at step 3')


def test_test_metrics_are_tabulated_and_a_numeric_axis_is_plotted(tmp_path, monkeypatch):
  root = str(tmp_path / 'sweep')
  # Made-up summaries: test/acc = k_fraction * (2 for k-means++, 1 for random) + seed / 10;
  # a baseline test/base = 0.5 * fraction whatever the init; eval/ari; a bool to skip.

  def fake(config, workdir):
    fraction, factor = config.data.max_examples / 100, {'k-means++': 2, 'random': 1}
    return {'eval/ari': 0.1, 'test/acc': fraction * factor[config.method.init]
            + config.seed / 10, 'test/base': 0.5 * fraction, 'test/flag': True,
            'data/train_examples': config.data.max_examples, 'data/sha256': 'x'}

  monkeypatch.setattr(kmeans, 'train_and_evaluate', fake)
  with pytest.raises(ValueError, match="--plot='method.k' is not a grid axis"):
    sweep.run_sweep('kmeans', root, seeds=(0, 1), base='smoke', plot='method.k',
                    sets=['data.max_examples=10,100', 'method.init=k-means++,random'])
  summary = sweep.run_sweep('kmeans', root, seeds=(0, 1), base='smoke',
                            sets=['data.max_examples=10,100', 'method.init=k-means++,random'],
                            plot='data.max_examples',
                            plot_metrics=['test/acc', 'test/base'])
  # k-means++ at 100 examples: seeds give 2.0 and 2.1, mean 2.05.
  assert summary['test/data.max_examples=100,method.init=k-means++/acc'] == pytest.approx(2.05)
  assert summary['eval/data.max_examples=100,method.init=k-means++/ari'] == 0.1
  assert summary['data/data.max_examples=10,method.init=random/train_examples'] == 10
  assert not any('flag' in k or 'sha256' in k for k in summary)
  header = _read(os.path.join(root, 'results.md')).splitlines()[0]
  assert header == ('| data.max_examples | method.init | seeds | ari | data/train_examples | '
                    'test/acc | test/base |')
  png = (tmp_path / 'sweep' / 'curves.png').read_bytes()
  assert png.startswith(b'\x89PNG\r\n\x1a\n')


def test_a_baseline_equal_across_series_is_drawn_once():
  from tools import plots  # pylint: disable=import-outside-toplevel
  rows = [{'x': '1', 'mode': m, 'a_mean': a, 'a_std': 0.0, 'b_mean': 0.3, 'b_std': None}
          for m, a in (('p', 0.5), ('q', 0.7))]
  a = plots._series(rows, 'x', ['mode'], 'a')
  b = plots._series(rows, 'x', ['mode'], 'b')
  assert sorted(a) == ['a (mode=p)', 'a (mode=q)'] and list(b) == ['b']
  np.testing.assert_array_equal(a['a (mode=q)'][1], [0.7])


def test_plot_by_count_places_each_value_at_its_number_of_labelled_examples():
  from tools import plots  # pylint: disable=import-outside-toplevel
  rows = [{'f': f, 'mode': m, 'n_mean': n, 'a_mean': a, 'a_std': None}
          for f, n, a in (('0.1', 13.0, 0.5), ('1.0', 130.0, 0.9)) for m in ('p', 'q')]
  positions, ticks, position = plots._x_axis(rows, 'f', 'n', True)
  assert positions == [13.0, 130.0] and ticks == ['13\nf = 0.1', '130\nf = 1']
  np.testing.assert_array_equal(plots._series(rows, 'f', ['mode'], 'a', position)['a'][0],
                                [13.0, 130.0])
  assert plots._x_axis(rows, 'f', 'n', False)[:2] == ([0.1, 1.0], ['0.1\nn = 13', '1\nn = 130'])
  with pytest.raises(ValueError, match='--plot_by_count: the runs report no n for f=0.1'):
    plots._x_axis([{'f': '0.1'}], 'f', 'n', True)


def test_select_keeps_the_best_validation_value_per_group_and_reports_its_test(tmp_path,
                                                                              monkeypatch):
  root = str(tmp_path / 'sweep')
  # Made-up, k = data.max_examples: validation ari favours k = 3 for k-means++ and k = 2
  # for random (a tie at k = 2 and 4 keeps the first, 2); test/acc = 10 k (+ 1 for random).
  val = {('k-means++', 2): 0.1, ('k-means++', 3): 0.9, ('k-means++', 4): 0.5,
         ('random', 2): 0.7, ('random', 3): 0.2, ('random', 4): 0.7}

  def fake(config, workdir):
    init, k = config.method.init, config.data.max_examples
    return {'eval/ari': val[init, k] + config.seed * 0.01,
            'test/acc': 10.0 * k + (init == 'random')}

  monkeypatch.setattr(kmeans, 'train_and_evaluate', fake)
  sets = ['method.init=k-means++,random', 'data.max_examples=2,3,4']
  with pytest.raises(ValueError, match='choose on a validation'):
    sweep.parse_select('data.max_examples:test/acc')
  with pytest.raises(ValueError, match="--select='method.n' is not a grid axis"):
    sweep.run_sweep('kmeans', root, seeds=(0, 1), base='smoke', sets=sets,
                    select=('method.n', 'ari'))
  sweep.run_sweep('kmeans', root, seeds=(0, 1), base='smoke', sets=sets,
                  select=sweep.parse_select('data.max_examples:eval/ari'))
  with open(os.path.join(root, 'selected.csv'), newline='', encoding='utf-8') as f:
    rows = list(csv.DictReader(f))
  assert [(r['method.init'], r['data.max_examples'], float(r['test/acc_mean'])) for r in rows] == [
      ('k-means++', '3', 30.0), ('random', '2', 21.0)]
