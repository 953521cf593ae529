"""Convolutional variational autoencoder (Kingma & Welling 2014, arXiv:1312.6114).

q(z | x) = N(mean(x), diag(exp(log_var(x)))) from ``conv_ae.ConvEncoder``, p(z) = N(0, I),
and p(x | z) from ``conv_ae.ConvDecoder`` as either independent Bernoulli pixels (binarised
images) or a per-pixel discretised logistic on ``num_levels`` grey levels (Salimans et al.
2017), so the ELBO bounds the log-probability of the discrete images. Sampling uses the
reparameterisation z = mean + exp(log_var / 2) * eps with a key passed in per call; the
module holds parameters only.
"""

from __future__ import annotations

from typing import Sequence

import jax
import jax.numpy as jnp
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
    """x: float [B, H, W, C] -> (mean [B, Z], log_var [B, Z]); log_var is clipped to
    ``losses.vae``'s range, the one the KL uses, so samples and KL describe the same q."""
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
    """ELBO terms of a batch with ``num_samples`` reparameterised latents per image.

    Args:
      x: float [B, H, W, C] in [0, 1] (binary for 'bernoulli').
      rng: PRNG key for the latent noise (derive it per step).
      num_samples: S, latents per image.

    Returns:
      A dict of float32 arrays, nats per image:
        'log_likelihood' [B]: log p(x | z) averaged over the S samples.
        'kl' [B]: analytic KL(q(z | x) || p(z)).
        'elbo' [B]: log_likelihood - kl.
        'log_weights' [S, B]: log p(x, z_s) - log q(z_s | x), for ``losses.vae.iwae_bound``.
        'latent_mean', 'latent_log_var' [B, Z]: q's parameters.
        and the decoder outputs of the first sample ('logits', or 'mean' and 'log_scale'),
        [B, H, W, C] each.
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
