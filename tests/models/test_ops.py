"""jaxssl.models.ops against independent references: float64 erf for GELU, flax's Dropout
for dropout, flax's default conv initializer, and the Transformer without remat."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.special
from flax import nnx

from jaxssl.models import ops, transformer


def test_gelu_and_its_derivative_match_float64_erf():
  x = np.linspace(-6.0, 6.0, 2001).astype(np.float32)
  x64 = x.astype(np.float64)
  cdf = 0.5 * (1.0 + scipy.special.erf(x64 / np.sqrt(2.0)))
  pdf = np.exp(-0.5 * x64 ** 2) / np.sqrt(2.0 * np.pi)
  np.testing.assert_allclose(ops.gelu(jnp.asarray(x)), x64 * cdf, rtol=0, atol=2e-6)
  grad = jax.vmap(jax.grad(ops.gelu))(jnp.asarray(x))
  np.testing.assert_allclose(grad, cdf + x64 * pdf, rtol=0, atol=2e-6)  # Phi(x) + x phi(x)
  assert ops.gelu(jnp.ones(3, jnp.bfloat16)).dtype == jnp.bfloat16


@pytest.mark.parametrize('rate', [0.1, 0.5])
def test_dropout_equals_flax_dropout_values_bit_for_bit_and_gradients_to_an_ulp(rate):
  x = jax.random.normal(jax.random.key(1), (4, 8, 16))
  w = jax.random.normal(jax.random.key(3), x.shape)  # gradient = w / (1 - rate) where kept
  key = jax.random.key(2)
  reference = nnx.Dropout(rate)

  def ours(x):
    return jnp.sum(w * ops.dropout(x, rate, key, deterministic=False))

  def theirs(x):
    return jnp.sum(w * reference(x, deterministic=False, rngs=key))

  y = ops.dropout(x, rate, key, deterministic=False)
  np.testing.assert_array_equal(y, reference(x, deterministic=False, rngs=key))
  kept = np.asarray(y) != 0
  assert 0.3 < kept.mean() < 0.99  # some dropped, most kept at these rates
  # XLA may divide by multiplying with the reciprocal: equal to numpy's division within 1 ulp.
  np.testing.assert_allclose(np.asarray(y)[kept], np.asarray(x)[kept] / (1 - rate), rtol=2.4e-7)
  grad = jax.jit(jax.grad(ours))(x)
  np.testing.assert_allclose(grad, jax.jit(jax.grad(theirs))(x), rtol=2.4e-7)
  np.testing.assert_allclose(grad, np.where(kept, np.asarray(w) / (1 - rate), 0), rtol=2.4e-7)


def test_dropout_is_the_identity_when_off_and_checks_its_arguments():
  x = jnp.arange(6.0)
  assert ops.dropout(x, 0.3, None, deterministic=True) is x
  assert ops.dropout(x, 0.0, None, deterministic=False) is x
  with pytest.raises(ValueError, match='needs a key'):
    ops.dropout(x, 0.3, None, deterministic=False)
  for rate in (-0.1, 1.0):
    with pytest.raises(ValueError, match=r'rate must be in \[0, 1\)'):
      ops.dropout(x, rate, jax.random.key(0), deterministic=False)


def _encoder_loss_and_grads(remat: bool):
  cfg = transformer.TransformerConfig.from_preset('tiny', vocab_size=50, max_len=16,
                                                  remat=remat)
  model = transformer.Transformer(cfg, rngs=nnx.Rngs(0))
  graphdef, params = nnx.split(model)
  tokens = jax.random.randint(jax.random.key(3), (2, 16), 0, 50)

  def loss(params):
    hidden, _ = nnx.merge(graphdef, params)(tokens, train=True, rng_dropout=jax.random.key(4))
    return jnp.mean(hidden ** 2)
  return loss, params


def test_remat_recomputes_blocks_and_gives_the_same_loss_and_gradients():
  plain, params = _encoder_loss_and_grads(False)
  remat, _ = _encoder_loss_and_grads(True)
  assert 'remat' not in str(jax.make_jaxpr(plain)(params))
  assert str(jax.make_jaxpr(remat)(params)).count('remat') == 2  # one per block (tiny: 2)
  (l0, g0), (l1, g1) = (jax.jit(jax.value_and_grad(f))(params) for f in (plain, remat))
  np.testing.assert_allclose(l1, l0, rtol=1e-6)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7), g1, g0)


def test_conv_kernels_are_flax_default_bit_for_bit():
  key = jax.random.key(11)
  for shape in [(4, 4, 3, 5), (4, 4, 16, 1), (3, 3, 1, 2)]:
    got = ops.conv_kernel_init(key, shape)
    assert got.shape == shape and got.dtype == jnp.float32
    np.testing.assert_array_equal(got, nnx.initializers.lecun_normal()(key, shape))
  # LeCun normal: variance 1 / fan_in, fan_in = 4 * 4 * 64 (a large draw).
  big = np.asarray(ops.conv_kernel_init(key, (4, 4, 64, 128)))
  np.testing.assert_allclose(big.var(), 1 / (4 * 4 * 64), rtol=0.03)


def test_dense_matmul_bf16_rounds_operands_and_gradients_and_accumulates_in_f32():
  keys = jax.random.split(jax.random.key(5), 3)
  x = jax.random.normal(keys[0], (2, 3, 16))
  kernel = jax.random.normal(keys[1], (16, 8))
  g = jax.random.normal(keys[2], (2, 3, 8))  # the incoming gradient
  bf16 = lambda a: np.asarray(jnp.asarray(a, jnp.bfloat16), np.float64)  # round, then exact
  y, vjp = jax.vjp(lambda x, k: ops.dense_matmul(x, k, 'bfloat16'), x, kernel)
  dx, dkernel = vjp(g)
  assert y.dtype == dx.dtype == dkernel.dtype == jnp.float32
  # float64 products of the bf16-rounded operands: float32 sums of 16 or 6 terms agree to
  # ~1e-6; float32 operands instead would differ by ~1e-2 (bf16 keeps 8 significant bits).
  np.testing.assert_allclose(y, bf16(x) @ bf16(kernel), rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(dx, bf16(g) @ bf16(kernel).T, rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(dkernel, bf16(x).reshape(6, 16).T @ bf16(g).reshape(6, 8),
                             rtol=1e-5, atol=1e-5)
  assert np.max(np.abs(np.asarray(dx) - np.asarray(g, np.float64) @ bf16(kernel).T)) > 1e-3


def test_dense_matmul_float32_matches_float64_products_and_autodiff():
  keys = jax.random.split(jax.random.key(6), 3)
  x = jax.random.normal(keys[0], (2, 3, 16))
  kernel = jax.random.normal(keys[1], (16, 8))
  g = jax.random.normal(keys[2], (2, 3, 8))
  f64 = lambda a: np.asarray(a, np.float64)
  y, vjp = jax.vjp(ops.dense_matmul, x, kernel)
  dx, dkernel = vjp(g)
  np.testing.assert_allclose(y, f64(x) @ f64(kernel), rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(dx, f64(g) @ f64(kernel).T, rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(dkernel, f64(x).reshape(6, 16).T @ f64(g).reshape(6, 8),
                             rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize('dtype', ['float32', 'bfloat16'])
def test_dense_layer_keeps_linear_parameters_and_its_forward(dtype):
  cfg = transformer.TransformerConfig.from_preset('tiny', vocab_size=10, max_len=4, dtype=dtype)
  dense = transformer._dense(cfg, 32, 4, nnx.Rngs(0))
  linear = nnx.Linear(32, 4, dtype=jnp.dtype(dtype), preferred_element_type=jnp.float32,
                      rngs=nnx.Rngs(0), kernel_init=nnx.initializers.normal(0.02))
  jax.tree.map(np.testing.assert_array_equal, nnx.state(dense), nnx.state(linear))
  x = jax.random.normal(jax.random.key(1), (5, 32))
  np.testing.assert_allclose(dense(x), linear(x), rtol=1e-6, atol=1e-6)


def test_float32_dense_matmul_and_dropout_support_forward_mode():
  keys = jax.random.split(jax.random.key(7), 4)
  x, tx = (jax.random.normal(k, (2, 3, 16)) for k in keys[:2])
  kernel, tkernel = (jax.random.normal(k, (16, 8)) for k in keys[2:])
  f64 = lambda a: np.asarray(a, np.float64)
  y, ty = jax.jvp(ops.dense_matmul, (x, kernel), (tx, tkernel))
  np.testing.assert_allclose(y, f64(x) @ f64(kernel), rtol=1e-5, atol=1e-5)
  # Product rule: d(x k) = dx k + x dk.
  np.testing.assert_allclose(ty, f64(tx) @ f64(kernel) + f64(x) @ f64(tkernel),
                             rtol=1e-5, atol=1e-5)
  key, rate = jax.random.key(8), 0.25
  y, ty = jax.jvp(lambda x: ops.dropout(x, rate, key, deterministic=False), (x,), (tx,))
  kept = np.asarray(y) != 0
  assert 0.5 < kept.mean() < 0.95
  np.testing.assert_allclose(ty, np.where(kept, f64(tx) / (1 - rate), 0), rtol=2.4e-7)
  with pytest.raises(TypeError):  # bf16 operands: reverse mode only (custom_vjp)
    jax.jvp(lambda x: ops.dense_matmul(x, kernel, 'bfloat16'), (x,), (tx,))
  # A frozen operand costs no product: forward + one gradient product, or + two.
  dots = lambda f, *args: str(jax.make_jaxpr(f)(*args)).count('dot_general')
  loss = lambda x, k: jnp.sum(ops.dense_matmul(x, k))
  assert dots(jax.grad(loss), x, kernel) == dots(jax.grad(loss, argnums=1), x, kernel) == 2
  assert dots(jax.grad(loss, argnums=(0, 1)), x, kernel) == 3


def test_transformer_forward_mode_agrees_with_its_gradient():
  # <grad f, v> = jvp(f, v): the forward-mode directional derivative against reverse mode
  # (checked against float64 products and flax's Dropout above) along a random direction.
  loss, params = _encoder_loss_and_grads(False)
  leaves, treedef = jax.tree.flatten(params)
  keys = jax.random.split(jax.random.key(9), len(leaves))
  direction = jax.tree.unflatten(treedef, [jax.random.normal(k, a.shape)
                                           for k, a in zip(keys, leaves)])
  _, directional = jax.jit(lambda p, v: jax.jvp(loss, (p,), (v,)))(params, direction)
  grad = jax.jit(jax.grad(loss))(params)
  expected = sum(np.vdot(np.asarray(g, np.float64), np.asarray(v, np.float64))
                 for g, v in zip(jax.tree.leaves(grad), jax.tree.leaves(direction)))
  assert abs(expected) > 1e-3
  np.testing.assert_allclose(directional, expected, rtol=1e-4)
