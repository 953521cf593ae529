"""VAE experiment: its bounds and their relations, the baselines, grids and config errors."""

import math
import os

import numpy as np
import PIL.Image
import pytest

from experiments import vae
from jaxssl.data import images
from tests.experiments.helpers import evals, smoke

KEYS = {'eval/elbo', 'eval/reconstruction', 'eval/kl', 'eval/bits_per_dim', 'eval/iwae_bound',
        'eval/elbo_baseline', 'eval/bits_per_dim_baseline'}


def _check_bounds(summary, num_dims=8 * 8 * 1):
  e = evals(summary)
  assert set(e) == KEYS and all(np.isfinite(v) for v in e.values())
  np.testing.assert_allclose(e['eval/elbo'], e['eval/reconstruction'] - e['eval/kl'],
                             rtol=1e-6)
  assert e['eval/kl'] >= 0 and e['eval/reconstruction'] <= 0
  for bound in ('', '_baseline'):
    np.testing.assert_allclose(e[f'eval/bits_per_dim{bound}'],
                               -e[f'eval/elbo{bound}'] / (num_dims * math.log(2)), rtol=1e-6)
  # IWAE >= the mean log weight per image (Jensen); eval/elbo uses the analytic KL instead
  # of the sampled log-ratio, so they may differ by Monte-Carlo noise (tiny at these KLs).
  assert e['eval/iwae_bound'] >= e['eval/elbo'] - 0.05


def _log_sigmoid(v):
  return -np.logaddexp(0.0, -v)


def _bernoulli_baseline(train, test):
  """Mean log-probability of the binarised test images under add-one pixel frequencies."""
  ones = (train >= 128).sum(axis=0)  # [H, W, C]
  p = (ones + 1.0) / (len(train) + 2.0)
  x = test >= 128
  return np.mean(np.where(x, np.log(p), np.log(1 - p)).sum(axis=(1, 2, 3)))


def _logistic_baseline(train, test):
  """Mean log-probability of the uint8 test images under per-pixel discretised logistics
  with the training mean and scale std sqrt(3) / pi (floored at e^-8), in float64."""
  x = train.astype(np.float64) / 255
  m = x.mean(axis=0)
  s = np.maximum(x.std(axis=0) * math.sqrt(3) / math.pi, math.exp(-8))
  k = test.astype(np.float64)  # grey levels 0..255, [N, H, W, C]
  a, b = ((k - 0.5) / 255 - m) / s, ((k + 0.5) / 255 - m) / s  # bin edges, standardised
  # Bin mass F(b) - F(a) = S(a) - S(b): subtract on the side of the smaller tail values.
  with np.errstate(divide='ignore'):  # the branch np.where discards may be log 0
    below = _log_sigmoid(b) + np.log1p(-np.exp(_log_sigmoid(a) - _log_sigmoid(b)))
    above = _log_sigmoid(-a) + np.log1p(-np.exp(_log_sigmoid(-b) - _log_sigmoid(-a)))
  log_p = np.where(k / 255 <= m, below, above)
  log_p = np.where(k == 0, _log_sigmoid(b), np.where(k == 255, _log_sigmoid(-a), log_p))
  return np.mean(log_p.sum(axis=(1, 2, 3)))


def _png_size(workdir, name, step=6):
  return PIL.Image.open(os.path.join(workdir, 'images', f'{name}_{step}.png')).size


def test_bounds_baseline_and_image_files(smoke_run, cache_dir):
  workdir, s = smoke_run(vae)
  _check_bounds(s)
  assert s['num_train_steps'] == 6 and s['data/num_test'] == 360
  data = images.load_images(smoke(vae, cache_dir).data)
  np.testing.assert_allclose(s['eval/elbo_baseline'],
                             _bernoulli_baseline(np.asarray(data.train['image']), data.test['image']),
                             rtol=1e-5)
  # 8x8 tiles with 1-pixel gaps, 4x enlarged: (4 (columns 9 + 1), 4 (rows 9 + 1)).
  assert _png_size(workdir, 'reconstructions') == (4 * (8 * 9 + 1), 4 * (2 * 9 + 1))
  assert _png_size(workdir, 'samples') == (4 * (4 * 9 + 1), 4 * (4 * 9 + 1))  # 16 as 4x4
  # 2 pairs: first image, 4 interpolation steps, second image.
  assert _png_size(workdir, 'interpolations') == (4 * (6 * 9 + 1), 4 * (2 * 9 + 1))


def test_logistic_likelihood_runs_and_its_baseline_matches_numpy(cache_dir, tmp_path):
  s = vae.train_and_evaluate(smoke(vae, cache_dir, **{'method.likelihood': 'logistic'}),
                             str(tmp_path))
  _check_bounds(s)
  data = images.load_images(smoke(vae, cache_dir).data)
  np.testing.assert_allclose(s['eval/elbo_baseline'],
                             _logistic_baseline(np.asarray(data.train['image']), data.test['image']),
                             rtol=1e-5)
  # 256 levels cost far more nats than 2: both bounds sit well below the Bernoulli ones.
  assert s['eval/elbo'] < -100


def test_accumulation_and_eval_batch_do_not_change_the_run(smoke_run, cache_dir, tmp_path):
  # The latent noise is drawn for the global batch before the micro-batch split, and eval
  # samples are keyed by image index: only summation order differs.
  _, reference = smoke_run(vae)
  s = vae.train_and_evaluate(smoke(vae, cache_dir, **{'optim.grad_accum_steps': 2,
                                                      'eval.global_batch_size': 48}),
                             str(tmp_path))
  for name, value in evals(reference).items():
    np.testing.assert_allclose(s[name], value, rtol=1e-4, err_msg=name)


@pytest.mark.parametrize('field, value, match', [
    ('num_epochs', 0, 'num_epochs'),
    ('model.latent_dim', 0, 'model.latent_dim'),
    ('model.widths', (), 'model.widths'),
    ('model.activation', 'tanh', 'model.activation'),
    ('method.likelihood', 'gaussian', 'method.likelihood'),
    ('method.num_iwae_samples', 0, 'method.num_iwae_samples'),
    ('eval.num_samples', 0, 'eval.num_samples'),
    ('eval.interpolation_steps', 1, 'eval.interpolation_steps'),
    ('data.test_fraction', 1.0, 'data.test_fraction'),
    ('global_batch_size', 0, 'global_batch_size'),
    ('optim.learning_rate', -1.0, 'optim.learning_rate'),
    ('mesh.data', 3, 'mesh'),
])
def test_bad_config_values_raise_before_anything_runs(field, value, match, tmp_path):
  config = smoke(vae, str(tmp_path / 'cache'), **{field: value})
  with pytest.raises(ValueError, match=match):
    vae.train_and_evaluate(config, str(tmp_path / 'w'))
  assert not os.path.exists(tmp_path / 'cache')
