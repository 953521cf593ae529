"""DCGAN networks: shapes from the data, BatchNorm modes, and per-image eval outputs."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxssl.models import gan
from jaxssl.train import state as state_lib


@pytest.mark.parametrize('shape', [(8, 8, 1), (28, 28, 1), (32, 32, 3)])
def test_shapes_and_ranges_follow_the_image_shape(shape):
  g = gan.Generator(4, shape, (16, 8), rngs=nnx.Rngs(0))
  d = gan.Discriminator(shape, (8, 16), rngs=nnx.Rngs(1))
  z = jax.random.normal(jax.random.key(0), (5, 4)) * 10  # large: tanh saturates, stays in range
  x = g(z, train=True)
  assert x.shape == (5,) + shape and x.dtype == jnp.float32
  assert float(jnp.min(x)) >= -1.0 and float(jnp.max(x)) <= 1.0
  logits = d(x, train=True)
  assert logits.shape == (5,) and logits.dtype == jnp.float32


def test_train_mode_updates_running_statistics_by_the_momentum():
  # One train-mode call: running mean <- 0.9 * 0 + 0.1 * batch mean, running var <- 0.9 * 1 +
  # 0.1 * batch variance (flax's BatchNorm uses the biased batch variance).
  d = gan.Discriminator((8, 8, 1), (2, 3), rngs=nnx.Rngs(0))
  x = jax.random.uniform(jax.random.key(1), (6, 8, 8, 1), minval=-1, maxval=1)
  features = d.convs[1](jax.nn.leaky_relu(d.convs[0](x), 0.2))  # [6, 2, 2, 3], before BN
  d(x, train=True)
  stats = state_lib.batch_stats(d)['norms'][0]
  mean = np.mean(np.asarray(features), axis=(0, 1, 2))
  var = np.var(np.asarray(features), axis=(0, 1, 2))
  np.testing.assert_allclose(stats['mean'], 0.1 * mean, rtol=1e-5, atol=1e-7)
  np.testing.assert_allclose(stats['var'], 0.9 + 0.1 * var, rtol=1e-5)
  before = state_lib.batch_stats(d)
  d(x, train=False)
  jax.tree.map(np.testing.assert_array_equal, state_lib.batch_stats(d), before)


def test_eval_mode_image_does_not_depend_on_the_rest_of_the_batch():
  g = gan.Generator(4, (8, 8, 1), (16, 8), rngs=nnx.Rngs(0))
  for i in range(3):  # move the running statistics away from their initial values
    g(jax.random.normal(jax.random.key(i), (32, 4)), train=True)
  z = jax.random.normal(jax.random.key(7), (16, 4))
  other = z.at[1:].set(jax.random.normal(jax.random.key(8), (15, 4)) * 3)
  alone = g(z[:1], train=False)[0]
  np.testing.assert_allclose(g(z, train=False)[0], alone, atol=1e-6)
  np.testing.assert_allclose(g(other, train=False)[0], alone, atol=1e-6)
  # In train mode the batch statistics make image 0 depend on the others.
  assert float(jnp.max(jnp.abs(g(z, train=True)[0] - g(other, train=True)[0]))) > 1e-3


def test_bad_arguments_are_named():
  with pytest.raises(ValueError, match='image_shape'):
    gan.Generator(4, (8, 8), (16,), rngs=nnx.Rngs(0))
  with pytest.raises(ValueError, match='widths'):
    gan.Discriminator((8, 8, 1), (), rngs=nnx.Rngs(0))
  with pytest.raises(ValueError, match='latent_dim'):
    gan.Generator(0, (8, 8, 1), (16,), rngs=nnx.Rngs(0))
  g = gan.Generator(4, (8, 8, 1), (16, 8), rngs=nnx.Rngs(0))
  with pytest.raises(ValueError, match=r'z \(2, 5\) must be \[B, 4\]'):
    g(jnp.zeros((2, 5)), train=False)
  d = gan.Discriminator((8, 8, 1), (8,), rngs=nnx.Rngs(0))
  with pytest.raises(ValueError, match='do not match image_shape'):
    d(jnp.zeros((2, 7, 8, 1)), train=False)
