"""Autoencoder experiment: its metrics, denoising, anomaly scores, grids and config errors."""

import os

import numpy as np
import PIL.Image
import pytest

from experiments import autoencoder
from tests.experiments.helpers import build_step, evals, smoke


def test_metrics_and_image_files(smoke_run):
  workdir, s = smoke_run(autoencoder)
  e = evals(s)
  assert set(e) == {'eval/mse', 'eval/psnr', 'eval/psnr_mean_image', 'eval/compression_ratio'}
  assert e['eval/compression_ratio'] == 8 * 8 * 1 / 4  # 64 pixels into 4 latent numbers
  # The mean-image baseline depends on the data only: recompute it from the test split.
  assert s['data/num_test'] == 360 and s['data/num_train'] == 1437
  assert s['num_train_steps'] == 6
  png = PIL.Image.open(os.path.join(workdir, 'images', 'reconstructions_6.png'))
  # Two rows (originals, reconstructions) of 8 tiles of 8x8 with 1-pixel gaps, 4x enlarged.
  assert png.size == (4 * (8 * 9 + 1), 4 * (2 * 9 + 1))


def test_mean_image_baseline_matches_numpy(cache_dir):
  config = smoke(autoencoder, cache_dir)
  data = autoencoder.prepare_data(config, None)
  test = data['test']['image'].astype(np.float64) / 255
  mse = ((test - data['mean_image'][None]) ** 2).mean(axis=(1, 2, 3))
  expected = np.mean(10 * np.log10(1 / np.maximum(mse, 1e-10)))
  import tempfile  # pylint: disable=import-outside-toplevel
  with tempfile.TemporaryDirectory() as workdir:
    s = autoencoder.train_and_evaluate(config, workdir)
  np.testing.assert_allclose(s['eval/psnr_mean_image'], expected, rtol=1e-4)


def test_denoising_reports_the_noisy_input_psnr(cache_dir, tmp_path):
  s = autoencoder.train_and_evaluate(
      smoke(autoencoder, cache_dir, **{'method.noise_std': 0.3}), str(tmp_path))
  # Noise of std 0.3 alone gives 10 log10(1 / 0.09) = 10.46 dB; clipping to [0, 1] only
  # moves a pixel towards its clean value (most digit pixels are 0), so the input is better.
  assert 10 * np.log10(1 / 0.09) - 0.1 < s['eval/psnr_noisy'] < 20
  grid = PIL.Image.open(os.path.join(str(tmp_path), 'images', 'reconstructions_6.png'))
  assert grid.size[1] == 4 * (3 * 9 + 1)  # originals, noisy inputs, reconstructions


def test_anomaly_class_is_left_out_and_scored(cache_dir, tmp_path):
  s = autoencoder.train_and_evaluate(
      smoke(autoencoder, cache_dir, **{'method.anomaly_class': 3}), str(tmp_path))
  assert s['data/num_train_used'] < s['data/num_train']
  assert 0.0 <= s['eval/anomaly_auroc'] <= 1.0
  data = autoencoder.prepare_data(smoke(autoencoder, cache_dir, **{'method.anomaly_class': 3}),
                                  None)
  assert (data['train']['label'] != 3).all()
  assert s['data/num_train'] - s['data/num_train_used'] == (
      autoencoder.prepare_data(smoke(autoencoder, cache_dir), None)['train']['label'] == 3).sum()


@pytest.mark.parametrize('field, value, match', [
    ('global_batch_size', 0, 'global_batch_size'),
    ('num_epochs', 0, 'num_epochs'),
    ('model.latent_dim', 0, 'model.latent_dim'),
    ('model.widths', (), 'model.widths'),
    ('model.activation', 'tanh', 'model.activation'),
    ('method.noise_std', -0.1, 'method.noise_std'),
    ('method.mask_prob', 1.0, 'method.mask_prob'),
    ('method.anomaly_class', -2, 'method.anomaly_class=-2'),
    ('data.test_fraction', 0.0, 'data.test_fraction'),
    ('optim.learning_rate', -1.0, 'optim.learning_rate'),
    ('mesh.data', 3, 'mesh'),
    ('seed', -1, 'seed'),
])
def test_bad_config_values_raise_before_anything_runs(field, value, match, tmp_path):
  config = smoke(autoencoder, str(tmp_path / 'cache'), **{field: value})
  with pytest.raises(ValueError, match=match):
    autoencoder.train_and_evaluate(config, str(tmp_path / 'w'))
  assert not os.path.exists(tmp_path / 'cache')


def test_unknown_anomaly_class_and_too_little_data_are_named(cache_dir, tmp_path):
  with pytest.raises(ValueError, match='method.anomaly_class=10'):
    autoencoder.train_and_evaluate(
        smoke(autoencoder, cache_dir, **{'method.anomaly_class': 10}), str(tmp_path / 'a'))
  with pytest.raises(ValueError, match='training images give 0 steps'):
    autoencoder.train_and_evaluate(
        smoke(autoencoder, cache_dir, **{'global_batch_size': 2048,
                                         'eval.global_batch_size': 2048}), str(tmp_path / 'b'))


@pytest.mark.parametrize('loss', ['cross_entropy', 'squared_error'])
def test_training_loss_is_the_configured_one_and_cross_entropy_keeps_learning(
    loss, cache_dir, tmp_path):
  # The loss of one step, recomputed in NumPy from the model's logits on the same batch;
  # then the reason for cross-entropy: on logits pushed far negative (an all-black output,
  # where MNIST's autoencoder got stuck with squared error), squared error's gradient with
  # respect to the logits vanishes (sigmoid' ~ 1e-9) and cross-entropy's stays sigmoid - x.
  import jax  # pylint: disable=import-outside-toplevel
  from jaxssl.train import state as state_lib  # pylint: disable=import-outside-toplevel
  config = smoke(autoencoder, cache_dir, **{'method.loss': loss})
  step, state, data = build_step(autoencoder, config, str(tmp_path))
  batch = {k: v[:16] for k, v in data['test'].items()}
  logits, _ = state_lib.merge_model(state.graphdef, state.params)(
      batch['image'].astype(np.float32) / 255)
  z, x = np.asarray(logits, np.float64), batch['image'] / 255.0
  p = 1 / (1 + np.exp(-z))
  expected = {'cross_entropy': -(x * np.log(p) + (1 - x) * np.log(1 - p)),
              'squared_error': (p - x) ** 2}[loss].sum(axis=(1, 2, 3)).mean()
  _, metrics = step(state, batch, jax.random.key(0))
  np.testing.assert_allclose(metrics['loss'], expected, rtol=1e-5)
  np.testing.assert_allclose(metrics['mse'], ((p - x) ** 2).mean(), rtol=1e-5)

  black = np.full((1, 2, 2, 1), -20.0)
  target = np.array([0.0, 1.0, 0.5, 0.0]).reshape(1, 2, 2, 1)
  def per_image(v):
    logits_ = jax.numpy.asarray(v)
    if loss == 'cross_entropy':
      return -autoencoder.vae_losses.bernoulli_log_likelihood(logits_, target)[0]
    return autoencoder.reconstruction.squared_error(jax.nn.sigmoid(logits_), target)[0]
  grad = np.abs(np.asarray(jax.grad(per_image)(black))).max()
  assert (grad > 0.9) if loss == 'cross_entropy' else (grad < 1e-7)
