"""Tests of jaxssl.eval.features: the frozen encoder's features equal the module's own eval-mode
outputs, compile once and leave a BatchNorm encoder's variables bit-identical."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import Mesh

from jaxssl.eval import features as features_lib
from jaxssl.eval import knn as knn_lib
from jaxssl.eval import linear_probe
from tests.eval import helpers


def test_extract_features_is_frozen_eval_mode_and_compiles_once(digits, bn_encoder):
  model, graphdef, variables = bn_encoder
  before = helpers.snapshot(variables)
  traces = []

  def method(module, images, train):
    traces.append(train)  # runs once per trace
    return module(images)[0]

  embed = features_lib.nnx_embed_fn(graphdef, method)
  images = digits['train']['image'][:300]
  features = features_lib.extract_features(embed, variables, images, batch_size=128)  # 3 batches
  assert features.shape == (300, 12) and features.dtype == np.float32
  assert traces == [False]
  # The reference: the original module, in eval mode, on all images at once.
  want = np.asarray(model(jnp.asarray(images, jnp.float32) / 255)[0])
  np.testing.assert_allclose(features, want, rtol=1e-5, atol=1e-5)
  # Batch composition (and the zero padding) does not matter; one 1-device mesh works too.
  mesh = Mesh(np.array(jax.devices()[:1]).reshape(1, 1), ('data', 'fsdp'))
  other = features_lib.extract_features(embed, variables, images, batch_size=7, mesh=mesh)
  np.testing.assert_allclose(other, features, rtol=1e-5, atol=1e-5)
  by_name = features_lib.extract_features(features_lib.nnx_embed_fn(graphdef, '__call__'),
                                          variables, images[:5], batch_size=8)
  np.testing.assert_allclose(by_name, features[:5], rtol=1e-5, atol=1e-5)
  # Probe and kNN on these features; the encoder's params and statistics are untouched.
  test = features_lib.extract_features(embed, variables, digits['test']['image'], batch_size=128)
  probe = linear_probe.linear_probe(features, digits['train']['label'][:300], test,
                                    digits['test']['label'], C=1.0)
  knn = knn_lib.knn_accuracy(features, digits['train']['label'][:300], test,
                             digits['test']['label'], k=20, num_classes=10)
  assert probe['linear_probe_accuracy'] > 0.3 and knn['knn_accuracy'] > 0.3
  helpers.assert_unchanged(before, variables)
  with pytest.raises(ValueError, match='batch_size'):
    features_lib.extract_features(embed, variables, images, batch_size=0)
  with pytest.raises(ValueError, match=r'\[N, H, W, C\]'):
    features_lib.extract_features(embed, variables, images[:, :, :, 0], batch_size=8)
  with pytest.raises(ValueError, match='uint8 or float'):
    features_lib.extract_features(embed, variables, images.astype(np.int32), batch_size=8)
