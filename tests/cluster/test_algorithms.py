"""Lloyd and mini-batch k-means: hand-worked fits, scikit-learn's tolerance, centres and
labels from the same start."""

import jax.numpy as jnp
import numpy as np
import pytest

from jaxssl.cluster import algorithms, kmeans
from tests.cluster import helpers


@pytest.mark.parametrize('algorithm', algorithms.ALGORITHMS)
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
  result = algorithms.lloyd(xs, ws, jnp.asarray(init), algorithm=algorithm)
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


def test_tolerance_is_sklearns_mean_variance_times_tol(digits):
  x = digits.astype(np.float32)
  expected = 1e-4 * np.mean(np.var(digits, axis=0))
  value = algorithms.tolerance(jnp.asarray(x), jnp.ones(len(x)), 1e-4)
  np.testing.assert_allclose(float(value), expected, rtol=1e-5)


@pytest.mark.parametrize('algorithm', algorithms.ALGORITHMS)
def test_same_start_gives_sklearns_centres_and_labels(digits, algorithm):
  x = digits.astype(np.float32)
  xs, ws, _ = kmeans.place(x, None)
  for seed in range(3):
    init = kmeans.initial_centers(x, 10, 'k-means++', seed)
    theirs = helpers.fit_sklearn(digits, n_clusters=10, init=init.astype(np.float64), n_init=1)
    ours = algorithms.lloyd(xs, ws, jnp.asarray(init), algorithm=algorithm)
    np.testing.assert_allclose(np.asarray(ours.cluster_centers), theirs.cluster_centers_,
                               atol=1e-4)
    np.testing.assert_array_equal(np.asarray(ours.labels), theirs.labels_)
    assert int(ours.n_iter) == theirs.n_iter_
    np.testing.assert_allclose(float(ours.inertia), theirs.inertia_, rtol=1e-5)


def test_minibatch_step_is_sculleys_running_mean():
  # One centre at 0 that has had 2 points; a batch of 3 points at 6: the running mean of
  # 0, 0, 6, 6, 6 is 18 / 5 = 3.6 (learning rate 3 / 5 towards the batch mean 6).
  centers, counts, _ = algorithms.minibatch_step(jnp.zeros((1, 1)), jnp.array([2.0]),
                                                 jnp.full((3, 1), 6.0), jnp.ones(3))
  np.testing.assert_allclose(np.asarray(centers), [[3.6]], rtol=1e-6)
  np.testing.assert_allclose(np.asarray(counts), [5.0])
