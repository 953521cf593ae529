"""Tests of jaxssl.eval.representation: every measurement of the protocol, end to end, on the
digits, leaving a BatchNorm encoder's variables bit-identical."""

import numpy as np
import pytest

from jaxssl.eval import features as features_lib
from jaxssl.eval import representation as rep
from tests.eval import helpers


def test_evaluate_representation_end_to_end(digits, bn_encoder):
  _, graphdef, variables = bn_encoder
  before = helpers.snapshot(variables)
  config = rep.eval_config()
  config.global_batch_size = 128
  config.knn_k = 20
  config.probe_c = (0.1, 1.0)
  config.kmeans_n_init = 1
  config.fine_tune = True
  config.finetune_steps = 20
  got = rep.evaluate_representation(features_lib.nnx_embed_fn(graphdef), variables, digits, config,
                                    prefix='eval/')
  assert set(got) == {'eval/' + k for k in (
      'feature_dim', 'linear_probe_accuracy', 'linear_probe_C', 'knn_accuracy', 'kmeans_ari',
      'kmeans_nmi', 'fine_tune_accuracy', 'fine_tune_train_loss')}
  assert got['eval/feature_dim'] == 12
  for key in ('linear_probe_accuracy', 'knn_accuracy', 'kmeans_nmi', 'fine_tune_accuracy'):
    assert 0.15 < got['eval/' + key] <= 1.0, (key, got)
  helpers.assert_unchanged(before, variables)
  # A plain embed_fn (a random projection of the pixels to 12 features) works without
  # fine-tuning, and not with it.
  def project(v, x):
    return x.reshape(len(x), -1) @ v['w']  # [B, 12]

  w = {'w': np.random.default_rng(0).normal(size=(64, 12)).astype(np.float32)}
  config.fine_tune = False
  projected = rep.evaluate_representation(project, w, digits, config)
  assert projected['knn_accuracy'] > 0.8 and 'fine_tune_accuracy' not in projected
  config.fine_tune = True
  with pytest.raises(ValueError, match='NnxEmbedFn'):
    rep.evaluate_representation(project, w, digits, config)
  config.knn_temperature = 0.0
  with pytest.raises(ValueError, match='eval.knn_temperature'):
    rep.evaluate_representation(features_lib.nnx_embed_fn(graphdef), variables, digits, config)
