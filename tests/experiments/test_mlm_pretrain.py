"""End-to-end and step-level tests of experiments.mlm_pretrain on the tiny smoke config."""

import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from experiments import mlm_pretrain
from jaxssl.data import tokenizer as tokenizer_lib
from tests.experiments.helpers import assert_close_to_scale, build_step, gradient_step, smoke


def _config(cache_dir, **overrides):
  return smoke(mlm_pretrain, cache_dir, **overrides)


def test_masked_lm_metrics(smoke_run):
  _, summary = smoke_run(mlm_pretrain)
  for key in ('eval/mlm_accuracy', 'eval/mlm_loss', 'eval/perplexity', 'eval/num_tokens',
              'eval/baseline_accuracy', 'eval/unigram_loss'):
    assert np.isfinite(summary[key]), key
  # Every held-out row is evaluated: 15% of its ordinary tokens (at least one per row).
  assert summary['eval/num_tokens'] > 0.13 * summary['data/num_eval_tokens']


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


# ---------------------------------------------------------------------------- step level

def _step_setup(cache_dir, workdir, **overrides):
  config = _config(cache_dir, **overrides)
  step, state, data = build_step(mlm_pretrain, config, workdir)
  batch = {'tokens': jnp.asarray(data['train']['tokens'][:config.global_batch_size])}
  return step, state, batch


def test_gradient_accumulation_equals_one_large_batch(cache_dir, tmp_path):
  results = []
  for k in (1, 2, 4):
    step, state, batch = _step_setup(cache_dir, str(tmp_path / str(k)),
                                     **{'optim.grad_accum_steps': k, 'model.dropout_rate': 0.0})
    results.append(gradient_step(step, state, batch))
  (s1, m1), *others = results
  for s, m in others:
    np.testing.assert_allclose(m['loss'], m1['loss'], rtol=1e-6)
    assert m['num_masked'] == m1['num_masked']
    jax.tree.map(assert_close_to_scale, s, s1)


def test_zero_warmup_gives_a_finite_first_step(cache_dir, tmp_path):
  step, state, batch = _step_setup(cache_dir, str(tmp_path), **{'optim.warmup_steps': 0})
  new, metrics = step(state, batch, jax.random.key(0))
  assert np.isfinite(float(metrics['loss'])) and np.isfinite(float(metrics['grad_norm']))
  assert all(np.all(np.isfinite(x)) for x in jax.tree.leaves(new.params))
  assert not np.array_equal(new.params['output_bias'], state.params['output_bias'])


def test_first_step_loss_is_near_uniform(cache_dir, tmp_path):
  # Initial logits are small (std 0.02 weights), so the first loss is close to ln V.
  step, state, batch = _step_setup(cache_dir, str(tmp_path))
  _, metrics = step(state, batch, jax.random.key(0))
  vocab = tokenizer_lib.Tokenizer(str(tmp_path / 'tokenizer.model')).vocab_size
  assert abs(float(metrics['loss']) - np.log(vocab)) < 0.3
