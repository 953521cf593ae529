"""Fine-tuning: the whole encoder and a fresh linear head, by Adam on softmax cross-entropy."""

from __future__ import annotations

import functools
import math
import numbers
from typing import Any, Mapping

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxssl.eval import features as features_lib


def fine_tune(embed_fn: features_lib.NnxEmbedFn, variables: Mapping[str, Any],
              train_images: np.ndarray, train_labels: np.ndarray, test_images: np.ndarray,
              test_labels: np.ndarray, *,
              num_classes: int, num_steps: int = 300, batch_size: int = 64,
              learning_rate: float = 1e-3, seed: int = 0,
              eval_batch_size: int = 256) -> dict[str, float]:
  """Test accuracy after fine-tuning a copy of the encoder with a fresh linear head.

  Head: kernel [D, K] LeCun-normal from ``seed``, bias 0; ``optax.adam(learning_rate)``
  (constant, no weight decay) for ``num_steps`` steps on epoch-wise permuted batches (remainder
  dropped, batch_size capped at N). BatchNorm trains on batch statistics, Dropout off; the test
  split is classified in eval mode. The caller's ``variables`` are never written.

  Args:
    embed_fn: a ``features.NnxEmbedFn`` (BatchNorm must switch to train mode).
    variables: ``{'params', 'batch_stats'}`` from ``features.split_encoder``.
    train_images, test_images: uint8 or float [N, H, W, C] and [M, H, W, C]; labels int [N],
      [M] in [0, num_classes), num_classes = K >= 2.

  Returns:
    {'fine_tune_accuracy': fraction of test images right, in [0, 1],
     'fine_tune_train_loss': mean cross-entropy of the last min(20, num_steps) steps, nats}.

  Raises:
    ValueError: ``embed_fn`` not an NnxEmbedFn, bad images or labels, num_classes < 2, a
      step count or batch size < 1, or learning_rate not > 0.
    FloatingPointError: the training loss is NaN or inf (diverged).
  """
  if not isinstance(embed_fn, features_lib.NnxEmbedFn):
    raise ValueError(f'fine_tune needs an NnxEmbedFn (see nnx_embed_fn), got {embed_fn!r}')
  for name, v, least in (('num_classes', num_classes, 2), ('num_steps', num_steps, 1),
                         ('batch_size', batch_size, 1), ('eval_batch_size', eval_batch_size, 1)):
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < least:
      raise ValueError(f'{name}={v!r} must be an integer >= {least}')
  train_images = features_lib._check_images(train_images, 'train_images')
  test_images = features_lib._check_images(test_images, 'test_images')
  train_y = features_lib._check_labels(train_labels, len(train_images), 'train_labels', num_classes)
  test_y = features_lib._check_labels(test_labels, len(test_images), 'test_labels', num_classes)
  if not (isinstance(learning_rate, numbers.Real) and 0 < learning_rate < math.inf):
    raise ValueError(f'learning_rate={learning_rate!r} must be a finite number > 0')

  batch_size = min(batch_size, len(train_images))
  probe = jax.eval_shape(embed_fn, variables,
                         jax.ShapeDtypeStruct((1,) + train_images.shape[1:], jnp.float32))
  feature_dim = probe.shape[1]
  # Fresh buffers: the jitted step donates them, and the caller keeps its own arrays.
  copy = functools.partial(jax.tree.map, lambda a: jnp.array(a, copy=True))
  params = {'encoder': copy(variables['params']),
            'head': {'kernel': jax.nn.initializers.lecun_normal()(
                         jax.random.key(seed), (feature_dim, num_classes), jnp.float32),
                     'bias': jnp.zeros((num_classes,), jnp.float32)}}
  stats = copy(variables.get('batch_stats') or {})
  tx = optax.adam(learning_rate)
  opt_state = tx.init(params)

  def head(p, features):
    return features @ p['kernel'] + p['bias']  # [B, K]

  @functools.partial(jax.jit, donate_argnums=(0, 1, 2))
  def train_step(params, opt_state, stats, images, labels):
    def loss_fn(p):
      features, new_stats = embed_fn.apply({'params': p['encoder'], 'batch_stats': stats},
                                           images, train=True)
      logits = head(p['head'], features)
      loss = jnp.mean(optax.softmax_cross_entropy_with_integer_labels(logits, labels))
      return loss, new_stats
    (loss, new_stats), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
    updates, opt_state = tx.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, new_stats, loss

  rng = np.random.default_rng(seed)
  per_epoch = len(train_images) // batch_size
  order, losses = None, []
  for i in range(num_steps):
    if i % per_epoch == 0:
      order = rng.permutation(len(train_images))
    rows = np.sort(order[(i % per_epoch) * batch_size:(i % per_epoch + 1) * batch_size])
    params, opt_state, stats, loss = train_step(
        params, opt_state, stats, features_lib._as_float_images(train_images[rows]), train_y[rows])
    if i >= num_steps - 20:
      losses.append(loss)

  def classify(v, images):
    return head(v['head'], embed_fn({'params': v['encoder'], 'batch_stats': v['stats']},
                                    images))

  logits = features_lib.extract_features(classify, {**params, 'stats': stats}, test_images,
                            batch_size=eval_batch_size)
  train_loss = float(np.mean(jax.device_get(losses)))
  if not math.isfinite(train_loss):
    raise FloatingPointError(f'fine-tuning diverged: train loss {train_loss}')
  return {'fine_tune_accuracy': float(np.mean(np.argmax(logits, axis=1) == test_y)),
          'fine_tune_train_loss': train_loss}

