"""Images of one dataset as another encoder's input: scale, channels and size.

Every image learner here trains on uint8 pixels divided by 255 (``experiments.autoencoder``,
``simclr``, ``byol``; the VAE binarises or rescales that same [0, 1] image in its
``embed_fn``), so a target image is scaled the same way, then brought to the encoder's
(H, W, C): channels by ITU-R 601-2 luma (3 -> 1, ``image_ops.grey``, as PIL's ``convert('L')``
and ``tf.image.rgb_to_grayscale``) or by copying the one grey channel (1 -> C), and size by
``jax.image.resize`` bilinear with antialiasing (a triangle kernel widened by the
downscaling factor, so shrinking 32 -> 8 averages every source pixel instead of sampling a
quarter of them; upscaling is plain bilinear with half-pixel centres, as PIL and
torchvision's ``antialias=True``). Every step is a convex combination of pixels, so values
stay in [0, 1]. Pure jnp: runs inside the jitted train and eval steps, on the device.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp

from jaxssl.data import image_ops


def check_channels(source: int, target: int) -> None:
  """Raises ValueError unless ``source`` channels convert to ``target`` (equal, 3 -> 1 or
  1 -> any)."""
  if source != target and not (source == 3 and target == 1) and source != 1:
    raise ValueError(f'images of {source} channels cannot become the encoder\'s {target}: '
                     'only 3 -> 1 (luma) and 1 -> C (copies) are defined')


def to_input(images: jax.Array, shape: Sequence[int]) -> jax.Array:
  """Images as an encoder of input ``shape`` takes them (module docstring).

  Args:
    images: uint8 [B, H, W, C] (divided by 255) or float [B, H, W, C] in [0, 1].
    shape: the encoder's (H', W', C').

  Returns:
    float32 [B, H', W', C'] in [0, 1]; the scaled images themselves when the shapes match.

  Raises:
    ValueError: not a [B, H, W, C] batch, or channels ``check_channels`` refuses.
  """
  if images.ndim != 4:
    raise ValueError(f'images {images.shape} must be a [B, H, W, C] batch')
  height, width, channels = (int(d) for d in shape)
  check_channels(images.shape[-1], channels)
  x = images.astype(jnp.float32)
  if images.dtype == jnp.uint8:
    x = x / 255.0
  if x.shape[-1] == 3 and channels == 1:  # before resizing: a third of the work
    x = jax.vmap(image_ops.grey)(x)
  if x.shape[1:3] != (height, width):
    x = jax.image.resize(x, (x.shape[0], height, width, x.shape[-1]), 'bilinear',
                         antialias=True)
  if x.shape[-1] != channels:  # 1 -> C after resizing: C times less work
    x = jnp.repeat(x, channels, axis=-1)
  return x
