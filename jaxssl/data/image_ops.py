"""Image ops for the SimCLR/BYOL view augmentations: crops, flips, colour, blur, noise.

Each op takes ONE image, float [H, W, C] in [0, 1], and returns float32 [H, W, C] in [0, 1]
unless it says otherwise; shapes are static, so ops jit and vmap (``jax.vmap(f)(keys, images)``).
Probabilities and strengths are static Python floats; random draws come from the key.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

_GREY_WEIGHTS = (0.2989, 0.587, 0.114)  # ITU-R 601-2 luma, as torchvision and tf.image


def _check_image(image: jax.Array) -> jax.Array:
  if image.ndim != 3:
    raise ValueError(f'image {image.shape} must be one [H, W, C] image (vmap for a batch)')
  return image.astype(jnp.float32)


def _apply_with_prob(u: jax.Array, prob: float, augmented: jax.Array,
                     image: jax.Array) -> jax.Array:
  """``augmented`` if ``u`` < ``prob``, else ``image``; both computed (vmap-safe); exact at 0, 1."""
  if prob >= 1:
    return augmented
  if prob <= 0:
    return image
  return jnp.where(u < prob, augmented, image)


def _interpolation_matrix(out_size: int, in_size: int, start: jax.Array,
                          length: jax.Array) -> jax.Array:
  """Bilinear weights [out_size, in_size] resampling [start, start + length) to out_size.

  Half-pixel centres (torchvision ``resized_crop``, ``align_corners=False``); sample positions
  are clamped to the crop's first/last pixel centres and to the image, so nothing outside is read.
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

  Bilinear with half-pixel centres, as torchvision ``resize(antialias=False)`` and
  ``jax.image.resize``; an integer box gives exactly torchvision's ``resized_crop``, and the whole
  image (0, 0, H, W) comes back exactly. The box is float scalars in pixels (may be traced,
  fractional) inside the image: top, left >= 0, height in [1, H], width in [1, W].
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

  Inception crop (Szegedy et al. 2015; torchvision ``RandomResizedCrop``, as SimCLR): area
  fraction a ~ U[scale], aspect ratio r ~ log-U[ratio] relative to the image's (the box covers
  sqrt(a r) of the width, sqrt(a / r) of the height). Fractions above 1 are clipped to 1
  (torchvision retries instead); the box is >= 1 pixel, uniformly placed, not rounded to pixels.

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

  ``scale``: (lo, hi) fraction of the image area, 0 < lo <= hi <= 1; ``ratio``: (lo, hi)
  aspect ratio relative to the image's, 0 < lo <= hi, log-uniform. scale = ratio = (1, 1)
  returns the image exactly.
  """
  image = _check_image(image)
  h, w, _ = image.shape
  top, left, box_h, box_w = crop_box(key, h, w, scale=scale, ratio=ratio)
  return crop_and_resize(image, top, left, box_h, box_w)


def random_flip(key: jax.Array, image: jax.Array, prob: float = 0.5) -> jax.Array:
  """Mirrors the image left-right with probability ``prob`` (0 never, 1 always; not for digits)."""
  image = _check_image(image)
  return _apply_with_prob(jax.random.uniform(key, ()), prob, image[:, ::-1], image)


def grey(image: jax.Array) -> jax.Array:
  """Luma 0.2989 R + 0.587 G + 0.114 B of an RGB image, float32 [H, W, 1]; 1 channel: itself."""
  image = _check_image(image)
  if image.shape[-1] == 1:
    return image
  if image.shape[-1] != 3:
    raise ValueError(f'image {image.shape} must have 1 or 3 channels for grey()')
  return jnp.sum(image * jnp.asarray(_GREY_WEIGHTS, jnp.float32), axis=-1, keepdims=True)


def adjust_brightness(image: jax.Array, factor) -> jax.Array:
  """``clip(factor * image, 0, 1)``: multiplicative, as torchvision and SimCLR v2; factor >= 0."""
  return jnp.clip(_check_image(image) * factor, 0.0, 1.0)


def adjust_contrast(image: jax.Array, factor) -> jax.Array:
  """``clip(factor * image + (1 - factor) * m, 0, 1)``, m the image's mean grey level.

  As torchvision: m is one scalar per image, the mean luma for RGB, else the mean of all values.
  factor >= 0; 1 is the identity, 0 a uniform grey image.
  """
  image = _check_image(image)
  mean = jnp.mean(grey(image)) if image.shape[-1] == 3 else jnp.mean(image)
  return jnp.clip(factor * image + (1.0 - factor) * mean, 0.0, 1.0)


def adjust_saturation(image: jax.Array, factor) -> jax.Array:
  """``clip(factor * image + (1 - factor) * grey(image), 0, 1)`` per pixel (torchvision).

  ``image`` is RGB [H, W, 3] (else ValueError); factor >= 0, 1 the identity, 0 the grey image.
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

  As SimCLR's ``color_jitter`` (impl='simclrv2'; Chen et al. 2020, arXiv:2002.05709, app. A):
  each strength s >= 0 draws f ~ U[max(0, 1 - s), 1 + s] (0 leaves that property unchanged);
  saturation is ignored when C != 3. Unlike both references the order is fixed (brightness,
  contrast, saturation) and there is no hue. All strengths 0 return the image itself.
  """
  return _color_jitter_from_uniform(jax.random.uniform(key, (3,)), _check_image(image),
                                    brightness=brightness, contrast=contrast,
                                    saturation=saturation)


def gaussian_kernel(sigma, kernel_size: int) -> jax.Array:
  """Normalised 1-D Gaussian weights exp(-x^2 / (2 sigma^2)), x = -r..r, r = kernel_size // 2.

  Returns float32 [kernel_size], summing to 1.
  """
  if kernel_size < 1 or kernel_size % 2 == 0:
    raise ValueError(f'kernel_size={kernel_size} must be a positive odd number')
  x = jnp.arange(kernel_size, dtype=jnp.float32) - kernel_size // 2
  sigma = jnp.asarray(sigma, jnp.float32)
  weights = jnp.exp(-0.5 * jnp.square(x / sigma))
  return weights / jnp.sum(weights)


def gaussian_filter(image: jax.Array, sigma, *, kernel_size: int) -> jax.Array:
  """Separable Gaussian blur of each channel, borders mirrored.

  Padding is ``reflect`` (scipy ``mode='mirror'``, torchvision), so a constant image stays
  constant (SimCLR's TF code pads with zeros). ``sigma``: float scalar > 0 in pixels (may be
  traced); ``kernel_size``: odd taps per axis, kernel_size // 2 < min(H, W).
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
  """``gaussian_filter`` with sigma ~ U[sigma] (pixels, lo > 0), applied with probability ``prob``.

  SimCLR (app. A) blurs ImageNet views with prob 0.5, sigma in [0.1, 2.0], kernel 10% of the
  side; CIFAR-10 is not blurred.
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

  ``std`` is in pixel units and may be traced; a Python 0 returns the image.
  """
  image = _check_image(image)
  if isinstance(std, (int, float)) and std == 0:
    return image
  return jnp.clip(image + std * jax.random.normal(key, image.shape, jnp.float32), 0.0, 1.0)
