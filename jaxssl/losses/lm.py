"""Language-model losses: pure functions of logits, labels and weights, in nats per token.

Each returns sums and their weight, so the caller divides once by the global count (over
every device and micro-batch), never averaging per-device means.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def _check(logits: jax.Array, labels: jax.Array, weights: jax.Array | None) -> None:
  if logits.shape[:-1] != labels.shape:
    raise ValueError(f'logits {logits.shape} and labels {labels.shape} disagree: '
                     'logits must be labels.shape + [V]')
  if weights is not None and weights.shape != labels.shape:
    raise ValueError(f'weights {weights.shape} must have the labels shape {labels.shape}')


def token_cross_entropy(logits: jax.Array, labels: jax.Array) -> jax.Array:
  """Per-token cross-entropy -log softmax(logits)[label]: float32 [...] nats.

  Args:
    logits: float [..., V] unnormalised log-probabilities (any float dtype; computed in f32).
    labels: int [...] target ids in [0, V).

  Raises:
    ValueError: the leading shapes of logits and labels differ.
  """
  _check(logits, labels, None)
  log_probs = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)
  return -jnp.take_along_axis(log_probs, labels[..., None], axis=-1)[..., 0]


def masked_lm_loss(logits: jax.Array, labels: jax.Array,
                   weights: jax.Array) -> tuple[jax.Array, jax.Array]:
  """Masked-LM cross-entropy summed over the selected positions (BERT, Devlin et al. 2019, 3.1).

  Args:
    logits: float [B, P, V] logits at the gathered prediction positions.
    labels: int32 [B, P] original tokens; weights: float [B, P], 1.0 real, 0.0 unused slot.

  Returns:
    (loss_sum, weight_sum): float32 scalars; loss_sum / weight_sum is nats per masked token.
    ValueError if shapes disagree.
  """
  _check(logits, labels, weights)
  weights = weights.astype(jnp.float32)
  return jnp.sum(token_cross_entropy(logits, labels) * weights), jnp.sum(weights)


def weighted_accuracy(logits: jax.Array, labels: jax.Array,
                      weights: jax.Array) -> tuple[jax.Array, jax.Array]:
  """(correct_sum, weight_sum), float32: weight of positions whose argmax is the label, and total.

  Shapes: logits float [..., V], labels int [...], weights float [...].
  """
  _check(logits, labels, weights)
  weights = weights.astype(jnp.float32)
  correct = (jnp.argmax(logits, axis=-1) == labels).astype(jnp.float32)
  return jnp.sum(correct * weights), jnp.sum(weights)


def next_token_loss(logits: jax.Array, tokens: jax.Array,
                    segment_ids: jax.Array) -> tuple[jax.Array, jax.Array]:
  """Causal-LM cross-entropy: position t predicts token t + 1 (GPT, Radford et al. 2018/2019).

  A target counts only within the same packed document as its context (``segment_ids`` equal
  and non-zero): padding and each document's first token are excluded.

  Args:
    logits: float [B, L, V], logits at every input position.
    tokens: int32 [B, L] input ids; the targets are tokens[:, 1:].
    segment_ids: int32 [B, L], 1-based document index within the row, 0 at padding.

  Returns:
    (loss_sum, weight_sum): float32 scalars; loss_sum / weight_sum is nats per target token.
    An unpacked, unpadded row of T tokens has exactly T - 1 targets. ValueError if shapes
    disagree.
  """
  if tokens.shape != segment_ids.shape:
    raise ValueError(f'tokens {tokens.shape} and segment_ids {segment_ids.shape} disagree')
  labels = tokens[:, 1:]
  weights = (segment_ids[:, 1:] == segment_ids[:, :-1]) & (segment_ids[:, 1:] > 0)
  return masked_lm_loss(logits[:, :-1], labels, weights)
