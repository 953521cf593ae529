"""Tests for experiments.text_classify: restoring language models, modes, selection, test once."""

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from experiments import autoencoder, clm_pretrain, mlm_pretrain, text_classify
from jaxssl.data import tokenizer as tokenizer_lib
from jaxssl.eval import driver
from jaxssl.models import text_classifier
from jaxssl.parallel import mesh as mesh_lib
from jaxssl.train import loop, rngs
from jaxssl.train import state as state_lib
from tests.experiments.helpers import (assert_same_tree, counting, evals, fail_after, flat,
                                      saved_state)

# Three topics with their own words, 40 texts each: learnable in a few steps.
_WORDS = {'fruit': 'apple pear plum grape melon', 'tools': 'hammer wrench saw drill chisel',
          'sky': 'cloud rain star moon storm'}


def _write_task(folder) -> str:
  rng = np.random.default_rng(0)
  lines = ['text,label']
  for label, words in _WORDS.items():
    for i in range(40):
      lines.append(f'{" ".join(rng.choice(words.split(), 6))} number {i},{label}')
  path = os.path.join(folder, 'task.csv')
  with open(path, 'w', encoding='utf-8') as f:
    f.write('\n'.join(lines) + '\n')
  return path


@pytest.fixture(scope='module')
def task_file(tmp_path_factory):
  return _write_task(str(tmp_path_factory.mktemp('task')))


def _config(pretrained_workdir, task, **overrides):
  c = text_classify.smoke_config()
  c.pretrained_workdir = pretrained_workdir
  c.data.files = task
  c.eval.tfidf_c = (1.0, 10.0)
  c.update_from_flattened_dict(overrides)
  return c


def _initial_state(config, workdir=None):
  data = text_classify.prepare_data(config, workdir)
  try:
    mesh = mesh_lib.make_mesh(config.mesh)
    return text_classify.create_train_state(config, data, mesh,
                                            rngs.run_keys(config.seed).init), data
  finally:
    data['manager'].close()


@pytest.mark.parametrize('lm, part', [(mlm_pretrain, 'encoder'), (clm_pretrain, 'decoder')])
def test_restores_the_backbone_and_tokenizer_of_each_language_model(lm, part, smoke_run,
                                                                   task_file, tmp_path):
  lm_dir, lm_summary = smoke_run(lm)
  config = _config(lm_dir, task_file)
  state, data = _initial_state(config, str(tmp_path))
  # Read back by Orbax directly, not through the experiment's restore.
  want = saved_state(lm_dir, lm_summary['step'])['params'][part]
  assert_same_tree(state.params['backbone'], want)
  assert data['info']['pretrained/experiment'] == lm.EXPERIMENT
  assert data['info']['pretrained/step'] == lm_summary['step']
  with open(os.path.join(lm_dir, 'tokenizer.model'), 'rb') as f:
    assert (tmp_path / 'tokenizer.model').read_bytes() == f.read()
  assert text_classify.pooling(config, data['pretrained']) == (
      'last' if part == 'decoder' else 'mean')


def test_scratch_keeps_the_architecture_but_not_the_weights(smoke_run, task_file):
  lm_dir, lm_summary = smoke_run(mlm_pretrain)
  state, _ = _initial_state(_config(lm_dir, task_file, mode='scratch'))
  want = saved_state(lm_dir, lm_summary['step'])['params']['encoder']
  got, want = flat(state.params['backbone']), flat(want)
  assert sorted(got) == sorted(want)
  assert not np.array_equal(got['token_embed/embedding'], want['token_embed/embedding'])


def test_refuses_a_workdir_of_another_experiment(smoke_run, task_file, tmp_path):
  ae_dir, _ = smoke_run(autoencoder)
  with pytest.raises(ValueError, match=r"holds a 'autoencoder' run; language models "
                                       r'\(mlm_pretrain, clm_pretrain\) are restored here'):
    text_classify.train_and_evaluate(_config(ae_dir, task_file), str(tmp_path / 'w'))
  with pytest.raises(FileNotFoundError, match='pretrained_workdir=.*no checkpoints'):
    text_classify.train_and_evaluate(_config(str(tmp_path / 'none'), task_file),
                                     str(tmp_path / 'w2'))
  with pytest.raises(ValueError, match='pretrained_workdir is required'):
    text_classify.train_and_evaluate(_config('', task_file), str(tmp_path / 'w3'))


