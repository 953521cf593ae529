"""Tests of jaxssl.eval.clustering against jaxssl's KMeans and sklearn.metrics."""

import numpy as np
import pytest
from sklearn import metrics as sk_metrics

from jaxssl.cluster import kmeans
from jaxssl.eval import clustering
from tests.eval import helpers


def test_cluster_features_matches_sklearn_metrics():
  # The shapes of the end-to-end test's k-means (397 x 12, K = 10, one run): one compilation.
  x, y = helpers.blobs(397, 12, 10, spread=4.0, seed=6)
  got = clustering.cluster_features(x, y, n_clusters=10, seed=3, n_init=1)
  unit = x / np.linalg.norm(x, axis=1, keepdims=True)
  labels = kmeans.KMeans(n_clusters=10, n_init=1, seed=3).fit(unit).labels_
  assert got == {'kmeans_ari': sk_metrics.adjusted_rand_score(y, labels),
                 'kmeans_nmi': sk_metrics.normalized_mutual_info_score(y, labels)}
  assert 0.1 < got['kmeans_ari'] < 1.0
  separated, y2 = helpers.blobs(397, 12, 10, spread=0.01, seed=7)
  got = clustering.cluster_features(separated, y2, n_clusters=10, seed=0, n_init=1)
  assert got['kmeans_ari'] == pytest.approx(1.0) and got['kmeans_nmi'] == pytest.approx(1.0)
  with pytest.raises(ValueError, match='n_clusters'):
    clustering.cluster_features(x, y, n_clusters=0)
  with pytest.raises(ValueError, match='labels has 3'):
    clustering.cluster_features(x, y[:3], n_clusters=2)
