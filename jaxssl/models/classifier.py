"""A small convolutional image classifier whose penultimate layer serves as a feature space.

Used by ``jaxssl.eval.generative`` to compare generated and real images in the features of
a network trained on the same dataset (the role Inception-v3 plays in FID, Heusel et al.
2017, for datasets where an ImageNet network is meaningless, e.g. 8x8 digits).
"""

from __future__ import annotations

from typing import Sequence

import jax
from flax import nnx

from jaxssl.models import conv_ae


class ConvClassifier(nnx.Module):
  """Strided convolutions, a ReLU feature layer and a linear head.

  Args:
    image_shape: (H, W, C) of the inputs.
    num_classes: K.
    widths: channels of the stride-2 convolutions, e.g. (32, 64).
    feature_dim: F, width of the feature layer.

  Raises:
    ValueError: a bad shape, width or size.
  """

  def __init__(self, image_shape: Sequence[int], num_classes: int, widths: Sequence[int],
               feature_dim: int, *, rngs: nnx.Rngs):
    if num_classes < 2:
      raise ValueError(f'num_classes={num_classes} must be >= 2')
    self.encoder = conv_ae.ConvEncoder(image_shape, feature_dim, widths, activation='relu',
                                       rngs=rngs)
    self.head = nnx.Linear(feature_dim, num_classes, rngs=rngs)

  def __call__(self, x: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Classifies images.

    Args:
      x: float [B, H, W, C] pixels in [0, 1].

    Returns:
      (logits float32 [B, K], features float32 [B, F], non-negative: the ReLU feature layer).
    """
    features = jax.nn.relu(self.encoder(x)[0])
    return self.head(features), features
