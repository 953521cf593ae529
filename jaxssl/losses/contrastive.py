"""Self-supervised losses on two views: SimCLR's NT-Xent and BYOL's regression, plus EMA.

NT-Xent: Chen et al. 2020 (arXiv:2002.05709, eq. 1); BYOL: Grill et al. 2020
(arXiv:2006.07733, eq. 2, sec. 3.2). Computed in float32 whatever the input dtype, in nats.
Call them on the global batch inside jit, so each anchor's negatives span the whole batch.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

# Norms are floored at this before dividing, so a zero row gives similarity 0 (not NaN).
_EPS = 1e-6


def _check_temperature(temperature) -> None:
  if not isinstance(temperature, jax.core.Tracer) and temperature <= 0:
    raise ValueError(f'temperature={temperature} must be > 0')


def _l2_normalize(x: jax.Array) -> jax.Array:
  """Rows of x (upcast to float32) divided by max(norm, eps)."""
  x = x.astype(jnp.float32)
  sq = jnp.sum(x * x, axis=-1, keepdims=True)
  return x * jax.lax.rsqrt(jnp.maximum(sq, _EPS**2))


def cosine_similarity(p: jax.Array, z: jax.Array) -> jax.Array:
  """Row-wise cosine similarity of p, z: float [B, D] -> float32 [B] in [-1, 1] (0 for a zero row).

  Raises:
    ValueError: the shapes differ or are not [B, D].
  """
  if p.shape != z.shape or p.ndim != 2:
    raise ValueError(f'p {p.shape} and z {z.shape} must both be [B, D]')
  return jnp.sum(_l2_normalize(p) * _l2_normalize(z), axis=-1)


def similarity(z1: jax.Array, z2: jax.Array) -> jax.Array:
  """Cosine similarities of all 2N projections: rows and columns are u = [z1; z2].

  Args:
    z1, z2: float [N, D], projections of views 1 and 2; row i of each is the same image.

  Returns:
    float32 [2N, 2N], entry (a, b) = cos(u_a, u_b); anchor a's positive is column (a + N) mod 2N.

  Raises:
    ValueError: the shapes differ or are not [N, D].
  """
  if z1.shape != z2.shape or z1.ndim != 2:
    raise ValueError(f'z1 {z1.shape} and z2 {z2.shape} must both be [N, D]')
  u = _l2_normalize(jnp.concatenate([z1, z2], axis=0))  # [2N, D] float32
  return jnp.einsum('ad,bd->ab', u, u, precision=jax.lax.Precision.HIGHEST)  # [2N, 2N]


def _positives(num_anchors: int) -> jax.Array:
  """[2N] column of each anchor's positive: a + N mod 2N."""
  n = num_anchors // 2
  return (jnp.arange(num_anchors) + n) % num_anchors


def _check_similarity(similarity_matrix: jax.Array) -> None:
  m = similarity_matrix.shape
  if len(m) != 2 or m[0] != m[1] or m[0] % 2 or m[0] == 0:
    raise ValueError(f'similarity {m} must be a square [2N, 2N] matrix, N >= 1')


def nt_xent_from_similarity(similarity_matrix: jax.Array, *, temperature: float) -> jax.Array:
  """NT-Xent per anchor from the [2N, 2N] similarity matrix (SimCLR eq. 1): float32 [2N] nats.

  l(a) = -log( exp(s_ap / t) / sum_{b != a} exp(s_ab / t) ), p the positive of a. The diagonal
  is masked with ``jnp.where``, so its values (even inf or NaN) change neither loss nor gradient.
  SimCLR's loss is the mean.

  Raises:
    ValueError: temperature t <= 0 or a matrix that is not [2N, 2N].
  """
  _check_temperature(temperature)
  _check_similarity(similarity_matrix)
  num = similarity_matrix.shape[0]
  logits = similarity_matrix.astype(jnp.float32) / temperature  # [2N, 2N]
  logits = jnp.where(jnp.eye(num, dtype=bool), jnp.finfo(jnp.float32).min, logits)
  positive = jnp.take_along_axis(logits, _positives(num)[:, None], axis=1)[:, 0]  # [2N]
  return jax.nn.logsumexp(logits, axis=1) - positive


