"""k-means on 8 simulated CPU devices against 1: the same clusters.

Run in its own process:
  XLA_FLAGS=--xla_force_host_platform_device_count=8 pytest -m multidevice tests/cluster
"""

import jax.numpy as jnp
import numpy as np
import pytest
from sklearn import datasets
from sklearn import preprocessing

from jaxssl.cluster import algorithms, kmeans
from tests import multidevice

pytestmark = multidevice.MARKS


@pytest.fixture(scope='module')
def digits():
  # 1,797 rows: not a multiple of 8, so the 8-device run pads with weight-0 rows.
  return preprocessing.StandardScaler().fit_transform(datasets.load_digits().data)


@pytest.mark.parametrize('algorithm', algorithms.ALGORITHMS)
@pytest.mark.parametrize('fsdp', [1, 2])
def test_eight_devices_give_the_one_device_fit(digits, algorithm, fsdp):
  one = kmeans.KMeans(10, n_init=2, seed=3, algorithm=algorithm, mesh=multidevice.mesh(1)).fit(digits)
  eight = kmeans.KMeans(10, n_init=2, seed=3, algorithm=algorithm,
                        mesh=multidevice.mesh(8, fsdp)).fit(digits)
  np.testing.assert_array_equal(eight.labels_, one.labels_)
  np.testing.assert_allclose(eight.cluster_centers_, one.cluster_centers_, atol=1e-5)
  np.testing.assert_allclose(eight.inertia_, one.inertia_, rtol=1e-5)
  assert eight.n_iter_ == one.n_iter_
  np.testing.assert_array_equal(eight.predict(digits), one.labels_)


def test_sums_and_counts_are_all_reduced_over_the_devices(digits):
  xs, ws, _ = kmeans.place(digits.astype(np.float32), multidevice.mesh(8))
  assert len(xs.sharding.device_set) == 8
  hlo = algorithms.lloyd.lower(xs, ws, jnp.zeros((10, 64)), algorithm='lloyd').compile().as_text()
  assert 'all-reduce' in hlo


def test_three_points_on_eight_devices_match_the_hand_worked_fit():
  # Five of the eight rows are padding: the first iteration must still recompute every
  # real point (see tests/cluster/test_algorithms.py for the hand-worked values).
  x = np.array([[1.0], [2.0], [3.0]])
  for algorithm in algorithms.ALGORITHMS:
    model = kmeans.KMeans(3, init=np.array([[4.0], [0.0], [1.0]]), mesh=multidevice.mesh(8),
                          algorithm=algorithm).fit(x)
    np.testing.assert_array_equal(model.cluster_centers_, [[3.0], [2.0], [1.0]])
    np.testing.assert_array_equal(model.labels_, [2, 1, 0])
    assert model.inertia_ == 0.0 and model.n_iter_ == 2


def test_minibatch_on_eight_devices_matches_one(digits):
  one = kmeans.MiniBatchKMeans(10, batch_size=250, max_iter=2, seed=1, mesh=multidevice.mesh(1))
  eight = kmeans.MiniBatchKMeans(10, batch_size=250, max_iter=2, seed=1, mesh=multidevice.mesh(8))
  one.fit(digits)
  eight.fit(digits)
  np.testing.assert_allclose(eight.cluster_centers_, one.cluster_centers_, atol=1e-5)
  np.testing.assert_array_equal(eight.labels_, one.labels_)
