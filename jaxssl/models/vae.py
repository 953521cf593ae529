"""Convolutional variational autoencoder (Kingma & Welling 2014, arXiv:1312.6114).

q(z | x) = N(mean(x), diag(exp(log_var(x)))) from ``conv_ae.ConvEncoder``, p(z) = N(0, I);
p(x | z) from ``conv_ae.ConvDecoder``: Bernoulli pixels (binarised images) or a per-pixel
discretised logistic on ``num_levels`` grey levels (Salimans et al. 2017). Reparameterised
z = mean + exp(log_var / 2) * eps, with a key passed per call.
"""

from __future__ import annotations

import math
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jaxssl.losses import vae as vae_losses
from jaxssl.models import conv_ae

LIKELIHOODS = ('bernoulli', 'logistic')


class VAE(nnx.Module):
  """Gaussian-latent VAE on images [B, H, W, C] in [0, 1].

  Args:
    image_shape: (H, W, C).
    latent_dim: Z.
    widths: channels of the encoder's strided convolutions (mirrored by the decoder).
    likelihood: 'bernoulli' (x must be binary) or 'logistic' (x on ``num_levels`` levels).
    num_levels: grey levels of the data for 'logistic' (256 for 8-bit images).
    activation: 'gelu' or 'relu'.
  """

  def __init__(self, image_shape: Sequence[int], latent_dim: int, widths: Sequence[int], *,
               likelihood: str, num_levels: int = 256, activation: str = 'gelu',
               rngs: nnx.Rngs):
    if likelihood not in LIKELIHOODS:
      raise ValueError(f'likelihood={likelihood!r} is not one of {LIKELIHOODS}')
    self.likelihood = likelihood
    self.num_levels = num_levels
    channels = image_shape[2] * (2 if likelihood == 'logistic' else 1)
    self.encoder = conv_ae.ConvEncoder(image_shape, 2 * latent_dim, widths,
                                       activation=activation, rngs=rngs)
    self.decoder = conv_ae.ConvDecoder(image_shape, latent_dim, widths, out_channels=channels,
                                       activation=activation, rngs=rngs)

  def encode(self, x: jax.Array) -> tuple[jax.Array, jax.Array]:
    """x: float [B, H, W, C] -> (mean, log_var), each [B, Z]; log_var clipped as the KL clips it."""
    mean, log_var = jnp.split(self.encoder(x)[0], 2, axis=-1)
    return mean, vae_losses.clip_log_var(log_var)

  def decode(self, z: jax.Array) -> dict[str, jax.Array]:
    """z: float [B, Z] -> {'logits'} (bernoulli) or {'mean' in [0, 1], 'log_scale'}
    (logistic), each float32 [B, H, W, C]."""
    out = self.decoder(z)
    if self.likelihood == 'bernoulli':
      return {'logits': out}
    mean, log_scale = jnp.split(out, 2, axis=-1)
    return {'mean': jax.nn.sigmoid(mean), 'log_scale': log_scale}

  def log_likelihood(self, outputs: dict[str, jax.Array], x: jax.Array) -> jax.Array:
    """log p(x | z) of images x [B, H, W, C] under ``decode``'s outputs: [B], nats/image."""
    if self.likelihood == 'bernoulli':
      return vae_losses.bernoulli_log_likelihood(outputs['logits'], x)
    return vae_losses.discretized_logistic_log_likelihood(
        outputs['mean'], outputs['log_scale'], x, num_levels=self.num_levels)

  def __call__(self, x: jax.Array, rng: jax.Array, *,
               num_samples: int = 1) -> dict[str, jax.Array]:
    """ELBO terms of x float [B, H, W, C] in [0, 1] with S = ``num_samples`` latents per image.

    ``rng`` draws the latent noise (derive it per step); x must be binary for 'bernoulli'.

    Returns:
      float32 arrays, nats per image: 'log_likelihood' [B] (mean over the S samples), 'kl' [B]
      (analytic KL(q || p)), 'elbo' [B], 'log_weights' [S, B] (log p(x, z_s) - log q(z_s | x),
      for ``losses.vae.iwae_bound``), 'latent_mean', 'latent_log_var' [B, Z], and the first
      sample's decoder outputs ('logits', or 'mean' and 'log_scale') [B, H, W, C].
    """
    batch = x.shape[0]
    mean, log_var = self.encode(x)
    eps = jax.random.normal(rng, (num_samples,) + mean.shape, jnp.float32)  # [S, B, Z]
    z = mean + jnp.exp(0.5 * log_var) * eps
    outputs = self.decode(z.reshape(num_samples * batch, -1))  # each [S*B, H, W, C]
    x_rep = jnp.tile(x, (num_samples,) + (1,) * (x.ndim - 1))  # [S*B, H, W, C], sample-major
    log_lik = self.log_likelihood(outputs, x_rep).reshape(num_samples, batch)  # [S, B]
    kl = vae_losses.gaussian_kl(mean, log_var)
    # log p(z) - log q(z | x) for diagonal Gaussians; (z - mean)^2 / var = eps^2.
    log_prior_ratio = -0.5 * jnp.sum(z * z - eps * eps - log_var, axis=-1)  # [S, B]
    return {
        'log_likelihood': log_lik.mean(axis=0),
        'kl': kl,
        'elbo': vae_losses.elbo(log_lik.mean(axis=0), kl),
        'log_weights': log_lik + log_prior_ratio,
        'latent_mean': mean,
        'latent_log_var': log_var,
        **{name: value[:batch] for name, value in outputs.items()},
    }


