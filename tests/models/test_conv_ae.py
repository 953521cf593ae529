"""Convolutional autoencoder: shapes for every image size, parameter count, split/merge."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxssl.losses import reconstruction
from jaxssl.models import conv_ae
from jaxssl.train import state as state_lib

SHAPES = [((8, 8, 1), (8, 16)), ((28, 28, 1), (8, 16)), ((28, 28, 1), (4, 8, 8)),
          ((32, 32, 3), (8, 16))]


def _num_params(model):
  return sum(x.size for x in jax.tree.leaves(state_lib.split_model(model)[1]))


@pytest.mark.parametrize('image_shape,widths', SHAPES)
def test_output_shapes(image_shape, widths):
  # Abstract parameters and a traced forward pass: shapes without compiling anything (eager
  # initialisation compiles every parameter's initializer; the gradient test runs a model).
  model = nnx.eval_shape(lambda: conv_ae.Autoencoder(image_shape, 5, widths, rngs=nnx.Rngs(0)))
  graphdef, params = state_lib.split_model(model)
  x = jnp.full((3,) + image_shape, 0.5)
  logits, z = jax.eval_shape(lambda p: state_lib.merge_model(graphdef, p)(x), params)
  assert logits.shape == (3,) + image_shape and logits.dtype == jnp.float32
  assert z.shape == (3, 5)
  _, intermediates = jax.eval_shape(lambda p: state_lib.merge_model(graphdef, p).encoder(x),
                                    params)
  h, w = image_shape[:2]
  for i, width in enumerate(widths):
    h, w = -(-h // 2), -(-w // 2)
    assert intermediates[f'conv_{i}'].shape == (3, h, w, width)


def test_tiny_parameter_count():
  model = nnx.eval_shape(lambda: conv_ae.Autoencoder((8, 8, 1), 4, (4, 8), rngs=nnx.Rngs(0)))
  # Encoder: 4x4 convs 1->4 (64 + 4) and 4->8 (512 + 8), 8x8 -> 4x4 -> 2x2, dense 32->4.
  encoder = 68 + 520 + (32 * 4 + 4)
  # Decoder: dense 4->2*2*8, transposed 4x4 convs 8->4 and 4->4, 3x3 conv 4->1.
  decoder = (4 * 32 + 32) + (16 * 8 * 4 + 4) + (16 * 4 * 4 + 4) + (9 * 4 + 1)
  assert _num_params(model.encoder) == encoder == 720
  assert _num_params(model.decoder) == decoder == 973
  assert _num_params(model) == 1693


def test_split_merge_round_trip_and_finite_gradients():
  model = conv_ae.Autoencoder((28, 28, 1), 8, (8, 16), activation='relu', rngs=nnx.Rngs(1))
  graphdef, params = state_lib.split_model(model)
  x = jax.random.uniform(jax.random.key(0), (2, 28, 28, 1))

  def loss_fn(p):
    logits, _ = state_lib.merge_model(graphdef, p)(x)
    return reconstruction.mse(jax.nn.sigmoid(logits), x).mean()

  loss, grads = jax.jit(jax.value_and_grad(loss_fn))(params)
  logits = jax.jit(lambda p: state_lib.merge_model(graphdef, p)(x)[0])(params)
  np.testing.assert_allclose(loss, reconstruction.mse(jax.nn.sigmoid(logits), x).mean(),
                             rtol=1e-5)
  leaves = jax.tree.leaves(grads)
  assert all(np.all(np.isfinite(g)) for g in leaves)
  assert any(np.any(g != 0) for g in leaves)


def test_bad_inputs_raise():
  # Abstract parameters: the checks fire before any computation.
  model = nnx.eval_shape(lambda: conv_ae.Autoencoder((8, 8, 1), 4, (4,), rngs=nnx.Rngs(0)))
  with pytest.raises(ValueError, match=r'\(2, 8, 8, 3\).*\(8, 8, 1\)'):
    model(jnp.zeros((2, 8, 8, 3)))
  with pytest.raises(ValueError, match=r'\(2, 5\).*latent_dim=4'):
    model.decode(jnp.zeros((2, 5)))
  with pytest.raises(ValueError, match='activation'):
    conv_ae.Autoencoder((8, 8, 1), 4, (4,), activation='tanh', rngs=nnx.Rngs(0))
  with pytest.raises(ValueError, match='image_shape'):
    conv_ae.Autoencoder((8, 8), 4, (4,), rngs=nnx.Rngs(0))
