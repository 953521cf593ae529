"""Contrastive encoder and heads: shapes from the data, a hand-checked forward pass, and
BatchNorm modes."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxssl.models import convnet
from jaxssl.train import state as state_lib


@pytest.mark.parametrize('shape', [(8, 8, 1), (28, 28, 1), (32, 32, 3)])
def test_shapes_follow_the_image_shape(shape):
  net = convnet.SSLNet(shape, (8, 16, 32), (64, 16), (32, 16), rngs=nnx.Rngs(0))
  out = net(jax.random.uniform(jax.random.key(0), (5,) + shape), train=True)
  assert {k: v.shape for k, v in out.items()} == {
      'features': (5, 32), 'projection': (5, 16), 'prediction': (5, 16)}
  assert all(v.dtype == jnp.float32 for v in out.values())
  target = convnet.SSLNet(shape, (8, 16, 32), (64, 16), rngs=nnx.Rngs(0))
  _, params, _ = state_lib.split_model_with_stats(target)
  assert sorted(params) == ['encoder', 'projector']  # BYOL's target: no predictor


def test_one_conv_encoder_by_hand():
  # Widths (1,): one 3x3 'SAME' conv without bias, BatchNorm on the batch (scale 1, bias 0),
  # ReLU, then the spatial mean. With the kernel set to 1 at its centre only, the conv is the
  # identity, so the features are mean(relu((x - mean_b) / sqrt(var_b + eps))) per image.
  enc = convnet.ConvNet((2, 2, 1), (1,), rngs=nnx.Rngs(0))
  enc.convs[0].kernel.value = jnp.zeros((3, 3, 1, 1)).at[1, 1, 0, 0].set(1.0)
  x = jnp.asarray([[1., 2., 3., 4.], [5., 6., 7., 8.]]).reshape(2, 2, 2, 1)
  mean, var = 4.5, np.var(np.arange(1, 9))  # 5.25, biased
  z = (np.arange(1, 9) - mean) / np.sqrt(var + 1e-5)
  expected = [np.maximum(z[:4], 0).mean(), np.maximum(z[4:], 0).mean()]
  np.testing.assert_allclose(enc(x, train=True)[:, 0], expected, rtol=1e-5)
  stats = state_lib.batch_stats(enc)['norms'][0]  # 0.9 * (0, 1) + 0.1 * (mean, var)
  np.testing.assert_allclose(stats['mean'], [0.45], rtol=1e-6)
  np.testing.assert_allclose(stats['var'], [0.9 + 0.525], rtol=1e-6)


def test_eval_mode_output_does_not_depend_on_the_rest_of_the_batch():
  net = convnet.SSLNet((8, 8, 1), (8, 16), (32, 8), rngs=nnx.Rngs(0))
  for i in range(3):  # move the running statistics away from their initial values
    net(jax.random.uniform(jax.random.key(i), (32, 8, 8, 1)), train=True)
  before = state_lib.batch_stats(net)
  x = jax.random.uniform(jax.random.key(7), (16, 8, 8, 1))
  other = x.at[1:].set(jax.random.uniform(jax.random.key(8), (15, 8, 8, 1)) * 0.3)
  alone = net(x[:1], train=False)['projection'][0]
  np.testing.assert_allclose(net(x, train=False)['projection'][0], alone, atol=1e-6)
  np.testing.assert_allclose(net(other, train=False)['projection'][0], alone, atol=1e-6)
  jax.tree.map(np.testing.assert_array_equal, state_lib.batch_stats(net), before)
  assert float(jnp.max(jnp.abs(net(x, train=True)['projection'][0]
                               - net(other, train=True)['projection'][0]))) > 1e-3


def test_bad_arguments_are_named():
  with pytest.raises(ValueError, match='image_shape'):
    convnet.ConvNet((8, 8), (16,), rngs=nnx.Rngs(0))
  with pytest.raises(ValueError, match='widths'):
    convnet.ConvNet((8, 8, 1), (16, 0), rngs=nnx.Rngs(0))
  with pytest.raises(ValueError, match='MLPHead sizes'):
    convnet.MLPHead(4, 0, 2, rngs=nnx.Rngs(0))
  enc = convnet.ConvNet((8, 8, 1), (4,), rngs=nnx.Rngs(0))
  with pytest.raises(ValueError, match=r'must be \[B, 8, 8, 1\]'):
    enc(jnp.zeros((2, 7, 8, 1)), train=False)
