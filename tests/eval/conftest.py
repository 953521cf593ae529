"""Fixtures of the jaxssl.eval tests: the digits as images and a BatchNorm encoder."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from sklearn import datasets

from jaxssl.eval import features as features_lib


class BNEncoder(nnx.Module):
  """Two stride-2 convolutions with BatchNorm, global average pooling, a dense layer."""

  def __init__(self, *, rngs: nnx.Rngs):
    self.conv1 = nnx.Conv(1, 8, (3, 3), strides=(2, 2), rngs=rngs)
    self.norm1 = nnx.BatchNorm(8, momentum=0.5, rngs=rngs)
    self.conv2 = nnx.Conv(8, 16, (3, 3), strides=(2, 2), rngs=rngs)
    self.norm2 = nnx.BatchNorm(16, momentum=0.5, rngs=rngs)
    self.dense = nnx.Linear(16, 12, rngs=rngs)

  def __call__(self, x):
    h = jax.nn.relu(self.norm1(self.conv1(x)))
    h = jax.nn.relu(self.norm2(self.conv2(h)))  # [B, 2, 2, 16]
    return self.dense(h.mean(axis=(1, 2))), {'pooled': h}  # [B, 12], jaxssl convention


@pytest.fixture(scope='module')
def digits():
  """scikit-learn's 8x8 digits as uint8 [N, 8, 8, 1], split 1400 / 397 by a fixed order."""
  d = datasets.load_digits()
  images = np.round(d.images * (255 / 16)).astype(np.uint8)[..., None]
  order = np.random.default_rng(0).permutation(len(images))
  images, labels = images[order], d.target[order].astype(np.int32)
  return {'train': {'image': images[:1400], 'label': labels[:1400]},
          'test': {'image': images[1400:], 'label': labels[1400:]}, 'num_classes': 10}


@pytest.fixture(scope='module')
def bn_encoder():
  """(module in eval mode, graphdef, variables) of a BNEncoder with random parameters and
  random running statistics (not the initial 0/1). Drawn by NumPy into the abstract module:
  eager Flax initialisation compiles every initialiser (~6 s here)."""
  rng = np.random.default_rng(0)

  def draw(path, leaf):
    name = jax.tree_util.keystr(path)
    if "'var'" in name or "'scale'" in name:
      return jnp.asarray(rng.uniform(0.5, 2.0, leaf.shape), jnp.float32)
    fan_in = int(np.prod(leaf.shape[:-1])) if len(leaf.shape) > 1 else 100
    return jnp.asarray(rng.normal(0, fan_in ** -0.5, leaf.shape), jnp.float32)

  graphdef, shapes = features_lib.split_encoder(nnx.eval_shape(lambda: BNEncoder(rngs=nnx.Rngs(0))))
  drawn = jax.tree_util.tree_map_with_path(draw, shapes)
  model = nnx.merge(graphdef, drawn['params'], drawn['batch_stats'])
  model.eval()
  graphdef, variables = features_lib.split_encoder(model)
  return model, graphdef, variables
