"""Helpers shared by the jaxssl.cluster tests."""

import threadpoolctl
from sklearn import cluster as sk_cluster


def fit_sklearn(x, **kwargs):
  """scikit-learn's ``KMeans(**kwargs).fit(x)``, single-threaded (``threadpool_limits(1)``):
  its OpenMP threads spin badly when the 2 cores are shared with XLA's, and the results do
  not depend on it."""
  with threadpoolctl.threadpool_limits(1):
    return sk_cluster.KMeans(**kwargs).fit(x)
