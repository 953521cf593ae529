"""Layer pieces written around XLA's CPU backend: exact GELU, inverted dropout and the
convolution kernel initializer.

Each gives the values of its usual JAX/Flax form (``jax.nn.gelu(approximate=False)``,
``flax.nnx.Dropout``, flax's default conv ``kernel_init``) and differs only in what XLA has
to compile or compute (measured on 2 CPU cores; see README's Benchmarks).
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
  divided by ``1 - rate``) and the same gradients up to one float rounding. What differs is the backward pass: it
  reuses the boolean mask saved by the forward pass, where plain autodiff makes XLA draw the
  random bits a second time inside the backward transposes (the MLM mini step: 0.94 ->
  0.87 s with this and ``gelu`` together, measured alternately; see README).

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
