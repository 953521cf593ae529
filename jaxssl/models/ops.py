"""Layer pieces written around XLA's CPU backend: exact GELU, inverted dropout, the dense
layers' matmul and the convolution kernel initializer.

Each gives the values of its usual JAX/Flax form (``jax.nn.gelu(approximate=False)``,
``flax.nnx.Dropout``, ``nnx.Linear``'s dot, flax's default conv ``kernel_init``) and differs
only in what XLA has to compile or compute (measured on 2 CPU cores; see README's
Benchmarks). ``dropout`` and float32 ``dense_matmul`` are ``jax.custom_jvp`` functions (both
autodiff modes); ``dense_matmul`` with bfloat16 operands is a ``jax.custom_vjp`` function:
reverse mode, and forward mode over it (Hessian-vector products), but no forward mode of its
own.
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

  The erf form is the one PyTorch's ``gelu`` and transformers' ``hidden_act='gelu'`` use.
  ``jax.nn.gelu(approximate=False)`` computes the same function through ``erfc``, which XLA
  lowers on CPU to an exponential and branch selects: about 3x slower than ``erf`` (forward
  and backward of a [4096, 1024] float32 array: 16.0 vs 5.2 ms on 2 cores). The two agree to
  1e-6 absolute; for x < -5, where GELU is below 1e-6, this form rounds to 0 sooner.

  Args:
    x: float array of any shape and dtype.

  Returns:
    array of x's shape and dtype.
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

  Same values as ``flax.nnx.Dropout(rate)(x, deterministic=..., rngs=key)`` for the same key
  (the keep mask is ``jax.random.bernoulli(key, 1 - rate, x.shape)``, kept entries are
  divided by ``1 - rate``) and the same gradients up to one float rounding. What differs is
  the derivative: a ``jax.custom_jvp`` whose tangent reuses the boolean mask of the forward
  pass, where plain autodiff makes XLA draw the random bits a second time inside the
  backward transposes (the MLM mini train step: 0.951 -> 0.810 s with this and ``gelu``
  together, CLM 1.158 -> 1.030 s, measured alternately in one process; see README).

  Args:
    x: float array of any shape.
    rate: probability of dropping an entry, in [0, 1).
    key: PRNG key (needed unless deterministic or rate is 0).
    deterministic: return x unchanged (evaluation).

  Returns:
    array of x's shape and dtype.

  Raises:
    ValueError: rate outside [0, 1), or no key when one is needed.
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

  The derivatives are written out. The weight gradient is one 2-D product contracting the
  flattened leading axes of x and the incoming gradient, which XLA:CPU runs without the
  transposes it emits for autodiff's 3-D contraction (the f32 MLM train step 1.24x faster,
  see README). With 'bfloat16' the incoming float32 gradient is rounded to bfloat16 like the
  operands, so the two backward matmuls (input and weight gradients, 2/3 of a layer's FLOPs)
  also run at the bf16 rate (PyTorch autocast's and TPU matmuls' precision); plain autodiff of
  a bf16-input dot does them in float32. Measured on the MLM train step (2 cores): bf16
  0.775 -> 0.619 s (mini) and 2.083 -> 1.534 s (small) against autodiff of the bf16 dot (a
  2048^3 bf16 matmul: 1,453 vs 291 GFLOP/s f32 on this AMX CPU).

  float32 is a ``jax.custom_jvp`` (forward and reverse mode: ``jax.jvp``, ``jax.jacfwd``,
  ``jax.grad``), its tangent written on the 2-D operands so that its transpose is the product
  above. Other dtypes are a ``jax.custom_vjp``: a JVP cannot round the incoming gradient
  (JAX transposes a bf16-operand product into a float32 one, and XLA:CPU does not fold the
  rounding into it), so they support reverse mode and forward-over-reverse (``jax.jvp`` of
  a ``jax.grad``) but not forward mode applied to them.

  Args:
    x: float [..., K].
    kernel: float [K, N].
    dtype: the operands' dtype, e.g. 'float32' or 'bfloat16' (accumulation is float32).

  Returns:
    float32 [..., N].

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
  """Flax's default convolution kernel, LeCun normal (truncated normal of variance
  1 / fan_in, fan_in = kh kw C_in), drawn as a [kh kw C_in, C_out] matrix and reshaped.

  The values are bit for bit those of the default, because threefry's counters run over the
  flattened array and fan_in is the same. Why: XLA:CPU (jax 0.10.2) takes about 2.8 s to
  compile 4-D random bits against 0.3 s for 2-D, which made DCGAN's jitted init several
  seconds per network.

  Args:
    key: PRNG key.
    shape: (kh, kw, C_in, C_out) (any rank >= 2: the last axis is C_out).
    dtype: of the kernel.

  Returns:
    dtype [*shape].
  """
  flat = (math.prod(shape[:-1]), shape[-1])
  return nnx.initializers.lecun_normal()(key, flat, dtype).reshape(shape)
