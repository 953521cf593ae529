"""sample_logits against hand-worked distributions."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxssl.generation import sampling

PROBS = np.array([0.05, 0.5, 0.15, 0.3])  # ranked: id 1, 3, 2, 0


def _frequencies(n=20000, **settings):
  logits = jnp.log(jnp.asarray(np.tile(PROBS, (n, 1)), jnp.float32))
  tokens = sampling.sample_logits(jax.random.key(0), logits, **settings)
  return np.bincount(np.asarray(tokens), minlength=4) / n


@pytest.mark.parametrize('settings, expected', [
    (dict(), PROBS),
    (dict(top_k=2), [0, 0.5 / 0.8, 0, 0.3 / 0.8]),
    # Mass before id 2 is 0.8: top_p=0.8 stops at {1, 3}; 0.81 adds id 2.
    (dict(top_p=0.8), [0, 0.5 / 0.8, 0, 0.3 / 0.8]),
    (dict(top_p=0.81), [0, 0.5 / 0.95, 0.15 / 0.95, 0.3 / 0.95]),
    (dict(top_p=0.3), [0, 1, 0, 0]),
    # Top-k first, then top-p on the renormalised top-k distribution (as transformers'
    # TopK then TopP warpers): mass before id 2 becomes 0.8 / 0.95 = 0.842.
    (dict(top_k=3, top_p=0.81), [0, 0.5 / 0.8, 0, 0.3 / 0.8]),
    (dict(top_k=3, top_p=0.85), [0, 0.5 / 0.95, 0.15 / 0.95, 0.3 / 0.95]),
    # Temperature 2 takes square roots of the probabilities before normalising.
    (dict(temperature=2.0), np.sqrt(PROBS) / np.sqrt(PROBS).sum()),
])
def test_empirical_frequencies_match_the_filtered_distribution(settings, expected):
  np.testing.assert_allclose(_frequencies(**settings), expected, atol=0.012)


def test_greedy_and_top_k_one_pick_the_first_maximum():
  logits = jnp.array([[0.0, 2.0, 2.0, 1.0], [3.0, -1.0, 3.0, 3.0]])
  for settings in (dict(temperature=0.0), dict(top_k=1), dict(top_k=1, temperature=5.0)):
    np.testing.assert_array_equal(
        sampling.sample_logits(jax.random.key(1), logits, **settings), [1, 0])


@pytest.mark.parametrize('settings, match', [
    (dict(temperature=-1.0), 'temperature'), (dict(top_k=-2), 'top_k'),
    (dict(top_p=0.0), 'top_p'), (dict(top_p=1.5), 'top_p')])
def test_bad_settings_raise(settings, match):
  with pytest.raises(ValueError, match=match):
    sampling.sample_logits(jax.random.key(0), jnp.zeros((1, 3)), **settings)
