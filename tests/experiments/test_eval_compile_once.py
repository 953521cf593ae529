"""Evaluation pictures and model initialisation are single compiled calls.

The autoencoder's and the VAE's image grids come from one jitted ``grid_step`` per run (the
second evaluation compiles nothing), checked here against the pictures computed the plain
way: images corrupted, encoded and decoded one call at a time, tiled by a NumPy reference.
DCGAN's networks and the feature classifier are initialised by one compiled call each
(tests/models/test_ops.py checks that their kernel initializer is flax's default).
"""

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from experiments import autoencoder, dcgan, vae
from jaxssl.data import augment
from jaxssl.eval import generative
from jaxssl.models import conv_ae
from jaxssl.models import vae as vae_model
from jaxssl.parallel import mesh as mesh_lib
from jaxssl.parallel import sharding
from jaxssl.train import rngs
from jaxssl.train import state as state_lib
from tests.experiments.helpers import counting, smoke

ANY = re.compile(r'.')  # every jitted function, eager operations included


def _tiles(images, columns):
  """NumPy reference of a grid: tiles row-major, 1-pixel white gaps, uint8."""
  n, h, w, c = images.shape
  rows = -(-n // columns)
  grid = np.full((rows * (h + 1) + 1, columns * (w + 1) + 1, c), 255, np.uint8)
  for i, image in enumerate(images):
    r, q = divmod(i, columns)
    grid[1 + r * (h + 1):(r + 1) * (h + 1), 1 + q * (w + 1):(q + 1) * (w + 1)] = np.round(
        np.clip(image, 0, 1) * 255)
  return grid


def _random_params(make_model, seed):
  """(graphdef, params): the model's structure with N(0, 0.3^2) NumPy parameters (no
  initializer runs, so nothing compiles)."""
  graphdef, abstract = state_lib.split_model(nnx.eval_shape(lambda: make_model(nnx.Rngs(0))))
  rng = np.random.default_rng(seed)
  return graphdef, jax.tree.map(
      lambda a: (0.3 * rng.standard_normal(a.shape)).astype(np.float32), abstract)


def _grid_fn(module, config, graphdef, params, test_images):
  mesh = mesh_lib.make_mesh(config.mesh)
  return module.make_grid_fn(config, graphdef, {'test': {'image': test_images}},
                             sharding.tree_shardings(params, mesh), mesh)


def _assert_grids_match(got, expected):
  assert got.keys() == expected.keys()
  for name in expected:
    assert got[name].shape == expected[name].shape, name
    # Jitted and op-by-op float32 may round differently in the last bit.
    assert np.abs(got[name].astype(int) - expected[name]).max() <= 1, name


def test_autoencoder_grid_matches_images_corrupted_and_decoded_one_by_one():
  config = autoencoder.smoke_config()
  config.method.noise_std, config.method.mask_prob = 0.3, 0.2
  config.eval.num_images = 3
  config.model.widths = (3, 5)  # shapes no other test compiles
  images = np.random.default_rng(0).integers(0, 256, (4, 8, 8, 1), dtype=np.uint8)
  graphdef, params = _random_params(lambda rngs: conv_ae.Autoencoder(
      (8, 8, 1), config.model.latent_dim, config.model.widths, rngs=rngs), seed=1)
  grid_fn = _grid_fn(autoencoder, config, graphdef, params, images)

  with counting(ANY) as first:
    got = autoencoder.image_grids(grid_fn, params, config)
  with counting(ANY) as second:
    again = autoencoder.image_grids(grid_fn, params, config)
  assert first['compile'] == 1 and second['compile'] == 0, (first, second)
  np.testing.assert_array_equal(again['reconstructions'], got['reconstructions'])

  # Image i's corruption comes from (data.split_seed, 0x5EED, i), as in the metrics.
  x = images[:3].astype(np.float32) / 255
  key = jax.random.fold_in(jax.random.key(config.data.split_seed), 0x5EED)
  noisy = np.concatenate([np.asarray(augment.corrupt(
      jax.random.fold_in(key, i), jnp.asarray(x[i:i + 1]), noise_std=0.3, mask_prob=0.2))
                          for i in range(3)])
  assert not np.allclose(noisy, x)
  logits, _ = state_lib.merge_model(graphdef, params)(jnp.asarray(noisy))
  recon = 1 / (1 + np.exp(-np.asarray(logits, np.float64)))
  pictures = jax.device_get(grid_fn(params))
  np.testing.assert_array_equal(pictures['clean'], x)
  np.testing.assert_allclose(pictures['noisy'], noisy, atol=1e-6)
  np.testing.assert_allclose(pictures['reconstruction'], recon, atol=1e-5)
  # Three rows (clean, noisy, reconstructed) of three 8x8 tiles.
  expected = {'reconstructions': _tiles(np.concatenate([x, noisy, recon]), columns=3)}
  assert expected['reconstructions'].shape == (3 * 9 + 1, 3 * 9 + 1, 1)
  _assert_grids_match(got, expected)


@pytest.mark.parametrize('likelihood', ['bernoulli', 'logistic'])
def test_vae_grids_match_decoder_means_computed_one_by_one(likelihood):
  config = vae.smoke_config()
  config.method.likelihood = likelihood
  config.model.widths = (3, 5)  # shapes no other test compiles
  config.eval.num_images, config.eval.num_samples = 3, 5
  config.eval.num_interpolations, config.eval.interpolation_steps = 2, 3
  z_dim = config.model.latent_dim
  images = np.random.default_rng(2).integers(0, 256, (5, 8, 8, 1), dtype=np.uint8)
  graphdef, params = _random_params(lambda rngs: vae_model.VAE(
      (8, 8, 1), z_dim, config.model.widths, likelihood=likelihood,
      num_levels=vae_model.NUM_LEVELS, rngs=rngs), seed=3)
  grid_fn = _grid_fn(vae, config, graphdef, params, images)

  with counting(ANY) as first:
    got = vae.image_grids(grid_fn, params, config)
  with counting(ANY) as second:
    vae.image_grids(grid_fn, params, config)
  assert first['compile'] == 1 and second['compile'] == 0, (first, second)

  model = state_lib.merge_model(graphdef, params)

  def decoded(z):  # the mean image of p(x | z), from the decoder's outputs
    out = model.decode(jnp.asarray(z, jnp.float32))
    if likelihood == 'bernoulli':
      return 1 / (1 + np.exp(-np.asarray(out['logits'], np.float64)))
    return np.asarray(out['mean'], np.float64)

  def as_modelled(u8):
    return (u8 >= 128).astype(np.float32) if likelihood == 'bernoulli' else u8 / np.float32(255)

  def posterior_mean(x):
    return np.asarray(model.encode(jnp.asarray(x))[0])

  x = as_modelled(images[:3])
  samples = decoded(jax.random.normal(jax.random.fold_in(
      jax.random.key(config.data.split_seed), 0x5A3E), (5, z_dim)))
  first_end, second_end = as_modelled(images[0:4:2]), as_modelled(images[1:4:2])
  z1, z2 = posterior_mean(first_end), posterior_mean(second_end)  # [2, Z] each
  t = np.linspace(0, 1, 3)[None, :, None]
  frames = decoded((z1[:, None] + t * (z2 - z1)[:, None]).reshape(-1, z_dim))
  rows = np.concatenate([first_end[:, None], frames.reshape(2, 3, 8, 8, 1),
                         second_end[:, None]], axis=1)  # [P, T + 2, H, W, C]
  pictures = jax.device_get(grid_fn(params))
  np.testing.assert_allclose(pictures['reconstructions'], decoded(posterior_mean(x)),
                             atol=1e-5)
  np.testing.assert_allclose(pictures['samples'], samples, atol=1e-5)
  np.testing.assert_allclose(pictures['interpolations'], rows, atol=1e-5)
  expected = {'reconstructions': _tiles(np.concatenate([x, decoded(posterior_mean(x))]), 3),
              'samples': _tiles(samples, columns=3),  # ceil(sqrt(5)) columns
              'interpolations': _tiles(rows.reshape(-1, 8, 8, 1), columns=5)}
  assert expected['samples'].shape == (2 * 9 + 1, 3 * 9 + 1, 1)
  assert expected['interpolations'].shape == (2 * 9 + 1, 5 * 9 + 1, 1)
  _assert_grids_match(got, expected)


def test_vae_without_a_pair_of_test_images_draws_no_interpolations():
  config = vae.smoke_config()
  images = np.full((1, 8, 8, 1), 200, np.uint8)
  graphdef, params = _random_params(lambda rngs: vae_model.VAE(
      (8, 8, 1), config.model.latent_dim, config.model.widths, likelihood='bernoulli',
      rngs=rngs), seed=4)
  grids = vae.image_grids(_grid_fn(vae, config, graphdef, params, images), params, config)
  assert set(grids) == {'reconstructions', 'samples'}
  assert grids['reconstructions'].shape == (2 * 9 + 1, 9 + 1, 1)


@pytest.mark.parametrize('module', [autoencoder, vae], ids=lambda m: m.EXPERIMENT)
def test_a_second_evaluation_compiles_nothing(module, cache_dir, tmp_path, monkeypatch):
  # Evaluations at steps 3 and 6: each one's grids and metrics, counted as they run.
  counts = []

  def counted(fn):
    def run(*args, **kwargs):
      with counting(ANY) as c:
        out = fn(*args, **kwargs)
      counts.append((fn.__name__, dict(c)))
      return out
    return run

  monkeypatch.setattr(module, 'image_grids', counted(module.image_grids))
  monkeypatch.setattr(module, 'evaluate', counted(module.evaluate))
  module.train_and_evaluate(smoke(module, cache_dir, eval_every_steps=3), str(tmp_path))
  assert [name for name, _ in counts] == ['image_grids', 'evaluate'] * 2
  # The first evaluation compiles grid_step and eval_step once each (no eager operations).
  assert [c.get('compile', 0) for _, c in counts] == [1, 1, 0, 0], counts


def test_dcgan_initial_state_is_one_compiled_call(cache_dir):
  config = smoke(dcgan, cache_dir)
  config.model.generator_widths = (12, 6)  # shapes no other test compiles
  data = dcgan.prepare_data(config, None)
  mesh = mesh_lib.make_mesh(config.mesh)
  rng_init = rngs.run_keys(config.seed).init  # made outside: shared by all runs
  with counting(ANY) as counts:
    state = dcgan.create_train_state(config, data, mesh, rng_init)
  assert counts['compile'] == 1, counts
  assert state.params['generator']['deconvs'][0]['kernel'].shape == (4, 4, 12, 6)


def test_feature_classifier_init_is_one_compiled_call():
  images = np.random.default_rng(5).integers(0, 256, (8, 8, 8, 1), dtype=np.uint8)
  labels = np.arange(8) % 2
  jax.random.key(3)  # the seed's key, shared by all runs
  with counting(ANY) as counts:
    generative.train_classifier(images, labels, 2, seed=3, num_steps=1, batch_size=4,
                                learning_rate=1e-3, widths=(3,), feature_dim=5)
  assert counts['compile'] == 2, counts  # init and the Adam step
