"""Causal-LM experiment: its metrics, config errors, step-level invariants and sampling."""

import glob
import math
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from tensorboard.backend.event_processing import event_accumulator

from experiments import clm_pretrain
from jaxssl.data import tokenizer as tokenizer_lib
from tests.experiments.helpers import assert_close_to_scale, build_step, gradient_step, smoke


def test_metrics_cover_the_whole_held_out_split(smoke_run):
  workdir, s = smoke_run(clm_pretrain)
  # Targets: every held-out text token and one [EOS] per document, each scored once.
  assert s['eval/num_tokens'] == s['data/num_eval_tokens'] + s['data/num_eval_documents']
  np.testing.assert_allclose(s['eval/perplexity'], math.exp(s['eval/loss']))
  np.testing.assert_allclose(s['eval/unigram_perplexity'], math.exp(s['eval/unigram_loss']))
  np.testing.assert_allclose(
      s['eval/bits_per_byte'],
      s['eval/loss'] * s['eval/num_tokens'] / math.log(2) / s['data/num_eval_bytes'])
  assert 0 <= s['eval/accuracy'] <= 1


def test_unigram_baseline_is_add_one_smoothed_over_the_vocabulary(cache_dir, tmp_path):
  config = smoke(clm_pretrain, cache_dir)
  data = clm_pretrain.prepare_data(config, str(tmp_path))
  rows = data['train']
  targets = (rows['segment_ids'][:, 1:] == rows['segment_ids'][:, :-1]) & (
      rows['segment_ids'][:, 1:] > 0)
  counts = np.bincount(rows['tokens'][:, 1:][targets], minlength=data['tokenizer'].vocab_size)
  expected = np.log((counts + 1) / (counts.sum() + len(counts)))
  np.testing.assert_allclose(data['log_unigram'], expected, rtol=1e-5)


def test_samples_are_written_to_tensorboard(smoke_run):
  workdir, _ = smoke_run(clm_pretrain)
  acc = event_accumulator.EventAccumulator(
      glob.glob(os.path.join(workdir, 'events.out.tfevents.*'))[0],
      size_guidance={event_accumulator.TENSORS: 0})
  acc.Reload()
  tags = acc.Tags()['tensors']
  assert 'samples/0' in tags and 'samples/1' in tags
  (event,) = acc.Tensors('samples/0')
  assert event.step == 6
  assert isinstance(event.tensor_proto.string_val[0].decode(), str)


@pytest.mark.parametrize('field, value, match', [
    ('global_batch_size', 0, 'global_batch_size'),
    ('data.seq_len', 1, 'data.seq_len'),
    ('data.vocab_size', 5, 'data.vocab_size'),
    ('model.preset', 'huge', 'model.preset'),
    ('model.dropout_rate', -0.1, 'model.dropout_rate'),
    ('optim.warmup_steps', 100, 'optim.warmup_steps'),
    ('generate.top_p', 0.0, 'generate.top_p'),
    ('generate.temperature', -1.0, 'generate.temperature'),
    ('generate.max_new_tokens', 0, 'generate.max_new_tokens'),
    ('mesh.fsdp', 3, 'mesh.fsdp'),
])
def test_bad_config_values_raise_before_anything_runs(field, value, match, tmp_path):
  config = smoke(clm_pretrain, str(tmp_path / 'cache'), **{field: value})
  with pytest.raises(ValueError, match=match):
    clm_pretrain.train_and_evaluate(config, str(tmp_path / 'w'))
  assert not os.path.exists(tmp_path / 'cache')  # failed before touching data


def test_samples_longer_than_a_learned_position_table_fail_before_training(cache_dir,
                                                                          tmp_path):
  config = smoke(clm_pretrain, cache_dir, **{'model.position_encoding': 'learned',
                                             'generate.max_new_tokens': 31})
  with pytest.raises(ValueError, match='generate.max_new_tokens=31 plus the prompt'):
    clm_pretrain.train_and_evaluate(config, str(tmp_path / 'w'))
  assert not os.path.exists(tmp_path / 'w' / 'checkpoints' / '3')


# ---------------------------------------------------------------------------- step level

def _step_setup(cache_dir, workdir, **overrides):
  config = smoke(clm_pretrain, cache_dir, **overrides)
  step, state, data = build_step(clm_pretrain, config, workdir)
  batch = {k: jnp.asarray(v[:config.global_batch_size]) for k, v in data['train'].items()}
  return step, state, batch, data


def test_gradient_accumulation_equals_one_large_batch(cache_dir, tmp_path):
  results = []
  for k in (1, 4):
    overrides = {'optim.grad_accum_steps': k, 'model.dropout_rate': 0.0}
    step, state, batch, _ = _step_setup(cache_dir, str(tmp_path / str(k)), **overrides)
    results.append(gradient_step(step, state, batch))
  (s1, m1), (s4, m4) = results
  np.testing.assert_allclose(m4['loss'], m1['loss'], rtol=1e-6)
  assert m4['num_targets'] == m1['num_targets']
  jax.tree.map(assert_close_to_scale, s4, s1)


def test_first_loss_is_near_uniform_and_counts_real_targets(cache_dir, tmp_path):
  step, state, batch, data = _step_setup(cache_dir, str(tmp_path))
  _, metrics = step(state, batch, jax.random.key(0))
  assert abs(float(metrics['loss']) - np.log(data['tokenizer'].vocab_size)) < 0.3
  seg = np.asarray(batch['segment_ids'])
  assert float(metrics['num_targets']) == ((seg[:, 1:] == seg[:, :-1]) & (seg[:, 1:] > 0)).sum()
  assert (np.asarray(batch['tokens'])[:, 0] != tokenizer_lib.PAD_ID).all()
