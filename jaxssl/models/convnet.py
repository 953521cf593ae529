"""A small convolutional encoder with BatchNorm and the MLP heads of SimCLR and BYOL.

Chen, Kornblith, Norouzi & Hinton 2020, "A Simple Framework for Contrastive Learning of
Visual Representations" (arXiv:2002.05709): encoder f, projection head g (an MLP with one
hidden ReLU layer); the representation used downstream is f's output, before g. Grill et al.
2020, "Bootstrap Your Own Latent" (arXiv:2006.07733, section 3.3): projector and predictor
are each Linear -> BatchNorm -> ReLU -> Linear.

The encoder is a VGG-style stack sized for small images (8x8 digits up to 32x32 CIFAR): a
3x3 stem, then per further width one stride-2 and one stride-1 3x3 convolution, each
followed by BatchNorm and ReLU, and a global average pool. ``train`` selects BatchNorm's
mode: True normalises with the batch's statistics (under GSPMD, those of the whole global
batch, so they are synchronised across devices) and updates the running averages; False uses
the running averages, so each output depends on its own input only. Statistics are
``nnx.BatchStat`` variables: split with ``jaxssl.train.state.split_model_with_stats``.
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

  Args:
    image_shape: (H, W, C) of the inputs; H and W are halved (rounding up) once per width
      after the first.
    widths: channels, e.g. (32, 64, 128): the stem has widths[0]; each later width adds a
      stride-2 and a stride-1 convolution.

  Raises:
    ValueError: a bad shape or width.
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
    """Encodes images.

    Args:
      x: float [B, H, W, C] (pixels in [0, 1]).
      train: BatchNorm mode (see the module docstring).

    Returns:
      float32 [B, widths[-1]] non-negative features (ReLU, then the spatial mean).

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
  """[B, in_dim] -> [B, out_dim]: Linear -> BatchNorm -> ReLU -> Linear (SimCLR's projection
  head with BatchNorm as in its v2; BYOL's projector and predictor).

  ``out_bias=False`` drops the last layer's bias: when the head feeds a BatchNorm (BYOL's
  projector feeds the predictor's), that bias is cancelled by the batch mean, its gradient is
  zero up to rounding, and Adam would turn the rounding noise into steps of the learning
  rate's size.

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
    image_shape: (H, W, C).
    widths: encoder widths (see ``ConvNet``).
    projector_dims: (hidden, out) of the projection MLP.
    predictor_dims: (hidden, out) of the predictor MLP (its input is the projector's output),
      or None for no predictor (SimCLR; BYOL's target network).
    projector_bias: whether the projector's last layer has a bias (False for BYOL, online
      and target alike, see ``MLPHead``).

  Raises:
    ValueError: a bad shape or size.
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
    """{'features': [B, widths[-1]], 'projection': [B, P] and, with a predictor,
    'prediction': [B, Q]}, all float32."""
    features = self.encoder(x, train=train)
    out = {'features': features, 'projection': self.projector(features, train=train)}
    if self.predictor is not None:
      out['prediction'] = self.predictor(out['projection'], train=train)
    return out
