"""k-means: hand-worked fits, scikit-learn agreement, k-means++ and the input errors.

scikit-learn runs single-threaded here (``threadpool_limits(1)``): its OpenMP threads spin
badly when the 2 cores are shared with XLA's, and the results do not depend on it.
"""

import math

import jax.numpy as jnp
import numpy as np
import pytest
import threadpoolctl
from sklearn import cluster as sk_cluster
from sklearn import datasets
from sklearn import preprocessing
from sklearn.exceptions import ConvergenceWarning

from jaxssl.cluster import kmeans


@pytest.fixture(scope='module')
def digits():
  """scikit-learn's setting: the 1,797 digits standardised, float64 [1797, 64]."""
  return preprocessing.StandardScaler().fit_transform(datasets.load_digits().data)


def _sklearn(**kwargs):
  with threadpoolctl.threadpool_limits(1):
    return sk_cluster.KMeans(**kwargs)


def _fit_sklearn(x, **kwargs):
  with threadpoolctl.threadpool_limits(1):
    return sk_cluster.KMeans(**kwargs).fit(x)


# ----------------------------------------------------------------------------- hand-worked

@pytest.mark.parametrize('algorithm', kmeans.ALGORITHMS)
def test_three_points_from_a_bad_start_end_on_themselves(algorithm):
  # x = 1, 2, 3 from centres 4, 0, 1 (tol = 1e-4 of the variance 2/3).
  # Iteration 1: 1 -> centre 1 (index 2, distance 0); 2 -> index 2 (1 < 4 = 4); 3 -> index 0.
  #   Cluster 1 is empty. Distances to the old centres: 0, 1, 1; the farthest point, ties to
  #   the lower index, is x = 2: it moves from cluster 2 to cluster 1 for this update.
  #   Centres: [3], [2], [1]; shift 1 + 4 + 0 = 5 > tol.
  # Iteration 2: labels 2, 1, 0; centres unchanged, shift 0 <= tol: stop, n_iter = 2.
  # Final labels [2, 1, 0], inertia 0. (scikit-learn's argpartition breaks the tie the other
  # way, moving x = 3, and ends three iterations later at [1], [3], [2]: also inertia 0.)
  x = np.array([[1.0], [2.0], [3.0]], np.float32)
  init = np.array([[4.0], [0.0], [1.0]], np.float32)
  xs, ws, _ = kmeans.place(x, None)
  result = kmeans.lloyd(xs, ws, jnp.asarray(init), algorithm=algorithm)
  np.testing.assert_array_equal(np.asarray(result.cluster_centers), [[3.0], [2.0], [1.0]])
  np.testing.assert_array_equal(np.asarray(result.labels), [2, 1, 0])
  assert float(result.inertia) == 0.0 and int(result.n_iter) == 2

  model = kmeans.KMeans(3, init=init).fit(x)
  np.testing.assert_array_equal(model.cluster_centers_, [[3.0], [2.0], [1.0]])
  np.testing.assert_array_equal(model.labels_, model.predict(x))
  assert model.inertia_ == 0.0 and model.n_iter_ == 2
  np.testing.assert_allclose(model.transform(x), [[2, 1, 0], [1, 0, 1], [0, 1, 2]], atol=1e-3)


def test_one_cluster_is_the_mean_after_two_iterations():
  # K = 1: iteration 1 moves the centre to the mean; iteration 2 changes no label (strict
  # convergence), as scikit-learn, whose labels start at -1.
  x = np.array([[0.0, 0.0], [2.0, 0.0], [4.0, 6.0]])
  model = kmeans.KMeans(1, init=np.array([[10.0, 10.0]])).fit(x)
  np.testing.assert_allclose(model.cluster_centers_, [[2.0, 2.0]])
  assert model.n_iter_ == 2
  np.testing.assert_allclose(model.inertia_, (4 + 4) + (0 + 4) + (4 + 16), rtol=1e-6)


