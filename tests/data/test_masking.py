"""BERT masking: selection rate, 80/10/10 split, special tokens, per-row keys, whole words."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxssl.data import masking

PAD, UNK, CLS, SEP, MASK, NUM_SPECIAL = 0, 1, 2, 3, 4, 5
V = 40


def _rows(n=400, length=64, seed=0):
  """Rows like packed BERT input: [CLS] text [SEP] text [SEP] ... [PAD]s, random lengths."""
  rng = np.random.default_rng(seed)
  rows = np.full((n, length), PAD, np.int32)
  for i in range(n):
    real = rng.integers(10, length + 1)
    rows[i, :real] = rng.integers(NUM_SPECIAL, V, real)
    rows[i, 0] = CLS
    rows[i, real - 1] = SEP
    rows[i, rng.integers(1, real)] = SEP
    rows[i, rng.integers(1, real)] = UNK
  return rows


def _mask(tokens, rng=0, ids=None, **kw):
  tokens = jnp.asarray(tokens)
  ids = jnp.arange(tokens.shape[0]) if ids is None else jnp.asarray(ids)
  args = dict(mask_rate=0.15, num_slots=masking.max_predictions(tokens.shape[1], 0.15),
              mask_id=MASK, vocab_size=V, num_special=NUM_SPECIAL)
  args.update(kw)
  return jax.tree.map(np.asarray, masking.mask_tokens(jax.random.key(rng), tokens, ids, **args))


def test_max_predictions():
  assert masking.max_predictions(128, 0.15) == 20  # ceil(19.2)
  assert masking.max_predictions(20, 0.15) == 3
  assert masking.max_predictions(4, 0.01) == 1


def test_never_selects_special_or_padding_and_hits_rate():
  tokens = _rows()
  out = _mask(tokens)
  w = out['weights'] > 0
  assert np.all(out['labels'][w] >= NUM_SPECIAL)
  ordinary = (tokens >= NUM_SPECIAL).sum(1)
  expected = np.minimum(np.maximum(np.round(0.15 * ordinary), 1), out['weights'].shape[1])
  np.testing.assert_array_equal(w.sum(1), expected)
  rate = w.sum() / ordinary.sum()
  assert abs(rate - 0.15) < 0.01, rate
  # Labels are the original tokens at the positions; positions within a row are distinct.
  np.testing.assert_array_equal(np.take_along_axis(tokens, out['positions'], 1)[w],
                                out['labels'][w])
  for i in range(len(tokens)):
    p = out['positions'][i][w[i]]
    assert len(set(p.tolist())) == len(p)


def test_80_10_10_and_random_tokens_are_ordinary():
  tokens = _rows(n=2000)
  out = _mask(tokens, rng=1)
  w = out['weights'] > 0
  new = np.take_along_axis(out['inputs'], out['positions'], 1)[w]
  old = out['labels'][w]
  n = len(old)
  frac_mask = np.mean(new == MASK)
  frac_same = np.mean(new == old)
  frac_random = np.mean((new != MASK) & (new != old))
  # Binomial sd at n ~ 9000 is < 0.005; 0.02 is a 4-sigma band.
  assert n > 8000
  assert abs(frac_mask - 0.8) < 0.02, frac_mask
  # A random draw equals the original with probability 1/35: unchanged ~ 0.1 + 0.1/35.
  assert abs(frac_same - (0.1 + 0.1 / (V - NUM_SPECIAL))) < 0.02, frac_same
  assert abs(frac_random - 0.1 * (1 - 1 / (V - NUM_SPECIAL))) < 0.02, frac_random
  assert np.all(new[new != MASK] >= NUM_SPECIAL)
  # Nothing outside the selected positions changes.
  changed = out['inputs'] != tokens
  selected = np.zeros_like(changed)
  np.put_along_axis(selected, out['positions'], w, 1)
  assert not np.any(changed & ~selected)


def test_eval_mode_masks_every_selected_token():
  out = _mask(_rows(), replace_prob=1.0, random_prob=0.0)
  w = out['weights'] > 0
  assert np.all(np.take_along_axis(out['inputs'], out['positions'], 1)[w] == MASK)


def test_row_masks_depend_only_on_key_and_example_id():
  tokens = _rows(n=16)
  full = _mask(tokens, rng=3)
  alone = _mask(tokens[5:6], rng=3, ids=[5])
  for k in full:
    np.testing.assert_array_equal(full[k][5], alone[k][0])
  other_id = _mask(tokens[5:6], rng=3, ids=[6])
  assert not np.array_equal(other_id['positions'], alone['positions'])


def test_row_without_ordinary_tokens_selects_nothing():
  tokens = np.array([[CLS, SEP, PAD, PAD, PAD, PAD]], np.int32)
  out = _mask(tokens)
  assert out['weights'].sum() == 0
  np.testing.assert_array_equal(out['inputs'], tokens)


def test_whole_word_masking_selects_whole_words():
  # Pieces 5..19 start words, 20..39 continue them.
  word_start = jnp.asarray(np.arange(V) < 20) & (jnp.arange(V) >= NUM_SPECIAL)
  rng = np.random.default_rng(0)
  rows = np.full((300, 48), PAD, np.int32)
  for i in range(len(rows)):
    seq = [CLS]
    while len(seq) < 44:
      seq += [int(rng.integers(5, 20))] + list(rng.integers(20, V, rng.integers(0, 3)))
    rows[i, :len(seq)] = seq
  out = _mask(rows, word_start=word_start, mask_rate=0.15)
  w = out['weights'] > 0
  total = 0
  for i in range(len(rows)):
    sel = np.zeros(48, bool)
    sel[out['positions'][i][w[i]]] = True
    starts = np.flatnonzero((rows[i] >= 5) & (rows[i] < 20))
    ends = list(starts[1:]) + [int((rows[i] > PAD).sum())]
    for s, e in zip(starts, ends):
      assert sel[s:e].all() or not sel[s:e].any(), (i, s, e)
    n = (rows[i] >= NUM_SPECIAL).sum()
    assert sel.sum() <= max(1, round(0.15 * n))
    total += sel.sum()
  assert 0.10 < total / (rows >= NUM_SPECIAL).sum() <= 0.15


def test_bad_shapes_raise():
  with pytest.raises(ValueError, match='example_ids'):
    _mask(_rows(n=4), ids=[0, 1, 2])