def test_encode_rows_follow_the_pretraining_layout(smoke_run):
  lm_dir, _ = smoke_run(mlm_pretrain)
  tok = tokenizer_lib.Tokenizer(os.path.join(lm_dir, 'tokenizer.model'))
  texts = ['a short text', 'word ' * 50]
  ids = [i.tolist() for i in tok.encode(texts)]
  n = len(ids[0])
  rows = text_classify.encode(tok, texts, n + 3)  # room for the first, [PAD] after it
  assert rows[0].tolist() == [tokenizer_lib.CLS_ID, *ids[0], tokenizer_lib.SEP_ID, 0]
  assert len(ids[1]) > n + 1  # the second is cut to n + 1 pieces
  assert rows[1].tolist() == [tokenizer_lib.CLS_ID, *ids[1][:n + 1], tokenizer_lib.SEP_ID]


def test_pooling_by_hand():
  hidden = jnp.arange(2 * 3 * 2, dtype=jnp.float32).reshape(2, 3, 2)
  real = jnp.array([[True, True, False], [True, True, True]])
  np.testing.assert_array_equal(text_classifier.pool(hidden, real, 'cls'), [[0, 1], [6, 7]])
  np.testing.assert_array_equal(text_classifier.pool(hidden, real, 'mean'), [[1, 2], [8, 9]])
  np.testing.assert_array_equal(text_classifier.pool(hidden, real, 'last'), [[2, 3], [10, 11]])


def test_layer_decay_and_probe_update_scales():
  params = {'backbone': {'token_embed': {'embedding': 0}, 'blocks': {0: {'w': 0}, 1: {'w': 0}},
                         'embed_norm': {'scale': 0}},
            'head': {'kernel': 0, 'bias': 0}}
  c = text_classify.get_config()
  c.optim.layer_decay = 0.5
  scales = text_classify.update_scales(params, c, num_layers=2)
  # layer l of n = 2 gets 0.5 ** (3 - l): embeddings (l = 0) 1/8, blocks 1/4 and 1/2, head 1.
  assert scales == {'backbone': {'token_embed': {'embedding': 0.125},
                                 'blocks': {0: {'w': 0.25}, 1: {'w': 0.5}},
                                 'embed_norm': {'scale': 0.125}},
                    'head': {'kernel': 1.0, 'bias': 1.0}}
  c.mode = 'probe'
  probe = text_classify.update_scales(params, c, num_layers=2)
  assert set(jax.tree.leaves(probe['backbone'])) == {0.0}
  assert set(jax.tree.leaves(probe['head'])) == {1.0}


def test_probe_trains_only_the_head(smoke_run, task_file, tmp_path):
  lm_dir, lm_summary = smoke_run(mlm_pretrain)
  workdir = str(tmp_path / 'probe')
  text_classify.train_and_evaluate(_config(lm_dir, task_file, mode='probe'), workdir)
  after = saved_state(workdir, 6)['params']
  before = saved_state(lm_dir, lm_summary['step'])['params']['encoder']
  assert_same_tree(after['backbone'], before)
  state, _ = _initial_state(_config(lm_dir, task_file, mode='probe'))
  assert not np.array_equal(after['head']['kernel'],
                            jax.device_get(state.params['head']['kernel']))


def test_validation_selects_the_step_and_test_is_read_once(smoke_run, task_file, tmp_path,
                                                           monkeypatch):
  lm_dir, _ = smoke_run(mlm_pretrain)
  config = _config(lm_dir, task_file, eval_every_steps=1, **{'optim.learning_rate': 3e-3})
  seen, validation = [], {}
  per_example = driver.per_example_over_split

  def recording(eval_fn, params, rows, mesh, **kw):
    seen.append(len(rows['label']))
    return per_example(eval_fn, params, rows, mesh, **kw)

  write = loop.write_evaluation

  def remember(results, writer, run, step):
    validation[step] = results['accuracy']
    return write(results, writer, run, step)

  monkeypatch.setattr(driver, 'per_example_over_split', recording)
  monkeypatch.setattr(loop, 'write_evaluation', remember)
  summary = text_classify.train_and_evaluate(config, str(tmp_path / 'w'))
  n_test, n_val = summary['data/test_examples'], summary['data/validation_examples']
  assert n_test != n_val
  assert seen == [n_val] * 6 + [n_test]  # validation after every step, test once at the end
  best = max(validation.values())
  assert summary['test/selected_step'] == min(s for s, v in validation.items() if v == best)
  assert summary['eval/accuracy'] == best  # the selected step's, not the last one's
  # 3 classes of 40, test = ceil(0.2 * 120) = 24; majority of the labelled subset.
  assert n_test == 24 and 0 < summary['test/majority_accuracy'] < 1
  assert {'test/accuracy', 'test/macro_f1', 'test/tfidf_accuracy'} <= set(summary)


