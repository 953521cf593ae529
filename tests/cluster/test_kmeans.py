"""KMeans and MiniBatchKMeans: scikit-learn agreement, collapsed clusters and the input
errors.

scikit-learn runs single-threaded here (``threadpool_limits(1)``): its OpenMP threads spin
badly when the 2 cores are shared with XLA's, and the results do not depend on it.
"""

import math

import jax.numpy as jnp
import numpy as np
import pytest
import threadpoolctl
from sklearn import cluster as sk_cluster
from sklearn.exceptions import ConvergenceWarning

from jaxssl.cluster import algorithms, distances, kmeans
from tests.cluster import helpers


def _sklearn(**kwargs):
  with threadpoolctl.threadpool_limits(1):
    return sk_cluster.KMeans(**kwargs)


@pytest.mark.parametrize('init', algorithms.INITS)
def test_as_many_clusters_as_distinct_points_gives_zero_inertia(init):
  # 3 distinct points, 4 copies each: K = 3 puts one centre on each. 'random' may start two
  # centres on copies of one point; the empty-cluster relocation moves one away.
  base = np.array([[0.0, 1.0], [5.0, -2.0], [3.0, 3.0]])
  x = np.repeat(base, 4, axis=0)
  for seed in range(5):
    model = kmeans.KMeans(3, init=init, n_init=2, seed=seed, algorithm='lloyd').fit(x)
    assert model.inertia_ == 0.0, (init, seed)
    assert sorted(map(tuple, model.cluster_centers_.tolist())) == sorted(map(tuple, base))
    np.testing.assert_array_equal(model.labels_, model.predict(x))


def test_more_clusters_than_distinct_points_warns_as_sklearn_and_never_gives_nan():
  x = np.array([[1.0, 1.0]] * 6 + [[2.0, 2.0]] * 2)
  for init in algorithms.INITS:
    with pytest.warns(ConvergenceWarning, match='only 2 distinct clusters found for n_clusters=4'):
      model = kmeans.KMeans(4, init=init, algorithm='lloyd').fit(x)
    assert np.isfinite(model.cluster_centers_).all() and model.inertia_ == 0.0
  with threadpoolctl.threadpool_limits(1), pytest.warns(ConvergenceWarning,
                                                        match=r'distinct clusters \(2\)'):
    sk_cluster.KMeans(4, n_init=1, random_state=0).fit(x)  # the reference warns alike


def test_inertia_is_within_half_a_percent_of_sklearns_median(digits):
  seeds = range(5)
  theirs = [helpers.fit_sklearn(digits, n_clusters=10, n_init=4, random_state=s).inertia_
            for s in seeds]
  ours = [kmeans.KMeans(10, n_init=4, seed=s).fit(digits).inertia_ for s in seeds]
  ratio = np.median(ours) / np.median(theirs)
  assert abs(ratio - 1.0) < 0.005, (ours, theirs)


def test_minibatch_reaches_full_kmeans_inertia_on_digits(digits):
  full = kmeans.KMeans(10, n_init=4, seed=0).fit(digits).inertia_
  mini = kmeans.MiniBatchKMeans(10, batch_size=256, max_iter=10, seed=0).fit(digits)
  assert mini.inertia_ <= 1.05 * full, (mini.inertia_, full)
  # The streamed form: the same batches through `minibatch_kmeans` give the same centres.
  state = kmeans.minibatch_kmeans(mini._batches(digits.astype(np.float32)), 10, seed=0)
  np.testing.assert_allclose(state.cluster_centers, mini.cluster_centers_, atol=1e-6)
  assert state.n_steps == 10 * math.ceil(len(digits) / 256)


@pytest.mark.parametrize('x, k, match', [
    (np.ones((5, 2)), 0, r'n_clusters=0 must be an integer in \[1, n_samples=5\]'),
    (np.ones((5, 2)), 6, r'n_clusters=6 must be an integer in \[1, n_samples=5\]'),
    (np.zeros((0, 3)), 1, r'x is empty: shape \(0, 3\)'),
    (np.array([[1.0, np.nan]] * 3), 2, 'x contains NaN or infinity'),
    (np.array([[1.0, 2.0], [np.inf, 0.0]]), 1, 'x contains NaN or infinity .* row 1'),
    (np.array([[1e39, 0.0]]), 1, r'x contains NaN or infinity \(in float32\)'),
    (np.ones(5), 1, 'x must be 2-D'),
])
def test_bad_data_raise_a_named_error(x, k, match):
  with pytest.raises(ValueError, match=match):
    kmeans.KMeans(k).fit(x)


def test_bad_hyperparameters_and_predict_input_raise_named_errors():
  x = np.random.default_rng(0).normal(size=(20, 3))
  for kwargs, match in [(dict(n_init=0), 'n_init=0'), (dict(max_iter=0), 'max_iter=0'),
                        (dict(tol=-1.0), 'tol=-1.0'), (dict(init='kmeans'), "init='kmeans'"),
                        (dict(init=np.ones((2, 3))), r'init has shape \(2, 3\)')]:
    with pytest.raises(ValueError, match=match):
      kmeans.KMeans(3, **kwargs).fit(x)
  with pytest.raises(ValueError, match='not fitted'):
    kmeans.KMeans(3).predict(x)
  model = kmeans.KMeans(3, algorithm='lloyd').fit(x)
  with pytest.raises(ValueError, match='x has 4 features but the model was fitted on 3'):
    model.predict(np.ones((2, 4)))
  with pytest.raises(ValueError, match='x contains NaN'):
    model.transform(np.full((2, 3), np.nan))
  with pytest.raises(ValueError, match='batches is empty'):
    kmeans.minibatch_kmeans([], 3)
  with pytest.raises(ValueError, match='batch has 4 features but the centres have 3'):
    kmeans.minibatch_kmeans([x, np.ones((5, 4))], 3)
  with pytest.raises(ValueError, match=r'x \(5, 2\) and centers \(3, 4\)'):
    distances.assign(jnp.ones((5, 2)), jnp.ones((3, 4)))
