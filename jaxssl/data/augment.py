"""Image corruptions and augmentations: pure functions of (rng, images)."""

from __future__ import annotations

import jax
import jax.numpy as jnp


def corrupt(rng: jax.Array, images: jax.Array, *, noise_std: float = 0.0,
            mask_prob: float = 0.0) -> jax.Array:
  """The noisy input of a denoising autoencoder (Vincent et al. 2008).

  Additive Gaussian noise of std ``noise_std`` (then clipped to [0, 1]), followed by masking
  noise: each pixel (all its channels) set to 0 with probability ``mask_prob``.

  Args:
    rng: PRNG key.
    images: float [B, H, W, C] in [0, 1].
    noise_std: Gaussian std in pixel units; 0 disables.
    mask_prob: probability a pixel is zeroed; 0 disables.

  Returns:
    float [B, H, W, C] in [0, 1]; ``images`` itself when both are 0.
  """
  if noise_std == 0 and mask_prob == 0:
    return images
  rng_noise, rng_mask = jax.random.split(rng)
  x = images
  if noise_std > 0:
    x = jnp.clip(x + noise_std * jax.random.normal(rng_noise, x.shape, x.dtype), 0.0, 1.0)
  if mask_prob > 0:
    keep = jax.random.bernoulli(rng_mask, 1.0 - mask_prob, x.shape[:-1] + (1,))
    x = jnp.where(keep, x, 0.0)
  return x
