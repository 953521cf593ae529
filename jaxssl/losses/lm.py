"""Language-model losses: pure functions of logits, labels and weights.

Each returns sums and the weight they are summed over, so the caller divides once by the
*global* count (over every device and micro-batch), never averaging per-device means.
Unit: nats per predicted token.
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
  """Per-token cross-entropy -log softmax(logits)[label], in nats.

  Args:
    logits: float [..., V] unnormalised log-probabilities (any float dtype; computed in f32).
    labels: int [...] target ids in [0, V).

  Returns:
    float32 [...] nats per token.

  Raises:
    ValueError: the leading shapes of logits and labels differ.
  """
  _check(logits, labels, None)
  log_probs = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)
  return -jnp.take_along_axis(log_probs, labels[..., None], axis=-1)[..., 0]


def masked_lm_loss(logits: jax.Array, labels: jax.Array,
                   weights: jax.Array) -> tuple[jax.Array, jax.Array]:
  """Masked-LM cross-entropy summed over the weighted (selected) positions.

  Devlin et al. 2019 (BERT), section 3.1: the loss is taken only at the masked positions.

  Args:
    logits: float [B, P, V] logits at the gathered prediction positions.
    labels: int32 [B, P] original tokens at those positions.
    weights: float [B, P], 1.0 at real predictions and 0.0 at unused slots.

  Returns:
    (loss_sum, weight_sum): float32 scalars; loss_sum / weight_sum is nats per masked token.

  Raises:
    ValueError: shapes disagree.
  """
  _check(logits, labels, weights)
  weights = weights.astype(jnp.float32)
  return jnp.sum(token_cross_entropy(logits, labels) * weights), jnp.sum(weights)


def weighted_accuracy(logits: jax.Array, labels: jax.Array,
                      weights: jax.Array) -> tuple[jax.Array, jax.Array]:
  """Number of weighted positions whose argmax equals the label, and the total weight.

  Args:
    logits: float [..., V]; labels: int [...]; weights: float [...].

  Returns:
    (correct_sum, weight_sum): float32 scalars.
  """
  _check(logits, labels, weights)
  weights = weights.astype(jnp.float32)
  correct = (jnp.argmax(logits, axis=-1) == labels).astype(jnp.float32)
  return jnp.sum(correct * weights), jnp.sum(weights)


def next_token_loss(logits: jax.Array, tokens: jax.Array,
                    segment_ids: jax.Array) -> tuple[jax.Array, jax.Array]:
  """Causal-LM cross-entropy: position t predicts token t + 1 (labels shifted exactly once).

  Radford et al. 2018/2019 (GPT, GPT-2). A target counts only when it is a real token of the
  same packed document as its context (``segment_ids`` equal and non-zero), so padding and
  the first token of a document (whose context would be another document) are excluded.

  Args:
    logits: float [B, L, V], logits at every input position.
    tokens: int32 [B, L] input ids; the targets are tokens[:, 1:].
    segment_ids: int32 [B, L], 1-based document index within the row, 0 at padding.

  Returns:
    (loss_sum, weight_sum): float32 scalars; loss_sum / weight_sum is nats per target
    token. An unpacked, unpadded row of T tokens has exactly T - 1 targets.

  Raises:
    ValueError: shapes disagree.
  """
  if tokens.shape != segment_ids.shape:
    raise ValueError(f'tokens {tokens.shape} and segment_ids {segment_ids.shape} disagree')
  labels = tokens[:, 1:]
  weights = (segment_ids[:, 1:] == segment_ids[:, :-1]) & (segment_ids[:, 1:] > 0)
  return masked_lm_loss(logits[:, :-1], labels, weights)