def test_kmeans_plusplus_separates_two_groups_of_copies_for_every_seed():
  # After the first centre every point of its group is at distance 0, so the D^2 weights of
  # all candidates lie on the other group: both groups get a centre, whatever the seed.
  x = np.array([[0.0, 0.0]] * 5 + [[10.0, 10.0]] * 5, np.float32)
  for seed in range(100):
    centers = kmeans.initial_centers(x, 2, 'k-means++', seed)
    assert sorted(map(tuple, centers.tolist())) == [(0.0, 0.0), (10.0, 10.0)], seed
  assert kmeans.KMeans(2, seed=7, algorithm='lloyd').fit(x).inertia_ == 0.0


@pytest.mark.parametrize('init', kmeans.INITS)
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
  for init in kmeans.INITS:
    with pytest.warns(ConvergenceWarning, match='only 2 distinct clusters found for n_clusters=4'):
      model = kmeans.KMeans(4, init=init, algorithm='lloyd').fit(x)
    assert np.isfinite(model.cluster_centers_).all() and model.inertia_ == 0.0
  with threadpoolctl.threadpool_limits(1), pytest.warns(ConvergenceWarning,
                                                        match=r'distinct clusters \(2\)'):
    sk_cluster.KMeans(4, n_init=1, random_state=0).fit(x)  # the reference warns alike


def test_tolerance_is_sklearns_mean_variance_times_tol(digits):
  x = digits.astype(np.float32)
  expected = 1e-4 * np.mean(np.var(digits, axis=0))
  value = kmeans.tolerance(jnp.asarray(x), jnp.ones(len(x)), 1e-4)
  np.testing.assert_allclose(float(value), expected, rtol=1e-5)


def test_squared_distances_match_numpy():
  rng = np.random.default_rng(0)
  x, c = rng.normal(size=(50, 7)) + 100.0, rng.normal(size=(4, 7)) + 100.0
  expected = ((x[:, None] - c[None]) ** 2).sum(-1)
  got = np.asarray(kmeans.squared_distances(jnp.asarray(x, jnp.float32),
                                            jnp.asarray(c, jnp.float32)))
  np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-3)
  labels, dist = kmeans.assign(jnp.asarray(x, jnp.float32), jnp.asarray(c, jnp.float32))
  np.testing.assert_array_equal(np.asarray(labels), expected.argmin(1))
  np.testing.assert_allclose(np.asarray(dist), expected.min(1), rtol=1e-5)


def test_many_centres_are_compared_in_blocks():
  # K = 300 > CENTER_BLOCK: the scan over blocks of centres must give numpy's argmin.
  rng = np.random.default_rng(1)
  x, c = rng.normal(size=(500, 5)), rng.normal(size=(300, 5))
  expected = ((x[:, None] - c[None]) ** 2).sum(-1)
  labels, _ = kmeans.assign(jnp.asarray(x, jnp.float32), jnp.asarray(c, jnp.float32))
  np.testing.assert_array_equal(np.asarray(labels), expected.argmin(1))


# ----------------------------------------------------------------------------- scikit-learn

def test_inertia_is_within_half_a_percent_of_sklearns_median(digits):
  seeds = range(5)
  theirs = [_fit_sklearn(digits, n_clusters=10, n_init=4, random_state=s).inertia_
            for s in seeds]
  ours = [kmeans.KMeans(10, n_init=4, seed=s).fit(digits).inertia_ for s in seeds]
  ratio = np.median(ours) / np.median(theirs)
  assert abs(ratio - 1.0) < 0.005, (ours, theirs)


