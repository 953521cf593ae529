"""Tests for experiments.image_classify: restoring each learner read-only, the refusals, the
image conversion by hand, the label splits, selection and the single test, resume, probe."""

import hashlib
import json
import math
import os
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from benchmarks import image_standins
from experiments import autoencoder, byol, dcgan, image_classify, mlm_pretrain, simclr, vae
from jaxssl.data import image_cache, image_convert, image_tasks, rowfile
from jaxssl.eval import classification, driver
from jaxssl.parallel import mesh as mesh_lib
from jaxssl.train import loop, rngs
from tools import sweep
from tests.experiments.helpers import (assert_same_tree, counting, evals, fail_after, flat,
                                      saved_state)

LEARNERS = [autoencoder, vae, simclr, byol]


@pytest.fixture(scope='module')
def natural(tmp_path_factory):
  """A glob of 32x32x3 IDX files (120 train, 30 test, 10 classes): another dataset than the
  8x8x1 digits the learners' smoke runs trained on."""
  folder = tmp_path_factory.mktemp('natural32')
  image_standins.write_standin('natural32', str(folder), num_train=120, num_test=30)
  return str(folder / '*')


def _config(pretrained, cache_dir, **overrides):
  c = image_classify.smoke_config()
  c.pretrained_workdir = pretrained
  c.data.cache_dir = cache_dir
  c.update_from_flattened_dict(overrides)
  return c


def _files(folder) -> dict:
  return {os.path.relpath(os.path.join(d, n), folder): os.stat(os.path.join(d, n)).st_mtime_ns
          for d, subdirs, names in os.walk(folder) for n in names + subdirs}


def _initial_state(config):
  data = image_classify.prepare_data(config, None)
  try:
    mesh = mesh_lib.make_mesh(config.mesh)
    return image_classify.create_train_state(config, data, mesh,
                                             rngs.run_keys(config.seed).init), data
  finally:
    data['manager'].close()


@pytest.mark.parametrize('learner', LEARNERS, ids=lambda m: m.EXPERIMENT)
def test_restores_each_learners_encoder_read_only_without_its_data(learner, smoke_run, natural,
                                                                   cache_dir, monkeypatch):
  workdir, summary = smoke_run(learner)
  before = _files(workdir)
  prepared = []
  prepare = image_cache.prepare
  monkeypatch.setattr(image_cache, 'prepare', lambda data, **kw: (
      prepared.append(data.get('files')), prepare(data, **kw))[1])
  state, data = _initial_state(_config(workdir, cache_dir, **{'data.files': natural}))
  assert prepared == [natural]  # only the target set is read, never the learner's digits
  saved = saved_state(workdir, summary['step'])
  assert_same_tree(state.params['backbone'], saved['params'])
  assert_same_tree(state.params['batch_stats'], (saved.get('extra') or {}).get('batch_stats') or {})
  assert state.graphdef['input_shape'] == (8, 8, 1)
  assert data['info']['pretrained/experiment'] == learner.EXPERIMENT
  assert data['info']['pretrained/step'] == summary['step']
  assert _files(workdir) == before  # nothing written, created or touched


def test_a_run_still_going_is_read_as_it_is(smoke_run, cache_dir, tmp_path):
  workdir, summary = smoke_run(simclr)
  going = str(tmp_path / 'going')
  shutil.copytree(workdir, going)
  os.remove(os.path.join(going, 'summary.json'))  # as while it trains: no summary yet,
  partial = os.path.join(going, 'checkpoints', '9.orbax-checkpoint-tmp-1', 'state')
  os.makedirs(partial)  # and a save in progress, which its own manager would clean up
  with open(os.path.join(partial, 'manifest.ocdbt'), 'wb') as f:
    f.write(b'\x00')
  before = _files(going)
  state, data = _initial_state(_config(going, cache_dir))
  assert data['learner'].image_shape == (8, 8, 1)  # from its image cache entry
  assert_same_tree(state.params['backbone'], saved_state(workdir, summary['step'])['params'])
  assert _files(going) == before


def test_workdirs_of_other_runs_are_refused_naming_what_they_hold(smoke_run, cache_dir, tmp_path):
  for module in (dcgan, mlm_pretrain):
    other, _ = smoke_run(module)
    with pytest.raises(ValueError, match=(
        f'config.pretrained_workdir={other} holds a {module.EXPERIMENT!r} run; image '
        r'representation learners \(autoencoder, vae, simclr, byol\) are restored here')):
      image_classify.train_and_evaluate(_config(other, cache_dir), str(tmp_path / 'w'))
  empty = tmp_path / 'empty'
  (empty / 'images').mkdir(parents=True)
  (empty / 'notes.txt').write_text('x')
  for folder, holds in ((empty, 'it holds images, notes.txt'),
                        (tmp_path / 'none', 'it does not exist')):
    with pytest.raises(FileNotFoundError, match=(
        f'config.pretrained_workdir={folder} holds no checkpoints \\({holds}\\)')):
      image_classify.train_and_evaluate(_config(str(folder), cache_dir), str(tmp_path / 'w'))
  with pytest.raises(ValueError, match='config.pretrained_workdir is required'):
    image_classify.train_and_evaluate(_config('', cache_dir), str(tmp_path / 'w'))


