"""Image corruptions and augmentations: pure functions of (rng, images).

``corrupt`` works on a batch [B, H, W, C]; the SimCLR/BYOL view augmentations (Chen et al.
2020, arXiv:2002.05709; Grill et al. 2020, arXiv:2006.07733) work on one image [H, W, C] and
are vmapped by ``two_views``. Pixels are float in [0, 1].
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import ml_collections


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


# --- SimCLR / BYOL view augmentations ------------------------------------------------------
#
# Each function below takes ONE image, float [H, W, C] in [0, 1] (any H, W, C), and returns
# float32 [H, W, C] in [0, 1]: static shapes, no Python control flow on traced values, so the
# functions jit and vmap (``jax.vmap(f, in_axes=(0, 0))(keys, images)`` for a batch).
# Probabilities and strengths are Python floats (static); the random draws come from the key.

_GREY_WEIGHTS = (0.2989, 0.587, 0.114)  # ITU-R 601-2 luma, as torchvision and tf.image


def _check_image(image: jax.Array) -> jax.Array:
  if image.ndim != 3:
    raise ValueError(f'image {image.shape} must be one [H, W, C] image (vmap for a batch)')
  return image.astype(jnp.float32)


def _apply_with_prob(u: jax.Array, prob: float, augmented: jax.Array,
                     image: jax.Array) -> jax.Array:
  """``augmented`` if the uniform draw ``u`` < ``prob``, else ``image`` (both computed, so
  vmap-safe); exact for prob 0 and 1."""
  if prob >= 1:
    return augmented
  if prob <= 0:
    return image
  return jnp.where(u < prob, augmented, image)


def _interpolation_matrix(out_size: int, in_size: int, start: jax.Array,
                          length: jax.Array) -> jax.Array:
  """Bilinear weights [out_size, in_size] resampling [start, start + length) to out_size.

  Half-pixel centres: input pixel j covers [j, j + 1) with its centre at j + 0.5, and output
  pixel i samples the input at ``start + (i + 0.5) * length / out_size`` (edge coordinates),
  i.e. at centre index s_i = start + (i + 0.5) * length / out_size - 0.5. s_i is clamped to
  the centres of the first and last pixels of the crop, [start, start + length - 1], and to
  the image [0, in_size - 1]: the crop is resized as if cut out first (torchvision's
  ``resized_crop``, ``align_corners=False``), and nothing outside the image is ever read.
  """
  i = jnp.arange(out_size, dtype=jnp.float32)
  s = start + (i + 0.5) * (length / out_size) - 0.5  # [out]
  s = jnp.clip(jnp.clip(s, start, start + length - 1.0), 0.0, in_size - 1.0)
  lo = jnp.floor(s)
  frac = s - lo  # [out], in [0, 1)
  lo = lo.astype(jnp.int32)
  hi = jnp.minimum(lo + 1, in_size - 1)
  cols = jnp.arange(in_size)
  return ((1.0 - frac)[:, None] * (cols == lo[:, None])
          + frac[:, None] * (cols == hi[:, None]))  # [out, in]; rows sum to 1


def crop_and_resize(image: jax.Array, top, left, height, width) -> jax.Array:
  """Crops the box [top, top + height) x [left, left + width) and resizes it to [H, W].

  Bilinear interpolation with half-pixel centres (the convention of torchvision's
  ``resize(..., antialias=False)`` / ``align_corners=False`` and ``jax.image.resize``): pixel
  j covers [j, j + 1) and output pixel i samples the box at
  ``top + (i + 0.5) * height / H - 0.5`` in pixel-centre units, clamped to the box's first
  and last pixel centres (so an integer box gives exactly torchvision's ``resized_crop``).
  The box may be fractional; it must lie inside the image (the sample positions are also
  clamped to the image, so nothing outside it is read). The whole image, (0, 0, H, W),
  comes back exactly.

  Args:
    image: float [H, W, C].
    top, left: float scalars (may be traced), the box's top-left corner in pixels, >= 0.
    height, width: float scalars, the box size in pixels, in [1, H] and [1, W].

  Returns:
    float32 [H, W, C].
  """
  image = _check_image(image)
  h, w, _ = image.shape
  rows = _interpolation_matrix(h, h, jnp.asarray(top, jnp.float32),
                               jnp.asarray(height, jnp.float32))  # [H, H]
  cols = _interpolation_matrix(w, w, jnp.asarray(left, jnp.float32),
                               jnp.asarray(width, jnp.float32))  # [W, W]
  # HIGHEST: accelerators would otherwise multiply in bf16/tf32 (and the identity crop must
  # be exact).
  hp = jax.lax.Precision.HIGHEST
  x = jnp.einsum('yh,hwc->ywc', rows, image, precision=hp)  # [H, W, C]
  return jnp.einsum('xw,ywc->yxc', cols, x, precision=hp)  # [H, W, C]


def crop_box(key: jax.Array, height: int, width: int, *,
             scale: tuple[float, float] = (0.08, 1.0),
             ratio: tuple[float, float] = (3 / 4, 4 / 3)) -> tuple[jax.Array, ...]:
  """A random crop box (top, left, box_height, box_width) in pixels, inside the image.

  The area fraction a ~ U[scale] and the aspect ratio r ~ log-U[ratio] (Szegedy et al. 2015's
  "Inception" crop as in torchvision's ``RandomResizedCrop``, used by SimCLR). The aspect
  ratio is taken relative to the image's: the box covers a fraction sqrt(a r) of the width
  and sqrt(a / r) of the height (so width/height = r W / H; for square images this is
  torchvision's ratio). Fractions above 1 are clipped to 1 (torchvision retries 10 times and
  falls back to a central crop instead), the box is at least one pixel, and its position is
  uniform among those inside the image. Continuous, not rounded to whole pixels, so small
  images (8 x 8 digits) get a continuum of crops.

  Returns:
    four float32 scalars: top in [0, H - box_height], left in [0, W - box_width],
    box_height in [1, H], box_width in [1, W].
  """
  return _crop_box_from_uniform(jax.random.uniform(key, (4,)), height, width, scale=scale,
                                ratio=ratio)


def _crop_box_from_uniform(u: jax.Array, height: int, width: int, *,
                           scale: tuple[float, float],
                           ratio: tuple[float, float]) -> tuple[jax.Array, ...]:
  """``crop_box`` from four U[0, 1) draws ``u`` [4]."""
  area = scale[0] + (scale[1] - scale[0]) * u[0]
  log_lo, log_hi = math.log(ratio[0]), math.log(ratio[1])
  r = jnp.exp(log_lo + (log_hi - log_lo) * u[1])
  box_h = jnp.clip(jnp.minimum(jnp.sqrt(area / r), 1.0) * height, 1.0, height)
  box_w = jnp.clip(jnp.minimum(jnp.sqrt(area * r), 1.0) * width, 1.0, width)
  top = u[2] * (height - box_h)
  left = u[3] * (width - box_w)
  return top, left, box_h, box_w


def random_resized_crop(key: jax.Array, image: jax.Array, *,
                        scale: tuple[float, float] = (0.08, 1.0),
                        ratio: tuple[float, float] = (3 / 4, 4 / 3)) -> jax.Array:
  """A random crop (see ``crop_box``) resized back to [H, W] bilinearly (``crop_and_resize``).

  Args:
    key: PRNG key.
    image: float [H, W, C] in [0, 1].
    scale: (lo, hi) fraction of the image area, 0 < lo <= hi <= 1.
    ratio: (lo, hi) aspect ratio relative to the image's, 0 < lo <= hi, log-uniform.

  Returns:
    float32 [H, W, C] in [0, 1]; the image itself (exactly) when scale = ratio = (1, 1).
  """
  image = _check_image(image)
  h, w, _ = image.shape
  top, left, box_h, box_w = crop_box(key, h, w, scale=scale, ratio=ratio)
  return crop_and_resize(image, top, left, box_h, box_w)


def random_flip(key: jax.Array, image: jax.Array, prob: float = 0.5) -> jax.Array:
  """Mirrors the image left-right with probability ``prob`` (not for digits or text).

  Args:
    key: PRNG key.
    image: float [H, W, C].
    prob: probability of a flip; 0 never, 1 always.

  Returns:
    float32 [H, W, C].
  """
  image = _check_image(image)
  return _apply_with_prob(jax.random.uniform(key, ()), prob, image[:, ::-1], image)


def grey(image: jax.Array) -> jax.Array:
  """Luma 0.2989 R + 0.587 G + 0.114 B of an RGB image; a 1-channel image is itself.

  Returns:
    float32 [H, W, 1].
  """
  image = _check_image(image)
  if image.shape[-1] == 1:
    return image
  if image.shape[-1] != 3:
    raise ValueError(f'image {image.shape} must have 1 or 3 channels for grey()')
  return jnp.sum(image * jnp.asarray(_GREY_WEIGHTS, jnp.float32), axis=-1, keepdims=True)


def adjust_brightness(image: jax.Array, factor) -> jax.Array:
  """``clip(factor * image, 0, 1)``: multiplicative, as torchvision and SimCLR v2.

  Args:
    image: float [H, W, C] in [0, 1].
    factor: float scalar >= 0; 1 is the identity.

  Returns:
    float32 [H, W, C] in [0, 1].
  """
  return jnp.clip(_check_image(image) * factor, 0.0, 1.0)


def adjust_contrast(image: jax.Array, factor) -> jax.Array:
  """``clip(factor * image + (1 - factor) * m, 0, 1)``, m the image's mean grey level.

  As torchvision's ``adjust_contrast``: m is the mean of the luma (``grey``) over all pixels
  for RGB, of every pixel and channel otherwise (one scalar per image, so hues are kept).

  Args:
    image: float [H, W, C] in [0, 1].
    factor: float scalar >= 0; 1 is the identity, 0 a uniform grey image.

  Returns:
    float32 [H, W, C] in [0, 1].
  """
  image = _check_image(image)
  mean = jnp.mean(grey(image)) if image.shape[-1] == 3 else jnp.mean(image)
  return jnp.clip(factor * image + (1.0 - factor) * mean, 0.0, 1.0)


def adjust_saturation(image: jax.Array, factor) -> jax.Array:
  """``clip(factor * image + (1 - factor) * grey(image), 0, 1)`` per pixel (torchvision).

  Args:
    image: float [H, W, 3] RGB in [0, 1].
    factor: float scalar >= 0; 1 is the identity, 0 the grey image.

  Returns:
    float32 [H, W, 3] in [0, 1].

  Raises:
    ValueError: the image is not RGB.
  """
  image = _check_image(image)
  if image.shape[-1] != 3:
    raise ValueError(f'image {image.shape} must be RGB [H, W, 3] for a saturation change')
  return jnp.clip(factor * image + (1.0 - factor) * grey(image), 0.0, 1.0)


def _jitter_factor(u: jax.Array, strength: float) -> jax.Array:
  """U[max(0, 1 - s), 1 + s] from a U[0, 1) draw ``u``."""
  lo = max(0.0, 1.0 - strength)
  return lo + (1.0 + strength - lo) * u


def _color_jitter_from_uniform(u: jax.Array, image: jax.Array, *, brightness: float,
                               contrast: float, saturation: float) -> jax.Array:
  """``color_jitter`` from three U[0, 1) draws ``u`` [3]."""
  x = image
  if brightness > 0:
    x = adjust_brightness(x, _jitter_factor(u[0], brightness))
  if contrast > 0:
    x = adjust_contrast(x, _jitter_factor(u[1], contrast))
  if saturation > 0 and image.shape[-1] == 3:
    x = adjust_saturation(x, _jitter_factor(u[2], saturation))
  return x


def color_jitter(key: jax.Array, image: jax.Array, *, brightness: float, contrast: float,
                 saturation: float = 0.0) -> jax.Array:
  """Random brightness, contrast and saturation changes (torchvision ``ColorJitter``).

  The convention of torchvision's ``ColorJitter`` and SimCLR's ``color_jitter``
  (impl='simclrv2'; Chen et al. 2020, arXiv:2002.05709, appendix A): each strength s draws a
  factor f ~ U[max(0, 1 - s), 1 + s]; brightness multiplies (``adjust_brightness``), contrast
  blends with the mean grey level (``adjust_contrast``), saturation with the per-pixel grey
  (``adjust_saturation``, RGB only: ignored when C != 3, where it would be the identity
  anyway), each clipped to [0, 1]. Unlike both references the order is fixed (brightness,
  contrast, saturation), not random, and there is no hue change.

  Args:
    key: PRNG key.
    image: float [H, W, C] in [0, 1].
    brightness, contrast, saturation: strengths s >= 0; 0 leaves that property unchanged.

  Returns:
    float32 [H, W, C] in [0, 1]; the image itself when all strengths are 0.
  """
  return _color_jitter_from_uniform(jax.random.uniform(key, (3,)), _check_image(image),
                                    brightness=brightness, contrast=contrast,
                                    saturation=saturation)


def gaussian_kernel(sigma, kernel_size: int) -> jax.Array:
  """Normalised 1-D Gaussian weights exp(-x^2 / (2 sigma^2)), x = -r..r, r = kernel_size // 2.

  Returns:
    float32 [kernel_size], summing to 1.
  """
  if kernel_size < 1 or kernel_size % 2 == 0:
    raise ValueError(f'kernel_size={kernel_size} must be a positive odd number')
  x = jnp.arange(kernel_size, dtype=jnp.float32) - kernel_size // 2
  sigma = jnp.asarray(sigma, jnp.float32)
  weights = jnp.exp(-0.5 * jnp.square(x / sigma))
  return weights / jnp.sum(weights)


def gaussian_filter(image: jax.Array, sigma, *, kernel_size: int) -> jax.Array:
  """Separable Gaussian blur of each channel, borders mirrored.

  The padding is ``reflect`` (d c b | a b c d, scipy.ndimage's ``mode='mirror'``, torchvision's
  ``gaussian_blur``), so a constant image stays constant; SimCLR's TF code pads with zeros,
  which darkens the borders. Needs kernel_size // 2 < min(H, W).

  Args:
    image: float [H, W, C].
    sigma: float scalar > 0 (may be traced), in pixels.
    kernel_size: odd number of taps per axis.

  Returns:
    float32 [H, W, C].
  """
  image = _check_image(image)
  h, w, _ = image.shape
  r = kernel_size // 2
  if r >= min(h, w):
    raise ValueError(f'kernel_size={kernel_size} too large for image {image.shape}')
  weights = gaussian_kernel(sigma, kernel_size)  # [k]
  x = jnp.pad(image, ((r, r), (0, 0), (0, 0)), mode='reflect')  # [H + 2r, W, C]
  x = sum(weights[t] * x[t:t + h] for t in range(kernel_size))  # [H, W, C]
  x = jnp.pad(x, ((0, 0), (r, r), (0, 0)), mode='reflect')  # [H, W + 2r, C]
  return sum(weights[t] * x[:, t:t + w] for t in range(kernel_size))  # [H, W, C]


def gaussian_blur(key: jax.Array, image: jax.Array, *,
                  sigma: tuple[float, float] = (0.1, 2.0), kernel_size: int,
                  prob: float = 1.0) -> jax.Array:
  """``gaussian_filter`` with sigma ~ U[sigma], applied with probability ``prob`` (SimCLR).

  SimCLR (appendix A) blurs ImageNet views with probability 0.5, sigma in [0.1, 2.0] and a
  kernel 10% of the image side; it leaves CIFAR-10 unblurred.

  Args:
    key: PRNG key.
    image: float [H, W, C] in [0, 1].
    sigma: (lo, hi) range of the standard deviation in pixels, lo > 0.
    kernel_size: odd number of taps per axis.
    prob: probability of blurring.

  Returns:
    float32 [H, W, C] in [0, 1].
  """
  return _gaussian_blur_from_uniform(jax.random.uniform(key, (2,)), _check_image(image),
                                     sigma=sigma, kernel_size=kernel_size, prob=prob)


def _gaussian_blur_from_uniform(u: jax.Array, image: jax.Array, *,
                                sigma: tuple[float, float], kernel_size: int,
                                prob: float) -> jax.Array:
  """``gaussian_blur`` from two U[0, 1) draws ``u`` [2] (apply?, sigma)."""
  if prob <= 0:
    return image
  s = sigma[0] + (sigma[1] - sigma[0]) * u[1]
  blurred = jnp.clip(gaussian_filter(image, s, kernel_size=kernel_size), 0.0, 1.0)
  return _apply_with_prob(u[0], prob, blurred, image)


def gaussian_noise(key: jax.Array, image: jax.Array, std: float) -> jax.Array:
  """``clip(image + std * N(0, 1), 0, 1)`` per pixel and channel.

  Args:
    key: PRNG key.
    image: float [H, W, C] in [0, 1].
    std: noise standard deviation in pixel units (may be traced); a Python 0 returns the
      image.

  Returns:
    float32 [H, W, C] in [0, 1].
  """
  image = _check_image(image)
  if isinstance(std, (int, float)) and std == 0:
    return image
  return jnp.clip(image + std * jax.random.normal(key, image.shape, jnp.float32), 0.0, 1.0)


def simclr_augment_config(**overrides) -> ml_collections.ConfigDict:
  """The ``config`` block of ``simclr_augment``, SimCLR's CIFAR-10 recipe by default.

  Fields (Chen et al. 2020, appendix A; colour strength s = 0.5 gives 0.8 s = 0.4):
    crop_scale: (lo, hi) area fraction of the random resized crop; (1, 1) with
      crop_ratio (1, 1) disables cropping.
    crop_ratio: (lo, hi) aspect ratio (relative to the image's), sampled log-uniformly.
    flip_prob: probability of a left-right flip (0 for digits and text).
    brightness, contrast, saturation: colour-jitter strengths (``color_jitter``); saturation
      only acts on RGB images.
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


def _is_number(value) -> bool:
  return isinstance(value, (int, float)) and not isinstance(value, bool)


def check_config(config: ml_collections.ConfigDict, prefix: str = 'augment') -> None:
  """Checks the fields of a ``simclr_augment`` config block (see ``simclr_augment_config``).

  Called at start-up, before any data is read or anything compiled.

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
  """One random view (Chen et al. 2020, SimCLR, arXiv:2002.05709, appendix A).

  Random resized crop, left-right flip, colour jitter (with probability ``jitter_prob``),
  Gaussian blur (kernel ``blur_kernel_size``) and Gaussian noise, in that order. The same
  transforms as ``random_resized_crop``, ``random_flip``, ``color_jitter``, ``gaussian_blur``
  and ``gaussian_noise``, but all the randomness comes from one uniform draw of 11 + H W C
  numbers (the noise by the inverse normal CDF, as ``jax.random.normal`` does): each random
  call inlines a threefry hash, and fewer of them keep the vmapped step quick to compile.
  Each transform reads fixed draws, so disabling one leaves the others' randomness
  unchanged. No random greyscale and no hue change.

  Args:
    key: PRNG key.
    image: float [H, W, C] in [0, 1].
    config: the fields documented in ``simclr_augment_config``.

  Returns:
    float32 [H, W, C] in [0, 1].
  """
  image = _check_image(image)
  h, w, c = image.shape
  # [11 + H W C] in the open interval (0, 1), so that the inverse normal CDF is finite.
  u = jax.random.uniform(key, (11 + h * w * c,), minval=jnp.finfo(jnp.float32).tiny)
  box = _crop_box_from_uniform(u[0:4], h, w, scale=tuple(config.crop_scale),
                               ratio=tuple(config.crop_ratio))
  x = crop_and_resize(image, *box)
  x = _apply_with_prob(u[4], config.flip_prob, x[:, ::-1], x)
  jittered = _color_jitter_from_uniform(u[6:9], x, brightness=config.brightness,
                                        contrast=config.contrast, saturation=config.saturation)
  x = _apply_with_prob(u[5], config.jitter_prob, jittered, x)
  x = _gaussian_blur_from_uniform(u[9:11], x, sigma=tuple(config.blur_sigma),
                                  kernel_size=blur_kernel_size(h, w), prob=config.blur_prob)
  if config.noise_std == 0:
    return x
  noise = jnp.sqrt(2.0) * jax.scipy.special.erfinv(2.0 * u[11:] - 1.0)  # [H W C] ~ N(0, 1)
  return jnp.clip(x + config.noise_std * noise.reshape(x.shape), 0.0, 1.0)


def two_views(rng: jax.Array, images: jax.Array, step,
              config: ml_collections.ConfigDict) -> tuple[jax.Array, jax.Array]:
  """Two independent ``simclr_augment`` views of every image of a global batch.

  View v (0 or 1) of example i uses the key fold_in(fold_in(fold_in(rng, step), i), v), with
  i the position in the *global* batch: the views are a pure function of (rng, step, i, the
  image), the same on any number of devices (jit with the batch sharded over the mesh), the
  same after a resume, and independent of the batch's other examples.

  Args:
    rng: PRNG key of the augmentations (the same every step).
    images: float [B, H, W, C] in [0, 1], the global batch.
    step: int scalar (may be traced), the training step.
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
