"""Exact GELU, inverted dropout, the dense matmul and the conv kernel init, for XLA:CPU.

Each gives the values of its usual JAX/Flax form and only changes what XLA compiles or computes
(timings: README's Benchmarks). ``dropout`` and float32 ``dense_matmul`` are ``custom_jvp``
(both autodiff modes); bfloat16 ``dense_matmul`` is ``custom_vjp`` (reverse and
forward-over-reverse, no forward mode).
"""

from __future__ import annotations

import functools
import math
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

_SQRT_HALF = np.float32(np.sqrt(0.5))


def gelu(x: jax.Array) -> jax.Array:
  """Exact GELU, ``x * Phi(x) = 0.5 x (1 + erf(x / sqrt(2)))`` (Hendrycks & Gimpel 2016).

  PyTorch's ``gelu`` and transformers' ``'gelu'``; ``jax.nn.gelu(approximate=False)`` goes
  through ``erfc``, ~3x slower on CPU. They agree to 1e-6 absolute (this rounds to 0 sooner
  for x < -5). Any shape and dtype, returned alike.
  """
  return 0.5 * x * (1.0 + jax.lax.erf(x * _SQRT_HALF.astype(x.dtype)))


@functools.partial(jax.custom_jvp, nondiff_argnums=(2,))
def _masked_scale(x: jax.Array, keep: jax.Array, keep_prob: float) -> jax.Array:
  return jax.lax.select(keep, x / keep_prob, jnp.zeros_like(x))


@_masked_scale.defjvp
def _masked_scale_jvp(keep_prob, primals, tangents):
  # Linear in x with the boolean mask as its only residual; keep has no tangent.
  x, keep = primals
  tx, _ = tangents
  return (_masked_scale(x, keep, keep_prob),
          jax.lax.select(keep, tx / keep_prob, jnp.zeros_like(tx)))


def dropout(x: jax.Array, rate: float, key: jax.Array | None, *,
            deterministic: bool) -> jax.Array:
  """Inverted dropout (Srivastava et al. 2014): zero each entry with probability ``rate``.

  Same values as ``flax.nnx.Dropout(rate)(x, deterministic=..., rngs=key)`` for the same key, the
  same gradients up to one rounding; the ``custom_jvp`` tangent reuses the forward keep mask
  instead of XLA drawing the random bits again in the backward pass. x: any shape, returned
  alike; ``deterministic`` (evaluation) returns x.

  Raises:
    ValueError: rate outside [0, 1), or no key when one is needed (rate > 0, not deterministic).
  """
  if not 0.0 <= rate < 1.0:
    raise ValueError(f'dropout rate must be in [0, 1), got {rate}')
  if deterministic or rate == 0.0:
    return x
  if key is None:
    raise ValueError('dropout with rate > 0 and deterministic=False needs a key')
  keep = jax.random.bernoulli(key, 1.0 - rate, x.shape)
  return _masked_scale(x, keep, 1.0 - rate)


def dense_matmul(x: jax.Array, kernel: jax.Array, dtype: str = 'float32') -> jax.Array:
  """``x @ kernel`` on ``dtype`` operands with float32 accumulation, in the backward too.

  x float [..., K], kernel float [K, N] -> float32 [..., N]. The weight gradient is one 2-D
  product over the flattened leading axes (XLA:CPU otherwise emits transposes). With 'bfloat16'
  the incoming gradient is rounded to bf16 too, so both backward matmuls run at the bf16 rate
  (PyTorch autocast's precision). float32 is a ``custom_jvp`` (all modes); other dtypes a
  ``custom_vjp`` (a JVP cannot round the incoming gradient): reverse and forward-over-reverse.

  Raises:
    TypeError: from forward-mode autodiff (``jax.jvp``, ``jax.jacfwd``, or calling the
      linear function ``jax.linearize`` returns) when dtype is not float32.
  """
  if jnp.dtype(dtype) == jnp.float32:
    return _matmul_f32(x, kernel)
  return _matmul_low_precision(x, kernel, jnp.dtype(dtype).name)


def _matmul_2d(a: jax.Array, b: jax.Array) -> jax.Array:
  """[M, K] @ [K, N] with float32 accumulation."""
  return jax.lax.dot_general(a, b, (((1,), (0,)), ((), ())), preferred_element_type=jnp.float32)


@jax.custom_jvp
def _matmul_f32(x: jax.Array, kernel: jax.Array) -> jax.Array:
  return jnp.matmul(x.astype(jnp.float32), kernel.astype(jnp.float32),
                    preferred_element_type=jnp.float32)


def _matmul_f32_jvp(primals, tangents):
  # Symbolic zeros: a term whose tangent is zero (e.g. a frozen kernel) costs no product.
  x, kernel = primals
  tx, tkernel = tangents
  lead, k = x.shape[:-1], x.shape[-1]
  x2, kernel = x.astype(jnp.float32).reshape(-1, k), kernel.astype(jnp.float32)
  y = _matmul_2d(x2, kernel)
  terms = []
  if not isinstance(tx, jax.custom_derivatives.SymbolicZero):
    terms.append(_matmul_2d(tx.astype(jnp.float32).reshape(-1, k), kernel))
  if not isinstance(tkernel, jax.custom_derivatives.SymbolicZero):
    terms.append(_matmul_2d(x2, tkernel.astype(jnp.float32)))
  return y.reshape(*lead, -1), sum(terms[1:], terms[0]).reshape(*lead, -1)


_matmul_f32.defjvp(_matmul_f32_jvp, symbolic_zeros=True)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def _matmul_low_precision(x: jax.Array, kernel: jax.Array, dtype: str) -> jax.Array:
  return jnp.matmul(x.astype(dtype), kernel.astype(dtype), preferred_element_type=jnp.float32)


def _matmul_low_precision_fwd(x, kernel, dtype):
  xc, kc = x.astype(dtype), kernel.astype(dtype)
  # Empty arrays carry the operands' own dtypes (their gradients must match them).
  dtypes = (jnp.zeros((0,), x.dtype), jnp.zeros((0,), kernel.dtype))
  return jnp.matmul(xc, kc, preferred_element_type=jnp.float32), (xc, kc, dtypes)


def _matmul_low_precision_bwd(dtype, residuals, g):
  xc, kc, (x_like, k_like) = residuals
  gc = g.astype(dtype)
  dx = jnp.matmul(gc, kc.T, preferred_element_type=jnp.float32)
  dk = jax.lax.dot_general(xc.reshape(-1, xc.shape[-1]), gc.reshape(-1, gc.shape[-1]),
                           (((0,), (0,)), ((), ())), preferred_element_type=jnp.float32)
  return dx.astype(x_like.dtype), dk.astype(k_like.dtype)


_matmul_low_precision.defvjp(_matmul_low_precision_fwd, _matmul_low_precision_bwd)


def conv_kernel_init(key: jax.Array, shape: Sequence[int], dtype=jnp.float32) -> jax.Array:
  """Flax's default conv kernel (LeCun normal, variance 1 / fan_in), drawn 2-D and reshaped.

  Bit for bit the default (threefry counters run over the flattened array); XLA:CPU compiles
  2-D random bits ~10x faster than 4-D. ``shape``: (kh, kw, C_in, C_out), any rank >= 2 with
  C_out last.
  """
  flat = (math.prod(shape[:-1]), shape[-1])
  return nnx.initializers.lecun_normal()(key, flat, dtype).reshape(shape)
