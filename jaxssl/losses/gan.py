"""GAN losses on discriminator logits (Goodfellow et al. 2014, arXiv:1406.2661).

D = sigmoid(logit) is trained by binary cross-entropy (real -> 1, fake -> 0, eq. 1); the
generator uses the non-saturating -log D(G(z)) of section 3. Written with ``log_sigmoid``,
finite for any logit. Logits are float [B] or [B, ...] (summed per example); values are
float32 [B], nats per example; the caller takes the mean.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def _per_example(logits: jax.Array) -> jax.Array:
  if logits.ndim < 1:
    raise ValueError(f'logits {logits.shape} need a leading batch axis')
  logits = logits.astype(jnp.float32)
  return jnp.reshape(logits, (logits.shape[0], -1))  # [B, P]


def discriminator_loss(real_logits: jax.Array, fake_logits: jax.Array) -> jax.Array:
  """-log D(x) - log(1 - D(G(z))) per example (ln 4 when both logits are 0).

  Raises:
    ValueError: ``real_logits`` and ``fake_logits`` shapes differ.
  """
  if real_logits.shape != fake_logits.shape:
    raise ValueError(f'real_logits {real_logits.shape} and fake_logits {fake_logits.shape} '
                     'must have the same shape')
  real, fake = _per_example(real_logits), _per_example(fake_logits)
  return -jnp.sum(jax.nn.log_sigmoid(real) + jax.nn.log_sigmoid(-fake), axis=-1)


def generator_loss(fake_logits: jax.Array) -> jax.Array:
  """Non-saturating generator loss -log D(G(z)) per example (ln 2 at logit 0)."""
  return -jnp.sum(jax.nn.log_sigmoid(_per_example(fake_logits)), axis=-1)
