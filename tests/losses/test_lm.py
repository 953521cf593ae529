"""Language-model losses against hand-worked values."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxssl.losses import lm


def test_masked_lm_loss_hand_worked():
  # V = 2. Row 0: uniform logits, label 0 -> ln 2. Row 1: logits (ln 3, 0), label 0 ->
  # -ln(3/4). Slot 2 has weight 0 and a huge wrong logit: it must not count.
  logits = jnp.array([[[0.0, 0.0], [math.log(3.0), 0.0], [0.0, 1e4]]])
  labels = jnp.array([[0, 0, 0]])
  weights = jnp.array([[1.0, 1.0, 0.0]])
  total, count = lm.masked_lm_loss(logits, labels, weights)
  assert count == 2.0
  np.testing.assert_allclose(total, math.log(2) - math.log(0.75), rtol=1e-6)
  np.testing.assert_allclose(total / count, 0.4904146, rtol=1e-6)


def test_cross_entropy_matches_numpy_and_is_stable_in_bf16():
  rng = np.random.default_rng(0)
  logits = rng.normal(size=(3, 4, 7)).astype(np.float32) * 30
  labels = rng.integers(0, 7, (3, 4))
  ref = -(logits - np.log(np.exp(logits - logits.max(-1, keepdims=True)).sum(-1, keepdims=True))
          - logits.max(-1, keepdims=True))
  ref = np.take_along_axis(ref, labels[..., None], -1)[..., 0]
  np.testing.assert_allclose(lm.token_cross_entropy(jnp.asarray(logits), jnp.asarray(labels)),
                             ref, rtol=1e-5)
  out = lm.token_cross_entropy(jnp.asarray(logits, jnp.bfloat16), jnp.asarray(labels))
  assert out.dtype == jnp.float32 and np.all(np.isfinite(out))


def test_accuracy_counts_only_weighted():
  logits = jnp.array([[[2.0, 1.0], [0.0, 3.0], [5.0, 0.0]]])
  correct, n = lm.weighted_accuracy(logits, jnp.array([[0, 0, 1]]), jnp.array([[1., 1., 0.]]))
  assert (float(correct), float(n)) == (1.0, 2.0)


def test_bad_shapes_raise():
  with pytest.raises(ValueError, match=r'\(2, 3\)'):
    lm.masked_lm_loss(jnp.zeros((2, 4, 5)), jnp.zeros((2, 3), jnp.int32), jnp.ones((2, 3)))
  with pytest.raises(ValueError, match='weights'):
    lm.masked_lm_loss(jnp.zeros((2, 3, 5)), jnp.zeros((2, 3), jnp.int32), jnp.ones((2,)))


def test_gradients_finite_for_extreme_logits():
  labels = jnp.array([[1, 0]])
  grads = jax.grad(lambda x: lm.masked_lm_loss(x, labels, jnp.ones((1, 2)))[0])(
      jnp.array([[[1e30, -1e30], [-1e30, 1e30]]]))
  assert np.all(np.isfinite(grads))


def test_next_token_oracle_logits_give_zero_loss_over_t_minus_1_targets():
  tokens = jnp.array([[5, 9, 7, 6, 8]])
  # Oracle: position t puts all mass on tokens[t + 1] (the last position is never a context).
  logits = jnp.full((1, 5, 10), -1e4).at[0, jnp.arange(4), tokens[0, 1:]].set(0.0)
  total, count = lm.next_token_loss(logits, tokens, jnp.ones_like(tokens))
  assert float(count) == 4.0
  assert float(total) < 1e-6


def test_next_token_excludes_padding_and_document_boundaries():
  # Row: doc 1 = [5, 6], doc 2 = [7, 8, 9], then padding. Targets: 6 (doc 1), 8 and 9
  # (doc 2); 7 (first token of doc 2) and the padding are not targets.
  tokens = jnp.array([[5, 6, 7, 8, 9, 0, 0]])
  segments = jnp.array([[1, 1, 2, 2, 2, 0, 0]])
  logits = jnp.zeros((1, 7, 10))  # uniform: ln 10 per target
  total, count = lm.next_token_loss(logits, tokens, segments)
  assert float(count) == 3.0
  np.testing.assert_allclose(float(total), 3 * math.log(10), rtol=1e-6)
  # Only targets 6, 8, 9 carry gradient: a logit change that predicts 7 after 6 is ignored.
  moved = logits.at[0, 1, 7].set(50.0)
  np.testing.assert_allclose(lm.next_token_loss(moved, tokens, segments)[0], total, rtol=1e-6)
  with pytest.raises(ValueError, match='segment_ids'):
    lm.next_token_loss(logits, tokens, segments[:, :5])
