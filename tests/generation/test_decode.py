"""generate(): the cached loop against recomputing the prefix, greedy, seeds and EOS."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from jaxssl.generation import decode
from jaxssl.losses import lm
from jaxssl.models import transformer
from jaxssl.train import state as state_lib


V = 40


def _successor(t):
  return 5 + (7 * (t - 5) + 3) % (V - 5)  # a permutation of the ids 5..39


def _chains(n, length, rng):
  rows = [rng.integers(5, V, size=n)]
  for _ in range(length - 1):
    rows.append(_successor(rows[-1]))
  return np.stack(rows, axis=1).astype(np.int32)  # [n, length]


@pytest.fixture(scope='module', params=['rope', 'learned'])
def split(request):
  """A tiny CausalLM trained for a few seconds to continue every chain t -> successor(t):
  its greedy output is known and non-constant, unlike a random model's."""
  cfg = transformer.TransformerConfig.from_preset(
      'tiny', vocab_size=V, max_len=32, causal=True, pre_norm=True, dropout_rate=0.0,
      position_encoding=request.param)
  graphdef, params = state_lib.split_model(transformer.CausalLM(cfg, rngs=nnx.Rngs(0)))
  tx = optax.adam(1e-2)
  opt_state = tx.init(params)

  @jax.jit
  def step(params, opt_state, tokens):
    def loss(p):
      logits = nnx.merge(graphdef, p)(tokens)
      total, count = lm.next_token_loss(logits, tokens, jnp.ones_like(tokens))
      return total / count
    grads = jax.grad(loss)(params)
    updates, opt_state = tx.update(grads, opt_state)
    return optax.apply_updates(params, updates), opt_state

  rng = np.random.default_rng(0)
  for _ in range(150):
    params, opt_state = step(params, opt_state, jnp.asarray(_chains(16, 24, rng)))
  return graphdef, params


PROMPT = jnp.asarray(_chains(2, 4, np.random.default_rng(1)))


def _gen(split, **kw):
  kw.setdefault('max_new_tokens', 20)
  out = decode.generate(*split, PROMPT, jax.random.key(kw.pop('seed', 0)), **kw)
  return np.asarray(out['tokens']), np.asarray(out['lengths'])


def test_cached_greedy_equals_recomputing_the_prefix(split):
  cached, _ = _gen(split, temperature=0.0)
  recomputed, _ = _gen(split, temperature=0.0, use_cache=False)
  np.testing.assert_array_equal(cached, recomputed)
  # The trained chains: every new token is the successor of the one before it.
  previous = np.concatenate([np.asarray(PROMPT)[:, -1:], cached[:, :-1]], axis=1)
  np.testing.assert_array_equal(cached, _successor(previous))
  # And the first new token is the argmax of a plain forward pass over the prompt.
  model = nnx.merge(*split)
  np.testing.assert_array_equal(cached[:, 0], np.argmax(model(PROMPT)[:, -1], axis=-1))


def test_cached_sampling_equals_recomputing_with_the_same_seed(split):
  settings = dict(temperature=1.0, top_k=10, top_p=0.9, seed=3)
  np.testing.assert_array_equal(_gen(split, **settings)[0],
                                _gen(split, use_cache=False, **settings)[0])


def test_top_k_one_equals_greedy_and_seeds_reproduce(split):
  greedy, _ = _gen(split, temperature=0.0)
  np.testing.assert_array_equal(_gen(split, top_k=1, temperature=0.7, seed=5)[0], greedy)
  a, _ = _gen(split, temperature=1.5, seed=1)
  b, _ = _gen(split, temperature=1.5, seed=1)
  c, _ = _gen(split, temperature=1.5, seed=2)
  np.testing.assert_array_equal(a, b)
  assert (a != c).any()


def test_rows_stop_at_eos_and_pad_after_it(split):
  greedy, _ = _gen(split, temperature=0.0)
  eos = int(greedy[0, 3])  # make the 4th greedy token of row 0 the end of text
  first = int(np.argmax(greedy[0] == eos))
  tokens, lengths = _gen(split, temperature=0.0, eos_id=eos, pad_id=0)
  assert lengths[0] == first
  np.testing.assert_array_equal(tokens[0, :first + 1], greedy[0, :first + 1])
  assert (tokens[0, first + 1:] == 0).all()


def test_bad_requests_raise(split):
  with pytest.raises(ValueError, match='max_new_tokens'):
    _gen(split, max_new_tokens=0)
  with pytest.raises(ValueError, match='top_p'):
    _gen(split, top_p=2.0)
  with pytest.raises(ValueError, match='max_len'):
    _gen(split, max_new_tokens=40, use_cache=False)
