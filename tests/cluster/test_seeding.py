"""k-means++ and random seeding (through ``kmeans.initial_centers``)."""

import numpy as np

from jaxssl.cluster import kmeans


def test_kmeans_plusplus_separates_two_groups_of_copies_for_every_seed():
  # After the first centre every point of its group is at distance 0, so the D^2 weights of
  # all candidates lie on the other group: both groups get a centre, whatever the seed.
  x = np.array([[0.0, 0.0]] * 5 + [[10.0, 10.0]] * 5, np.float32)
  for seed in range(100):
    centers = kmeans.initial_centers(x, 2, 'k-means++', seed)
    assert sorted(map(tuple, centers.tolist())) == [(0.0, 0.0), (10.0, 10.0)], seed
  assert kmeans.KMeans(2, seed=7, algorithm='lloyd').fit(x).inertia_ == 0.0


def test_random_init_draws_distinct_rows():
  x = np.arange(20.0).reshape(10, 2)
  for seed in range(10):
    centers = kmeans.initial_centers(x, 10, 'random', seed)
    assert sorted(centers[:, 0].tolist()) == x[:, 0].tolist()
