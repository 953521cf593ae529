"""GAN losses against hand values; stability at extreme logits."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxssl.losses import gan


def test_hand_values():
  # D = sigmoid(0) = 1/2 -> -log(1/2) = ln 2 per term.
  np.testing.assert_allclose(gan.generator_loss(jnp.zeros(3)), [math.log(2)] * 3, rtol=1e-6)
  np.testing.assert_allclose(gan.discriminator_loss(jnp.zeros(2), jnp.zeros(2)),
                             [2 * math.log(2)] * 2, rtol=1e-6)
  # Logit 2: -log sigmoid(2) = log(1 + e^-2); fake logit -2: -log(1 - sigmoid(-2)), the same.
  expect = math.log1p(math.exp(-2.0))
  np.testing.assert_allclose(gan.generator_loss(jnp.array([2.0])), [expect], rtol=1e-6)
  np.testing.assert_allclose(gan.discriminator_loss(jnp.array([2.0]), jnp.array([-2.0])),
                             [2 * expect], rtol=1e-6)
  # The non-saturating loss of a rejected sample (logit -3) is about 3, not about 0.
  np.testing.assert_allclose(gan.generator_loss(jnp.array([-3.0])),
                             [3 + math.log1p(math.exp(-3.0))], rtol=1e-6)


def test_trailing_axes_sum_per_example():
  out = gan.discriminator_loss(jnp.zeros((4, 1)), jnp.zeros((4, 1)))
  assert out.shape == (4,)
  assert gan.generator_loss(jnp.zeros((4, 2, 2))).shape == (4,)
  np.testing.assert_allclose(gan.generator_loss(jnp.zeros((4, 2, 2))), 4 * math.log(2),
                             rtol=1e-6)


def test_finite_values_and_gradients_at_extreme_logits():
  real, fake = jnp.array([-100.0, 100.0]), jnp.array([100.0, -100.0])
  d = gan.discriminator_loss(real, fake)
  np.testing.assert_allclose(d, [200.0, 0.0], atol=1e-4)
  np.testing.assert_allclose(gan.generator_loss(real), [100.0, 0.0], atol=1e-4)
  grads = jax.grad(lambda r, f: gan.discriminator_loss(r, f).sum() + gan.generator_loss(f).sum(),
                   argnums=(0, 1))(real, fake)
  assert all(np.all(np.isfinite(g)) for g in grads)
  np.testing.assert_allclose(grads[0], [-1.0, 0.0], atol=1e-6)


def test_bad_shapes_raise():
  with pytest.raises(ValueError, match=r'\(3,\).*\(4,\)'):
    gan.discriminator_loss(jnp.zeros(3), jnp.zeros(4))
  with pytest.raises(ValueError, match='batch'):
    gan.generator_loss(jnp.zeros(()))
