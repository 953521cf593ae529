"""Image corruptions and augmentations: pure functions of (rng, images), pixels float in [0, 1].

``corrupt`` works on a batch [B, H, W, C]; the SimCLR/BYOL views (Chen et al. 2020,
arXiv:2002.05709; Grill et al. 2020, arXiv:2006.07733) on one image [H, W, C], built from
``jaxssl.data.image_ops`` and vmapped by ``two_views``.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import ml_collections

from jaxssl.data import image_ops


def corrupt(rng: jax.Array, images: jax.Array, *, noise_std: float = 0.0,
            mask_prob: float = 0.0) -> jax.Array:
  """The noisy input of a denoising autoencoder (Vincent et al. 2008).

  Gaussian noise of std ``noise_std`` (pixel units, then clipped to [0, 1]), then masking noise:
  each pixel (all channels) zeroed with probability ``mask_prob``. 0 disables either. Takes
  float [B, H, W, C] in [0, 1]; returns the same, ``images`` itself when both are 0.
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


# --- SimCLR / BYOL view augmentations ------------------------------------------------------


def simclr_augment_config(**overrides) -> ml_collections.ConfigDict:
  """The ``config`` block of ``simclr_augment``, SimCLR's CIFAR-10 recipe by default.

  Fields (Chen et al. 2020, appendix A; colour strength s = 0.5 gives 0.8 s = 0.4):
    crop_scale: (lo, hi) area fraction of the random resized crop; (1, 1) with
      crop_ratio (1, 1) disables cropping.
    crop_ratio: (lo, hi) aspect ratio (relative to the image's), sampled log-uniformly.
    flip_prob: probability of a left-right flip (0 for digits and text).
    brightness, contrast, saturation: colour-jitter strengths (``image_ops.color_jitter``);
      saturation only acts on RGB images.
    jitter_prob: probability the colour jitter is applied at all.
    blur_prob: probability of a Gaussian blur (SimCLR: 0.5 on ImageNet, 0 on CIFAR-10).
    blur_sigma: (lo, hi) blur standard deviation in pixels.
    noise_std: additive Gaussian noise std in pixel units, last (0 disables; not in SimCLR).
  """
  config = ml_collections.ConfigDict({
      'crop_scale': (0.08, 1.0),
      'crop_ratio': (3 / 4, 4 / 3),
      'flip_prob': 0.5,
      'brightness': 0.4,
      'contrast': 0.4,
      'saturation': 0.4,
      'jitter_prob': 0.8,
      'blur_prob': 0.0,
      'blur_sigma': (0.1, 2.0),
      'noise_std': 0.0,
  })
  config.update(overrides)
  return config


def digits_augment_config() -> ml_collections.ConfigDict:
  """SimCLR's augmentations for 8x8 grey digits: milder crops, no flip, light pixel noise."""
  return simclr_augment_config(crop_scale=(0.35, 1.0), flip_prob=0.0, brightness=0.4,
                               contrast=0.4, saturation=0.0, jitter_prob=0.8, noise_std=0.05)


def _is_number(value) -> bool:
  return isinstance(value, (int, float)) and not isinstance(value, bool)


def check_config(config: ml_collections.ConfigDict, prefix: str = 'augment') -> None:
  """Checks a ``simclr_augment`` config block at start-up (see ``simclr_augment_config``).

  Args:
    config: the augmentation block.
    prefix: its dotted path in the experiment config, for the messages.

  Raises:
    ValueError: naming the first missing or bad ``<prefix>.<field>``.
  """
  def get(field):
    if field not in config:
      raise ValueError(f'{prefix}.{field} is missing')
    return config[field]

  def fail(field, what):
    raise ValueError(f'{prefix}.{field}={config[field]!r} must be {what}')

  def check_range(field, upper):
    value = get(field)
    if (not isinstance(value, (tuple, list)) or len(value) != 2
        or not all(_is_number(v) for v in value)
        or not 0 < value[0] <= value[1] <= upper):
      fail(field, f'a pair (lo, hi) with 0 < lo <= hi <= {upper}')

  check_range('crop_scale', 1.0)
  check_range('crop_ratio', math.inf)
  check_range('blur_sigma', math.inf)
  for field in ('flip_prob', 'jitter_prob', 'blur_prob'):
    if not _is_number(get(field)) or not 0 <= config[field] <= 1:
      fail(field, 'a probability in [0, 1]')
  for field in ('brightness', 'contrast', 'saturation', 'noise_std'):
    if not _is_number(get(field)) or not 0 <= config[field] < math.inf:
      fail(field, 'a finite number >= 0')


