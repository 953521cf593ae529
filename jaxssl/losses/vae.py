"""Variational autoencoder losses: KL, image likelihoods, ELBO and IWAE bounds.

Kingma & Welling 2014 (arXiv:1312.6114); Burda et al. 2016 (IWAE, arXiv:1509.00519).
Likelihoods, KL and bounds are float32 [B], nats per image, summed (never averaged) over pixels
or latent dims, so ``bits_per_dim`` of an ELBO is a real bound on the discrete images.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

# Range that log-variances are clipped to (std in [3e-7, 3.3e6]) so KL and samples stay
# finite; ``clip_log_var`` applies it and the VAE model samples with the same clipped value.
LOG_VAR_MIN, LOG_VAR_MAX = -30.0, 30.0
# Default floor on a logistic's log-scale (scale e^-8, 0.085 of a 256-level bin): a variance
# floor that keeps a collapsing scale from producing huge gradients.
MIN_LOG_SCALE = -8.0
# Ceiling on a logistic's log-scale (scale 4.9e8): past it exp(-log_scale) goes subnormal and
# the bin probabilities lose all precision. No [0, 1] image model gets near it.
_MAX_LOG_SCALE = 20.0


def _check_same(a: jax.Array, b: jax.Array, a_name: str, b_name: str) -> None:
  if a.shape != b.shape:
    raise ValueError(f'{a_name} {a.shape} and {b_name} {b.shape} must have the same shape')
  if a.ndim < 1:
    raise ValueError(f'{a_name} {a.shape} and {b_name} {b.shape} need a leading batch axis')


def _sum_per_example(x: jax.Array) -> jax.Array:
  return jnp.sum(jnp.reshape(x, (x.shape[0], -1)), axis=-1)  # [B]


def clip_log_var(log_var: jax.Array) -> jax.Array:
  """log_var clipped to [LOG_VAR_MIN, LOG_VAR_MAX] (zero gradient outside), as float32."""
  return jnp.clip(log_var.astype(jnp.float32), LOG_VAR_MIN, LOG_VAR_MAX)


def gaussian_kl(mean: jax.Array, log_var: jax.Array) -> jax.Array:
  """KL(N(mean, diag(exp(log_var))) || N(0, I)), summed over latent dimensions.

  Kingma & Welling 2014, app. B: -KL = 1/2 sum(1 + log_var - mean^2 - exp(log_var)).
  ``log_var`` is first clipped by ``clip_log_var``, so values and gradients stay finite.
  mean, log_var: float [B, Z] (ValueError if the shapes differ) -> float32 [B] nats, >= 0.
  """
  _check_same(mean, log_var, 'mean', 'log_var')
  mean, log_var = mean.astype(jnp.float32), clip_log_var(log_var)
  return 0.5 * _sum_per_example(mean * mean + jnp.exp(log_var) - 1.0 - log_var)


def bernoulli_log_likelihood(logits: jax.Array, x: jax.Array) -> jax.Array:
  """log p(x | logits) of independent Bernoulli pixels, summed over each image: float32 [B] <= 0.

  Via ``log_sigmoid`` (finite for any logit). logits and x: float [B, H, W, C], x in {0, 1}
  (strictly between, this is a cross-entropy, not a log-probability); ValueError if the
  shapes differ.
  """
  _check_same(logits, x, 'logits', 'x')
  logits, x = logits.astype(jnp.float32), x.astype(jnp.float32)
  return _sum_per_example(x * jax.nn.log_sigmoid(logits) + (1 - x) * jax.nn.log_sigmoid(-logits))


def _log1mexp(d: jax.Array) -> jax.Array:
  # log(1 - exp(-d)) for d > 0: accurate near 0, where log1p(-exp(-d)) rounds to log 0; for
  # large d it is off by at most float32 epsilon in absolute terms, and its gradient is finite.
  return jnp.log(-jnp.expm1(-d))


def discretized_logistic_log_likelihood(mean: jax.Array, log_scale: jax.Array, x: jax.Array,
                                        *, num_levels: int,
                                        min_log_scale: float = MIN_LOG_SCALE) -> jax.Array:
  """log P(x) of pixels on ``num_levels`` grey levels under a per-pixel discretised logistic.

  Salimans et al. 2017 (PixelCNN++, arXiv:1701.05517), eq. 2, one logistic per pixel: level
  k/(n - 1) gets the mass on [x - h, x + h], h = 1 / (2 (n - 1)); the end levels take the tails,
  so it is a true log-probability. Interior bins are computed in log space (finite for any
  mean). ``log_scale`` is clipped to [min_log_scale, 20] (the floor: a variance floor).

  Args:
    mean, log_scale: float [B, H, W, C], logistic location (pixel units, usually in [0, 1])
      and natural log of its scale.
    x: float [B, H, W, C] pixels in [0, 1]; each is snapped to the nearest of the levels.
    num_levels: n >= 2, number of grey levels (256 for 8-bit images, 2 for binary).

  Returns:
    float32 [B], nats per image (<= 0).

  Raises:
    ValueError: shapes differ, or num_levels < 2.
  """
  _check_same(mean, x, 'mean', 'x')
  _check_same(log_scale, x, 'log_scale', 'x')
  if num_levels < 2:
    raise ValueError(f'num_levels must be at least 2, got {num_levels}')
  steps = num_levels - 1
  level = jnp.clip(jnp.round(x.astype(jnp.float32) * steps), 0, steps)  # [B, H, W, C]
  log_scale = jnp.clip(log_scale.astype(jnp.float32), min_log_scale, _MAX_LOG_SCALE)
  inv_scale = jnp.exp(-log_scale)
  centred = level / steps - mean.astype(jnp.float32)
  half = 0.5 / steps
  lower, upper = (centred - half) * inv_scale, (centred + half) * inv_scale
  is_low, is_high = level == 0, level == steps
  log_mass = (jnp.where(is_high, 0.0, jax.nn.log_sigmoid(upper))  # P(X <= x + h)
              + jnp.where(is_low, 0.0, jax.nn.log_sigmoid(-lower))  # P(X >= x - h)
              + jnp.where(is_low | is_high, 0.0, _log1mexp(2 * half * inv_scale)))
  return _sum_per_example(log_mass)


def elbo(log_likelihood: jax.Array, kl: jax.Array) -> jax.Array:
  """ELBO E_q[log p(x | z)] - KL(q(z | x) || p(z)) (Kingma & Welling eq. 3), float32 [B] nats.

  log_likelihood (e.g. a one-sample estimate) and kl: float [B] nats per image; ValueError if
  the shapes differ. <= log p(x) in expectation.
  """
  _check_same(log_likelihood, kl, 'log_likelihood', 'kl')
  return log_likelihood.astype(jnp.float32) - kl.astype(jnp.float32)


def iwae_bound(log_weights: jax.Array) -> jax.Array:
  """Importance-weighted bound log (1/K) sum_k w_k (Burda et al. 2016, eq. 8), float32 [B] nats.

  log_weights: float [K, B], log p(x, z_k) - log q(z_k | x) (ValueError unless 2-D). >= the
  mean log weight, tighter as K grows.
  """
  if log_weights.ndim != 2:
    raise ValueError(f'log_weights {log_weights.shape} must be [K, B]')
  num_samples = log_weights.shape[0]
  return (jax.nn.logsumexp(log_weights.astype(jnp.float32), axis=0)
          - jnp.log(jnp.float32(num_samples)))


def bits_per_dim(nats_per_image: jax.Array, num_dims: int) -> jax.Array:
  """-nats_per_image / (num_dims ln 2): bits per dimension (lower is better), float32 [...].

  ``nats_per_image`` is a log-likelihood or lower bound (``elbo``, ``iwae_bound``), which then
  gives an upper bound; ``num_dims`` = H * W * C.
  """
  return -jnp.asarray(nats_per_image, jnp.float32) / (num_dims * math.log(2.0))
