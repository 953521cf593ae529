"""End-to-end and step-level tests of experiments.mlm_pretrain on the tiny smoke config."""

import functools
import glob
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from experiments import mlm_pretrain
from jaxssl.data import tokenizer as tokenizer_lib
from jaxssl.parallel import mesh as mesh_lib
from jaxssl.train import loop


@pytest.fixture(scope='module')
def cache_dir(tmp_path_factory):
  return str(tmp_path_factory.mktemp('cache'))


def _config(cache_dir, **overrides):
  c = mlm_pretrain.smoke_config()
  c.data.cache_dir = cache_dir
  for k, v in overrides.items():
    target = c
    *parents, last = k.split('.')
    for p in parents:
      target = target[p]
    target[last] = v
  return c


def _evals(summary):
  return {k: v for k, v in summary.items() if k.startswith('eval/')}


def _params(workdir, step):
  import orbax.checkpoint as ocp  # pylint: disable=import-outside-toplevel
  path = os.path.join(workdir, 'checkpoints', str(step), 'state')
  return ocp.StandardCheckpointer().restore(path)['params']


@pytest.fixture(scope='module')
def reference_run(cache_dir, tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp('reference'))
  return workdir, mlm_pretrain.train_and_evaluate(_config(cache_dir), workdir)


def test_end_to_end_outputs(reference_run):
  workdir, summary = reference_run
  with open(os.path.join(workdir, 'summary.json')) as f:
    on_disk = json.load(f)
  for key in ('eval/mlm_accuracy', 'eval/mlm_loss', 'eval/perplexity', 'eval/num_tokens',
              'eval/baseline_accuracy', 'eval/unigram_loss'):
    assert np.isfinite(on_disk[key]), key
  assert on_disk['step'] == 6 and on_disk['seed'] == 0 and on_disk['restored_from_step'] is None
  assert on_disk['config']['model']['preset'] == 'tiny'
  assert len(on_disk['data/sha256']) == 64
  np.testing.assert_allclose(on_disk['eval/perplexity'], np.exp(on_disk['eval/mlm_loss']))
  # Every held-out row is evaluated: 15% of its ordinary tokens (at least one per row).
  assert on_disk['eval/num_tokens'] > 0.13 * on_disk['data/num_eval_tokens']
  assert sorted(os.listdir(os.path.join(workdir, 'checkpoints'))) == ['3', '6']
  assert glob.glob(os.path.join(workdir, 'events.out.tfevents.*'))
  assert os.path.exists(os.path.join(workdir, 'tokenizer.model'))
  assert json.load(open(os.path.join(workdir, 'config.json')))['seed'] == 0


def test_same_seed_same_metrics_other_seed_differs(reference_run, cache_dir, tmp_path):
  _, reference = reference_run
  again = mlm_pretrain.train_and_evaluate(_config(cache_dir), str(tmp_path / 'a'))
  assert _evals(again) == _evals(reference)
  other = mlm_pretrain.train_and_evaluate(_config(cache_dir, seed=1), str(tmp_path / 'b'))
  assert _evals(other)['eval/mlm_loss'] != _evals(reference)['eval/mlm_loss']
  # The held-out data and eval masks do not depend on the seed.
  assert _evals(other)['eval/num_tokens'] == _evals(reference)['eval/num_tokens']
  assert _evals(other)['eval/unigram_loss'] == _evals(reference)['eval/unigram_loss']


def test_interrupted_run_resumes_to_the_same_result(reference_run, cache_dir, tmp_path):
  ref_dir, reference = reference_run
  workdir = str(tmp_path / 'w')
  with pytest.raises(loop.SimulatedFault):
    mlm_pretrain.train_and_evaluate(_config(cache_dir), workdir, fail_at_step=4)
  # Step 4 is past the step-3 checkpoint: the resumed run replays step 4 from step 3.
  resumed = mlm_pretrain.train_and_evaluate(_config(cache_dir), workdir)
  assert resumed['restored_from_step'] == 3
  assert _evals(resumed) == _evals(reference)
  jax.tree.map(np.testing.assert_array_equal, _params(workdir, 6), _params(ref_dir, 6))


def test_rerun_of_finished_workdir_trains_nothing(reference_run, cache_dir):
  workdir, reference = reference_run
  again = mlm_pretrain.train_and_evaluate(_config(cache_dir), workdir)
  assert again['restored_from_step'] == 6
  assert _evals(again) == _evals(reference)


def test_workdir_of_another_config_is_refused(reference_run, cache_dir):
  workdir, _ = reference_run
  with pytest.raises(ValueError, match=r'optim.learning_rate: 0.001 in the checkpoint vs 0.5'):
    mlm_pretrain.train_and_evaluate(_config(cache_dir, **{'optim.learning_rate': 0.5}),
                                    workdir)


