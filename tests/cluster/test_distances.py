"""Distances to centres and the nearest centre against NumPy."""

import jax.numpy as jnp
import numpy as np

from jaxssl.cluster import distances


def test_squared_distances_match_numpy():
  rng = np.random.default_rng(0)
  x, c = rng.normal(size=(50, 7)) + 100.0, rng.normal(size=(4, 7)) + 100.0
  expected = ((x[:, None] - c[None]) ** 2).sum(-1)
  got = np.asarray(distances.squared_distances(jnp.asarray(x, jnp.float32),
                                               jnp.asarray(c, jnp.float32)))
  np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-3)
  labels, dist = distances.assign(jnp.asarray(x, jnp.float32), jnp.asarray(c, jnp.float32))
  np.testing.assert_array_equal(np.asarray(labels), expected.argmin(1))
  np.testing.assert_allclose(np.asarray(dist), expected.min(1), rtol=1e-5)


def test_many_centres_are_compared_in_blocks():
  # K = 300 > CENTER_BLOCK: the scan over blocks of centres must give numpy's argmin.
  rng = np.random.default_rng(1)
  x, c = rng.normal(size=(500, 5)), rng.normal(size=(300, 5))
  expected = ((x[:, None] - c[None]) ** 2).sum(-1)
  labels, _ = distances.assign(jnp.asarray(x, jnp.float32), jnp.asarray(c, jnp.float32))
  np.testing.assert_array_equal(np.asarray(labels), expected.argmin(1))
