"""Pixel reconstruction errors and PSNR, per image: x, y float [B, ...] of the same shape.

Errors are float32 [B] in squared pixel units (pixels in [0, 1] unless stated); ValueError
if the shapes differ or have no batch axis.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def _check_same(x: jax.Array, y: jax.Array) -> None:
  if x.shape != y.shape:
    raise ValueError(f'x {x.shape} and y {y.shape} must have the same shape')
  if x.ndim < 1:
    raise ValueError(f'x {x.shape} and y {y.shape} need a leading batch axis')


def _per_image_squares(x: jax.Array, y: jax.Array) -> jax.Array:
  _check_same(x, y)
  diff = x.astype(jnp.float32) - y.astype(jnp.float32)
  return jnp.reshape(diff * diff, (x.shape[0], -1))  # [B, H*W*C]


def squared_error(x: jax.Array, y: jax.Array) -> jax.Array:
  """Sum of squared differences over every pixel and channel of each image: float32 [B]."""
  return jnp.sum(_per_image_squares(x, y), axis=-1)


def mse(x: jax.Array, y: jax.Array) -> jax.Array:
  """Mean squared difference over every pixel and channel of each image: float32 [B]."""
  return jnp.mean(_per_image_squares(x, y), axis=-1)


def psnr(mse: jax.Array, *, max_value: float = 1.0,  # pylint: disable=redefined-outer-name
         min_mse: float = 1e-10) -> jax.Array:
  """Peak signal-to-noise ratio 10 log10(max_value^2 / mse), float32 dB of ``mse``'s shape.

  ``mse`` (>= 0, squared pixel units) is floored at ``min_mse`` to avoid +inf, capping the
  result at 100 dB for the defaults (half a grey level of 8-bit error everywhere is 54 dB).
  ``max_value`` is the largest pixel value (1.0 for [0, 1] images, 255 for bytes).
  """
  floored = jnp.maximum(jnp.asarray(mse, jnp.float32), min_mse)
  return 10.0 * jnp.log10(max_value**2 / floored)
