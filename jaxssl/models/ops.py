"""Layer pieces written around XLA's CPU backend: exact GELU, inverted dropout, the dense
layers' matmul and the convolution kernel initializer.

Each gives the values of its usual JAX/Flax form (``jax.nn.gelu(approximate=False)``,
``flax.nnx.Dropout``, ``nnx.Linear``'s dot, flax's default conv ``kernel_init``) and differs
only in what XLA has to compile or compute (measured on 2 CPU cores; see README's
Benchmarks). ``dropout`` and ``dense_matmul`` are ``jax.custom_vjp`` functions: reverse-mode
autodiff only.
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


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def _masked_scale(x: jax.Array, keep: jax.Array, keep_prob: float) -> jax.Array:
  return jax.lax.select(keep, x / keep_prob, jnp.zeros_like(x))


def _masked_scale_fwd(x, keep, keep_prob):
  return _masked_scale(x, keep, keep_prob), keep


def _masked_scale_bwd(keep_prob, keep, g):
  # The gradient of select(keep, x / p, 0) with respect to x; keep is boolean (no gradient).
  return jax.lax.select(keep, g / keep_prob, jnp.zeros_like(g)), None


_masked_scale.defvjp(_masked_scale_fwd, _masked_scale_bwd)


def dropout(x: jax.Array, rate: float, key: jax.Array | None, *,
            deterministic: bool) -> jax.Array:
  """Inverted dropout (Srivastava et al. 2014): zero each entry with probability ``rate``.

  Same values as ``flax.nnx.Dropout(rate)(x, deterministic=..., rngs=key)`` for the same key
  (the keep mask is ``jax.random.bernoulli(key, 1 - rate, x.shape)``, kept entries are
  divided by ``1 - rate``) and the same gradients up to one float rounding. What differs is
  the backward pass: it reuses the boolean mask saved by the forward pass, where plain
  autodiff makes XLA draw the random bits a second time inside the backward transposes
  (the MLM mini train step: 0.951 -> 0.810 s with this and ``gelu`` together, CLM 1.158 ->
  1.030 s, measured alternately in one process; see README).

  Args:
    x: float array of any shape.
    rate: probability of dropping an entry, in [0, 1).
    key: PRNG key (needed unless deterministic or rate is 0).
    deterministic: return x unchanged (evaluation).

  Returns:
    array of x's shape and dtype.

  Raises:
    ValueError: rate outside [0, 1), or no key when one is needed.
    TypeError: from forward-mode autodiff (``jax.jvp``, ``jax.jacfwd``) in training mode:
      a ``jax.custom_vjp`` supports reverse mode only.
  """
  if not 0.0 <= rate < 1.0:
    raise ValueError(f'dropout rate must be in [0, 1), got {rate}')
  if deterministic or rate == 0.0:
    return x
  if key is None:
    raise ValueError('dropout with rate > 0 and deterministic=False needs a key')
  keep = jax.random.bernoulli(key, 1.0 - rate, x.shape)
  return _masked_scale(x, keep, 1.0 - rate)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def dense_matmul(x: jax.Array, kernel: jax.Array, dtype: str = 'float32') -> jax.Array:
  """``x @ kernel`` on ``dtype`` operands with float32 accumulation, in the backward too.

  The backward pass is written out: the incoming float32 gradient is rounded to ``dtype``
  like the operands, so with 'bfloat16' its two matmuls (input and weight gradients, 2/3
  of a layer's FLOPs) also run at the bf16 rate (PyTorch autocast's and TPU matmuls'
  precision); plain autodiff of a bf16-input dot does them in float32. The weight gradient
  is one 2-D product contracting the flattened leading axes of x and g, which XLA:CPU runs
  without the transposes it emits for autodiff's 3-D contraction. Measured on the MLM train
  step (2 cores): bf16 0.775 -> 0.619 s (mini) and 2.083 -> 1.534 s (small) against
  autodiff of the bf16 dot (a 2048^3 bf16 matmul: 1,453 vs 291 GFLOP/s f32 on this AMX
  CPU); see README for the float32 figures.

  Args:
    x: float [..., K].
    kernel: float [K, N].
    dtype: 'float32' or 'bfloat16', the operands' dtype (accumulation is float32).

  Returns:
    float32 [..., N].

  Raises:
    TypeError: from forward-mode autodiff (``jax.jvp``, ``jax.jacfwd``, ``jax.linearize``):
      a ``jax.custom_vjp`` supports reverse mode only (``jax.grad``, ``jax.hessian`` work).
  """
  return jnp.matmul(x.astype(dtype), kernel.astype(dtype), preferred_element_type=jnp.float32)


def _dense_matmul_fwd(x, kernel, dtype):
  xc, kc = x.astype(dtype), kernel.astype(dtype)
  # Empty arrays carry the operands' own dtypes (their gradients must match them).
  dtypes = (jnp.zeros((0,), x.dtype), jnp.zeros((0,), kernel.dtype))
  return jnp.matmul(xc, kc, preferred_element_type=jnp.float32), (xc, kc, dtypes)


def _dense_matmul_bwd(dtype, residuals, g):
  xc, kc, (x_like, k_like) = residuals
  gc = g.astype(dtype)
  dx = jnp.matmul(gc, kc.T, preferred_element_type=jnp.float32)
  dk = jax.lax.dot_general(xc.reshape(-1, xc.shape[-1]), gc.reshape(-1, gc.shape[-1]),
                           (((0,), (0,)), ((), ())), preferred_element_type=jnp.float32)
  return dx.astype(x_like.dtype), dk.astype(k_like.dtype)


dense_matmul.defvjp(_dense_matmul_fwd, _dense_matmul_bwd)


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