_to_input = jax.jit(image_convert.to_input, static_argnums=1)


def test_resize_and_channels_by_hand():
  # Every row [0, 1, 2, 4]; 4 -> 2 columns, bilinear with antialiasing: output column j
  # centred at input coordinate 2 j + 1 weighs the pixel centres 0.5 .. 3.5 by a triangle of
  # radius 2: (0.75, 0.75, 0.25, 0) and (0, 0.25, 0.75, 0.75), normalised by 1.75, so
  # (0.75 * 0 + 0.75 * 1 + 0.25 * 2) / 1.75 = 5/7 and (0.25 + 1.5 + 3) / 1.75 = 19/7.
  image = jnp.broadcast_to(jnp.array([0.0, 1.0, 2.0, 4.0]), (1, 4, 4))[..., None]
  np.testing.assert_allclose(_to_input(image, (4, 2, 1))[0, :, :, 0],
                             [[5 / 7, 19 / 7]] * 4, rtol=1e-6)
  # [0, 1] -> 4 columns: half-pixel centres at -0.25, 0.25, 0.75, 1.25, clamped at the edges.
  image = jnp.array([[0.0, 1.0]] * 2)[None, ..., None]
  np.testing.assert_allclose(_to_input(image, (2, 4, 1))[0, :, :, 0],
                             [[0, 0.25, 0.75, 1]] * 2, atol=1e-7)
  # uint8 / 255, then luma 0.2989 R + 0.587 G + 0.114 B (3 -> 1).
  rgb = jnp.array([[[[255, 0, 0], [0, 255, 0], [0, 0, 255], [51, 102, 255]]]], jnp.uint8)
  np.testing.assert_allclose(_to_input(rgb, (1, 4, 1))[0, 0, :, 0],
                             [0.2989, 0.587, 0.114, 0.2989 * 0.2 + 0.587 * 0.4 + 0.114],
                             rtol=1e-6)
  # 1 -> 3: the grey value in every channel; the same shape: the scaled image itself.
  grey = jnp.full((1, 2, 2, 1), 51, jnp.uint8)
  np.testing.assert_allclose(_to_input(grey, (2, 2, 3)), np.full((1, 2, 2, 3), 0.2))
  np.testing.assert_allclose(_to_input(grey, (2, 2, 1)), np.full((1, 2, 2, 1), 0.2),
                             rtol=1e-6)
  with pytest.raises(ValueError, match='images of 2 channels cannot become the encoder.s 3'):
    image_convert.to_input(jnp.zeros((1, 2, 2, 2)), (2, 2, 3))


def _train_split(labels):
  labels = np.asarray(labels, np.int32)
  rows = np.zeros((len(labels), 1, 1, 1), np.uint8)
  return {'image': rowfile.Selection(rows, np.arange(len(labels))), 'label': labels}


def test_label_subsets_are_stratified_nested_and_fixed_by_the_split_seed():
  labels = np.repeat([0, 1, 2], [300, 120, 12])  # 432 images, one class rare
  rng = np.random.default_rng(0)
  train = _train_split(rng.permutation(labels))
  data = image_tasks.data_config()
  subsets, validations = {}, []
  for fraction in (0.01, 0.1, 1.0):
    data.label_fraction = fraction
    labelled, validation, pool = image_tasks.split_training(train, data)
    subsets[fraction] = set(labelled['image'].index)
    validations.append(validation['image'].index)
    assert not subsets[fraction] & set(validation['image'].index)
    assert len(validation['label']) == 44 and pool == 388  # ceil(0.1 * 432) held out
    counts = np.bincount(labelled['label'], minlength=3)
    in_pool = np.bincount(train['label'][np.setdiff1d(np.arange(432), validation['image']
                                                      .index)], minlength=3)
    np.testing.assert_array_equal(counts, np.ceil(fraction * in_pool))  # >= 1 per class
  assert subsets[0.01] < subsets[0.1] < subsets[1.0]  # nested
  assert all(np.array_equal(v, validations[0]) for v in validations)  # one validation split
  # The rule by hand: the smallest sha256(f'{split_seed}\0{purpose}\0' + 8-byte position).
  key = lambda seed, purpose, i: hashlib.sha256(f'{seed}\0{purpose}\0'.encode()
                                                + i.to_bytes(8, 'big')).digest()
  data.label_fraction = 0.1
  for seed in (0, 1):
    data.split_seed = seed
    labelled, validation, _ = image_tasks.split_training(train, data)
    held = sorted(range(432), key=lambda i: key(seed, 'validation', i))[:44]
    assert sorted(validation['image'].index) == sorted(held)
    want = []
    for c in range(3):
      members = [i for i in range(432) if train['label'][i] == c and i not in held]
      want += sorted(members, key=lambda i: key(seed, 'labels', i))[:math.ceil(
          0.1 * len(members))]
    assert sorted(labelled['image'].index) == sorted(want)
    assert (set(want) == subsets[0.1]) == (seed == 0)


