"""Hamerly's bounds: the labels and centres of plain Lloyd, and scikit-learn's inertia."""

import jax.numpy as jnp
import numpy as np
from sklearn import datasets

from jaxssl.cluster import algorithms, kmeans
from tests.cluster import helpers


def test_hamerly_gives_plain_lloyds_labels_and_centres():
  # Overlapping blobs, K = 40 from a random start, tol = 0: many iterations in which few
  # labels change, so `_reassign_some` and `_reassign_all` both run; and an empty cluster.
  x, _ = datasets.make_blobs(4000, n_features=8, centers=12, cluster_std=3.0, random_state=0)
  x = x.astype(np.float32)
  init = x[np.random.default_rng(0).choice(len(x), 40, replace=False)]
  init[-1] = 1e3  # far from every point: empty at the first assignment
  xs, ws, _ = kmeans.place(x, None)
  a = algorithms.lloyd(xs, ws, jnp.asarray(init), 300, 0.0, algorithm='lloyd')
  b = algorithms.lloyd(xs, ws, jnp.asarray(init), 300, 0.0, algorithm='hamerly')
  assert int(a.n_iter) == int(b.n_iter) > 10
  np.testing.assert_array_equal(np.asarray(a.labels), np.asarray(b.labels))
  np.testing.assert_allclose(np.asarray(a.cluster_centers), np.asarray(b.cluster_centers),
                             atol=1e-4)
  assert np.isfinite(np.asarray(b.cluster_centers)).all()
  theirs = helpers.fit_sklearn(x.astype(np.float64), n_clusters=40,
                               init=init.astype(np.float64), n_init=1, max_iter=300, tol=0.0)
  np.testing.assert_allclose(float(b.inertia), theirs.inertia_, rtol=1e-4)
