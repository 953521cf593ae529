"""A sequence classifier on the language models' Transformer: pool, dropout, linear head.

BERT's fine-tuning recipe (Devlin et al. 2019, arXiv:1810.04805, Sec. 4.1: the [CLS] vector
into a linear layer) and GPT's (Radford et al. 2018: the last token's vector), with mean
pooling over real tokens as the alternative for either. ``backbone`` has the parameter layout
of ``MaskedLM.encoder`` / ``CausalLM.decoder``, so a pretrained one drops in unchanged.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from jaxssl.models import ops
from jaxssl.models import transformer

POOLINGS = ('cls', 'mean', 'last')


def pool(hidden: jax.Array, padding_mask: jax.Array, how: str) -> jax.Array:
  """One vector per row: float32 [B, D] from hidden [B, L, D] and padding_mask bool [B, L]
  (True at real tokens, which come first in every row).

  'cls': position 0; 'mean': the mean over real tokens; 'last': the last real token.

  Raises:
    ValueError: ``how`` not in ``POOLINGS``.
  """
  if how == 'cls':
    return hidden[:, 0]
  real = padding_mask.astype(hidden.dtype)
  if how == 'mean':
    return (hidden * real[..., None]).sum(1) / jnp.maximum(real.sum(1), 1.0)[:, None]
  if how == 'last':
    last = jnp.maximum(padding_mask.sum(1) - 1, 0)
    return jnp.take_along_axis(hidden, last[:, None, None], axis=1)[:, 0]
  raise ValueError(f'model.pooling={how!r} is not one of {POOLINGS}')


class TextClassifier(nnx.Module):
  """Transformer backbone -> pooled vector -> dropout -> linear head (K logits)."""

  def __init__(self, cfg: transformer.TransformerConfig, num_classes: int, *, pooling: str,
               head_dropout: float, rngs: nnx.Rngs):
    if pooling not in POOLINGS:
      raise ValueError(f'model.pooling={pooling!r} is not one of {POOLINGS}')
    self.backbone = transformer.Transformer(cfg, rngs=rngs)
    self.head = nnx.Linear(cfg.width, num_classes,
                           kernel_init=nnx.initializers.normal(0.02), rngs=rngs)
    self.pooling, self.head_dropout = pooling, head_dropout

  def features(self, tokens: jax.Array, *, train: bool = False,
               rng_dropout: jax.Array | None = None) -> jax.Array:
    """Pooled float32 [B, D] of tokens int32 [B, L] (``PAD_ID`` = 0 marks padding)."""
    real = tokens != 0
    if self.backbone.cfg.causal:  # attention is causal; segment 0 marks the padding
      hidden, _ = self.backbone(tokens, segment_ids=real.astype(jnp.int32), train=train,
                                rng_dropout=rng_dropout)
    else:
      hidden, _ = self.backbone(tokens, padding_mask=real, train=train,
                                rng_dropout=rng_dropout)
    return pool(hidden, real, self.pooling)

  def __call__(self, tokens: jax.Array, *, train: bool = False,
               rng_dropout: jax.Array | None = None, frozen: bool = False) -> jax.Array:
    """Logits float32 [B, K] for tokens int32 [B, L].

    ``frozen``: the backbone runs in eval mode and passes no gradient (a linear probe);
    the head's dropout still applies when ``train``.
    """
    key_backbone = key_head = None
    if rng_dropout is not None:
      key_backbone, key_head = jax.random.split(rng_dropout)
    if frozen:
      x = jax.lax.stop_gradient(self.features(tokens))
    else:
      x = self.features(tokens, train=train, rng_dropout=key_backbone)
    x = ops.dropout(x, self.head_dropout, key_head, deterministic=not train)
    return self.head(x)