def test_validation_and_test_are_disjoint_from_the_labelled_images(smoke_run, cache_dir):
  workdir, _ = smoke_run(simclr)
  config = _config(workdir, cache_dir, **{'data.label_fraction': 0.5})
  data = image_classify.prepare_data(config, None)
  data['manager'].close()
  prepared = image_cache.prepare(config.data, cache_dir=cache_dir)  # digits: test held out
  test_rows = set(np.flatnonzero(prepared.held_out))
  train, validation = set(data['train']['image'].index), set(data['validation']['image'].index)
  assert len(test_rows) == data['info']['data/test_examples'] == 360
  assert not train & validation and not (train | validation) & test_rows
  assert data['info']['data/train_examples'] == len(train)


def test_validation_selects_the_step_and_test_is_read_once(smoke_run, cache_dir, tmp_path,
                                                           monkeypatch):
  workdir, _ = smoke_run(simclr)
  config = _config(workdir, cache_dir, eval_every_steps=1, **{'optim.learning_rate': 3e-3})
  seen, validation = [], {}
  per_example = driver.per_example_over_split

  def recording(eval_fn, params, rows, mesh, **kw):
    seen.append(len(rows['label']))
    return per_example(eval_fn, params, rows, mesh, **kw)

  write = loop.write_evaluation

  def remember(results, writer, run, step):
    if step == config.num_train_steps:  # as if the last step were the worst
      results = dict(results, accuracy=0.0)
    validation[step] = results['accuracy']
    return write(results, writer, run, step)

  monkeypatch.setattr(driver, 'per_example_over_split', recording)
  monkeypatch.setattr(loop, 'write_evaluation', remember)
  summary = image_classify.train_and_evaluate(config, str(tmp_path / 'w'))
  n_test, n_val = summary['data/test_examples'], summary['data/validation_examples']
  assert (n_test, n_val) == (360, 144)
  assert seen == [n_val] * 6 + [n_test]  # validation after every step, test once at the end
  best = max(validation.values())
  assert summary['test/selected_step'] == min(s for s, v in validation.items() if v == best)
  assert summary['eval/accuracy'] == best > 0  # the selected step's, not the last one's
  assert 0 < summary['test/majority_accuracy'] < 1 and 0 < summary['test/pixel_lr_accuracy']
  with open(os.path.join(tmp_path, 'w', 'summary.json')) as f:
    assert json.load(f)['eval/accuracy'] == best


def test_the_baselines_are_fitted_once_per_labelled_subset(smoke_run, cache_dir, tmp_path,
                                                          monkeypatch):
  workdir, _ = smoke_run(autoencoder)
  fits = []
  fit = classification.logistic_regression

  def counted(*args, **kwargs):
    fits.append(kwargs['c_grid'])
    return fit(*args, **kwargs)

  monkeypatch.setattr(classification, 'logistic_regression', counted)
  # pixel_max_iter=101: a key no other test's runs share in the session's cache folder.
  run = lambda name, **kw: image_classify.train_and_evaluate(
      _config(workdir, cache_dir, num_train_steps=2, eval_every_steps=2,
              **{'eval.pixel_max_iter': 101}, **kw), str(tmp_path / name))
  pixel = lambda s: {k: v for k, v in s.items() if k.startswith(('test/pixel', 'test/majority'))}
  first = run('a')
  again = run('b', seed=1, mode='scratch')  # another seed and mode: the same labelled subset
  assert len(fits) == 1 and pixel(again) == pixel(first) and len(pixel(first)) >= 3
  config = _config(workdir, cache_dir, **{'eval.pixel_max_iter': 101})
  data = image_classify.prepare_data(config, None)
  data['manager'].close()
  refit = image_classify._fit_baselines(data, config)
  assert pixel(first) == {f'test/{k}': v for k, v in refit.items()}
  run('c', **{'data.label_fraction': 0.5})  # another subset: fitted again
  assert len(fits) == 3


