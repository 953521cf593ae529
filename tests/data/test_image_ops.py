"""Image ops of the SimCLR/BYOL views: identities, hand-worked and NumPy/scipy references.

Functions are called through jax.jit (one compile each) rather than op by op: on 2 CPU cores
compiling is most of this file's time.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxssl.data import image_ops

_crop = jax.jit(image_ops.crop_and_resize)
_contrast = jax.jit(image_ops.adjust_contrast)
_saturation = jax.jit(image_ops.adjust_saturation)
_filter = jax.jit(image_ops.gaussian_filter, static_argnames='kernel_size')


def _image(shape, seed=0):
  return jax.random.uniform(jax.random.key(seed), shape)


# --- crop ----------------------------------------------------------------------------------


def test_crop_and_resize_hand_worked():
  # image[y, x] = 4 y + x on 4 x 4; crop the top-left 2 x 2 box, resize to 4 x 4.
  # Half-pixel centres: output i samples the crop at centre index (i + 0.5) * 2 / 4 - 0.5 =
  # -0.25, 0.25, 0.75, 1.25, clamped to the crop's pixel centres [0, 1]: 0, 0.25, 0.75, 1.
  # The image is linear in y and x, so bilinear gives 4 s_y + s_x exactly (what
  # torchvision's resized_crop(img, 0, 0, 2, 2, [4, 4], bilinear) gives):
  #   0 0.25 0.75 1 / 1 1.25 1.75 2 / 3 3.25 3.75 4 / 4 4.25 4.75 5.
  image = jnp.arange(16.0).reshape(4, 4, 1)
  expected = np.array([[0, 0.25, 0.75, 1], [1, 1.25, 1.75, 2], [3, 3.25, 3.75, 4],
                       [4, 4.25, 4.75, 5]])
  np.testing.assert_allclose(_crop(image, 0, 0, 2, 2)[..., 0], expected, atol=1e-6)
  # The bottom-right 2 x 2 box (rows and columns 2, 3): shifted by 4 * 2 + 2.
  np.testing.assert_allclose(_crop(image, 2, 2, 2, 2)[..., 0], expected + 10, atol=1e-6)
  # A 1-pixel box is that pixel everywhere.
  np.testing.assert_allclose(_crop(image, 1, 3, 1, 1), jnp.full((4, 4, 1), 7.0))
  # A box rows 0..3 (all) x columns 1..2: rows unchanged, columns 1 + (0, 0.25, 0.75, 1).
  expected = 4 * np.arange(4.0)[:, None] + 1 + np.array([0, 0.25, 0.75, 1])[None, :]
  np.testing.assert_allclose(_crop(image, 0.0, 1.0, 4.0, 2.0)[..., 0], expected, atol=1e-6)


def test_crop_and_resize_channels_are_independent():
  ramp = jnp.arange(12.0).reshape(3, 4)
  image = jnp.stack([ramp, -ramp], -1)
  out = _crop(image, 0.5, 1.0, 2.0, 2.5)
  np.testing.assert_allclose(out[..., 1], -out[..., 0], atol=1e-6)


@pytest.mark.parametrize('shape', [(8, 8, 1), (5, 7, 3)])
def test_full_crop_is_exact_identity(shape):
  image = _image(shape)
  np.testing.assert_array_equal(_crop(image, 0, 0, shape[0], shape[1]), image)
  out = jax.jit(functools.partial(image_ops.random_resized_crop, scale=(1.0, 1.0),
                                  ratio=(1.0, 1.0)))(jax.random.key(3), image)
  np.testing.assert_array_equal(out, image)


def test_crop_boxes_stay_inside_the_image_with_the_asked_area_and_ratio():
  keys = jax.random.split(jax.random.key(0), 2000)
  h, w = 8, 12
  scale, ratio = (0.08, 1.0), (3 / 4, 4 / 3)
  top, left, bh, bw = [np.asarray(a) for a in jax.jit(jax.vmap(
      lambda k: image_ops.crop_box(k, h, w, scale=scale, ratio=ratio)))(keys)]
  assert np.all(top >= 0) and np.all(left >= 0)
  assert np.all(top + bh <= h + 1e-5) and np.all(left + bw <= w + 1e-5)
  assert np.all(bh >= 1) and np.all(bw >= 1)
  area = bh * bw / (h * w)
  rel_ratio = (bw / w) / (bh / h)  # the aspect ratio relative to the image's
  inside = (bh < h) & (bw < w) & (bh > 1) & (bw > 1)  # not clipped
  assert inside.mean() > 0.8
  assert np.all(area[inside] >= scale[0] - 1e-5) and np.all(area[inside] <= scale[1] + 1e-5)
  assert np.all(rel_ratio[inside] >= ratio[0] - 1e-5)
  assert np.all(rel_ratio[inside] <= ratio[1] + 1e-5)
  # Positions spread over the whole free range (uniform), not pinned to a corner.
  frac = top[bh < h - 2] / (h - bh)[bh < h - 2]
  assert frac.min() < 0.05 and frac.max() > 0.95


# --- flip, colour ---------------------------------------------------------------------------


def test_flip_probability_zero_and_one_are_exact():
  image = _image((6, 5, 3))
  flip = jax.jit(jax.vmap(image_ops.random_flip, in_axes=(0, None, None)), static_argnums=2)
  keys = jax.random.split(jax.random.key(1), 200)
  np.testing.assert_array_equal(flip(keys[:2], image, 0.0), np.stack([image] * 2))
  np.testing.assert_array_equal(flip(keys[:2], image, 1.0), np.stack([np.flip(image, 1)] * 2))
  flipped = np.all(np.asarray(flip(keys, image, 0.5)) == np.flip(image, axis=1)[None],
                   axis=(1, 2, 3))
  assert 60 < flipped.sum() < 140


@pytest.mark.parametrize('shape', [(8, 8, 1), (6, 5, 3)])
def test_zero_strength_jitter_is_identity(shape):
  image = _image(shape)
  out = jax.jit(functools.partial(image_ops.color_jitter, brightness=0.0, contrast=0.0))(
      jax.random.key(0), image)
  np.testing.assert_array_equal(out, image)
  np.testing.assert_array_equal(_contrast(image, 1.0), image)


def test_contrast_and_saturation_match_numpy():
  rgb = np.asarray(_image((6, 5, 3)))
  grey = rgb @ np.array([0.2989, 0.587, 0.114])  # [H, W]
  for f in (0.0, 0.6, 1.7):
    expected = np.clip(f * rgb + (1 - f) * grey.mean(), 0, 1)
    np.testing.assert_allclose(_contrast(rgb, f), expected, atol=1e-6)
    expected = np.clip(f * rgb + (1 - f) * grey[..., None], 0, 1)
    np.testing.assert_allclose(_saturation(rgb, f), expected, atol=1e-6)
  # One channel: the mean over all pixels.
  one = np.asarray(_image((8, 8, 1)))
  np.testing.assert_allclose(_contrast(one, 1.4),
                             np.clip(1.4 * one + (1 - 1.4) * one.mean(), 0, 1), atol=1e-6)
  with pytest.raises(ValueError, match='RGB'):
    image_ops.adjust_saturation(one, 0.5)


def test_jitter_draws_factors_in_range():
  # Values in [0.4, 0.6]: no clipping, so the factors can be read back from the output.
  # Contrast: out - m = f (x - m) with the mean m unchanged, f in [1 - 0.5, 1 + 0.5].
  # Brightness: out = f x, f in [1 - 0.3, 1 + 0.3].
  image = 0.4 + 0.2 * _image((8, 8, 1))
  m = float(jnp.mean(image))
  keys = jax.random.split(jax.random.key(0), 20)

  def jitter(**strengths):
    return np.asarray(jax.jit(jax.vmap(functools.partial(image_ops.color_jitter, **strengths),
                                       in_axes=(0, None)))(keys, image))

  out = jitter(brightness=0.0, contrast=0.5)
  np.testing.assert_allclose(out.mean(axis=(1, 2, 3)), m, atol=1e-6)
  d = np.asarray(image) - m
  f = np.sum((out - m) * d, axis=(1, 2, 3), keepdims=True) / np.sum(d * d)  # least squares
  np.testing.assert_allclose(out, m + f * d, atol=1e-6)
  assert np.all(f >= 0.5 - 1e-5) and np.all(f <= 1.5 + 1e-5) and f.std() > 0.1
  f = jitter(brightness=0.3, contrast=0.0) / np.asarray(image)
  np.testing.assert_allclose(f, np.broadcast_to(f[:, :1, :1], f.shape), rtol=1e-5)
  assert np.all(f >= 0.7 - 1e-5) and np.all(f <= 1.3 + 1e-5) and f.std() > 0.05


# --- blur, noise ----------------------------------------------------------------------------


def test_blur_keeps_a_constant_image():
  image = jnp.full((8, 8, 1), 0.37)
  np.testing.assert_allclose(_filter(image, 1.3, kernel_size=5), image, atol=1e-6)
  out = jax.jit(functools.partial(image_ops.gaussian_blur, sigma=(0.5, 2.0), kernel_size=5))(
      jax.random.key(0), image)
  np.testing.assert_allclose(out, image, atol=1e-6)


@pytest.mark.parametrize('sigma,kernel_size', [(0.8, 3), (1.5, 5), (2.0, 7)])
def test_blur_matches_scipy(sigma, kernel_size):
  ndimage = pytest.importorskip('scipy.ndimage')
  image = np.asarray(_image((8, 8, 1)))
  # Same taps (radius kernel_size // 2) and borders: numpy/jnp 'reflect' is scipy's 'mirror'.
  expected = ndimage.gaussian_filter(image.astype(np.float64), sigma, mode='mirror',
                                     radius=kernel_size // 2, axes=(0, 1))
  np.testing.assert_allclose(_filter(image, sigma, kernel_size=kernel_size), expected,
                             atol=1e-6)


def test_blur_probability_and_bad_kernel():
  image = _image((8, 8, 1))
  blur = jax.jit(image_ops.gaussian_blur, static_argnames=('sigma', 'kernel_size', 'prob'))
  np.testing.assert_array_equal(blur(jax.random.key(0), image, kernel_size=3, prob=0.0), image)
  assert not np.allclose(blur(jax.random.key(0), image, sigma=(1.0, 1.0), kernel_size=3), image)
  with pytest.raises(ValueError, match='odd'):
    image_ops.gaussian_filter(image, 1.0, kernel_size=4)
  with pytest.raises(ValueError, match='too large'):
    image_ops.gaussian_filter(image, 1.0, kernel_size=17)


def test_gaussian_noise_std_and_clipping():
  image = jnp.full((32, 32, 3), 0.5)
  np.testing.assert_array_equal(image_ops.gaussian_noise(jax.random.key(0), image, 0.0), image)
  noise = jax.jit(image_ops.gaussian_noise)  # std traced
  assert abs(float(jnp.std(noise(jax.random.key(0), image, 0.1))) - 0.1) < 0.01
  out = np.asarray(noise(jax.random.key(0), image, 2.0))
  assert out.min() == 0.0 and out.max() == 1.0
