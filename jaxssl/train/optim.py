"""Optimizers: AdamW with warmup + decay, weight-decay masks, clipping, accumulation.

Follows BERT's recipe (Devlin et al. 2019, appendix A.2): Adam with decoupled weight decay
(Loshchilov & Hutter 2019), linear warmup then linear decay, no decay on biases and LayerNorm.
"""

from __future__ import annotations

import jax
import ml_collections
import optax

# Parameter leaves never weight-decayed: biases (any name ending in 'bias', e.g. the MLM
# head's output_bias) and LayerNorm scales and offsets.
NO_DECAY_SUFFIXES = ('bias', 'scale')


def make_schedule(optim: ml_collections.ConfigDict, num_train_steps: int) -> optax.Schedule:
  """Learning rate per step: linear warmup from 0 to ``learning_rate``, then decay.

  ``optim.decay`` is 'linear' (to 0 at ``num_train_steps``), 'cosine' (to 0) or 'constant'.
  A warmup of 0 starts at the peak rate.

  Raises:
    ValueError: unknown ``optim.decay``.
  """
  peak, warmup = optim.learning_rate, optim.warmup_steps
  decay_steps = max(num_train_steps - warmup, 1)
  if optim.decay == 'linear':
    decay = optax.linear_schedule(peak, 0.0, decay_steps)
  elif optim.decay == 'cosine':
    decay = optax.cosine_decay_schedule(peak, decay_steps)
  elif optim.decay == 'constant':
    decay = optax.constant_schedule(peak)
  else:
    raise ValueError(f"optim.decay={optim.decay!r} must be 'linear', 'cosine' or 'constant'")
  if warmup == 0:
    return decay
  return optax.join_schedules([optax.linear_schedule(0.0, peak, warmup), decay], [warmup])


def decay_mask(params) -> object:
  """Pytree of bools like ``params``: True where weight decay applies.

  Every leaf whose name (last path key) ends in one of ``NO_DECAY_SUFFIXES`` — biases and
  LayerNorm parameters — is excluded; kernels and embeddings are decayed.
  """
  def decays(path, _):
    last = path[-1]
    name = getattr(last, 'key', getattr(last, 'name', None))
    return not str(name).endswith(NO_DECAY_SUFFIXES)
  return jax.tree_util.tree_map_with_path(decays, params)


def make_optimizer(optim: ml_collections.ConfigDict,
                   num_train_steps: int) -> optax.GradientTransformation:
  """Global-norm clipping followed by AdamW on the schedule of ``make_schedule``.

  Config fields: learning_rate, warmup_steps, decay, weight_decay, b1, b2, eps,
  grad_clip_norm (0 disables clipping), skip_nonfinite_updates (0 disables; N > 0 wraps
  everything in ``optax.apply_if_finite``: an update whose gradients hold a NaN or inf is
  dropped, parameters and optimizer state unchanged, up to N steps in a row; the N + 1-th is
  applied and the loop's check stops the run. Skipped steps do not advance the schedule).
  """
  tx = optax.adamw(make_schedule(optim, num_train_steps), b1=optim.b1, b2=optim.b2,
                   eps=optim.eps, weight_decay=optim.weight_decay, mask=decay_mask)
  if optim.grad_clip_norm > 0:
    tx = optax.chain(optax.clip_by_global_norm(optim.grad_clip_norm), tx)
  if optim.get('skip_nonfinite_updates', 0) > 0:
    tx = optax.apply_if_finite(tx, max_consecutive_errors=optim.skip_nonfinite_updates)
  return tx


def adamw_config(*, learning_rate: float, warmup_steps: int, decay: str = 'cosine',
                 weight_decay: float = 0.0, b1: float = 0.9, b2: float = 0.999,
                 eps: float = 1e-8, grad_clip_norm: float = 0.0,
                 grad_accum_steps: int = 1,
                 skip_nonfinite_updates: int = 0) -> ml_collections.ConfigDict:
  """The ``config.optim`` that ``make_optimizer`` reads (one definition for every experiment).

  Fields: learning_rate (peak AdamW rate), warmup_steps (linear from 0; 0 starts at the
  peak), decay ('linear' | 'cosine' | 'constant' after warmup), weight_decay (decoupled,
  never on biases or LayerNorm), b1, b2, eps (Adam), grad_clip_norm (global norm; 0
  disables), grad_accum_steps (micro-batches per step, same update as one large batch),
  skip_nonfinite_updates (most non-finite updates dropped in a row; 0: the first one stops
  the run, as production trainers' opt-in "skip bad steps").
  """
  return ml_collections.ConfigDict(dict(
      learning_rate=learning_rate, warmup_steps=warmup_steps, decay=decay,
      weight_decay=weight_decay, b1=b1, b2=b2, eps=eps, grad_clip_norm=grad_clip_norm,
      grad_accum_steps=grad_accum_steps, skip_nonfinite_updates=skip_nonfinite_updates))
