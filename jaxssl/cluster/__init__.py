"""Clustering: k-means (`jaxssl.cluster.kmeans`, with scikit-learn's interface, over the
pure jitted functions of `jaxssl.cluster.algorithms`)."""