@pytest.mark.parametrize('algorithm', kmeans.ALGORITHMS)
def test_same_start_gives_sklearns_centres_and_labels(digits, algorithm):
  x = digits.astype(np.float32)
  xs, ws, _ = kmeans.place(x, None)
  for seed in range(3):
    init = kmeans.initial_centers(x, 10, 'k-means++', seed)
    theirs = _fit_sklearn(digits, n_clusters=10, init=init.astype(np.float64), n_init=1)
    ours = kmeans.lloyd(xs, ws, jnp.asarray(init), algorithm=algorithm)
    np.testing.assert_allclose(np.asarray(ours.cluster_centers), theirs.cluster_centers_,
                               atol=1e-4)
    np.testing.assert_array_equal(np.asarray(ours.labels), theirs.labels_)
    assert int(ours.n_iter) == theirs.n_iter_
    np.testing.assert_allclose(float(ours.inertia), theirs.inertia_, rtol=1e-5)


def test_hamerly_gives_plain_lloyds_labels_and_centres():
  # Overlapping blobs, K = 40 from a random start, tol = 0: many iterations in which few
  # labels change, so `_reassign_some` and `_reassign_all` both run; and an empty cluster.
  x, _ = datasets.make_blobs(4000, n_features=8, centers=12, cluster_std=3.0, random_state=0)
  x = x.astype(np.float32)
  init = x[np.random.default_rng(0).choice(len(x), 40, replace=False)]
  init[-1] = 1e3  # far from every point: empty at the first assignment
  xs, ws, _ = kmeans.place(x, None)
  a = kmeans.lloyd(xs, ws, jnp.asarray(init), 300, 0.0, algorithm='lloyd')
  b = kmeans.lloyd(xs, ws, jnp.asarray(init), 300, 0.0, algorithm='hamerly')
  assert int(a.n_iter) == int(b.n_iter) > 10
  np.testing.assert_array_equal(np.asarray(a.labels), np.asarray(b.labels))
  np.testing.assert_allclose(np.asarray(a.cluster_centers), np.asarray(b.cluster_centers),
                             atol=1e-4)
  assert np.isfinite(np.asarray(b.cluster_centers)).all()
  theirs = _fit_sklearn(x.astype(np.float64), n_clusters=40, init=init.astype(np.float64),
                        n_init=1, max_iter=300, tol=0.0)
  np.testing.assert_allclose(float(b.inertia), theirs.inertia_, rtol=1e-4)


def test_random_init_draws_distinct_rows():
  x = np.arange(20.0).reshape(10, 2)
  for seed in range(10):
    centers = kmeans.initial_centers(x, 10, 'random', seed)
    assert sorted(centers[:, 0].tolist()) == x[:, 0].tolist()


def test_minibatch_reaches_full_kmeans_inertia_on_digits(digits):
  full = kmeans.KMeans(10, n_init=4, seed=0).fit(digits).inertia_
  mini = kmeans.MiniBatchKMeans(10, batch_size=256, max_iter=10, seed=0).fit(digits)
  assert mini.inertia_ <= 1.05 * full, (mini.inertia_, full)
  # The streamed form: the same batches through `minibatch_kmeans` give the same centres.
  state = kmeans.minibatch_kmeans(mini._batches(digits.astype(np.float32)), 10, seed=0)
  np.testing.assert_allclose(state.cluster_centers, mini.cluster_centers_, atol=1e-6)
  assert state.n_steps == 10 * math.ceil(len(digits) / 256)


def test_minibatch_step_is_sculleys_running_mean():
  # One centre at 0 that has had 2 points; a batch of 3 points at 6: the running mean of
  # 0, 0, 6, 6, 6 is 18 / 5 = 3.6 (learning rate 3 / 5 towards the batch mean 6).
  centers, counts, _ = kmeans.minibatch_step(jnp.zeros((1, 1)), jnp.array([2.0]),
                                             jnp.full((3, 1), 6.0), jnp.ones(3))
  np.testing.assert_allclose(np.asarray(centers), [[3.6]], rtol=1e-6)
  np.testing.assert_allclose(np.asarray(counts), [5.0])


# ----------------------------------------------------------------------------- bad input

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
    kmeans.assign(jnp.ones((5, 2)), jnp.ones((3, 4)))
