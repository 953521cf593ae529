"""Splitting models into parameters and BatchNorm statistics, and merging them back."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxssl.models import gan
from jaxssl.train import state as state_lib


def test_models_with_batch_statistics_split_into_params_and_stats():
  model = gan.Discriminator((8, 8, 1), (2, 4), rngs=nnx.Rngs(0))
  with pytest.raises(ValueError, match='split_model_with_stats'):
    state_lib.split_model(model)
  graphdef, params, stats = state_lib.split_model_with_stats(model)
  assert set(stats) == {'norms'}  # only the second convolution has BatchNorm
  np.testing.assert_array_equal(stats['norms'][0]['var'], np.ones(4))
  x = jax.random.uniform(jax.random.key(0), (3, 8, 8, 1))

  @jax.jit
  def apply(params, stats):
    m = state_lib.merge_model(graphdef, params, stats)
    return m(x, train=True), state_lib.batch_stats(m)

  logits, new_stats = apply(params, stats)
  np.testing.assert_allclose(logits, model(x, train=True), atol=1e-6)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, atol=1e-6), new_stats,
               state_lib.batch_stats(model))
  assert not np.allclose(new_stats['norms'][0]['var'], 1.0)
  # The inputs are pure arrays: nothing was mutated in place.
  np.testing.assert_array_equal(stats['norms'][0]['var'], np.ones(4))
  assert all(isinstance(v, jax.Array) for v in jax.tree.leaves(params))
  assert jnp.asarray(logits).shape == (3,)
