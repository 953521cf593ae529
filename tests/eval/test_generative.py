"""Fréchet distance, class coverage and the cached feature classifier."""

import logging
import math
import os

import jax
import numpy as np
import pytest
import scipy.linalg
from sklearn.datasets import load_digits

from jaxssl.eval import generative


def test_frechet_distance_of_hand_worked_gaussians():
  # 1-D: N(0, 1) vs N(3, 4): (0 - 3)^2 + 1 + 4 - 2 sqrt(1 * 4) = 10.
  assert generative.frechet_distance([0.0], [[1.0]], [3.0], [[4.0]]) == pytest.approx(10.0)
  # 2-D diagonal: |(0,0) - (1,2)|^2 = 5, plus (1 - 3)^2 + (2 - 1)^2 from the standard
  # deviations (1, 2) vs (3, 1): 10.
  fd = generative.frechet_distance([0, 0], np.diag([1.0, 4.0]), [1, 2], np.diag([9.0, 1.0]))
  assert fd == pytest.approx(10.0)
  cov = np.array([[2.0, 0.5], [0.5, 1.0]])
  assert generative.frechet_distance([1, 1], cov, [1, 1], cov) == pytest.approx(0.0, abs=1e-12)


def test_frechet_distance_matches_scipy_sqrtm_for_non_commuting_covariances():
  rng = np.random.default_rng(0)
  a, b = rng.normal(size=(6, 6)), rng.normal(size=(6, 4))
  cov1, cov2 = a @ a.T, b @ b.T  # cov2 is singular (rank 4)
  mean1, mean2 = rng.normal(size=6), rng.normal(size=6)
  root = scipy.linalg.sqrtm(cov1 @ cov2).real
  reference = np.sum((mean1 - mean2) ** 2) + np.trace(cov1 + cov2 - 2 * root)
  assert generative.frechet_distance(mean1, cov1, mean2, cov2) == pytest.approx(reference,
                                                                                rel=1e-6)


def test_fd_between_fits_mean_and_unbiased_covariance():
  x = np.array([[0.0], [2.0]])  # mean 1, variance 2 (ddof 1)
  y = np.array([[4.0], [4.0], [4.0]])  # mean 4, variance 0
  # (1 - 4)^2 + 2 + 0 - 0 = 11
  assert generative.fd_between(x, y) == pytest.approx(11.0)
  with pytest.raises(ValueError, match='N >= 2'):
    generative.fd_between(x[:1], y)
  with pytest.raises(ValueError, match='NaN'):
    generative.fd_between(np.array([[0.0], [np.nan]]), y)
  with pytest.raises(ValueError, match='must be'):
    generative.frechet_distance([0, 0], np.eye(2), [0], np.eye(1))


def test_class_coverage_counts_classes_above_the_fraction_and_the_entropy():
  predicted = np.array([0] * 50 + [1] * 49 + [2] * 1)
  out = generative.class_coverage(predicted, 10, min_fraction=0.01)
  assert out['classes_covered'] == 3.0  # class 2 holds exactly 1 % of 100
  expected = -(0.5 * math.log(0.5) + 0.49 * math.log(0.49) + 0.01 * math.log(0.01))
  assert out['class_entropy'] == pytest.approx(expected)
  assert generative.class_coverage(predicted, 10, min_fraction=0.02)['classes_covered'] == 2
  uniform = generative.class_coverage(np.arange(100) % 10, 10)
  assert uniform == {'classes_covered': 10.0, 'class_entropy': pytest.approx(math.log(10))}
  assert generative.class_coverage(np.zeros(5, int), 3)['class_entropy'] == 0.0
  with pytest.raises(ValueError, match=r'\[0, 3\)'):
    generative.class_coverage(np.array([0, 3]), 3)
  with pytest.raises(ValueError, match='non-empty'):
    generative.class_coverage(np.array([], int), 3)


@pytest.fixture(scope='module')
def digits():
  d = load_digits()
  return np.round(d.images * 255 / 16).astype(np.uint8)[..., None], d.target


SETTINGS = dict(data_sha256='abc', seed=3, num_steps=60, batch_size=64, learning_rate=3e-3,
                widths=(8, 16), feature_dim=16)


def test_classifier_is_cached_and_retrained_for_other_settings_or_damage(digits, tmp_path,
                                                                         caplog):
  images, labels = digits
  folder = str(tmp_path / 'clf')
  train = (images[:1000], labels[:1000], 10)
  graphdef, params = generative.load_or_train_classifier(folder, *train, **SETTINGS)
  logits, features = generative.classify(graphdef, params, images[1000:])
  accuracy = np.mean(np.argmax(logits, -1) == labels[1000:])
  assert accuracy > 0.5  # 60 steps: well above chance (0.1); the point is the cache
  assert features.shape == (797, 16) and features.min() >= 0.0  # ReLU features
  mtime = os.path.getmtime(os.path.join(folder, 'classifier.msgpack'))
  _, again = generative.load_or_train_classifier(folder, *train, **SETTINGS)
  assert os.path.getmtime(os.path.join(folder, 'classifier.msgpack')) == mtime
  jax.tree.map(np.testing.assert_array_equal, again, params)
  # Smaller classify batches (another padding) give the same outputs.
  small = generative.classify(graphdef, again, images[1000:], batch_size=7)
  np.testing.assert_allclose(small[0], logits, atol=1e-5)
  # Other data: retrained (different parameters).
  _, other = generative.load_or_train_classifier(folder, *train, **dict(SETTINGS, seed=4))
  assert not np.array_equal(_leaves(other)[0], _leaves(params)[0])
  # A truncated file: a warning naming the folder, then a retrained, readable cache.
  path = os.path.join(folder, 'classifier.msgpack')
  with open(path, 'r+b') as f:
    f.truncate(100)
  with caplog.at_level(logging.WARNING):
    _, repaired = generative.load_or_train_classifier(folder, *train, **dict(SETTINGS, seed=4))
  assert folder in caplog.text
  np.testing.assert_array_equal(_leaves(repaired)[0], _leaves(other)[0])  # same seed, same fit


def _leaves(tree):
  return [np.asarray(x) for x in jax.tree.leaves(tree)]
