"""NT-Xent, BYOL loss, tau schedule and EMA against hand values and a NumPy reference."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxssl.losses import contrastive

# Jitted once each: op-by-op dispatch costs more than these tiny computations on 2 cores.
_nt_xent = jax.jit(contrastive.nt_xent, static_argnames='temperature')
_from_similarity = jax.jit(contrastive.nt_xent_from_similarity, static_argnames='temperature')
_similarity = jax.jit(contrastive.similarity)
_accuracy = jax.jit(contrastive.contrastive_accuracy)
_byol = jax.jit(contrastive.byol_loss)


def _nt_xent_numpy(z1, z2, temperature):
  """SimCLR eq. 1 with explicit loops, in float64."""
  z = np.concatenate([z1, z2]).astype(np.float64)
  z /= np.linalg.norm(z, axis=1, keepdims=True)
  n2 = len(z)
  losses = []
  for a in range(n2):
    p = (a + n2 // 2) % n2
    denominator = sum(math.exp(z[a] @ z[b] / temperature) for b in range(n2) if b != a)
    losses.append(-math.log(math.exp(z[a] @ z[p] / temperature) / denominator))
  return np.mean(losses), np.array(losses)


def test_nt_xent_hand_value():
  # z = [e1, e2, e1, e2]: anchor e1 sees its positive (cos 1) and two negatives (cos 0), so
  # with t = 1/2: -log(e^2 / (e^2 + 2 e^0)) = log(1 + 2 e^-2) = 0.2395448 for every anchor.
  z = jnp.eye(2)
  loss = _nt_xent(z, z, temperature=0.5)
  np.testing.assert_allclose(loss, math.log(1 + 2 * math.exp(-2)), rtol=1e-6)
  np.testing.assert_allclose(loss, 0.2395448, rtol=1e-6)
  # Collapsed projections: every candidate alike, chance level log(2N - 1).
  ones = jnp.ones((3, 4))
  np.testing.assert_allclose(_nt_xent(ones, ones, temperature=0.1), math.log(5),
                             rtol=1e-6)


def test_nt_xent_matches_numpy_loop():
  rng = np.random.default_rng(0)
  z1, z2 = rng.standard_normal((2, 6, 5)).astype(np.float32)
  expected, per_anchor = _nt_xent_numpy(z1, z2, 0.1)
  np.testing.assert_allclose(_nt_xent(z1, z2, temperature=0.1), expected, rtol=1e-5)
  sim = _similarity(z1, z2)
  np.testing.assert_allclose(_from_similarity(sim, temperature=0.1),
                             per_anchor, rtol=1e-5)
  # The rows are scale-free (cosine similarity).
  np.testing.assert_allclose(_nt_xent(3 * z1, 0.5 * z2, temperature=0.1), expected,
                             rtol=1e-5)


def test_the_diagonal_is_ignored():
  rng = np.random.default_rng(1)
  sim = _similarity(*rng.standard_normal((2, 4, 3)).astype(np.float32))
  base = _from_similarity(sim, temperature=0.2)
  for diagonal in (jnp.full(8, 1e30), jnp.full(8, -7.0), jnp.arange(8.0), jnp.full(8, jnp.nan),
                   jnp.full(8, jnp.inf)):
    perturbed = sim.at[jnp.arange(8), jnp.arange(8)].set(diagonal)
    np.testing.assert_array_equal(
        _from_similarity(perturbed, temperature=0.2), base)
  grad = jax.jit(jax.grad(lambda s: _from_similarity(s, temperature=0.2).mean()))(sim)
  np.testing.assert_array_equal(np.diag(grad), 0.0)
  assert np.all(np.isfinite(grad))


@pytest.mark.parametrize('dtype,atol', [(jnp.float16, 1e-3), (jnp.bfloat16, 1e-2)])
def test_low_precision_inputs(dtype, atol):
  rng = np.random.default_rng(2)
  z1, z2 = rng.standard_normal((2, 8, 16)).astype(np.float32)
  reference = _nt_xent(z1, z2, temperature=0.1)
  low = [jnp.asarray(z, dtype) for z in (z1, z2)]
  loss = _nt_xent(*low, temperature=0.1)
  assert loss.dtype == jnp.float32
  # Computed in float32: exactly the float32 loss of the rounded inputs ...
  np.testing.assert_allclose(loss, _nt_xent(*(z.astype(jnp.float32) for z in low),
                                                       temperature=0.1), rtol=1e-6)
  # ... and within the inputs' rounding of the float32 loss (measured over 5 seeds at
  # t = 0.1, loss 3-7 nats: at most 3e-4 for fp16, 3e-3 for bf16).
  np.testing.assert_allclose(loss, reference, atol=atol)
  grads = jax.jit(jax.grad(lambda a, b: _nt_xent(a, b, temperature=0.1), argnums=(0, 1)))(*low)
  for g in grads:
    assert g.dtype == dtype and np.all(np.isfinite(np.asarray(g, np.float32)))
  # fp16 rows of norm ~1e5 would overflow a fp16 sum of squares (max 65504); not here.
  big = jnp.asarray(3e4 * z1[:, :4] / np.abs(z1[:, :4]).max(), jnp.float16)
  assert np.isfinite(float(_nt_xent(big, big, temperature=0.1)))


def test_zero_rows_are_safe():
  z1 = jnp.zeros((3, 4)).at[0, 0].set(1.0)
  z2 = jnp.ones((3, 4))
  loss, grads = jax.jit(jax.value_and_grad(lambda a: _nt_xent(a, z2, temperature=0.5)))(z1)
  assert np.isfinite(float(loss)) and np.all(np.isfinite(grads))


def test_contrastive_accuracy():
  z = jnp.eye(3)
  np.testing.assert_array_equal(_accuracy(_similarity(z, z)),
                                np.ones(6))
  # Collapsed: the positive ties with every negative, which counts as a miss.
  ones = jnp.ones((3, 2))
  np.testing.assert_array_equal(
      _accuracy(_similarity(ones, ones)), np.zeros(6))
  # Swapping two rows of view 2: anchors 0, 1 (and their view-2 partners 3, 4) now find the
  # other image's view first; anchors 2 and 5 are unaffected.
  acc = _accuracy(_similarity(z, z[jnp.array([1, 0, 2])]))
  np.testing.assert_array_equal(acc, [0, 0, 1, 0, 0, 1])


def test_bad_arguments_raise():
  z = jnp.ones((4, 3))
  for t in (0.0, -0.5):
    with pytest.raises(ValueError, match='temperature'):
      contrastive.nt_xent(z, z, temperature=t)
  with pytest.raises(ValueError, match=r'\(4, 3\).*\(5, 3\)'):
    contrastive.nt_xent(z, jnp.ones((5, 3)), temperature=0.1)
  with pytest.raises(ValueError, match=r'\[2N, 2N\]'):
    contrastive.nt_xent_from_similarity(jnp.ones((3, 3)), temperature=0.1)
  with pytest.raises(ValueError, match=r'\(4, 3\).*\(4, 2\)'):
    contrastive.byol_loss(z, jnp.ones((4, 2)))


def test_byol_loss_values_and_stop_gradient():
  e1, e2 = jnp.array([[1.0, 0.0]]), jnp.array([[0.0, 2.0]])
  np.testing.assert_allclose(_byol(e1, 3 * e1), 0.0, atol=1e-6)
  np.testing.assert_allclose(_byol(e1, e2), 2.0, atol=1e-6)
  np.testing.assert_allclose(_byol(e1, -e1), 4.0, atol=1e-6)
  # Mean over the batch.
  np.testing.assert_allclose(
      _byol(jnp.concatenate([e1, e1]), jnp.concatenate([e1, -e1])), 2.0,
      atol=1e-6)
  rng = np.random.default_rng(3)
  p, z = rng.standard_normal((2, 4, 5)).astype(np.float32)
  grad_p, grad_z = jax.jit(jax.grad(_byol, argnums=(0, 1)))(p, z)
  np.testing.assert_array_equal(grad_z, 0.0)
  assert np.all(np.isfinite(grad_p)) and np.abs(grad_p).max() > 0
  # 2 - 2 cos is the squared distance of the unit vectors.
  unit = lambda x: x / np.linalg.norm(x, axis=1, keepdims=True)  # noqa: E731
  np.testing.assert_allclose(_byol(p, z),
                             np.mean(np.sum((unit(p) - unit(z))**2, axis=1)), rtol=1e-5)


def test_byol_tau_schedule():
  tau = jax.jit(lambda k: contrastive.byol_tau(k, total_steps=1000, tau0=0.99))
  np.testing.assert_allclose(tau(0), 0.99, atol=1e-7)
  np.testing.assert_allclose(tau(500), 0.995, atol=1e-7)
  np.testing.assert_allclose(tau(1000), 1.0, atol=1e-7)
  np.testing.assert_allclose(tau(2000), 1.0, atol=1e-7)  # clipped after the end
  # Monotone in between, on a traced int32 step.
  taus = jax.vmap(tau)(jnp.arange(0, 1001, 50, dtype=jnp.int32))
  assert np.all(np.diff(taus) >= 0)


def test_ema_update_hand_value():
  target = {'w': jnp.array([1.0, 2.0]), 'b': {'c': jnp.array(4.0, jnp.bfloat16)}}
  online = {'w': jnp.array([3.0, 0.0]), 'b': {'c': jnp.array(0.0, jnp.bfloat16)}}
  out = contrastive.ema_update(target, online, 0.75)
  # 0.75 * [1, 2] + 0.25 * [3, 0] = [1.5, 1.5]; 0.75 * 4 = 3.
  np.testing.assert_allclose(out['w'], [1.5, 1.5], rtol=1e-7)
  assert out['b']['c'].dtype == jnp.bfloat16 and float(out['b']['c']) == 3.0
  same = contrastive.ema_update(target, online, 1.0)
  np.testing.assert_array_equal(same['w'], target['w'])