def test_keep_best_copies_the_parameters_and_keeps_the_earlier_of_ties():
  params = {'w': jnp.ones(3)}
  state = state_lib.create(params, optax.sgd(1.0), graphdef=None,
                           extra={'best': loop.best_state(params)})
  # 0.7 is stored as float32 0.69999999: a later 0.7 must still tie, not win.
  selected = {}
  # (step, value, the selected step after it): improvements at steps 1 and 2 only.
  for step, value, chosen in [(1, 0.2, 1), (2, 0.7, 2), (3, 0.7, 2), (4, 0.4, 2)]:
    state = state.replace(params={'w': jnp.full(3, float(step))})
    state, selected = loop._keep_best(state, {'accuracy': value, 'at': step}, 'accuracy',
                                      step, selected)
    assert selected['at'] == chosen
  best = jax.device_get(state.extra['best'])
  assert int(best['step']) == 2 and float(best['value']) == np.float32(0.7)
  np.testing.assert_array_equal(best['params']['w'], [2.0, 2.0, 2.0])


def test_interrupted_run_resumes_to_the_same_selection_and_test(smoke_run, task_file, tmp_path):
  lm_dir, _ = smoke_run(mlm_pretrain)
  config = _config(lm_dir, task_file, eval_every_steps=1)
  reference = text_classify.train_and_evaluate(config, str(tmp_path / 'ref'))
  workdir = str(tmp_path / 'w')
  fail_after(4, text_classify, config, workdir)
  with counting() as counts:
    resumed = text_classify.train_and_evaluate(config, workdir)
  assert counts == {'trace': 1, 'compile': 1}
  assert resumed['restored_from_step'] == 3
  tests = lambda s: {k: v for k, v in s.items() if k.startswith('test/')}
  assert tests(resumed) == tests(reference) and evals(resumed) == evals(reference)
  with open(os.path.join(workdir, 'summary.json')) as f:
    assert json.load(f)['test/selected_step'] == reference['test/selected_step']


def test_init_from_starts_from_the_other_runs_weights_and_tokenizer(smoke_run, cache_dir,
                                                                     tmp_path):
  lm_dir, lm_summary = smoke_run(mlm_pretrain)
  config = mlm_pretrain.smoke_config()
  config.data.cache_dir = cache_dir
  config.data.vocab_size = 200  # ignored: the init_from tokenizer is used
  config.init_from = lm_dir
  data = mlm_pretrain.prepare_data(config, str(tmp_path))
  with open(os.path.join(lm_dir, 'tokenizer.model'), 'rb') as f:
    assert (tmp_path / 'tokenizer.model').read_bytes() == f.read()
  mesh = mesh_lib.make_mesh(config.mesh)
  state = mlm_pretrain.create_train_state(config, data, mesh, rngs.run_keys(1).init)
  state = mlm_pretrain.warm_start(state, config, mesh)
  assert_same_tree(state.params, saved_state(lm_dir, lm_summary['step'])['params'])
  config.model.preset = 'mini'
  with pytest.raises(ValueError, match='init_from=.*its model differs in .*width'):
    mlm_pretrain.warm_start(state, config, mesh)


def test_task_adaptive_pretraining_reads_only_the_training_texts(smoke_run, task_file,
                                                                 tmp_path):
  lm_dir, _ = smoke_run(mlm_pretrain)
  workdir = tmp_path / 'w'
  config = _config(lm_dir, task_file, **{'tapt.steps': 3})
  summary = text_classify.train_and_evaluate(config, str(workdir))
  with open(workdir / 'tapt' / 'summary.json') as f:
    tapt = json.load(f)
  assert tapt['experiment'] == 'mlm_pretrain' and tapt['step'] == 3
  assert tapt['config']['init_from'] == lm_dir
  data = text_classify.prepare_data(config, str(workdir))  # finished: only read now
  data['manager'].close()
  corpus = (workdir / 'tapt' / 'corpus.txt').read_text(encoding='utf-8').split('\n\n')
  task = data['task']
  assert sorted(corpus) == sorted(task.unlabelled) and len(corpus) == summary[
      'data/train_pool_examples']
  assert not set(corpus) & (set(task.validation.texts) | set(task.test.texts))
  assert data['info']['pretrained/step'] == 3  # the classifier starts from the adapted model
  state, _ = _initial_state(config, str(workdir))
  assert_same_tree(state.params['backbone'],
                   saved_state(str(workdir / 'tapt'), 3)['params']['encoder'])


def test_task_adaptive_pretraining_needs_a_masked_lm(smoke_run, task_file, tmp_path):
  lm_dir, _ = smoke_run(clm_pretrain)
  with pytest.raises(ValueError, match=r"holds a 'clm_pretrain' run; .*\(mlm_pretrain\) are"):
    text_classify.train_and_evaluate(_config(lm_dir, task_file, **{'tapt.steps': 3}),
                                     str(tmp_path / 'w'))
