"""SimCLR/BYOL view augmentations: composition, view keys, config checks.

Functions are called through jax.jit (one compile each) rather than op by op: on 2 CPU cores
compiling is most of this file's time.
"""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from jaxssl.data import augment

# Everything on, so that every transform's randomness is exercised.
_CONFIG = augment.simclr_augment_config(blur_prob=0.5, noise_std=0.05)
_views = jax.jit(lambda rng, images, step: augment.two_views(rng, images, step, _CONFIG))


def _image(shape, seed=0):
  return jax.random.uniform(jax.random.key(seed), shape)


# --- composition and views ------------------------------------------------------------------


@pytest.mark.parametrize('shape', [(8, 8, 1), (32, 32, 3)])
def test_two_views_jit_shapes_and_range(shape):
  images = _image((4,) + shape)
  v1, v2 = _views(jax.random.key(0), images, 7)
  for v in (v1, v2):
    assert v.shape == images.shape and v.dtype == jnp.float32
    assert float(v.min()) >= 0.0 and float(v.max()) <= 1.0
  assert not np.allclose(v1, v2)


def test_view_keys_and_vmap_of_one_view():
  # View v of example i is simclr_augment with key fold_in(fold_in(fold_in(rng, step), i), v).
  images = _image((4, 8, 8, 1))
  v1, v2 = _views(jax.random.key(0), images, 7)
  rng_step = jax.random.fold_in(jax.random.key(0), 7)
  keys = jnp.stack([jax.random.fold_in(jax.random.fold_in(rng_step, i), v)
                    for v in (0, 1) for i in range(4)])
  out = jax.jit(jax.vmap(lambda k, x: augment.simclr_augment(k, x, _CONFIG)))(
      keys, jnp.concatenate([images, images]))
  np.testing.assert_allclose(out, np.concatenate([v1, v2]), atol=1e-6)


def test_views_of_an_example_ignore_the_rest_of_the_batch_and_change_with_the_step():
  a, b = _image((4, 8, 8, 1), seed=1), _image((4, 8, 8, 1), seed=2)
  b = b.at[2].set(a[2])  # same example at the same global position, other neighbours
  va, vb = _views(jax.random.key(0), a, 5), _views(jax.random.key(0), b, 5)
  for v in (0, 1):
    np.testing.assert_array_equal(va[v][2], vb[v][2])
    assert not np.allclose(va[v][1], vb[v][1])
  # A later step, or another seed, draws other views of the same images.
  assert not np.allclose(_views(jax.random.key(0), a, 6)[0], va[0])
  assert not np.allclose(_views(jax.random.key(1), a, 5)[0], va[0])
  # The same (rng, step) replays exactly (resume).
  np.testing.assert_array_equal(_views(jax.random.key(0), a, 5)[1], va[1])


def test_identity_config_returns_the_images():
  config = augment.simclr_augment_config(crop_scale=(1.0, 1.0), crop_ratio=(1.0, 1.0),
                                         flip_prob=0.0, jitter_prob=0.0)
  images = _image((3, 8, 8, 1))
  v1, v2 = jax.jit(lambda r, x: augment.two_views(r, x, 0, config))(jax.random.key(0), images)
  np.testing.assert_array_equal(v1, images)
  np.testing.assert_array_equal(v2, images)


def test_bad_shapes_raise():
  with pytest.raises(ValueError, match=r'\[B, H, W, C\]'):
    augment.two_views(jax.random.key(0), jnp.zeros((8, 8, 1)), 0, _CONFIG)
  with pytest.raises(ValueError, match=r'\[H, W, C\]'):
    augment.simclr_augment(jax.random.key(0), jnp.zeros((2, 8, 8, 1)), _CONFIG)


@pytest.mark.parametrize('field,value', [
    ('crop_scale', (0.0, 1.0)), ('crop_scale', (0.5, 0.2)), ('crop_scale', (0.5, 1.5)),
    ('crop_scale', 0.5), ('crop_ratio', (0.0, 1.0)), ('blur_sigma', (2.0, 1.0)),
    ('flip_prob', 1.5), ('jitter_prob', -0.1), ('blur_prob', True), ('brightness', -1.0),
    ('noise_std', None)])
def test_check_config_names_the_bad_field(field, value):
  fields = augment.simclr_augment_config().to_dict()
  augment.check_config(ml_collections.ConfigDict(fields), prefix='method.augment')
  with pytest.raises(ValueError, match=f'method.augment.{field}='):
    augment.check_config(ml_collections.ConfigDict({**fields, field: value}),
                         prefix='method.augment')
  del fields[field]
  with pytest.raises(ValueError, match=f'method.augment.{field} is missing'):
    augment.check_config(ml_collections.ConfigDict(fields), prefix='method.augment')
