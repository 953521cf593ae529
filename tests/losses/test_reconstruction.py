"""Reconstruction errors and PSNR against hand-worked values."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxssl.losses import reconstruction


def test_errors_per_image_hand_worked():
  # Image 0 is off by 0.1 at every one of its 2*3*2 = 12 values; image 1 is exact except one
  # value off by 0.5.
  x = jnp.zeros((2, 2, 3, 2))
  y = jnp.full((2, 2, 3, 2), 0.1).at[1].set(0.0).at[1, 0, 0, 1].set(0.5)
  np.testing.assert_allclose(reconstruction.squared_error(x, y), [12 * 0.01, 0.25], rtol=1e-6)
  np.testing.assert_allclose(reconstruction.mse(x, y), [0.01, 0.25 / 12], rtol=1e-6)
  assert reconstruction.mse(x, y).shape == (2,)


def test_psnr_hand_values_and_perfect_reconstruction():
  np.testing.assert_allclose(reconstruction.psnr(jnp.array([0.01, 1e-4, 1.0])),
                             [20.0, 40.0, 0.0], atol=1e-5)
  np.testing.assert_allclose(reconstruction.psnr(6.5025, max_value=255.0), 40.0, rtol=1e-6)
  # mse = 0 is floored (1e-10 -> 100 dB), so batch means and gradients stay finite.
  np.testing.assert_allclose(reconstruction.psnr(jnp.zeros(3)), 100.0, rtol=1e-6)
  grad = jax.grad(lambda m: reconstruction.psnr(m).sum())(jnp.array([0.0, 0.01]))
  assert np.all(np.isfinite(grad))


def test_bad_shapes_raise_naming_both():
  with pytest.raises(ValueError, match=r'\(2, 4, 4, 1\).*\(2, 4, 4, 3\)'):
    reconstruction.mse(jnp.zeros((2, 4, 4, 1)), jnp.zeros((2, 4, 4, 3)))
  with pytest.raises(ValueError, match='batch'):
    reconstruction.squared_error(jnp.zeros(()), jnp.zeros(()))


def test_gradient_of_squared_error():
  x, y = jnp.array([[1.0, 2.0]]), jnp.array([[0.5, 2.5]])
  np.testing.assert_allclose(jax.grad(lambda a: reconstruction.squared_error(a, y).sum())(x),
                             [[1.0, -1.0]])
