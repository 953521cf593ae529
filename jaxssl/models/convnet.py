"""A small convolutional encoder with BatchNorm and the MLP heads of SimCLR and BYOL.

SimCLR (Chen et al. 2020, arXiv:2002.05709): encoder f, projection head g; downstream uses f's
output. BYOL (Grill et al. 2020, arXiv:2006.07733, sec. 3.3): projector and predictor are
Linear -> BatchNorm -> ReLU -> Linear. The encoder is VGG-style for 8x8 to 32x32 images.

``train`` (here and in ``gan``) selects BatchNorm's mode: True normalises with the statistics
of the whole global batch (synchronised across devices under GSPMD) and updates the running
averages; False uses the running averages. Statistics are ``nnx.BatchStat`` variables: split
with ``jaxssl.train.state.split_model_with_stats``.
"""

from __future__ import annotations

from typing import Sequence

import jax
import jax.numpy as jnp
from flax import nnx

from jaxssl.models import ops

BN_MOMENTUM = 0.9  # running-average decay (PyTorch's momentum=0.1)
BN_EPSILON = 1e-5


def _batch_norm(features: int, rngs: nnx.Rngs) -> nnx.BatchNorm:
  return nnx.BatchNorm(features, momentum=BN_MOMENTUM, epsilon=BN_EPSILON, rngs=rngs)


class ConvNet(nnx.Module):
  """images [B, H, W, C] -> features [B, widths[-1]].

  A 3x3 stem of widths[0] channels, then per further width (e.g. (32, 64, 128)) a stride-2 and
  a stride-1 3x3 conv, each with BatchNorm and ReLU, and a global average pool. H and W halve
  (rounding up) per width after the first. ValueError for a bad shape or width.
  """

  def __init__(self, image_shape: Sequence[int], widths: Sequence[int], *, rngs: nnx.Rngs):
    if len(image_shape) != 3 or min(image_shape) < 1:
      raise ValueError(f'image_shape {tuple(image_shape)} must be (H, W, C), all positive')
    if not widths or min(widths) < 1:
      raise ValueError(f'widths {tuple(widths)} must be one or more positive channel counts')
    self.image_shape = tuple(image_shape)
    self.feature_dim = widths[-1]
    specs = [(image_shape[2], widths[0], 1)]
    for i, o in zip(widths[:-1], widths[1:]):
      specs += [(i, o, 2), (o, o, 1)]
    self.convs = nnx.List([nnx.Conv(i, o, (3, 3), strides=(s, s), padding='SAME',
                                    use_bias=False, kernel_init=ops.conv_kernel_init,
                                    rngs=rngs) for i, o, s in specs])
    self.norms = nnx.List([_batch_norm(o, rngs) for _, o, _ in specs])

  def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
    """x: float [B, H, W, C] in [0, 1] -> float32 [B, widths[-1]] non-negative features.

    Raises:
      ValueError: x is not [B, *image_shape].
    """
    if x.shape[1:] != self.image_shape:
      raise ValueError(f'images {x.shape} must be [B, {", ".join(map(str, self.image_shape))}]')
    h = x.astype(jnp.float32)
    for conv, norm in zip(self.convs, self.norms):
      h = jax.nn.relu(norm(conv(h), use_running_average=not train))
    return jnp.mean(h, axis=(1, 2))


class MLPHead(nnx.Module):
  """[B, in_dim] -> [B, out_dim]: Linear -> BatchNorm -> ReLU -> Linear (SimCLR v2, BYOL).

  ``out_bias=False`` drops the last bias, for a head feeding a BatchNorm (BYOL's projector): the
  batch mean cancels it, and Adam would turn its rounding-noise gradient into full-size steps.

  Raises:
    ValueError: a size below 1.
  """

  def __init__(self, in_dim: int, hidden_dim: int, out_dim: int, *, out_bias: bool = True,
               rngs: nnx.Rngs):
    if min(in_dim, hidden_dim, out_dim) < 1:
      raise ValueError(f'MLPHead sizes ({in_dim}, {hidden_dim}, {out_dim}) must be >= 1')
    self.hidden = nnx.Linear(in_dim, hidden_dim, use_bias=False, rngs=rngs)
    self.norm = _batch_norm(hidden_dim, rngs)
    self.out = nnx.Linear(hidden_dim, out_dim, use_bias=out_bias, rngs=rngs)

  def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
    """float [B, in_dim] -> float32 [B, out_dim]."""
    h = jax.nn.relu(self.norm(self.hidden(x), use_running_average=not train))
    return self.out(h)


class SSLNet(nnx.Module):
  """Encoder, projector and (for BYOL's online network) predictor.

  Args:
    image_shape, widths: the encoder's (see ``ConvNet``).
    projector_dims: (hidden, out) of the projection MLP.
    predictor_dims: (hidden, out) of the predictor MLP on the projection, or None (SimCLR;
      BYOL's target network).
    projector_bias: the projector's last bias (False for BYOL, see ``MLPHead``).
  """

  def __init__(self, image_shape: Sequence[int], widths: Sequence[int],
               projector_dims: Sequence[int], predictor_dims: Sequence[int] | None = None, *,
               projector_bias: bool = True, rngs: nnx.Rngs):
    self.encoder = ConvNet(image_shape, widths, rngs=rngs)
    self.projector = MLPHead(self.encoder.feature_dim, *projector_dims, out_bias=projector_bias,
                             rngs=rngs)
    self.predictor = (None if predictor_dims is None else
                      MLPHead(projector_dims[-1], *predictor_dims, rngs=rngs))

  def __call__(self, x: jax.Array, *, train: bool) -> dict[str, jax.Array]:
    """{'features': [B, widths[-1]], 'projection': [B, P], 'prediction': [B, Q] if any}, float32."""
    features = self.encoder(x, train=train)
    out = {'features': features, 'projection': self.projector(features, train=train)}
    if self.predictor is not None:
      out['prediction'] = self.predictor(out['projection'], train=train)
    return out
