"""Transformer shared by the masked (BERT) and causal (GPT) language models.

BERT (Devlin et al. 2019, arXiv:1810.04805): post-LayerNorm, bidirectional attention with a
padding mask, embedding LayerNorm, MLM head tied to the token embedding. GPT-2 (Radford et al.
2019): pre-LayerNorm, causal attention, final LayerNorm. Layer names follow BERT's (``qkv``
fused) so weights map onto ``transformers.BertForMaskedLM``. Parameters, residual stream,
LayerNorm, softmax and attention are float32; ``dtype='bfloat16'`` only rounds the dense
matmuls' operands (float32 accumulation, see ``Dense``).
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
from flax import nnx

from jaxssl.models import ops

# Size presets. mini/small follow the compact BERT sizes of Turc et al. 2019
# (arXiv:1908.08962); base is BERT-base.
PRESETS = {
    'tiny': dict(num_layers=2, width=32, num_heads=2, mlp_dim=64),
    'mini': dict(num_layers=4, width=256, num_heads=4, mlp_dim=1024),
    'small': dict(num_layers=4, width=512, num_heads=8, mlp_dim=2048),
    'base': dict(num_layers=12, width=768, num_heads=12, mlp_dim=3072),
}

_INIT_STD = 0.02  # BERT's initializer_range.


@dataclasses.dataclass(frozen=True)
class TransformerConfig:
  """Hyperparameters of a Transformer stack.

  Attributes:
    vocab_size: V, number of token ids.
    max_len: longest sequence the position embedding covers.
    num_layers, width, num_heads, mlp_dim: depth, D, H and F.
    dropout_rate: dropout on embeddings, attention output and MLP output (BERT's
      hidden_dropout_prob); attention probabilities are not dropped.
    causal: attend only to earlier positions (GPT) instead of the whole row (BERT).
    pre_norm: LayerNorm before each sub-layer plus a final one (GPT-2) instead of after each
      residual plus an embedding LayerNorm (BERT).
    type_vocab_size: number of segment (token type) embeddings; 0 disables them.
    layer_norm_eps: LayerNorm epsilon (BERT uses 1e-12).
    dtype: matmul input dtype name, 'float32' or 'bfloat16' (accumulation is float32).
    position_encoding: 'learned' (a [max_len, D] table added to the token embeddings) or
      'rope' (rotary on queries and keys, Su et al. 2021, arXiv:2104.09864).
    remat: in training, recompute each block's activations in the backward pass (gradient
      checkpointing, Chen et al. 2016, arXiv:1604.06174, ``nnx.remat``): activation memory
      per layer O(B L D) instead of O(B L (D + F) + B H L^2), for one more forward pass.
      XLA:CPU mostly drops the saving.
  """
  vocab_size: int
  max_len: int
  num_layers: int
  width: int
  num_heads: int
  mlp_dim: int
  dropout_rate: float = 0.1
  causal: bool = False
  pre_norm: bool = False
  type_vocab_size: int = 0
  layer_norm_eps: float = 1e-12
  dtype: str = 'float32'
  position_encoding: str = 'learned'
  remat: bool = False

  @classmethod
  def from_preset(cls, preset: str, **overrides) -> 'TransformerConfig':
    """A config from a size preset ('tiny', 'mini', 'small', 'base'); ValueError if unknown."""
    if preset not in PRESETS:
      raise ValueError(f'model.preset={preset!r} is not one of {sorted(PRESETS)}')
    return cls(**PRESETS[preset], **overrides)


class Dense(nnx.Linear):
  """``nnx.Linear`` (kernel [Din, Dout], bias [Dout]) with a written-out backward pass.

  With ``dtype=bfloat16`` the forward and both backward matmuls take bf16 operands with float32
  accumulation (PyTorch autocast's precision); see ``ops.dense_matmul``.
  """

  def __call__(self, x: jax.Array) -> jax.Array:
    """x: float [..., Din] -> float32 [..., Dout].

    Raises:
      TypeError: from forward-mode autodiff (``jax.jvp``, ``jax.jacfwd``) of a bfloat16
        layer, whose backward is a ``jax.custom_vjp`` (float32 layers support both modes).
    """
    y = ops.dense_matmul(x, self.kernel[...], jnp.dtype(self.dtype).name)
    return y if self.bias is None else y + self.bias[...]


def _dense(cfg: TransformerConfig, din: int, dout: int, rngs: nnx.Rngs) -> Dense:
  # Parameters and the residual stream stay float32; dtype='bfloat16' only rounds matmul
  # operands (see Dense and benchmarks/mlm_step.py).
  return Dense(din, dout, dtype=jnp.dtype(cfg.dtype), preferred_element_type=jnp.float32,
               kernel_init=nnx.initializers.normal(_INIT_STD), rngs=rngs)


def _norm(cfg: TransformerConfig, rngs: nnx.Rngs) -> nnx.LayerNorm:
  # Statistics in float32 even for bf16 compute.
  return nnx.LayerNorm(cfg.width, epsilon=cfg.layer_norm_eps, dtype=jnp.float32, rngs=rngs)


def rotary(x: jax.Array, positions: jax.Array, *, base: float = 10000.0) -> jax.Array:
  """Rotary position embedding (RoFormer, Su et al. 2021, eq. 34) of queries or keys.

  Channel pairs (2i, 2i + 1) of each head turn by ``position * base^(-2i/Dh)``. x: float
  [B, L, H, Dh], Dh even (else ValueError); positions: int [L] or [B, L]. Returns x's shape
  and dtype.
  """
  dh = x.shape[-1]
  if dh % 2:
    raise ValueError(f'rotary embeddings need an even head width, got {dh}')
  inv_freq = base ** (-jnp.arange(0, dh, 2, dtype=jnp.float32) / dh)  # [Dh/2]
  angles = positions[..., None].astype(jnp.float32) * inv_freq  # [(B,) L, Dh/2]
  if angles.ndim == 2:
    angles = angles[None]
  cos, sin = jnp.cos(angles)[:, :, None, :], jnp.sin(angles)[:, :, None, :]  # [B, L, 1, Dh/2]
  x1, x2 = x[..., 0::2].astype(jnp.float32), x[..., 1::2].astype(jnp.float32)
  rotated = jnp.stack([x1 * cos - x2 * sin, x1 * sin + x2 * cos], axis=-1)  # [B, L, H, Dh/2, 2]
  return rotated.reshape(x.shape).astype(x.dtype)


class SelfAttention(nnx.Module):
  """Multi-head self-attention (Vaswani et al. 2017) on ``jax.nn.dot_product_attention``."""

  def __init__(self, cfg: TransformerConfig, *, rngs: nnx.Rngs):
    if cfg.width % cfg.num_heads:
      raise ValueError(f'model width {cfg.width} is not divisible by num_heads {cfg.num_heads}')
    if cfg.position_encoding not in ('learned', 'rope'):
      raise ValueError(f"position_encoding={cfg.position_encoding!r} must be 'learned' or 'rope'")
    self.num_heads = cfg.num_heads
    self.causal = cfg.causal
    self.rope = cfg.position_encoding == 'rope'
    self.qkv = _dense(cfg, cfg.width, 3 * cfg.width, rngs)
    self.out = _dense(cfg, cfg.width, cfg.width, rngs)

  def __call__(self, x: jax.Array, mask: jax.Array | None, *,
               positions: jax.Array | None = None, kv_cache: dict | None = None):
    """Attends within ``x`` or, with a cache, over everything decoded so far.

    Args:
      x: [B, T, D] inputs.
      mask: bool broadcastable to [B, H, T, S] (True = may attend) or None; S = T without a
        cache, the cache length with one.
      positions: int32 [T] absolute positions of x's rows (default 0..T-1).
      kv_cache: None, or {'k', 'v': float32 [B, S, H, Dh]}: x's keys and values are written
        at ``positions`` (contiguous); the caller masks unwritten slots.

    Returns:
      (y [B, T, D], updated cache or None).
    """
    b, t, d = x.shape
    qkv = self.qkv(x).reshape(b, t, 3, self.num_heads, d // self.num_heads)  # [B, T, 3, H, Dh]
    q, k, v = qkv[:, :, 0], qkv[:, :, 1], qkv[:, :, 2]
    if positions is None:
      positions = jnp.arange(t)
    if self.rope:
      q, k = rotary(q, positions), rotary(k, positions)
    if kv_cache is None:
      y = jax.nn.dot_product_attention(q, k, v, mask=mask, is_causal=self.causal)
    else:
      start = (0, positions[0], 0, 0)
      kv_cache = {'k': jax.lax.dynamic_update_slice(kv_cache['k'], k.astype(jnp.float32), start),
                  'v': jax.lax.dynamic_update_slice(kv_cache['v'], v.astype(jnp.float32), start)}
      y = jax.nn.dot_product_attention(q.astype(jnp.float32), kv_cache['k'], kv_cache['v'],
                                       mask=mask)  # [B, T, H, Dh]
    return self.out(y.reshape(b, t, d)), kv_cache


class Mlp(nnx.Module):
  """Position-wise feed-forward layer with exact (erf) GELU, as BERT and GPT-2 use."""

  def __init__(self, cfg: TransformerConfig, *, rngs: nnx.Rngs):
    self.fc1 = _dense(cfg, cfg.width, cfg.mlp_dim, rngs)
    self.fc2 = _dense(cfg, cfg.mlp_dim, cfg.width, rngs)

  def __call__(self, x: jax.Array) -> jax.Array:
    return self.fc2(ops.gelu(self.fc1(x)))


class Block(nnx.Module):
  """One Transformer layer; post-norm (BERT) or pre-norm (GPT-2) per ``cfg.pre_norm``."""

  def __init__(self, cfg: TransformerConfig, *, rngs: nnx.Rngs):
    self.pre_norm = cfg.pre_norm
    self.attention = SelfAttention(cfg, rngs=rngs)
    self.attention_norm = _norm(cfg, rngs)
    self.mlp = Mlp(cfg, rngs=rngs)
    self.mlp_norm = _norm(cfg, rngs)
    self.dropout_rate = cfg.dropout_rate

  def __call__(self, x, mask, *, train: bool, rng_dropout: jax.Array | None,
               positions: jax.Array | None = None, kv_cache: dict | None = None):
    """x: [B, T, D] -> ([B, T, D], cache); ``rng_dropout`` needed when train and dropout > 0."""
    keys = jax.random.split(rng_dropout, 2) if rng_dropout is not None else (None, None)
    drop = lambda y, key: ops.dropout(y, self.dropout_rate, key, deterministic=not train)
    if self.pre_norm:
      y, kv_cache = self.attention(self.attention_norm(x), mask, positions=positions,
                                   kv_cache=kv_cache)
      x = x + drop(y, keys[0])
      return x + drop(self.mlp(self.mlp_norm(x)), keys[1]), kv_cache
    y, kv_cache = self.attention(x, mask, positions=positions, kv_cache=kv_cache)
    x = self.attention_norm(x + drop(y, keys[0]))
    return self.mlp_norm(x + drop(self.mlp(x), keys[1])), kv_cache


def attention_mask(padding_mask: jax.Array | None,
                   segment_ids: jax.Array | None = None) -> jax.Array | None:
  """Boolean attention mask [B, 1, L, L] (or [B, 1, 1, L]) from the inputs' validity.

  Args:
    padding_mask: bool [B, L], True at real tokens; keys at False are never attended.
    segment_ids: int32 [B, L] or None; a query attends only keys of its own segment.

  Returns:
    None when neither is given, else a bool mask broadcastable to [B, H, L, L].
  """
  mask = None
  if padding_mask is not None:
    mask = padding_mask[:, None, None, :]  # [B, 1, 1, L]
  if segment_ids is not None:
    same = segment_ids[:, None, :, None] == segment_ids[:, None, None, :]  # [B, 1, L, L]
    mask = same if mask is None else mask & same
  return mask


class Transformer(nnx.Module):
  """Token + position (+ segment) embeddings followed by ``num_layers`` blocks."""

  def __init__(self, cfg: TransformerConfig, *, rngs: nnx.Rngs):
    self.cfg = cfg
    emb_init = nnx.initializers.normal(_INIT_STD)
    self.token_embed = nnx.Embed(cfg.vocab_size, cfg.width, embedding_init=emb_init, rngs=rngs)
    self.position_embed = (nnx.Embed(cfg.max_len, cfg.width, embedding_init=emb_init, rngs=rngs)
                           if cfg.position_encoding == 'learned' else None)
    self.type_embed = (nnx.Embed(cfg.type_vocab_size, cfg.width, embedding_init=emb_init,
                                 rngs=rngs) if cfg.type_vocab_size else None)
    self.embed_norm = None if cfg.pre_norm else _norm(cfg, rngs)
    self.final_norm = _norm(cfg, rngs) if cfg.pre_norm else None
    self.blocks = nnx.List([Block(cfg, rngs=rngs) for _ in range(cfg.num_layers)])

  def __call__(self, tokens: jax.Array, *, padding_mask: jax.Array | None = None,
               segment_ids: jax.Array | None = None, type_ids: jax.Array | None = None,
               train: bool = False, rng_dropout: jax.Array | None = None):
    """Encodes a batch of token rows.

    Args:
      tokens: int32 [B, L] token ids, L <= max_len.
      padding_mask: bool [B, L], True at real tokens (keys at False are not attended).
      segment_ids: int32 [B, L] packed-document ids; attention stays within a document.
      type_ids: int32 [B, L] BERT token types (needs type_vocab_size > 0).
      train, rng_dropout: apply dropout, with this PRNG key (the caller derives it per step).

    Returns:
      (hidden [B, L, D] float32, intermediates {'embeddings', 'block_<i>': [B, L, D]}).

    Raises:
      ValueError: L > max_len, or train with dropout but no key.
    """
    cfg = self.cfg
    if tokens.shape[1] > cfg.max_len:
      raise ValueError(f'sequence length {tokens.shape[1]} exceeds model max_len {cfg.max_len}')
    if train and cfg.dropout_rate > 0 and rng_dropout is None:
      raise ValueError('train=True with dropout needs rng_dropout')
    keys = (list(jax.random.split(rng_dropout, cfg.num_layers + 1)) if rng_dropout is not None
            else [None] * (cfg.num_layers + 1))
    x = self._embed(tokens, jnp.arange(tokens.shape[1]), type_ids)
    x = ops.dropout(x, cfg.dropout_rate, keys[0], deterministic=not train)
    mask = attention_mask(padding_mask, segment_ids)
    intermediates = {'embeddings': x}

    def run_block(block, x, key):
      return block(x, mask, train=train, rng_dropout=key)[0]

    if cfg.remat and train:
      run_block = nnx.remat(run_block)
    for i, block in enumerate(self.blocks):
      x = run_block(block, x, keys[i + 1])
      intermediates[f'block_{i}'] = x
    if self.final_norm is not None:
      x = self.final_norm(x)
    return x, intermediates

  def _embed(self, tokens, positions, type_ids=None):
    x = self.token_embed(tokens)
    if self.position_embed is not None:
      x = x + self.position_embed(positions)[None]
    if self.type_embed is not None:
      x = x + self.type_embed(jnp.zeros_like(tokens) if type_ids is None else type_ids)
    return x if self.embed_norm is None else self.embed_norm(x)

  def init_cache(self, batch_size: int, length: int) -> list[dict]:
    """An empty key/value cache: per layer {'k', 'v': float32 zeros [B, S, H, Dh]}, S = length.

    Raises:
      ValueError: a bidirectional model, or a length past ``max_len`` with learned positions
        (RoPE may run past it, untrained there).
    """
    cfg = self.cfg
    if not cfg.causal:
      raise ValueError('a key/value cache needs a causal model')
    if cfg.position_encoding == 'learned' and length > cfg.max_len:
      raise ValueError(f'cache length {length} exceeds max_len {cfg.max_len} of the learned '
                       'position table')
    shape = (batch_size, length, cfg.num_heads, cfg.width // cfg.num_heads)
    return [{'k': jnp.zeros(shape, jnp.float32), 'v': jnp.zeros(shape, jnp.float32)}
            for _ in range(cfg.num_layers)]

  def decode(self, tokens: jax.Array, cache: list[dict], start: jax.Array):
    """Runs T new tokens at positions start..start+T-1 against the cache (no dropout).

    A prompt then one token at a time gives the hidden states of ``__call__`` on the whole row
    (up to float rounding).

    Args:
      tokens: int32 [B, T] the next tokens of every row (rows share positions).
      cache: from ``init_cache`` or a previous ``decode``; length S >= start + T.
      start: int32 scalar, the position of tokens[:, 0] (traced; one compilation per T).

    Returns:
      (hidden [B, T, D] float32, updated cache).
    """
    t, s = tokens.shape[1], cache[0]['k'].shape[1]
    positions = start + jnp.arange(t)  # [T]
    mask = (jnp.arange(s)[None, :] <= positions[:, None])[None, None]  # [1, 1, T, S]
    x = self._embed(tokens, positions)
    new_cache = []
    for block, layer_cache in zip(self.blocks, cache):
      x, layer_cache = block(x, mask, train=False, rng_dropout=None, positions=positions,
                             kv_cache=layer_cache)
      new_cache.append(layer_cache)
    if self.final_norm is not None:
      x = self.final_norm(x)
    return x, new_cache


class MaskedLM(nnx.Module):
  """BERT masked language model: Transformer encoder + MLM head tied to the token embedding.

  The head (BERT's ``cls.predictions``), dense -> GELU -> LayerNorm -> ``h @ E^T + b``, runs
  only at the gathered prediction positions (cost scales with P, not L).
  """

  def __init__(self, cfg: TransformerConfig, *, rngs: nnx.Rngs):
    if cfg.causal:
      raise ValueError('MaskedLM needs a bidirectional (causal=False) Transformer')
    self.encoder = Transformer(cfg, rngs=rngs)
    self.transform = _dense(cfg, cfg.width, cfg.width, rngs)
    self.transform_norm = _norm(cfg, rngs)
    self.output_bias = nnx.Param(jnp.zeros((cfg.vocab_size,), jnp.float32))

  def __call__(self, tokens: jax.Array, positions: jax.Array, *,
               padding_mask: jax.Array | None = None, train: bool = False,
               rng_dropout: jax.Array | None = None) -> jax.Array:
    """Logits float32 [B, P, V] at the prediction positions.

    Args:
      tokens: int32 [B, L] (masked) input ids; padding_mask: bool [B, L], True at real tokens.
      positions: int32 [B, P] positions whose tokens are predicted.
      train, rng_dropout: as for ``Transformer``.
    """
    hidden, _ = self.encoder(tokens, padding_mask=padding_mask, train=train,
                             rng_dropout=rng_dropout)  # [B, L, D]
    picked = jnp.take_along_axis(hidden, positions[..., None], axis=1)  # [B, P, D]
    h = self.transform_norm(ops.gelu(self.transform(picked)))
    embedding = self.encoder.token_embed.embedding[...]
    logits = ops.dense_matmul(h, embedding.T, self.encoder.cfg.dtype)  # [B, P, V]
    return logits + self.output_bias[...]


class CausalLM(nnx.Module):
  """GPT-2-style decoder (Radford et al. 2019), output layer tied to the token embedding.

  Logits ``h @ E^T`` after the final LayerNorm; position t's logits predict token t + 1.
  """

  def __init__(self, cfg: TransformerConfig, *, rngs: nnx.Rngs):
    if not cfg.causal:
      raise ValueError('CausalLM needs a causal=True Transformer')
    self.decoder = Transformer(cfg, rngs=rngs)

  def _logits(self, hidden: jax.Array) -> jax.Array:
    dtype = self.decoder.cfg.dtype
    embedding = self.decoder.token_embed.embedding[...]
    return ops.dense_matmul(hidden, embedding.T, dtype)  # [B, L, V]

  def __call__(self, tokens: jax.Array, *, segment_ids: jax.Array | None = None,
               train: bool = False, rng_dropout: jax.Array | None = None) -> jax.Array:
    """Next-token logits float32 [B, L, V] at every position of tokens int32 [B, L].

    ``segment_ids`` int32 [B, L] (0 = padding) keeps attention within packed documents; None =
    one document per row. ``train``, ``rng_dropout`` as for ``Transformer``.
    """
    hidden, _ = self.decoder(tokens, segment_ids=segment_ids, train=train,
                             rng_dropout=rng_dropout)
    return self._logits(hidden)

  def init_cache(self, batch_size: int, length: int) -> list[dict]:
    """See ``Transformer.init_cache``."""
    return self.decoder.init_cache(batch_size, length)

  def decode(self, tokens: jax.Array, cache: list[dict], start: jax.Array):
    """(logits [B, T, V] float32, cache) for T new tokens; see ``Transformer.decode``."""
    hidden, cache = self.decoder.decode(tokens, cache, start)
    return self._logits(hidden), cache
