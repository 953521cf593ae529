"""k-means of frozen features, scored against the labels by ARI (Hubert & Arabie 1985) and NMI."""

from __future__ import annotations

import numpy as np
from jax.sharding import Mesh
from sklearn import metrics as sk_metrics

from jaxssl.cluster import kmeans
from jaxssl.eval import features as features_lib


def cluster_features(features: np.ndarray, labels: np.ndarray, *, n_clusters: int,
                     seed: int = 0, n_init: int = 4,
                     mesh: Mesh | None = None) -> dict[str, float]:
  """How well k-means clusters of the features recover the labels.

  Features are L2-normalised (the cosine geometry of kNN and contrastive losses), then
  clustered by ``jaxssl.cluster.kmeans.KMeans`` (k-means++, Lloyd, ``n_init`` restarts from
  ``seed``, ``mesh`` passed on).

  Args:
    features: float [N, D]; labels: int [N], the true classes.
    n_clusters: K (usually the number of classes), in [1, N].

  Returns:
    {'kmeans_ari': adjusted Rand index (1 perfect, ~0 chance, can be < 0), 'kmeans_nmi':
    normalised mutual information (arithmetic mean; 0..1)}, from ``sklearn.metrics``.

  Raises:
    ValueError: empty or non-finite features, labels that do not match, n_clusters not in
      [1, N], or n_init < 1.
  """
  x = features_lib._check_features(features, 'features')
  y = features_lib._check_labels(labels, len(x), 'labels')
  if isinstance(n_clusters, bool) or not isinstance(n_clusters, (int, np.integer)) or not (
      1 <= n_clusters <= len(x)):
    raise ValueError(f'n_clusters={n_clusters!r} must be an integer in [1, N={len(x)}]')
  km = kmeans.KMeans(n_clusters=int(n_clusters), n_init=n_init, seed=seed, mesh=mesh).fit(
      features_lib._l2_normalize(x))
  return {'kmeans_ari': float(sk_metrics.adjusted_rand_score(y, km.labels_)),
          'kmeans_nmi': float(sk_metrics.normalized_mutual_info_score(y, km.labels_))}

