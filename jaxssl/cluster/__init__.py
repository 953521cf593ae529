"""Clustering: k-means (`jaxssl.cluster.kmeans`)."""
