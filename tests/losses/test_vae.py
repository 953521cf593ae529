"""VAE losses: KL, likelihoods, ELBO, IWAE and bits/dim against independent references."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxssl.losses import vae


def _sigmoid(t):
  return 1.0 / (1.0 + math.exp(-t))


def test_kl_hand_worked():
  # One dimension, mean 0, variance 4: 1/2 (4 - 1 - ln 4).
  kl = vae.gaussian_kl(jnp.zeros((1, 1)), jnp.full((1, 1), math.log(4.0)))
  np.testing.assert_allclose(kl, [0.5 * (4 - 1 - math.log(4))], rtol=1e-6)
  np.testing.assert_allclose(kl, [0.80685], atol=1e-5)
  # Summed over dimensions, per example; zero at the prior.
  np.testing.assert_allclose(vae.gaussian_kl(jnp.array([[1.0, 2.0], [0.0, 0.0]]),
                                             jnp.zeros((2, 2))), [2.5, 0.0], atol=1e-7)


def test_kl_matches_monte_carlo():
  mean = np.array([0.7, -1.2, 0.3])
  log_var = np.array([math.log(4.0), -1.0, 0.5])
  rng = np.random.default_rng(0)
  eps = rng.standard_normal((400_000, 3))
  z = mean + np.exp(0.5 * log_var) * eps
  # log q(z) - log p(z); the 2 pi terms cancel.
  samples = (-0.5 * (eps**2 + log_var) + 0.5 * z**2).sum(-1)
  stderr = samples.std() / math.sqrt(len(samples))
  kl = float(vae.gaussian_kl(jnp.asarray(mean, jnp.float32)[None],
                             jnp.asarray(log_var, jnp.float32)[None])[0])
  assert abs(kl - samples.mean()) < 4 * stderr, (kl, samples.mean(), stderr)


def test_kl_and_elbo_finite_with_finite_gradients_at_extreme_log_var():
  mean = jnp.zeros((2, 2))
  log_var = jnp.array([[100.0, -100.0], [-100.0, 0.0]])

  def neg_elbo(m, lv):
    kl = vae.gaussian_kl(m, lv)
    return -vae.elbo(jnp.full((2,), -5.0), kl).sum(), kl

  (loss, kl), grads = jax.value_and_grad(neg_elbo, argnums=(0, 1), has_aux=True)(mean, log_var)
  assert np.all(np.isfinite(kl)) and np.isfinite(loss)
  assert all(np.all(np.isfinite(g)) for g in grads)
  # Clipped to [-30, 30]: 1/2 (e^30 - 31 + e^-30 + 29) for the first example.
  np.testing.assert_allclose(kl[0], 0.5 * (math.exp(30) - 31 + math.exp(-30) + 29), rtol=1e-5)
  with pytest.raises(ValueError, match=r'mean \(2, 2\) and log_var \(2, 3\)'):
    vae.gaussian_kl(mean, jnp.zeros((2, 3)))


def test_bernoulli_matches_numpy_and_is_stable():
  rng = np.random.default_rng(1)
  logits = rng.normal(size=(3, 4, 4, 2)).astype(np.float32) * 3
  x = (rng.random((3, 4, 4, 2)) < 0.5).astype(np.float32)
  p = 1 / (1 + np.exp(-logits.astype(np.float64)))
  ref = (x * np.log(p) + (1 - x) * np.log(1 - p)).reshape(3, -1).sum(-1)
  np.testing.assert_allclose(vae.bernoulli_log_likelihood(jnp.asarray(logits), jnp.asarray(x)),
                             ref, rtol=1e-5)
  # Confidently wrong pixels cost |logit| nats, confidently right ones nothing; no inf.
  extreme = jnp.array([[100.0, -100.0, 100.0]])
  value, grad = jax.value_and_grad(
      lambda l: vae.bernoulli_log_likelihood(l, jnp.array([[0.0, 1.0, 1.0]])).sum())(extreme)
  np.testing.assert_allclose(value, -200.0, rtol=1e-6)
  assert np.all(np.isfinite(grad))
  with pytest.raises(ValueError, match=r'logits \(1, 3\) and x \(1, 2\)'):
    vae.bernoulli_log_likelihood(extreme, jnp.zeros((1, 2)))


def _image(values):
  return jnp.asarray(values, jnp.float32).reshape(1, -1, 1, 1)  # [1, P, 1, 1]


def test_discretized_logistic_hand_worked():
  # 5 levels (0, 1/4, ..., 1), half bin width h = 1/8, mean 0.4, scale 0.1: the bottom level
  # takes (-inf, 1/8], the middle one [3/8, 5/8], the top one [7/8, inf).
  x = _image([0.0, 0.5, 1.0])
  mean, log_scale = jnp.full_like(x, 0.4), jnp.full_like(x, math.log(0.1))
  probs = [_sigmoid((0.125 - 0.4) / 0.1),
           _sigmoid((0.625 - 0.4) / 0.1) - _sigmoid((0.375 - 0.4) / 0.1),
           1 - _sigmoid((0.875 - 0.4) / 0.1)]
  got = vae.discretized_logistic_log_likelihood(mean, log_scale, x, num_levels=5)
  np.testing.assert_allclose(got, [sum(math.log(p) for p in probs)], rtol=1e-5)


@pytest.mark.parametrize('num_levels', [2, 5, 17, 256])
@pytest.mark.parametrize('mean,log_scale', [(0.3, -3.0), (0.5, -7.0), (-2.0, 0.0),
                                            (1.7, 2.0), (0.62, -30.0), (0.5, 50.0)])
def test_discretized_logistic_sums_to_one_over_levels(num_levels, mean, log_scale):
  # One 1-pixel image per level: the probabilities of all levels sum to 1.
  x = jnp.arange(num_levels, dtype=jnp.float32).reshape(-1, 1, 1, 1) / (num_levels - 1)
  log_p = vae.discretized_logistic_log_likelihood(
      jnp.full_like(x, mean), jnp.full_like(x, log_scale), x, num_levels=num_levels)
  assert log_p.shape == (num_levels,)
  np.testing.assert_allclose(float(jnp.exp(log_p).sum()), 1.0, rtol=1e-5)


def test_discretized_logistic_floor_and_extreme_inputs():
  x = _image([0.0, 128 / 255, 1.0, 64 / 255])
  ones = jnp.ones_like(x)
  # The scale floor: any log_scale below the default -8 acts as -8.
  a = vae.discretized_logistic_log_likelihood(x, -8.0 * ones, x, num_levels=256)
  b = vae.discretized_logistic_log_likelihood(x, -100.0 * ones, x, num_levels=256)
  np.testing.assert_allclose(a, b)
  # Centred on its level at the floor, a logistic keeps 2 sigmoid(h e^8) - 1 of its mass in
  # an interior bin (h = 1/510) and sigmoid(h e^8) in an edge bin.
  inner = _sigmoid(math.exp(8) / 510)
  np.testing.assert_allclose(a, [2 * math.log(inner) + 2 * math.log(2 * inner - 1)], rtol=1e-4)
  assert 2 * inner - 1 > 0.99

  def total(mean, log_scale):
    return vae.discretized_logistic_log_likelihood(mean, log_scale, x, num_levels=256).sum()

  for m, s in [(1e6, -100.0), (-1e6, 100.0), (1e6, 100.0), (-1e30, -7.0), (0.5, 1e4)]:
    value, grads = jax.value_and_grad(total, argnums=(0, 1))(m * ones, s * ones)
    assert np.isfinite(value), (m, s)
    assert all(np.all(np.isfinite(g)) for g in grads), (m, s)
  with pytest.raises(ValueError, match=r'log_scale \(1, 3, 1, 1\) and x \(1, 4, 1, 1\)'):
    vae.discretized_logistic_log_likelihood(x, _image([0.0] * 3), x, num_levels=256)
  with pytest.raises(ValueError, match='num_levels'):
    vae.discretized_logistic_log_likelihood(x, x, x, num_levels=1)


def test_log_likelihood_is_summed_per_image_not_averaged():
  # Tiling each image twice along its width doubles the log-likelihood (nats per image).
  rng = np.random.default_rng(2)
  shape = (2, 4, 3, 1)
  x = jnp.asarray(rng.integers(0, 256, shape) / 255.0, jnp.float32)
  mean = jnp.asarray(rng.random(shape), jnp.float32)
  log_scale = jnp.asarray(rng.normal(size=shape) - 2, jnp.float32)
  logits = jnp.asarray(rng.normal(size=shape), jnp.float32)
  binary = jnp.round(x)
  tile = lambda a: jnp.concatenate([a, a], axis=2)  # [2, 4, 6, 1]
  logistic = lambda m, s, y: vae.discretized_logistic_log_likelihood(m, s, y, num_levels=256)
  np.testing.assert_allclose(logistic(tile(mean), tile(log_scale), tile(x)),
                             2 * logistic(mean, log_scale, x), rtol=1e-5)
  np.testing.assert_allclose(vae.bernoulli_log_likelihood(tile(logits), tile(binary)),
                             2 * vae.bernoulli_log_likelihood(logits, binary), rtol=1e-5)


def test_elbo_and_iwae_hand_worked():
  np.testing.assert_allclose(vae.elbo(jnp.array([-10.0, -3.0]), jnp.array([2.0, 0.5])),
                             [-12.0, -3.5])
  with pytest.raises(ValueError, match=r'log_likelihood \(2,\) and kl \(3,\)'):
    vae.elbo(jnp.zeros(2), jnp.zeros(3))
  # K = 2. Column 0: log((1 + 3) / 2) = ln 2. Column 1: equal weights give the weight.
  log_w = jnp.array([[0.0, -5.0], [math.log(3.0), -5.0]])
  np.testing.assert_allclose(vae.iwae_bound(log_w), [math.log(2.0), -5.0], rtol=1e-6)
  rng = np.random.default_rng(3)
  log_w = jnp.asarray(rng.normal(size=(8, 5)) * 3 - 100, jnp.float32)
  bound = vae.iwae_bound(log_w)
  np.testing.assert_allclose(
      bound, np.log(np.exp(np.asarray(log_w, np.float64) + 100).mean(0)) - 100, rtol=1e-5)
  assert np.all(bound >= log_w.mean(axis=0))
  with pytest.raises(ValueError, match=r'\(8,\).*\[K, B\]'):
    vae.iwae_bound(jnp.zeros(8))


def test_bits_per_dim():
  # A coin per pixel (logits 0) costs exactly 1 bit per dimension.
  dims = 8 * 8 * 1
  ll = vae.bernoulli_log_likelihood(jnp.zeros((2, 8, 8, 1)), jnp.ones((2, 8, 8, 1)))
  np.testing.assert_allclose(vae.bits_per_dim(ll, dims), [1.0, 1.0], rtol=1e-6)
  # Uniform over 256 grey levels is 8 bits per dimension.
  np.testing.assert_allclose(vae.bits_per_dim(-dims * math.log(256.0), dims), 8.0, rtol=1e-6)
