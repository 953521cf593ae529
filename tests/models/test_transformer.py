"""The shared Transformer: shapes, parameter count, masks, causality."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxssl.models import transformer
from jaxssl.train import state as state_lib


def _cfg(**kw):
  return transformer.TransformerConfig.from_preset('tiny', vocab_size=50, max_len=16, **kw)


def test_tiny_mlm_shapes_and_parameter_count():
  model = transformer.MaskedLM(_cfg(), rngs=nnx.Rngs(0))
  _, params = state_lib.split_model(model)
  # Per block: qkv 32*96+96, out 32*32+32, fc1 32*64+64, fc2 64*32+32, two LayerNorms 2*64.
  block = 3168 + 1056 + 2112 + 2080 + 128
  # Embeddings 50*32 + 16*32 + LayerNorm 64; head: dense 1056 + LayerNorm 64 + bias 50.
  expected = 2 * block + 1600 + 512 + 64 + 1056 + 64 + 50
  assert sum(x.size for x in jax.tree.leaves(params)) == expected == 20434
  logits = model(jnp.ones((3, 10), jnp.int32), jnp.zeros((3, 4), jnp.int32))
  assert logits.shape == (3, 4, 50) and logits.dtype == jnp.float32


def test_padding_keys_are_not_attended():
  model = transformer.Transformer(_cfg(), rngs=nnx.Rngs(0))
  tokens = jnp.array([[2, 7, 8, 9, 3, 0, 0, 0]])
  other = tokens.at[0, 6].set(33)  # change a padded position
  pad = tokens > 0
  a, _ = model(tokens, padding_mask=pad)
  b, _ = model(other, padding_mask=pad)
  np.testing.assert_allclose(a[:, :5], b[:, :5], atol=1e-6)


def test_causal_switch():
  tokens = jnp.arange(5, 15)[None]
  changed = tokens.at[0, 6].set(40)
  for causal, same in ((True, True), (False, False)):
    model = transformer.Transformer(_cfg(causal=causal, pre_norm=causal), rngs=nnx.Rngs(0))
    a, b = model(tokens)[0], model(changed)[0]
    assert np.allclose(a[:, :6], b[:, :6], atol=1e-6) == same
    assert not np.allclose(a[:, 6:], b[:, 6:], atol=1e-6)


def test_segments_do_not_attend_each_other():
  model = transformer.Transformer(_cfg(), rngs=nnx.Rngs(0))
  tokens = jnp.arange(5, 13)[None]
  seg = jnp.array([[1, 1, 1, 2, 2, 2, 2, 0]])
  a, _ = model(tokens, segment_ids=seg)
  b, _ = model(tokens.at[0, 4].set(40), segment_ids=seg)
  np.testing.assert_allclose(a[:, :3], b[:, :3], atol=1e-6)


def test_bfloat16_compute_keeps_float32_params_and_is_close():
  tokens = jnp.arange(5, 15)[None]
  pos = jnp.array([[1, 2]])
  f32 = transformer.MaskedLM(_cfg(), rngs=nnx.Rngs(0))
  bf16 = transformer.MaskedLM(_cfg(dtype='bfloat16'), rngs=nnx.Rngs(0))
  assert all(x.dtype == jnp.float32 for x in jax.tree.leaves(state_lib.split_model(bf16)[1]))
  np.testing.assert_allclose(bf16(tokens, pos), f32(tokens, pos), atol=0.05)


def test_dropout_needs_a_key_and_is_deterministic_given_one():
  model = transformer.MaskedLM(_cfg(), rngs=nnx.Rngs(0))
  tokens, pos = jnp.arange(5, 15)[None], jnp.array([[1, 2]])
  with pytest.raises(ValueError, match='rng_dropout'):
    model(tokens, pos, train=True)
  a = model(tokens, pos, train=True, rng_dropout=jax.random.key(1))
  b = model(tokens, pos, train=True, rng_dropout=jax.random.key(1))
  c = model(tokens, pos, train=False)
  np.testing.assert_array_equal(a, b)
  assert not np.allclose(a, c)


def test_bad_hyperparameters_raise():
  with pytest.raises(ValueError, match='model.preset'):
    transformer.TransformerConfig.from_preset('huge', vocab_size=5, max_len=4)
  with pytest.raises(ValueError, match='max_len'):
    transformer.Transformer(_cfg(), rngs=nnx.Rngs(0))(jnp.ones((1, 17), jnp.int32))


def test_rotary_scores_depend_only_on_offsets():
  rng = np.random.default_rng(0)
  q = jnp.asarray(rng.normal(size=(1, 6, 2, 8)), jnp.float32)
  k = jnp.asarray(rng.normal(size=(1, 6, 2, 8)), jnp.float32)
  pos = jnp.arange(6)

  def scores(shift):
    return jnp.einsum('bqhd,bkhd->bhqk', transformer.rotary(q, pos + shift),
                      transformer.rotary(k, pos + shift))

  np.testing.assert_allclose(scores(0), scores(37), atol=1e-4)
  # Position 0 is not rotated, and rotations keep every channel pair's norm.
  np.testing.assert_allclose(transformer.rotary(q, pos)[:, 0], q[:, 0], atol=1e-6)
  pairs = lambda x: jnp.hypot(x[..., 0::2], x[..., 1::2])
  np.testing.assert_allclose(pairs(transformer.rotary(q, pos)), pairs(q), atol=1e-5)
  # Hand-worked: one pair (1, 0) at position 1 with base 10000 and Dh = 2 turns by 1 radian.
  np.testing.assert_allclose(
      transformer.rotary(jnp.array([[[[1.0, 0.0]]]]), jnp.array([1]))[0, 0, 0],
      [np.cos(1.0), np.sin(1.0)], atol=1e-6)
  with pytest.raises(ValueError, match='even'):
    transformer.rotary(jnp.ones((1, 2, 1, 3)), jnp.arange(2))


def test_rope_model_has_no_position_table_and_keeps_causality():
  cfg = _cfg(position_encoding='rope', causal=True, pre_norm=True)
  model = transformer.Transformer(cfg, rngs=nnx.Rngs(0))
  assert model.position_embed is None
  tokens = jnp.arange(5, 15)[None]
  a, b = model(tokens)[0], model(tokens.at[0, 6].set(40))[0]
  np.testing.assert_allclose(a[:, :6], b[:, :6], atol=1e-6)
  with pytest.raises(ValueError, match='position_encoding'):
    transformer.Transformer(_cfg(position_encoding='alibi'), rngs=nnx.Rngs(0))
