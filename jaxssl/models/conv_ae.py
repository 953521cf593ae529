"""Convolutional encoder, decoder and autoencoder for small images, without BatchNorm.

Stride-2 4x4 SAME convs (odd sizes round up: 28 -> 14 -> 7 -> 4) then a dense layer; the
decoder mirrors it with stride-2 4x4 transposed convs (kernel divisible by the stride: no
checkerboard, Odena et al. 2016), a 3x3 conv and a top-left H x W crop. Sizes come from
``image_shape`` (8x8x1 digits to 32x32x3 CIFAR). No ``train`` flag; parameters only.
"""

from __future__ import annotations

from typing import Sequence

import jax
import jax.numpy as jnp
from flax import nnx

from jaxssl.models import ops

_ACTIVATIONS = {
    'gelu': ops.gelu,  # exact (erf) GELU
    'relu': jax.nn.relu,
}


def _check_hparams(image_shape: Sequence[int], latent_dim: int, widths: Sequence[int],
                   activation: str) -> None:
  if len(image_shape) != 3 or min(image_shape) < 1:
    raise ValueError(f'image_shape {tuple(image_shape)} must be (H, W, C), all positive')
  if latent_dim < 1 or not widths:
    raise ValueError(f'need latent_dim >= 1 and at least one width, got {latent_dim}, '
                     f'{tuple(widths)}')
  if activation not in _ACTIVATIONS:
    raise ValueError(f'activation={activation!r} is not one of {sorted(_ACTIVATIONS)}')


def bottleneck_size(image_shape: Sequence[int], num_convs: int) -> tuple[int, int]:
  """(h, w) of the feature map after ``num_convs`` stride-2 SAME convolutions (ceil halving)."""
  h, w = image_shape[0], image_shape[1]
  for _ in range(num_convs):
    h, w = -(-h // 2), -(-w // 2)
  return h, w


class ConvEncoder(nnx.Module):
  """Strided convolutions then a dense layer: images [B, H, W, C] -> features [B, Z].

  ``latent_dim`` is Z (a VAE asks for twice its latent size: mean and log-variance);
  ``widths`` the channels of each stride-2 conv, e.g. (32, 64); ``activation`` 'gelu' or
  'relu', after every conv.
  """

  def __init__(self, image_shape: Sequence[int], latent_dim: int, widths: Sequence[int], *,
               activation: str = 'gelu', rngs: nnx.Rngs):
    _check_hparams(image_shape, latent_dim, widths, activation)
    self.image_shape = tuple(image_shape)
    self.activation = activation
    ins = (image_shape[2],) + tuple(widths[:-1])
    self.convs = nnx.List([nnx.Conv(i, o, (4, 4), strides=(2, 2), padding='SAME',
                                    kernel_init=ops.conv_kernel_init, rngs=rngs)
                           for i, o in zip(ins, widths)])
    h, w = bottleneck_size(image_shape, len(widths))
    self.dense = nnx.Linear(h * w * widths[-1], latent_dim, rngs=rngs)

  def __call__(self, x: jax.Array) -> tuple[jax.Array, dict[str, jax.Array]]:
    """x: float [B, H, W, C] in [0, 1] (shifted to [-1, 1] inside) -> features.

    Returns:
      (features [B, Z] float32, intermediates {'conv_<i>': [B, h_i, w_i, widths[i]]}).

    Raises:
      ValueError: x is not [B, *image_shape].
    """
    if x.shape[1:] != self.image_shape:
      raise ValueError(f'images {x.shape} do not match image_shape {self.image_shape}')
    act = _ACTIVATIONS[self.activation]
    h = 2.0 * x.astype(jnp.float32) - 1.0
    intermediates = {}
    for i, conv in enumerate(self.convs):
      h = act(conv(h))
      intermediates[f'conv_{i}'] = h
    return self.dense(h.reshape(h.shape[0], -1)), intermediates  # [B, Z]


class ConvDecoder(nnx.Module):
  """Dense layer, stride-2 transposed convolutions and a 3x3 convolution: [B, Z] -> images.

  ``widths`` are the encoder's (used reversed); ``out_channels`` defaults to C (2C for a mean
  and a scale per channel); ``activation`` ('gelu' or 'relu') follows the dense layer and every
  transposed conv.
  """

  def __init__(self, image_shape: Sequence[int], latent_dim: int, widths: Sequence[int], *,
               out_channels: int | None = None, activation: str = 'gelu', rngs: nnx.Rngs):
    _check_hparams(image_shape, latent_dim, widths, activation)
    self.image_shape = tuple(image_shape)
    self.latent_dim = latent_dim
    self.activation = activation
    self.start = bottleneck_size(image_shape, len(widths)) + (widths[-1],)  # (h, w, D)
    rev = tuple(reversed(widths))
    self.dense = nnx.Linear(latent_dim, self.start[0] * self.start[1] * rev[0], rngs=rngs)
    self.deconvs = nnx.List([
        nnx.ConvTranspose(i, o, (4, 4), strides=(2, 2), padding='SAME',
                          kernel_init=ops.conv_kernel_init, rngs=rngs)
        for i, o in zip(rev, rev[1:] + rev[-1:])])
    self.out = nnx.Conv(rev[-1], out_channels or image_shape[2], (3, 3), padding='SAME',
                        kernel_init=ops.conv_kernel_init, rngs=rngs)

  def __call__(self, z: jax.Array) -> jax.Array:
    """z: float [B, Z] -> float32 [B, H, W, out_channels], logits or means (no output nonlinearity).

    Raises:
      ValueError: z is not [B, Z].
    """
    if z.ndim != 2 or z.shape[1] != self.latent_dim:
      raise ValueError(f'latents {z.shape} must be [B, latent_dim={self.latent_dim}]')
    act = _ACTIVATIONS[self.activation]
    h = act(self.dense(z.astype(jnp.float32))).reshape((z.shape[0],) + self.start)
    for deconv in self.deconvs:
      h = act(deconv(h))  # doubles the size; ends at >= H, W
    height, width, _ = self.image_shape
    return self.out(h)[:, :height, :width]


class Autoencoder(nnx.Module):
  """Deterministic convolutional autoencoder (Hinton & Salakhutdinov 2006, with convs).

  Pair its logits with ``losses.vae.bernoulli_log_likelihood``, or ``sigmoid(logits)`` with
  ``losses.reconstruction.mse``.
  """

  def __init__(self, image_shape: Sequence[int], latent_dim: int, widths: Sequence[int], *,
               activation: str = 'gelu', rngs: nnx.Rngs):
    self.encoder = ConvEncoder(image_shape, latent_dim, widths, activation=activation,
                               rngs=rngs)
    self.decoder = ConvDecoder(image_shape, latent_dim, widths, activation=activation,
                               rngs=rngs)

  def encode(self, x: jax.Array) -> jax.Array:
    """x: float [B, H, W, C] in [0, 1] -> latent [B, Z] float32."""
    return self.encoder(x)[0]

  def decode(self, z: jax.Array) -> jax.Array:
    """z: float [B, Z] -> reconstruction logits [B, H, W, C] float32."""
    return self.decoder(z)

  def __call__(self, x: jax.Array) -> tuple[jax.Array, jax.Array]:
    """x: float [B, H, W, C] in [0, 1] -> (logits [B, H, W, C], latent [B, Z])."""
    z = self.encode(x)
    return self.decode(z), z
