"""The GPT-style CausalLM: tied head, causality (with a negative control), cached decoding."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxssl.models import transformer
from jaxssl.train import state as state_lib


def _model(position_encoding='rope', seed=0):
  cfg = transformer.TransformerConfig.from_preset(
      'tiny', vocab_size=50, max_len=16, causal=True, pre_norm=True, dropout_rate=0.0,
      position_encoding=position_encoding)
  return transformer.CausalLM(cfg, rngs=nnx.Rngs(seed))


def _violations(model, tokens, segment_ids=None, documents=None):
  """(t, s) pairs where changing token t moved the logits at a position s it must not reach:
  s < t, or s in another of ``documents`` (int [L] document ids; default: one document).
  The model sees ``segment_ids``."""
  base = np.asarray(model(tokens, segment_ids=segment_ids))
  found = []
  for t in range(tokens.shape[1]):
    changed = np.asarray(model(tokens.at[0, t].set((tokens[0, t] + 7) % 50),
                               segment_ids=segment_ids))
    moved = np.abs(changed - base).max(axis=-1)[0] > 1e-6  # [L]
    for s in np.flatnonzero(moved):
      if s < t or (documents is not None and documents[s] != documents[t]):
        found.append((t, int(s)))
  return found


def test_tied_head_shapes_and_parameter_count():
  model = _model(position_encoding='learned')
  _, params = state_lib.split_model(model)
  block = 3168 + 1056 + 2112 + 2080 + 128  # as in test_transformer
  # Token 50*32 + positions 16*32 + final LayerNorm 64; the head adds nothing (tied).
  assert sum(x.size for x in jax.tree.leaves(params)) == 2 * block + 1600 + 512 + 64
  logits = model(jnp.ones((3, 10), jnp.int32))
  assert logits.shape == (3, 10, 50) and logits.dtype == jnp.float32
  hidden, _ = model.decoder(jnp.ones((3, 10), jnp.int32))
  np.testing.assert_allclose(logits, hidden @ model.decoder.token_embed.embedding[...].T,
                             rtol=1e-5, atol=1e-5)
  with pytest.raises(ValueError, match='causal=True'):
    transformer.CausalLM(transformer.TransformerConfig.from_preset(
        'tiny', vocab_size=50, max_len=16), rngs=nnx.Rngs(0))


@pytest.mark.parametrize('position_encoding', ['rope', 'learned'])
def test_a_token_never_changes_earlier_logits_and_the_check_catches_a_leak(position_encoding):
  model = _model(position_encoding)
  tokens = jnp.arange(5, 17)[None]
  assert _violations(model, tokens) == []
  # Negative control: the same check on the same weights without the causal mask fails.
  for block in model.decoder.blocks:
    block.attention.causal = False
  leaks = _violations(model, tokens)
  assert (11, 0) in leaks and len(leaks) == 12 * 11 // 2  # every (t, s < t) pair


def test_packed_documents_never_see_each_other():
  model = _model()
  tokens = jnp.arange(5, 17)[None]
  documents = np.array([1, 1, 1, 1, 2, 2, 2, 3, 3, 3, 3, 0])
  assert _violations(model, tokens, jnp.asarray(documents)[None], documents) == []
  # Control: the same row without its segment ids lets document 1 reach documents 2 and 3.
  leaks = _violations(model, tokens, None, documents)
  assert (0, 4) in leaks and (3, 11) in leaks and (4, 7) in leaks


@pytest.mark.parametrize('position_encoding', ['rope', 'learned'])
def test_cached_decoding_equals_the_full_forward_pass(position_encoding):
  model = _model(position_encoding)
  tokens = jnp.asarray(np.random.default_rng(0).integers(5, 50, size=(2, 12)), jnp.int32)
  full = model(tokens)
  cache = model.init_cache(2, 16)
  prefill, cache = model.decode(tokens[:, :5], cache, jnp.int32(0))
  steps = [prefill]
  for t in range(5, 12):
    logits, cache = model.decode(tokens[:, t:t + 1], cache, jnp.int32(t))
    steps.append(logits)
  np.testing.assert_allclose(jnp.concatenate(steps, axis=1), full, atol=2e-5)
  with pytest.raises(ValueError, match='causal'):
    transformer.Transformer(transformer.TransformerConfig.from_preset(
        'tiny', vocab_size=50, max_len=16), rngs=nnx.Rngs(0)).init_cache(1, 8)
  if position_encoding == 'learned':
    with pytest.raises(ValueError, match='max_len 16'):
      model.init_cache(1, 17)
