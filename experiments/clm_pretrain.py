r"""GPT-style causal language-model pretraining, with samples from a key/value-cached decoder.

Radford, Narasimhan, Salimans & Sutskever 2018 ("Improving Language Understanding by
Generative Pre-Training") and Radford et al. 2019 (GPT-2): a pre-LayerNorm Transformer
decoder predicts every next token; the output layer is tied to the token embedding.
Documents are packed as ``[BOS] text [EOS]`` with segment ids, so neither attention nor the
loss crosses a document boundary.

Run (offline, on the Python reference text that ships with Python):

  python -m experiments.clm_pretrain --workdir=/tmp/clm
  python -m tools.generate --workdir=/tmp/clm --prompt="The list"

Other corpora: ``--config.data.files='/path/*.txt'`` or a prepared TFDS dataset
(``--config.data.name=lm1b --config.data.data_dir=gs://...``). Running again with the same
workdir resumes from its latest checkpoint. Metrics: ``eval/loss`` (nats per token),
``eval/perplexity``, ``eval/bits_per_byte`` (tokenizer-independent) and the add-one unigram
baseline ``eval/unigram_perplexity``; results of the default run on 2 CPU cores: see README.
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from jaxssl import config_checks
from jaxssl.data import lm_data, packing, pipeline
from jaxssl.data import tokenizer as tokenizer_lib
from jaxssl.eval import driver
from jaxssl.generation import decode, sampling
from jaxssl.losses import lm as lm_losses
from jaxssl.models import transformer
from jaxssl.parallel import sharding
from jaxssl.train import cli, loop, optim, rngs, run_config
from jaxssl.train import state as state_lib
from jaxssl.train import step as train_step_lib

EXPERIMENT = 'clm_pretrain'
BOS_ID, EOS_ID = tokenizer_lib.CLS_ID, tokenizer_lib.SEP_ID  # [CLS] opens, [SEP] ends a text


def get_config() -> ml_collections.ConfigDict:
  """The default run: a 4-layer GPT (RoPE) on the pydoc corpus, under 10 minutes on 2 cores."""
  # Vocabulary smaller than the MLM's 4096: the pydoc corpus is ~70k tokens at 4096, which
  # a GPT overfits within 200 steps; 1024 gives ~40% more targets per epoch and a lower
  # held-out bits/byte (1.62 vs 2.10 measured at 400 steps). Rows overlap by one token.
  c = run_config.base_config(
      lm_data.data_config(vocab_size=1024, seq_len=128), global_batch_size=32,
      num_train_steps=400, log_every_steps=50, eval_every_steps=200, checkpoint_every_steps=200)

  c.model = ml_collections.ConfigDict()
  c.model.preset = 'mini'  # tiny | mini | small | base (layers x width, see transformer.py).
  c.model.dropout_rate = 0.1  # Embedding, attention-output and MLP-output dropout.
  c.model.dtype = 'float32'  # Matmul inputs: float32 | bfloat16 (f32 accumulation and params).
  c.model.position_encoding = 'rope'  # rope | learned (GPT-2's table).
  c.model.remat = False  # Recompute each block in the backward pass (less memory, long L).

  c.optim = optim.adamw_config(learning_rate=2e-3, warmup_steps=50, weight_decay=0.1,
                                b2=0.95, grad_clip_norm=1.0)

  c.eval = ml_collections.ConfigDict()
  c.eval.global_batch_size = 64  # Rows per eval step; the last batch is padded and weighted.

  c.generate = ml_collections.ConfigDict()  # Samples written to TensorBoard at eval time.
  c.generate.prompt = 'The'  # Text after [BOS]; '' samples from [BOS] alone.
  c.generate.num_samples = 2  # Rows sampled (the first is greedy when num_samples > 1).
  c.generate.max_new_tokens = 48  # Tokens per sample.
  c.generate.temperature = 0.8  # Softmax temperature (0 = greedy).
  c.generate.top_k = 0  # Keep the k most likely tokens (0 = all).
  c.generate.top_p = 0.95  # Nucleus mass (1 = all).

  return c


def smoke_config() -> ml_collections.ConfigDict:
  """A tiny model for a few steps on a slice of the pydoc corpus: seconds, for tests."""
  c = run_config.smoke(get_config(), global_batch_size=8, eval_batch_size=16)
  lm_data.smoke(c.data)
  c.model.preset = 'tiny'
  c.generate.max_new_tokens = 8
  return c


# ----------------------------------------------------------------------------- config

def validate_config(config: ml_collections.ConfigDict, num_devices: int) -> None:
  """Raises ValueError naming the first bad field; runs before any data or compilation."""
  run_config.check_training(config, num_devices)
  lm_data.check_config(config, min_seq_len=2)
  config_checks.one_of(config, 'model.preset', transformer.PRESETS)
  config_checks.one_of(config, 'model.dtype', ('float32', 'bfloat16'))
  config_checks.one_of(config, 'model.position_encoding', ('learned', 'rope'))
  if not 0 <= config.model.dropout_rate < 1:
    raise ValueError(f'model.dropout_rate={config.model.dropout_rate} must be in [0, 1)')
  config_checks.positive(config, 'generate.num_samples', 'generate.max_new_tokens')
  g = config.generate
  try:
    sampling.check_settings(temperature=g.temperature, top_k=g.top_k, top_p=g.top_p)
  except ValueError as e:
    raise ValueError(f'generate.{e}') from None


# ----------------------------------------------------------------------------- data

def prepare_data(config: ml_collections.ConfigDict, workdir: str,
                 expected_sha256: str | None = None) -> dict:
  """Prepares (once) or opens the ``[BOS] doc [EOS]``-packed corpus; adds unigram statistics.

  Returns a dict with ``train`` rows (``tokens``, ``segment_ids``: ``rowfile.RowFile`` [N, L]),
  ``eval`` rows (the same keys, int32 [M, L] in memory, ``lm_data.eval_rows``),
  the ``tokenizer``, ``log_unigram`` float32 [V] (add-one smoothed over the whole vocabulary,
  nats; counted over the training targets: text tokens and [EOS]), ``eval_bytes`` (UTF-8
  bytes of the held-out text behind ``eval``, for bits per byte) and ``info`` (JSON-able corpus facts).

  Raises:
    ValueError: resume onto an edited corpus (``expected_sha256``), or empty data.
  """
  text = lm_data.load(config.data, workdir, kind=packing.CAUSAL,
                      expected_sha256=expected_sha256)
  vocab = text.tokenizer.vocab_size
  counts = text.unigram_counts.copy()
  counts[EOS_ID] += text.info['data/num_train_packed_documents']
  info = dict(text.info, **{'data/num_eval_bytes': text.eval_bytes})
  return dict(train=text.train, eval=text.eval, tokenizer=text.tokenizer,
              log_unigram=lm_data.add_one_log_probs(counts, np.ones(vocab, bool)),
              eval_bytes=text.eval_bytes, info=info)


# ----------------------------------------------------------------------------- model

def model_config(config: ml_collections.ConfigDict, vocab_size: int):
  return transformer.TransformerConfig.from_preset(
      config.model.preset, vocab_size=vocab_size, max_len=config.data.seq_len, causal=True,
      pre_norm=True, layer_norm_eps=1e-5, dropout_rate=config.model.dropout_rate,
      dtype=config.model.dtype, position_encoding=config.model.position_encoding,
      remat=config.model.remat)


def train_step(state, batch, rng, *, config):
  """One AdamW step on a global batch; pure and jit-compiled once.

  Args:
    state: TrainState.
    batch: {'tokens', 'segment_ids': int32 [B, L]} global (sharded) rows.
    rng: the run's train key; dropout keys are ``fold_in(rng, state.step)``.

  Returns:
    (state, metrics): f32 scalars ``loss`` (nats per target token over the global batch),
    ``accuracy`` (next-token argmax), ``grad_norm``, ``num_targets``.
  """
  def sums_fn(params, mb, key):
    model = state_lib.merge_model(state.graphdef, params)
    logits = model(mb['tokens'], segment_ids=mb['segment_ids'], train=True, rng_dropout=key)
    total, count = lm_losses.next_token_loss(logits, mb['tokens'], mb['segment_ids'])
    weights = _target_weights(mb['segment_ids'])
    correct, _ = lm_losses.weighted_accuracy(logits[:, :-1], mb['tokens'][:, 1:], weights)
    return total, {'count': count, 'correct': correct}

  grads, sums = train_step_lib.accumulate_gradients(
      sums_fn, state.params, batch, jax.random.fold_in(rng, state.step),
      config.optim.grad_accum_steps)
  count = jnp.maximum(sums['count'], 1.0)
  grads = train_step_lib.divide(grads, count)  # mean over the global target tokens
  metrics = dict(loss=sums['loss'] / count, accuracy=sums['correct'] / count,
                 grad_norm=optax.global_norm(grads), num_targets=count)
  return state.apply_gradients(grads), metrics


def _target_weights(segment_ids):
  """f32 [B, L-1]: 1 where token t + 1 is a target of position t (as next_token_loss)."""
  return ((segment_ids[:, 1:] == segment_ids[:, :-1]) & (segment_ids[:, 1:] > 0)).astype(
      jnp.float32)


def eval_step(params, batch, *, graphdef, log_unigram):
  """Sums over one eval batch (padding rows have segment 0 and add nothing).

  Args:
    params: parameter dict.
    batch: {'tokens', 'segment_ids': int32 [B, L], 'weights' f32 [B], 'index' int32 [B]}.

  Returns:
    dict of f32 scalar sums: loss (nats), count (targets), correct, unigram_loss (nats).
  """
  model = state_lib.merge_model(graphdef, params)
  tokens, segment_ids = batch['tokens'], batch['segment_ids']
  logits = model(tokens, segment_ids=segment_ids, train=False)
  loss, count = lm_losses.next_token_loss(logits, tokens, segment_ids)
  weights = _target_weights(segment_ids)
  correct, _ = lm_losses.weighted_accuracy(logits[:, :-1], tokens[:, 1:], weights)
  unigram = jnp.where(weights > 0, -log_unigram[tokens[:, 1:]], 0.0)
  return dict(loss=loss, count=count, correct=correct, unigram_loss=jnp.sum(unigram))


def evaluate(params, rows, eval_fn, mesh, config, eval_bytes: int) -> dict[str, float]:
  """Scores every target of the held-out split; returns the ``eval/*`` metrics.

  Bits per byte = total nats / ln 2 / UTF-8 bytes of the held-out text (the [EOS] targets'
  loss included), comparable across tokenizers.
  """
  t = driver.sum_over_split(eval_fn, params, rows, mesh,
                            global_batch_size=config.eval.global_batch_size)
  n = max(t['count'], 1.0)
  bits = 1.0 / (math.log(2) * max(eval_bytes, 1))
  return {'loss': t['loss'] / n, 'perplexity': math.exp(t['loss'] / n),
          'bits_per_byte': t['loss'] * bits, 'accuracy': t['correct'] / n,
          'num_tokens': t['count'], 'unigram_loss': t['unigram_loss'] / n,
          'unigram_perplexity': math.exp(t['unigram_loss'] / n),
          'unigram_bits_per_byte': t['unigram_loss'] * bits}


def sample_texts(graphdef, params, tokenizer, g: ml_collections.ConfigDict,
                 rng: jax.Array) -> list[str]:
  """``g.num_samples`` continuations of ``g.prompt`` (see ``decode.generate_text``); with
  several samples the first is greedy, the others use g's sampling settings."""
  greedy = dict(temperature=0.0) if g.num_samples > 1 else {}
  first = decode.generate_text(graphdef, params, tokenizer, g.prompt, bos_id=BOS_ID,
                               eos_id=EOS_ID, num_samples=1, max_new_tokens=g.max_new_tokens,
                               rng=rng, **{**_settings(g), **greedy})
  if g.num_samples == 1:
    return first
  return first + decode.generate_text(
      graphdef, params, tokenizer, g.prompt, bos_id=BOS_ID, eos_id=EOS_ID,
      num_samples=g.num_samples - 1, max_new_tokens=g.max_new_tokens, rng=rng, **_settings(g))


def check_samples_fit(config, tokenizer) -> None:
  """With learned positions, [BOS] + prompt + new tokens must fit the position table.

  Raises:
    ValueError: naming ``generate.max_new_tokens`` (checked before training starts).
  """
  g = config.generate
  prompt_len = len(tokenizer.encode([g.prompt])[0]) if g.prompt else 0
  total = 1 + prompt_len + g.max_new_tokens
  if config.model.position_encoding == 'learned' and total > config.data.seq_len:
    raise ValueError(f'generate.max_new_tokens={g.max_new_tokens} plus the prompt ({total} '
                     f'tokens) exceeds data.seq_len={config.data.seq_len}, the learned '
                     'position table')


def _settings(g):
  return dict(temperature=g.temperature, top_k=g.top_k, top_p=g.top_p)


# ----------------------------------------------------------------------------- run

def create_train_state(config, data, mesh, rng) -> state_lib.TrainState:
  """A fresh TrainState (model and AdamW) built directly on the mesh."""
  cfg = model_config(config, data['tokenizer'].vocab_size)
  return state_lib.init_on_mesh(lambda rngs_: transformer.CausalLM(cfg, rngs=rngs_),
                                optim.make_optimizer(config.optim, config.num_train_steps),
                                mesh, rng)


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict:
  """Pretrains the causal LM on held-out perplexity and bits per byte, writing samples at
  each evaluation (the protocol: ``experiments/__init__.py``)."""
  mesh, run = loop.start(config, workdir, EXPERIMENT, validate_config)
  data = prepare_data(config, workdir, expected_sha256=run.saved_meta.get('data_sha256'))
  check_samples_fit(config, data['tokenizer'])
  rng_init, rng_train, rng_sample = rngs.run_keys(config.seed)
  state = create_train_state(config, data, mesh, rng_init)
  eval_fn = sharding.jit_eval_step(functools.partial(
      eval_step, graphdef=state.graphdef, log_unigram=jnp.asarray(data['log_unigram'])),
      state_lib.shardings(state).params, mesh)

  def evaluate_and_sample(state, step):
    texts = sample_texts(state.graphdef, state.params, data['tokenizer'], config.generate,
                         jax.random.fold_in(rng_sample, step))
    return dict(evaluate(state.params, data['eval'], eval_fn, mesh, config, data['eval_bytes']),
                **{f'samples/{i}': t for i, t in enumerate(texts)})

  return loop.train(run, state, functools.partial(train_step, config=config),
                    pipeline.batch_getter(data['train'], mesh, config),
                    evaluate_and_sample, rng=rng_train, info=data['info'],
                    tokens_per_step=config.global_batch_size * config.data.seq_len)


if __name__ == '__main__':
  cli.run(get_config, train_and_evaluate)
