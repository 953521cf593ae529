"""Tests of jaxssl.eval.linear_probe against scikit-learn's LogisticRegression pipeline."""

import numpy as np
import pytest
from sklearn import linear_model
from sklearn import pipeline
from sklearn import preprocessing

from jaxssl.eval import linear_probe
from tests.eval import helpers


def test_linear_probe_matches_sklearn_pipeline():
  x, y = helpers.blobs(400, 6, 4, spread=3.0, seed=3)  # overlapping: accuracy well below 1
  x = x * np.array([1, 10, 0.1, 100, 1, 1], np.float32)  # scales the standardising undoes
  tx, ty, vx, vy = x[:300], y[:300], x[300:], y[300:]
  for c in (0.05, 1.0):
    got = linear_probe.linear_probe(tx, ty, vx, vy, C=c)
    reference = pipeline.make_pipeline(preprocessing.StandardScaler(),
                                       linear_model.LogisticRegression(C=c, max_iter=1000))
    want = reference.fit(tx, ty).score(vx, vy)
    assert got == {'linear_probe_accuracy': want, 'linear_probe_C': c}
    assert 0.4 < want < 0.99
  grid = (0.01, 0.1, 1.0)
  got = linear_probe.linear_probe(tx, ty, vx, vy, C=grid)
  assert got['linear_probe_C'] in grid
  assert got['linear_probe_accuracy'] == linear_probe.linear_probe(
      tx, ty, vx, vy, C=got['linear_probe_C'])['linear_probe_accuracy']


def test_linear_probe_separable_data_is_perfect():
  x, y = helpers.blobs(200, 5, 3, spread=0.05, seed=4)
  got = linear_probe.linear_probe(x[:150], y[:150], x[150:], y[150:], C=1.0)
  assert got['linear_probe_accuracy'] == 1.0


@pytest.mark.parametrize('change, match', [
    (dict(train_labels=np.zeros(9, np.int32)), 'has 9 labels'),
    (dict(test_labels=np.zeros(3, np.int32)), 'test_labels has 3'),
    (dict(train_features=np.where(np.eye(10, 4) > 0, np.nan, 1.0)), 'train_features holds NaN'),
    (dict(test_features=np.full((5, 4), np.inf)), 'test_features holds NaN or inf'),
    (dict(train_labels=np.ones(10, np.int32)), 'one class'),
    (dict(test_features=np.ones((5, 3))), 'different widths'),
    (dict(C=0.0), 'C=0.0'),
    (dict(C=()), 'C=()'),
    (dict(train_labels=np.linspace(0, 1, 10)), 'integer'),
])
def test_linear_probe_bad_inputs(change, match):
  rng = np.random.default_rng(5)
  args = dict(train_features=rng.normal(size=(10, 4)), train_labels=np.arange(10) % 2,
              test_features=rng.normal(size=(5, 4)), test_labels=np.arange(5) % 2)
  args.update(change)
  with pytest.raises(ValueError, match=match):
    linear_probe.linear_probe(**args)
