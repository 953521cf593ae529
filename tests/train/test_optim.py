"""Schedules, weight-decay masks and clipping."""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest
from flax import nnx

from jaxssl.models import transformer
from jaxssl.train import optim
from jaxssl.train import state as state_lib


def _optim(**kw):
  c = ml_collections.ConfigDict(dict(learning_rate=0.1, warmup_steps=10, decay='linear',
                                     weight_decay=0.5, b1=0.9, b2=0.999, eps=1e-8,
                                     grad_clip_norm=0.0))
  c.update(kw)
  return c


def test_linear_warmup_then_linear_decay():
  s = optim.make_schedule(_optim(), num_train_steps=110)
  np.testing.assert_allclose([s(0), s(5), s(10), s(60), s(110)], [0.0, 0.05, 0.1, 0.05, 0.0],
                             atol=1e-7)


def test_cosine_and_zero_warmup():
  s = optim.make_schedule(_optim(decay='cosine', warmup_steps=0), num_train_steps=100)
  np.testing.assert_allclose([s(0), s(50), s(100)], [0.1, 0.05, 0.0], atol=1e-7)
  with pytest.raises(ValueError, match='optim.decay'):
    optim.make_schedule(_optim(decay='step'), 10)


def _params():
  cfg = transformer.TransformerConfig.from_preset('tiny', vocab_size=20, max_len=8)
  return state_lib.split_model(transformer.MaskedLM(cfg, rngs=nnx.Rngs(0)))[1]


def test_weight_decay_skips_biases_and_layernorm():
  params = _params()
  mask = optim.decay_mask(params)
  flat = {jax.tree_util.keystr(p): m for p, m in jax.tree_util.tree_leaves_with_path(mask)}
  assert flat["['encoder']['token_embed']['embedding']"]
  assert flat["['encoder']['blocks'][0]['attention']['qkv']['kernel']"]
  assert not flat["['encoder']['blocks'][0]['attention']['qkv']['bias']"]
  assert not flat["['encoder']['embed_norm']['scale']"]
  assert not flat["['output_bias']"]
  # With zero gradients Adam's step is 0, so only decoupled decay moves parameters:
  # w <- w - lr * wd * w for decayed leaves (lr 0.1 at warmup 0, wd 0.5 -> w * 0.95).
  tx = optim.make_optimizer(_optim(warmup_steps=0), num_train_steps=10)
  state = state_lib.create(params, tx, graphdef=None)
  new = state.apply_gradients(jax.tree.map(jnp.zeros_like, params))
  for (path, old), new_leaf, decays in zip(jax.tree_util.tree_leaves_with_path(params),
                                           jax.tree.leaves(new.params), jax.tree.leaves(mask)):
    if decays:
      np.testing.assert_allclose(new_leaf, old * 0.95, rtol=1e-6, err_msg=str(path))
    else:
      np.testing.assert_array_equal(new_leaf, old, err_msg=str(path))


def test_global_norm_clipping_precedes_adam():
  # Adam's second step depends on the ratio of the two gradients' sizes, so clipping the
  # first (norm 500 -> 1) changes it. Reference: plain AdamW on hand-clipped gradients.
  cfg = _optim(warmup_steps=0, weight_decay=0.0, grad_clip_norm=1.0, decay='constant')
  g1, g2 = jnp.array([300.0, -400.0]), jnp.array([0.3, 0.4])  # norms 500 and 0.5

  def run(tx, grads):
    state = state_lib.create({'w': jnp.zeros(2)}, tx, graphdef=None)
    for g in grads:
      state = state.apply_gradients({'w': g})
    return state.params['w']

  ours = run(optim.make_optimizer(cfg, 10), [g1, g2])
  plain = optax.adamw(0.1, b1=0.9, b2=0.999, eps=1e-8, weight_decay=0.0)
  np.testing.assert_allclose(ours, run(plain, [g1 / 500.0, g2]), rtol=1e-6)
  assert not np.allclose(ours, run(plain, [g1, g2]), rtol=1e-3)