def nt_xent(z1: jax.Array, z2: jax.Array, *, temperature: float) -> jax.Array:
  """SimCLR's NT-Xent loss, the mean over all 2N anchors (Chen et al. 2020, eq. 1).

  z1, z2: float [N, D] projections of views 1 and 2 of the same N images (global batch);
  temperature t > 0 (SimCLR: 0.5 for CIFAR-10, 0.1 for large batches on ImageNet). Returns a
  float32 scalar, nats per anchor; log(2N - 1), the chance level, when all pairs are equally
  similar (e.g. collapsed projections).

  Raises:
    ValueError: the shapes differ or are not [N, D], or temperature <= 0.
  """
  return jnp.mean(nt_xent_from_similarity(similarity(z1, z2), temperature=temperature))


def contrastive_accuracy(similarity_matrix: jax.Array) -> jax.Array:
  """Whether each anchor ranks its positive strictly first among its 2N - 1 candidates.

  similarity_matrix: float [2N, 2N] from ``similarity`` (else ValueError). Returns float32 [2N]
  of 0 or 1 (a tie with a negative is a miss, so collapsed projections score 0); the top-1
  contrastive accuracy is the mean.
  """
  _check_similarity(similarity_matrix)
  num = similarity_matrix.shape[0]
  s = similarity_matrix.astype(jnp.float32)
  pos = _positives(num)
  positive = jnp.take_along_axis(s, pos[:, None], axis=1)  # [2N, 1]
  cols = jnp.arange(num)
  negative = (cols[None, :] != cols[:, None]) & (cols[None, :] != pos[:, None])  # [2N, 2N]
  beaten = jnp.any(negative & (s >= positive), axis=1)  # [2N]
  return jnp.where(beaten, 0.0, 1.0).astype(jnp.float32)


def byol_loss(p: jax.Array, z: jax.Array) -> jax.Array:
  """BYOL's regression loss 2 - 2 cos(p, sg(z)), mean over the batch (Grill et al. eq. 2).

  p: float [B, D] online predictions of one view; z: float [B, D] target projections of the
  other, under ``stop_gradient``. Not symmetrised: BYOL's loss is ``byol_loss(p1, z2) +
  byol_loss(p2, z1)``. Returns a float32 scalar in [0, 4] (0 aligned, 2 orthogonal, 4
  opposite); ValueError if the shapes differ or are not [B, D].
  """
  return jnp.mean(2.0 - 2.0 * cosine_similarity(p, jax.lax.stop_gradient(z)))


def byol_tau(step, *, total_steps: int, tau0: float = 0.996) -> jax.Array:
  """BYOL's target decay rate, tau = 1 - (1 - tau0) (cos(pi k / K) + 1) / 2 (section 3.2).

  Args:
    step: int scalar k (may be traced), clipped to [0, K].
    total_steps: K > 0, the number of training steps.
    tau0: the base decay rate (BYOL: 0.996; 0.99 for short runs).

  Returns:
    float32 scalar in [tau0, 1], 1 from step K on.
  """
  k = jnp.clip(jnp.asarray(step, jnp.float32), 0.0, total_steps)
  return 1.0 - (1.0 - tau0) * (jnp.cos(jnp.pi * k / total_steps) + 1.0) / 2.0


def ema_update(target, online, tau):
  """tau * target + (1 - tau) * online, leaf by leaf (BYOL's target update, section 3.1).

  Pytrees of the same structure; tau in [0, 1] (1 keeps the target); leaves keep target's dtype.
  """
  return jax.tree.map(lambda t, o: (tau * t + (1.0 - tau) * o).astype(t.dtype), target, online)
