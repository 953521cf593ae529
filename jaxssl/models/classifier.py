"""A small conv image classifier whose penultimate layer serves as a feature space.

``jaxssl.eval.generative`` compares generated and real images in its features: Inception-v3's
role in FID (Heusel et al. 2017), where an ImageNet network is meaningless (8x8 digits).
"""

from __future__ import annotations

from typing import Sequence

import jax
from flax import nnx

from jaxssl.models import conv_ae


class ConvClassifier(nnx.Module):
  """Strided convs (``widths``, e.g. (32, 64)), a ReLU feature layer of F and a linear head to K.

  ValueError for a bad shape, width or size (K < 2).
  """

  def __init__(self, image_shape: Sequence[int], num_classes: int, widths: Sequence[int],
               feature_dim: int, *, rngs: nnx.Rngs):
    if num_classes < 2:
      raise ValueError(f'num_classes={num_classes} must be >= 2')
    self.encoder = conv_ae.ConvEncoder(image_shape, feature_dim, widths, activation='relu',
                                       rngs=rngs)
    self.head = nnx.Linear(feature_dim, num_classes, rngs=rngs)

  def __call__(self, x: jax.Array) -> tuple[jax.Array, jax.Array]:
    """x: float [B, H, W, C] in [0, 1] -> (logits float32 [B, K], features float32 [B, F] >= 0)."""
    features = jax.nn.relu(self.encoder(x)[0])
    return self.head(features), features
