"""DCGAN generator and discriminator for small images (Radford, Metz & Chintala 2016).

arXiv:1511.06434, sec. 3: strided convs instead of pooling, transposed convs in the generator,
BatchNorm except at the generator's output and discriminator's input, ReLU with a tanh output
in G, LeakyReLU(0.2) in D, no fully connected hidden layers. The generator starts from the map
``len(widths)`` stride-2 convs would leave (8 -> 2, 28 -> 7, 32 -> 8) and crops to H x W.
``train`` is BatchNorm's mode, as in ``convnet``.
"""

from __future__ import annotations

from typing import Sequence

import jax
import jax.numpy as jnp
from flax import nnx

from jaxssl.models import conv_ae, ops

LEAKY_SLOPE = 0.2  # LeakyReLU slope of the discriminator (DCGAN section 3)
BN_MOMENTUM = 0.9  # running average decay, PyTorch's momentum=0.1 as in the DCGAN reference
BN_EPSILON = 1e-5


def _check(image_shape: Sequence[int], widths: Sequence[int]) -> None:
  if len(image_shape) != 3 or min(image_shape) < 1:
    raise ValueError(f'image_shape {tuple(image_shape)} must be (H, W, C), all positive')
  if not widths or min(widths) < 1:
    raise ValueError(f'widths {tuple(widths)} must be one or more positive channel counts')


def _batch_norm(features: int, rngs: nnx.Rngs) -> nnx.BatchNorm:
  return nnx.BatchNorm(features, momentum=BN_MOMENTUM, epsilon=BN_EPSILON, rngs=rngs)


class Generator(nnx.Module):
  """z [B, Z] -> images [B, H, W, C] in [-1, 1].

  z is projected to an (h, w, widths[0]) map (BatchNorm, ReLU), then one stride-2 4x4
  transposed conv per width (to widths[1:], then C), with BatchNorm and ReLU except the last
  (tanh). ``widths``: channels from the projection down, e.g. (128, 64); ``image_shape``:
  (H, W, C). ValueError for a bad shape or width.
  """

  def __init__(self, latent_dim: int, image_shape: Sequence[int], widths: Sequence[int], *,
               rngs: nnx.Rngs):
    _check(image_shape, widths)
    if latent_dim < 1:
      raise ValueError(f'latent_dim={latent_dim} must be >= 1')
    self.latent_dim = latent_dim
    self.image_shape = tuple(image_shape)
    self.start = conv_ae.bottleneck_size(image_shape, len(widths)) + (widths[0],)
    self.project = nnx.Linear(latent_dim, self.start[0] * self.start[1] * widths[0],
                              use_bias=False, rngs=rngs)
    self.project_norm = _batch_norm(widths[0], rngs)
    outs = tuple(widths[1:]) + (image_shape[2],)
    self.deconvs = nnx.List([
        nnx.ConvTranspose(i, o, (4, 4), strides=(2, 2), padding='SAME',
                          use_bias=(k == len(outs) - 1), kernel_init=ops.conv_kernel_init,
                          rngs=rngs)
        for k, (i, o) in enumerate(zip(widths, outs))])
    self.norms = nnx.List([_batch_norm(o, rngs) for o in outs[:-1]])

  def __call__(self, z: jax.Array, *, train: bool) -> jax.Array:
    """z: float [B, Z] (N(0, I) in training) -> float32 [B, H, W, C] in [-1, 1].

    Raises:
      ValueError: z is not [B, Z].
    """
    if z.ndim != 2 or z.shape[1] != self.latent_dim:
      raise ValueError(f'z {z.shape} must be [B, {self.latent_dim}]')
    h = self.project(z.astype(jnp.float32)).reshape((z.shape[0],) + self.start)
    h = jax.nn.relu(self.project_norm(h, use_running_average=not train))
    for deconv, norm in zip(self.deconvs[:-1], self.norms):
      h = jax.nn.relu(norm(deconv(h), use_running_average=not train))
    h = jnp.tanh(self.deconvs[-1](h))
    return h[:, :self.image_shape[0], :self.image_shape[1]]


class Discriminator(nnx.Module):
  """images [B, H, W, C] in [-1, 1] -> logits [B] (real vs generated).

  One stride-2 4x4 conv per width (e.g. (64, 128)), each with LeakyReLU(0.2), BatchNorm before
  it on all but the first; then a dense layer to one logit. ValueError for a bad shape or width.
  """

  def __init__(self, image_shape: Sequence[int], widths: Sequence[int], *, rngs: nnx.Rngs):
    _check(image_shape, widths)
    self.image_shape = tuple(image_shape)
    ins = (image_shape[2],) + tuple(widths[:-1])
    self.convs = nnx.List([
        nnx.Conv(i, o, (4, 4), strides=(2, 2), padding='SAME', use_bias=(k == 0),
                 kernel_init=ops.conv_kernel_init, rngs=rngs)
        for k, (i, o) in enumerate(zip(ins, widths))])
    self.norms = nnx.List([_batch_norm(o, rngs) for o in widths[1:]])
    h, w = conv_ae.bottleneck_size(image_shape, len(widths))
    self.logit = nnx.Linear(h * w * widths[-1], 1, rngs=rngs)

  def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
    """x: float [B, H, W, C] in [-1, 1] -> float32 [B] logits (sigmoid = P(real)).

    Raises:
      ValueError: x is not [B, *image_shape].
    """
    if x.shape[1:] != self.image_shape:
      raise ValueError(f'images {x.shape} do not match image_shape {self.image_shape}')
    h = jax.nn.leaky_relu(self.convs[0](x.astype(jnp.float32)), LEAKY_SLOPE)
    for conv, norm in zip(self.convs[1:], self.norms):
      h = jax.nn.leaky_relu(norm(conv(h), use_running_average=not train), LEAKY_SLOPE)
    return self.logit(h.reshape(h.shape[0], -1))[:, 0]


def to_model_range(image):
  """uint8 [B, H, W, C] (NumPy or jax) -> float32 in [-1, 1], the generator's tanh range."""
  return image.astype(jnp.float32) / 127.5 - 1.0


def to_uint8(x: jax.Array) -> jax.Array:
  """Generator outputs in [-1, 1] -> uint8 images, the inverse of ``to_model_range`` up to
  rounding to the 256 grey levels real images have."""
  return jnp.round((jnp.clip(x, -1.0, 1.0) + 1.0) * 127.5).astype(jnp.uint8)
