"""Helpers shared by the jaxssl.eval tests."""

import jax
import numpy as np


def snapshot(tree):
  return [np.array(leaf, copy=True) for leaf in jax.tree.leaves(tree)]


def assert_unchanged(before, tree):
  after = jax.tree.leaves(tree)
  assert len(before) == len(after)
  for b, a in zip(before, after):
    np.testing.assert_array_equal(b, np.asarray(a))


def blobs(n, d, num_classes, *, spread, seed):
  rng = np.random.default_rng(seed)
  centres = rng.normal(size=(num_classes, d)) * 3
  labels = rng.integers(0, num_classes, n).astype(np.int32)
  return (centres[labels] + spread * rng.normal(size=(n, d))).astype(np.float32), labels