@pytest.mark.parametrize('field, value, match', [
    ('global_batch_size', 0, 'global_batch_size'),
    ('global_batch_size', 7, r'global_batch_size=7 must split into optim.grad_accum_steps=2'),
    ('num_train_steps', -1, 'num_train_steps'),
    ('method.mask_rate', 1.5, 'method.mask_rate'),
    ('method.mask_rate', 0.0, 'method.mask_rate'),
    ('method.replace_prob', 0.95, r'replace_prob \+ method.random_prob'),
    ('model.preset', 'huge', 'model.preset'),
    ('model.dtype', 'float16', 'model.dtype'),
    ('model.position_encoding', 'alibi', 'model.position_encoding'),
    ('model.dropout_rate', 1.0, 'model.dropout_rate'),
    ('optim.decay', 'step', 'optim.decay'),
    ('optim.learning_rate', 0.0, 'optim.learning_rate'),
    ('optim.warmup_steps', 100, 'optim.warmup_steps'),
    ('data.seq_len', 2, 'data.seq_len'),
    ('data.vocab_size', 5, 'data.vocab_size'),
    ('data.validation_fraction', 1.0, 'data.validation_fraction'),
    ('mesh.fsdp', 3, 'mesh.fsdp'),
    ('eval.global_batch_size', 0, 'eval.global_batch_size'),
])
def test_bad_config_values_raise_before_anything_runs(field, value, match, tmp_path):
  overrides = {'optim.grad_accum_steps': 2} if field == 'global_batch_size' and value == 7 else {}
  overrides[field] = value
  config = _config(str(tmp_path / 'cache'), **overrides)
  with pytest.raises(ValueError, match=match):
    mlm_pretrain.train_and_evaluate(config, str(tmp_path / 'w'))
  assert not os.path.exists(tmp_path / 'cache')  # failed before touching data


def test_missing_files_are_named(tmp_path):
  config = _config(str(tmp_path / 'cache'), **{'data.files': str(tmp_path / 'none*.txt')})
  with pytest.raises(FileNotFoundError, match='data.files'):
    mlm_pretrain.train_and_evaluate(config, str(tmp_path / 'w'))


# ---------------------------------------------------------------------------- step level

def _step_setup(cache_dir, workdir, **overrides):
  config = _config(cache_dir, **overrides)
  data = mlm_pretrain.prepare_data(config, workdir)
  mesh = mesh_lib.make_mesh(config.mesh)
  vocab = data['tokenizer'].vocab_size
  graphdef, tx, state, _ = mlm_pretrain.create_train_state(config, mesh, vocab)
  step = jax.jit(functools.partial(
      mlm_pretrain.train_step, graphdef=graphdef, tx=tx, config=config, vocab_size=vocab,
      word_start=jnp.asarray(data['tokenizer'].word_start)))
  batch = {'tokens': jnp.asarray(data['train']['tokens'][:config.global_batch_size])}
  return step, state, batch


def test_gradient_accumulation_equals_one_large_batch(cache_dir, tmp_path):
  results = []
  for k in (1, 2, 4):
    step, state, batch = _step_setup(cache_dir, str(tmp_path / str(k)),
                                     **{'optim.grad_accum_steps': k, 'model.dropout_rate': 0.0})
    results.append(step(state, batch, jax.random.key(0)))
  (s1, m1), *others = results
  for s, m in others:
    np.testing.assert_allclose(m['loss'], m1['loss'], rtol=1e-6)
    assert m['num_masked'] == m1['num_masked']
    jax.tree.map(functools.partial(np.testing.assert_allclose, rtol=1e-5, atol=1e-7),
                 s.params, s1.params)


def test_zero_warmup_gives_a_finite_first_step(cache_dir, tmp_path):
  step, state, batch = _step_setup(cache_dir, str(tmp_path), **{'optim.warmup_steps': 0})
  new, metrics = step(state, batch, jax.random.key(0))
  assert float(metrics['learning_rate']) == pytest.approx(1e-3)
  assert np.isfinite(float(metrics['loss'])) and np.isfinite(float(metrics['grad_norm']))
  assert all(np.all(np.isfinite(x)) for x in jax.tree.leaves(new.params))
  assert not np.array_equal(new.params['output_bias'], state.params['output_bias'])


def test_first_step_loss_is_near_uniform(cache_dir, tmp_path):
  # Initial logits are small (std 0.02 weights), so the first loss is close to ln V.
  step, state, batch = _step_setup(cache_dir, str(tmp_path))
  _, metrics = step(state, batch, jax.random.key(0))
  vocab = tokenizer_lib.Tokenizer(str(tmp_path / 'tokenizer.model')).vocab_size
  assert abs(float(metrics['loss']) - np.log(vocab)) < 0.3


def test_stale_tokenizer_without_checkpoint_is_retrained(cache_dir, tmp_path):
  workdir = str(tmp_path / 'w')
  with pytest.raises(loop.SimulatedFault):  # killed before its first checkpoint (step 3)
    mlm_pretrain.train_and_evaluate(_config(cache_dir), workdir, fail_at_step=1)
  summary = mlm_pretrain.train_and_evaluate(_config(cache_dir, **{'data.vocab_size': 400}),
                                            workdir)
  assert summary['data/vocab_size'] == 400
  assert json.load(open(os.path.join(workdir, 'tokenizer.model.json')))['vocab_size'] == 400


def test_resume_onto_an_edited_file_is_refused_and_keeps_the_tokenizer(cache_dir, tmp_path):
  from jaxssl.data import text  # pylint: disable=import-outside-toplevel
  corpus = tmp_path / 'corpus.txt'
  pydoc = text.pydoc_text()
  corpus.write_text(pydoc[:len(pydoc) // 3], encoding='utf-8')
  config = _config(cache_dir, **{'data.files': str(corpus), 'data.validation_fraction': 0.05})
  workdir = str(tmp_path / 'w')
  mlm_pretrain.train_and_evaluate(config, workdir)
  before = open(os.path.join(workdir, 'tokenizer.model'), 'rb').read()
  corpus.write_text(pydoc[:len(pydoc) // 2], encoding='utf-8')
  config.num_train_steps = 9  # extend the run: allowed, but not onto other data
  with pytest.raises(ValueError, match='was a file edited'):
    mlm_pretrain.train_and_evaluate(config, workdir)
  assert open(os.path.join(workdir, 'tokenizer.model'), 'rb').read() == before