NUM_LEVELS = 256  # grey levels of uint8 images ('logistic')
BINARY_THRESHOLD = 128  # a byte >= this is a 1 ('bernoulli'): x / 255 > 0.5


def model_input(image, likelihood: str):
  """What the VAE models: uint8 [B, H, W, C] (NumPy or jax) -> float32 [B, H, W, C].

  'bernoulli': 1.0 where the byte is >= 128 (x / 255 > 0.5), else 0.0. 'logistic': x / 255,
  each value one of the 256 levels k / 255.
  """
  if likelihood == 'bernoulli':
    return (image >= BINARY_THRESHOLD).astype(np.float32)
  return image.astype(np.float32) / (NUM_LEVELS - 1)


_FIT_CHUNK = 4096  # images per read in fit_baseline


def fit_baseline(train_images: np.ndarray, likelihood: str) -> dict[str, np.ndarray]:
  """The independent-pixel model of the training images, as decoder outputs would give it.

  'bernoulli': per-pixel frequency of ones with add-one smoothing, p = (ones + 1) / (N + 2),
  as ``{'logits': log p - log(1 - p)}``. 'logistic': per-pixel logistic with the training mean
  as location and the moment-matched scale s = std sqrt(3) / pi (a logistic's variance is
  s^2 pi^2 / 3), floored at exp(losses.vae.MIN_LOG_SCALE) as the likelihood floors it, as
  ``{'mean', 'log_scale'}``.

  Args:
    train_images: uint8 [N, H, W, C], an array or rows read by slices (read in chunks).
    likelihood: 'bernoulli' or 'logistic'.

  Returns:
    {name: float32 [H, W, C]}, for ``VAE.log_likelihood`` after broadcasting to the batch.
  """
  n = len(train_images)

  def inputs():  # chunk by chunk: the training images may be rows on disk
    for start in range(0, n, _FIT_CHUNK):
      chunk = np.asarray(train_images[start:start + _FIT_CHUNK])
      yield model_input(chunk, likelihood).astype(np.float64)  # [k, H, W, C]

  total = sum(x.sum(axis=0) for x in inputs())  # [H, W, C]
  if likelihood == 'bernoulli':
    p = (total + 1.0) / (n + 2.0)
    return {'logits': (np.log(p) - np.log1p(-p)).astype(np.float32)}
  mean = total / n
  std = np.sqrt(sum(((x - mean) ** 2).sum(axis=0) for x in inputs()) / n)  # two passes
  scale = std * math.sqrt(3.0) / math.pi
  log_scale = np.log(np.maximum(scale, math.exp(vae_losses.MIN_LOG_SCALE)))
  return {'mean': mean.astype(np.float32), 'log_scale': log_scale.astype(np.float32)}
