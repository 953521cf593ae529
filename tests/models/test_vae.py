"""Convolutional VAE: shapes, parameter count, ELBO terms, stability, split/merge."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxssl.losses import vae as vae_losses
from jaxssl.models import vae
from jaxssl.train import state as state_lib


def _jitted(model, method='__call__', **static):
  """model.<method>(*args, **static) as one jitted function (eager NNX is op by op)."""
  graphdef, params = state_lib.split_model(model)
  return jax.jit(lambda p, *args: getattr(state_lib.merge_model(graphdef, p), method)(
      *args, **static)).__get__(params)


def _images(shape, batch=2, seed=0):
  levels = jax.random.randint(jax.random.key(seed), (batch,) + shape, 0, 256)
  return levels.astype(jnp.float32) / 255.0


@pytest.mark.parametrize('image_shape', [(8, 8, 1), (28, 28, 1), (32, 32, 3)])
@pytest.mark.parametrize('likelihood', ['bernoulli', 'logistic'])
def test_output_shapes(image_shape, likelihood):
  # Abstract model, traced forward pass: shapes without compiling anything.
  model = nnx.eval_shape(lambda: vae.VAE(image_shape, 6, (8, 16), likelihood=likelihood,
                                         rngs=nnx.Rngs(0)))
  graphdef, params = state_lib.split_model(model)
  x = jnp.zeros((3,) + image_shape)
  out = jax.eval_shape(lambda p: state_lib.merge_model(graphdef, p)(
      x, jax.random.key(1), num_samples=2), params)
  for name in ('log_likelihood', 'kl', 'elbo'):
    assert out[name].shape == (3,) and out[name].dtype == jnp.float32
  assert out['log_weights'].shape == (2, 3)
  assert out['latent_mean'].shape == out['latent_log_var'].shape == (3, 6)
  pixel_outputs = ['logits'] if likelihood == 'bernoulli' else ['mean', 'log_scale']
  assert sorted(out) == sorted(['log_likelihood', 'kl', 'elbo', 'log_weights', 'latent_mean',
                                'latent_log_var'] + pixel_outputs)
  for name in pixel_outputs:
    assert out[name].shape == (3,) + image_shape


@pytest.mark.parametrize('likelihood', ['bernoulli', 'logistic'])
def test_elbo_terms(likelihood):
  model = vae.VAE((8, 8, 3), 6, (8,), likelihood=likelihood, rngs=nnx.Rngs(0))
  x = _images((8, 8, 3), batch=3)
  out = _jitted(model)(jnp.round(x) if likelihood == 'bernoulli' else x, jax.random.key(1))
  if likelihood == 'logistic':
    assert np.all((out['mean'] >= 0) & (out['mean'] <= 1))
  np.testing.assert_allclose(out['elbo'], out['log_likelihood'] - out['kl'], rtol=1e-6)
  assert np.all(out['kl'] >= 0) and np.all(out['log_likelihood'] <= 0)


def test_tiny_parameter_counts():
  # As test_conv_ae's tiny autoencoder, but the encoder's dense layer emits mean and
  # log-variance (32 * 8 + 8) and the logistic decoder's last conv emits 2 channels.
  count = lambda m: sum(x.size for x in jax.tree.leaves(state_lib.split_model(m)[1]))
  make = lambda likelihood: nnx.eval_shape(
      lambda: vae.VAE((8, 8, 1), 4, (4, 8), likelihood=likelihood, rngs=nnx.Rngs(0)))
  bern, logi = make('bernoulli'), make('logistic')
  assert count(bern) == (68 + 520 + 264) + 973 == 1825
  assert count(logi) == 1825 + (9 * 4 * 2 + 2) - (9 * 4 + 1) == 1862


def test_key_per_call_and_log_weights_match_their_definition():
  model = vae.VAE((8, 8, 1), 3, (4,), likelihood='logistic', num_levels=17, rngs=nnx.Rngs(0))
  x = jnp.round(_images((8, 8, 1)) * 16) / 16
  forward = _jitted(model)
  a, b, c = (forward(x, jax.random.key(k)) for k in (1, 1, 2))
  np.testing.assert_array_equal(a['elbo'], b['elbo'])
  assert not np.allclose(a['log_likelihood'], c['log_likelihood'])
  # Recompute one sample's log weight: log p(x|z) + log N(z; 0, I) - log N(z; mean, var).
  eps = jax.random.normal(jax.random.key(1), (1, 2, 3))[0]
  mean, log_var = a['latent_mean'], a['latent_log_var']
  z = mean + jnp.exp(0.5 * log_var) * eps
  log_normal = lambda v, m, lv: -0.5 * jnp.sum((v - m)**2 / jnp.exp(lv) + lv + np.log(2 * np.pi),
                                               axis=-1)
  log_lik = _jitted(model, 'log_likelihood')(_jitted(model, 'decode')(z), x)
  expect = log_lik + log_normal(z, 0.0, 0.0) - log_normal(z, mean, log_var)
  np.testing.assert_allclose(a['log_weights'][0], expect, rtol=1e-5)
  many = _jitted(model, num_samples=16)(x, jax.random.key(3))
  assert np.all(vae_losses.iwae_bound(many['log_weights']) >= many['log_weights'].mean(0))


def test_split_merge_and_finite_gradients_even_for_extreme_log_var():
  model = vae.VAE((28, 28, 1), 4, (4, 8), likelihood='bernoulli', rngs=nnx.Rngs(0))
  # Force log_var = [100, -100, 100, -100] for every image: zero kernel, extreme bias.
  dense = model.encoder.dense
  dense.kernel[...] = dense.kernel[...].at[:, 4:].set(0.0)
  dense.bias[...] = dense.bias[...].at[4:].set(jnp.array([100.0, -100.0, 100.0, -100.0]))
  graphdef, params = state_lib.split_model(model)
  x = jnp.round(_images((28, 28, 1)))

  def loss_fn(p):
    out = state_lib.merge_model(graphdef, p)(x, jax.random.key(0))
    return -out['elbo'].mean(), out

  (loss, out), grads = jax.jit(jax.value_and_grad(loss_fn, has_aux=True))(params)
  assert np.isfinite(loss) and np.all(np.isfinite(out['kl']))
  np.testing.assert_allclose(out['latent_log_var'][0], [30.0, -30.0, 30.0, -30.0])
  assert all(np.all(np.isfinite(g)) for g in jax.tree.leaves(grads))


def test_bad_likelihood_raises():
  with pytest.raises(ValueError, match='likelihood'):
    vae.VAE((8, 8, 1), 4, (4,), likelihood='gaussian', rngs=nnx.Rngs(0))


@pytest.mark.parametrize('likelihood', ['bernoulli', 'logistic'])
def test_baseline_fit_in_chunks_equals_the_whole_array_formula(likelihood, monkeypatch):
  # Training images may be rows on disk: the fit reads them in chunks (7 here, with a
  # partial last chunk) and must equal the moments of the whole array, worked out directly.
  images = np.random.default_rng(3).integers(0, 256, size=(30, 3, 2, 2)).astype(np.uint8)
  monkeypatch.setattr(vae, '_FIT_CHUNK', 7)
  got = vae.fit_baseline(images, likelihood)
  if likelihood == 'bernoulli':
    p = ((images >= 128).sum(axis=0) + 1.0) / 32.0
    np.testing.assert_allclose(got['logits'], np.log(p / (1 - p)), rtol=1e-6)
  else:
    x = images / 255.0
    np.testing.assert_allclose(got['mean'], x.mean(axis=0), rtol=1e-6)
    scale = np.maximum(x.std(axis=0) * np.sqrt(3) / np.pi, np.exp(-8))
    np.testing.assert_allclose(got['log_scale'], np.log(scale), rtol=1e-6, atol=1e-6)