def test_logistic_regression_baseline_picks_c_on_validation():
  rng = np.random.default_rng(0)
  x = rng.normal(size=(60, 3))
  y = (x[:, 0] > 0).astype(int)
  split = lambda a, b: (x[a:b], y[a:b])
  got = classification.logistic_regression('lr', split(0, 30), split(30, 45), split(45, 60),
                                           num_classes=2, c_grid=(1e-4, 1.0))
  assert got['lr_c'] == 1.0 and got['lr_validation_accuracy'] > 0.8
  assert classification.logistic_regression('lr', (x[:3], np.zeros(3, int)), split(30, 45),
                                            split(45, 60), num_classes=2, c_grid=(1.0,)) == {}
  assert classification.majority(np.array([2, 1, 2]), np.array([2, 0]), 3) == {
      'majority_accuracy': 0.5, 'majority_macro_f1': pytest.approx((0 + 0 + 2 / 3) / 3)}


def test_interrupted_run_resumes_to_the_same_selection_and_test(smoke_run, cache_dir, natural,
                                                                tmp_path):
  workdir, _ = smoke_run(simclr)
  config = _config(workdir, cache_dir, eval_every_steps=1, **{'data.files': natural})
  reference = image_classify.train_and_evaluate(config, str(tmp_path / 'ref'))
  resumed_dir = str(tmp_path / 'w')
  fail_after(4, image_classify, config, resumed_dir)
  with counting() as counts:
    resumed = image_classify.train_and_evaluate(config, resumed_dir)
  assert counts == {'trace': 1, 'compile': 1}
  assert resumed['restored_from_step'] == 3
  tests = lambda s: {k: v for k, v in s.items() if k.startswith('test/')}
  assert tests(resumed) == tests(reference) and evals(resumed) == evals(reference)
  for part in ('params', 'extra'):  # the selected weights too
    assert_same_tree(saved_state(resumed_dir, 6)[part], saved_state(str(tmp_path / 'ref'), 6)[part])


def test_probe_leaves_the_encoder_and_its_statistics_unchanged(smoke_run, cache_dir, tmp_path):
  workdir, summary = smoke_run(simclr)
  run = str(tmp_path / 'probe')
  image_classify.train_and_evaluate(_config(workdir, cache_dir, mode='probe'), run)
  after, before = saved_state(run, 6)['params'], saved_state(workdir, summary['step'])
  assert_same_tree(after['backbone'], before['params'])
  assert_same_tree(after['batch_stats'], before['extra']['batch_stats'])
  first, _ = _initial_state(_config(workdir, cache_dir, mode='probe'))
  assert not np.array_equal(after['head']['kernel'], jax.device_get(
      first.params['head']['kernel']))
  # Fine-tuning, by contrast, moves the encoder and its BatchNorm statistics.
  tuned = str(tmp_path / 'finetune')
  image_classify.train_and_evaluate(_config(workdir, cache_dir), tuned)
  tuned = saved_state(tuned, 6)['params']
  for got, want in ((tuned['backbone'], before['params']),
                    (tuned['batch_stats'], before['extra']['batch_stats'])):
    key = 'encoder/norms/0/mean' if 'encoder/norms/0/mean' in flat(want) else \
        'encoder/convs/0/kernel'
    assert not np.array_equal(flat(got)[key], flat(want)[key])


def test_scratch_keeps_the_architecture_but_not_the_weights(smoke_run, cache_dir):
  workdir, summary = smoke_run(byol)
  state, _ = _initial_state(_config(workdir, cache_dir, mode='scratch'))
  got, want = flat(state.params['backbone']), flat(saved_state(workdir, summary['step'])
                                                      ['params'])
  assert sorted(got) == sorted(want)
  assert {k: v.shape for k, v in got.items()} == {k: v.shape for k, v in want.items()}
  assert not np.array_equal(got['encoder/convs/0/kernel'], want['encoder/convs/0/kernel'])


def test_label_fraction_sweep_tabulates_and_plots_against_the_number_of_labels(
    smoke_run, cache_dir, natural, tmp_path):
  workdir, _ = smoke_run(autoencoder)
  root = str(tmp_path / 'sweep')
  summary = sweep.run_sweep(
      'image_classify', root, seeds=(0,), base='smoke',
      sets=[f'pretrained_workdir={workdir}', f'data.cache_dir={cache_dir}',
            f'data.files={natural}', 'data.label_fraction=0.2,1.0', 'mode=probe'],
      plot='data.label_fraction', plot_by_count=True,
      plot_metrics=['test/accuracy', 'test/pixel_lr_accuracy', 'test/majority_accuracy'])
  # 120 train images, 12 of each class: 12 held out for validation, then ceil(0.2 n_c).
  counts = [summary[f'data/data.label_fraction={f}/train_examples'] for f in (0.2, 1.0)]
  assert counts[1] == 108 and 20 <= counts[0] <= 30
  assert 0 <= summary['test/data.label_fraction=1.0/accuracy'] <= 1
  assert (tmp_path / 'sweep' / 'curves.png').read_bytes().startswith(b'\x89PNG')
