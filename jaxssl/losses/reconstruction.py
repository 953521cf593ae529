"""Pixel reconstruction errors and PSNR: pure functions of image batches.

Images are float [B, H, W, C] (any trailing shape works); values per image, so the caller
reduces over the batch. Errors are in squared pixel units (pixels in [0, 1] unless stated).
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
  """Sum of squared differences over every pixel and channel of each image.

  Args:
    x, y: float [B, H, W, C] (or any [B, ...]), same shape.

  Returns:
    float32 [B], squared pixel units summed per image.

  Raises:
    ValueError: the shapes differ or have no batch axis.
  """
  return jnp.sum(_per_image_squares(x, y), axis=-1)


def mse(x: jax.Array, y: jax.Array) -> jax.Array:
  """Mean squared difference over every pixel and channel of each image.

  Args:
    x, y: float [B, H, W, C] (or any [B, ...]), same shape.

  Returns:
    float32 [B], squared pixel units per pixel-channel.

  Raises:
    ValueError: the shapes differ or have no batch axis.
  """
  return jnp.mean(_per_image_squares(x, y), axis=-1)


def psnr(mse: jax.Array, *, max_value: float = 1.0,  # pylint: disable=redefined-outer-name
         min_mse: float = 1e-10) -> jax.Array:
  """Peak signal-to-noise ratio 10 log10(max_value^2 / mse), in dB.

  A perfect reconstruction (mse = 0) would be +inf dB, which turns any batch mean into inf
  and has no gradient; ``mse`` is floored at ``min_mse`` instead, so the result is capped at
  10 log10(max_value^2 / min_mse) (100 dB for the defaults), far above any real
  reconstruction of 8-bit images (an error of half a grey level everywhere is 54 dB).

  Args:
    mse: float [...] mean squared error per image (e.g. from ``mse()``), >= 0.
    max_value: the largest possible pixel value (1.0 for images in [0, 1], 255 for bytes).
    min_mse: floor on ``mse`` (squared pixel units).

  Returns:
    float32 [...] dB, same shape as ``mse``.
  """
  floored = jnp.maximum(jnp.asarray(mse, jnp.float32), min_mse)
  return 10.0 * jnp.log10(max_value**2 / floored)