def blur_kernel_size(height: int, width: int) -> int:
  """SimCLR's blur kernel, about 10% of the image side: 2 (min(H, W) // 20) + 1, at least 3."""
  return 2 * max(1, min(height, width) // 20) + 1


def simclr_augment(key: jax.Array, image: jax.Array,
                   config: ml_collections.ConfigDict) -> jax.Array:
  """One random view of image float [H, W, C] in [0, 1] (Chen et al. 2020, SimCLR, appendix A).

  Random resized crop, flip, colour jitter (prob ``jitter_prob``), Gaussian blur (kernel
  ``blur_kernel_size``) and noise, in that order, as the ``image_ops`` functions; no greyscale
  or hue. All randomness is one uniform draw of 11 + H W C numbers (fewer threefry calls compile
  faster); each transform reads fixed draws, so disabling one leaves the others' unchanged.
  ``config`` has the fields of ``simclr_augment_config``. Returns float32 [H, W, C] in [0, 1].
  """
  image = image_ops._check_image(image)
  h, w, c = image.shape
  # [11 + H W C] in the open interval (0, 1), so that the inverse normal CDF is finite.
  u = jax.random.uniform(key, (11 + h * w * c,), minval=jnp.finfo(jnp.float32).tiny)
  box = image_ops._crop_box_from_uniform(u[0:4], h, w, scale=tuple(config.crop_scale),
                                         ratio=tuple(config.crop_ratio))
  x = image_ops.crop_and_resize(image, *box)
  x = image_ops._apply_with_prob(u[4], config.flip_prob, x[:, ::-1], x)
  jittered = image_ops._color_jitter_from_uniform(u[6:9], x, brightness=config.brightness,
                                                  contrast=config.contrast,
                                                  saturation=config.saturation)
  x = image_ops._apply_with_prob(u[5], config.jitter_prob, jittered, x)
  x = image_ops._gaussian_blur_from_uniform(u[9:11], x, sigma=tuple(config.blur_sigma),
                                            kernel_size=blur_kernel_size(h, w),
                                            prob=config.blur_prob)
  if config.noise_std == 0:
    return x
  noise = jnp.sqrt(2.0) * jax.scipy.special.erfinv(2.0 * u[11:] - 1.0)  # [H W C] ~ N(0, 1)
  return jnp.clip(x + config.noise_std * noise.reshape(x.shape), 0.0, 1.0)


def two_views(rng: jax.Array, images: jax.Array, step,
              config: ml_collections.ConfigDict) -> tuple[jax.Array, jax.Array]:
  """Two independent ``simclr_augment`` views of every image of a global batch.

  View v of example i uses fold_in(fold_in(fold_in(rng, step), i), v), i the position in the
  global batch: the same on any device count, after a resume, whatever the other examples.

  Args:
    rng: PRNG key of the augmentations (the same every step); step: int scalar (may be traced).
    images: float [B, H, W, C] in [0, 1], the global batch.
    config: see ``simclr_augment_config``.

  Returns:
    (view1, view2), each float32 [B, H, W, C] in [0, 1].

  Raises:
    ValueError: ``images`` is not [B, H, W, C].
  """
  if images.ndim != 4:
    raise ValueError(f'images {images.shape} must be a batch [B, H, W, C]')
  rng_step = jax.random.fold_in(rng, step)

  def view(i, v, image):
    key = jax.random.fold_in(jax.random.fold_in(rng_step, i), v)
    return simclr_augment(key, image, config)

  # vmap over the two views as well: one copy of the augmentation in the compiled program.
  views = jax.vmap(jax.vmap(view, in_axes=(None, 0, None)), in_axes=(0, None, 0))(
      jnp.arange(images.shape[0]), jnp.arange(2), images)  # [B, 2, H, W, C]
  return views[:, 0], views[:, 1]
