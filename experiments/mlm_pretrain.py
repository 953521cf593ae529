r"""BERT-style masked-language-model pretraining (the main jaxssl job).

Devlin, Chang, Lee & Toutanova 2019, "BERT: Pre-training of Deep Bidirectional Transformers
for Language Understanding", arXiv:1810.04805: mask 15% of the real tokens (80% [MASK], 10%
random, 10% kept) and predict them with a Transformer encoder whose output layer is tied to
the token embedding.

Run (offline, on the Python reference text that ships with Python):

  python -m experiments.mlm_pretrain --workdir=/tmp/mlm

Other corpora: ``--config.data.files='/path/*.txt'`` or a prepared TFDS dataset
(``--config.data.name=lm1b --config.data.data_dir=gs://...``). Running again with the same
workdir resumes from its latest checkpoint. Expected result of the default (``mini``, 4
layers x 256, 128 tokens x 32 rows) on 2 CPU cores: see README's experiments table.
Outputs: TensorBoard events, ``checkpoints/<step>``, ``tokenizer.model``, ``config.json`` and
``summary.json`` in the workdir.
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from ml_collections import config_dict

from experiments import pretrained as pretrained_lib
from jaxssl import config_checks, fileio
from jaxssl.data import lm_data, masking, packing, pipeline
from jaxssl.data import tokenizer as tokenizer_lib
from jaxssl.eval import driver
from jaxssl.losses import lm as lm_losses
from jaxssl.models import transformer
from jaxssl.parallel import sharding
from jaxssl.train import cli, loop, optim, rngs, run_config
from jaxssl.train import state as state_lib
from jaxssl.train import step as train_step_lib

EXPERIMENT = 'mlm_pretrain'


def get_config() -> ml_collections.ConfigDict:
  """The default run: BERT-mini (RoPE) on the pydoc corpus, about 7 minutes on 2 CPU cores."""
  c = run_config.base_config(
      lm_data.data_config(vocab_size=4096, seq_len=128),  # L counts [CLS]
      global_batch_size=32, num_train_steps=400, log_every_steps=50,
      eval_every_steps=200, checkpoint_every_steps=200)

  c.method = ml_collections.ConfigDict()
  c.method.mask_rate = 0.15  # Fraction of real tokens selected per row.
  c.method.replace_prob = 0.8  # Selected -> [MASK].
  c.method.random_prob = 0.1  # Selected -> random non-special token (rest unchanged).
  c.method.whole_word = False  # Select all pieces of a word together.

  c.model = ml_collections.ConfigDict()
  c.model.preset = 'mini'  # tiny | mini | small | base.
  c.model.dropout_rate = 0.1  # Embedding, attention-output and MLP-output dropout.
  c.model.dtype = 'float32'  # Matmul inputs: float32 | bfloat16 (f32 accumulation and params).
  c.model.pre_norm = False  # LayerNorm before sub-layers (Xiong et al. 2020) vs BERT's after.
  c.model.position_encoding = 'rope'  # rope | learned (BERT's table; see transformer.py).
  c.model.remat = False  # Recompute each block in the backward pass (less memory, long L).

  c.optim = optim.adamw_config(learning_rate=1e-3, warmup_steps=100, decay='linear',
                                weight_decay=0.01, b2=0.98, eps=1e-6, grad_clip_norm=1.0)

  c.eval = ml_collections.ConfigDict()
  c.eval.global_batch_size = 64  # Rows per eval step; the last batch is padded and weighted.

  # An mlm_pretrain workdir whose newest weights and tokenizer start this run: continued
  # (e.g. task-adaptive) pretraining. The model fields must match its.
  c.init_from = config_dict.placeholder(str)
  return c


def smoke_config() -> ml_collections.ConfigDict:
  """A tiny model for a few steps on a slice of the pydoc corpus: seconds, for tests."""
  c = run_config.smoke(get_config(), global_batch_size=8, eval_batch_size=16)
  lm_data.smoke(c.data)
  c.model.preset = 'tiny'
  return c


# ----------------------------------------------------------------------------- config

def validate_config(config: ml_collections.ConfigDict, num_devices: int) -> None:
  """Raises ValueError naming the first bad field; runs before any data or compilation."""
  run_config.check_training(config, num_devices)
  lm_data.check_config(config, min_seq_len=3)  # [CLS] x [SEP]
  config_checks.in_unit_interval(config, 'method.replace_prob', 'method.random_prob')
  config_checks.in_open_unit_interval(config, 'method.mask_rate')
  config_checks.one_of(config, 'model.preset', transformer.PRESETS)
  config_checks.one_of(config, 'model.dtype', ('float32', 'bfloat16'))
  config_checks.one_of(config, 'model.position_encoding', ('learned', 'rope'))
  if not 0 <= config.model.dropout_rate < 1:
    raise ValueError(f'model.dropout_rate={config.model.dropout_rate} must be in [0, 1)')
  if config.method.replace_prob + config.method.random_prob > 1:
    raise ValueError('method.replace_prob + method.random_prob must be <= 1')


# ----------------------------------------------------------------------------- data

def prepare_data(config: ml_collections.ConfigDict, workdir: str,
                 expected_sha256: str | None = None) -> dict:
  """Prepares (once) or opens the packed corpus; adds unigram statistics.

  ``expected_sha256`` (the corpus hash a checkpoint was trained on) is checked before the
  workdir's tokenizer is touched: resuming onto an edited corpus raises ValueError.

  Returns a dict with ``train`` (``tokens``: ``rowfile.RowFile`` [N, L], read per batch) and
  ``eval`` (``tokens``: int32 [M, L] in memory, ``lm_data.eval_rows``) rows, the
  ``tokenizer``, ``log_unigram`` float32 [V] (add-one smoothed over non-special ids, nats),
  ``most_frequent`` (int id), and ``info`` (flat, JSON-able corpus facts).
  """
  data = config.data
  if config.get('init_from') and not data.tokenizer_model:  # the model's own vocabulary
    data = ml_collections.ConfigDict(dict(data.to_dict(), tokenizer_model=fileio.join(
        config.init_from, 'tokenizer.model')))
  text = lm_data.load(data, workdir, kind=packing.MLM, expected_sha256=expected_sha256)
  tok = text.tokenizer
  counts = text.unigram_counts
  ordinary = np.arange(tok.vocab_size) >= tokenizer_lib.NUM_SPECIAL
  return dict(train={'tokens': text.train['tokens']}, eval={'tokens': text.eval['tokens']},
              tokenizer=tok, log_unigram=lm_data.add_one_log_probs(counts, ordinary),
              most_frequent=int(np.argmax(np.where(ordinary, counts, 0))), info=text.info)


# ----------------------------------------------------------------------------- model

def model_config(config: ml_collections.ConfigDict, vocab_size: int):
  return transformer.TransformerConfig.from_preset(
      config.model.preset, vocab_size=vocab_size, max_len=config.data.seq_len,
      dropout_rate=config.model.dropout_rate, dtype=config.model.dtype,
      pre_norm=config.model.pre_norm, position_encoding=config.model.position_encoding,
      remat=config.model.remat)


def _mask(config, rng, tokens, example_ids, vocab_size, word_start, *, eval_mode):
  m = config.method
  return masking.mask_tokens(
      rng, tokens, example_ids, mask_rate=m.mask_rate,
      num_slots=masking.max_predictions(config.data.seq_len, m.mask_rate),
      mask_id=tokenizer_lib.MASK_ID, vocab_size=vocab_size,
      num_special=tokenizer_lib.NUM_SPECIAL,
      replace_prob=1.0 if eval_mode else m.replace_prob,
      random_prob=0.0 if eval_mode else m.random_prob,
      word_start=word_start if m.whole_word else None)


def train_step(state, batch, rng, *, config, word_start):
  """One AdamW step on a global batch; pure and jit-compiled once.

  Args:
    state: TrainState.
    batch: {'tokens': int32 [B, L]} global (sharded) rows.
    rng: the run's train key. Per-step keys are ``fold_in(rng, state.step)`` so a resumed run
      replays them; each row's masks come from (step key, row index in the global batch).
    word_start: bool [V], the tokenizer's word starts (V is the vocabulary size).

  Returns:
    (state, metrics): f32 scalars ``loss`` (nats per masked token over the global batch),
    ``mlm_accuracy``, ``grad_norm``, ``num_masked``.
  """
  step_rng = jax.random.fold_in(rng, state.step)
  rng_mask, rng_dropout = jax.random.split(step_rng)
  tokens = batch['tokens']
  masked = _mask(config, rng_mask, tokens, jnp.arange(tokens.shape[0]), word_start.shape[0],
                 word_start, eval_mode=False)
  masked['padding'] = tokens != tokenizer_lib.PAD_ID

  def sums_fn(params, mb, key):
    model = state_lib.merge_model(state.graphdef, params)
    logits = model(mb['inputs'], mb['positions'], padding_mask=mb['padding'], train=True,
                   rng_dropout=key)
    total, count = lm_losses.masked_lm_loss(logits, mb['labels'], mb['weights'])
    correct, _ = lm_losses.weighted_accuracy(logits, mb['labels'], mb['weights'])
    return total, {'count': count, 'correct': correct}

  grads, sums = train_step_lib.accumulate_gradients(sums_fn, state.params, masked, rng_dropout,
                                                    config.optim.grad_accum_steps)
  count = jnp.maximum(sums['count'], 1.0)
  grads = train_step_lib.divide(grads, count)  # mean over the global masked tokens
  metrics = dict(loss=sums['loss'] / count, mlm_accuracy=sums['correct'] / count,
                 grad_norm=optax.global_norm(grads), num_masked=count)
  return state.apply_gradients(grads), metrics


def step_constants(config, data) -> dict:
  """``train_step``'s constants: the tokenizer's ``word_start`` table."""
  del config
  return {'word_start': jnp.asarray(data['tokenizer'].word_start)}


def eval_step(params, batch, *, graphdef, config, vocab_size, log_unigram, most_frequent):
  """Sums over one eval batch, every selected token replaced by [MASK].

  Masks come from a fixed key (``data.split_seed``) and each row's global index, so they are
  the same for every seed, batch size and device count.

  Args:
    params: parameter dict.
    batch: {'tokens' int32 [B, L], 'weights' f32 [B] (0 = padding row), 'index' int32 [B]}.

  Returns:
    dict of f32 scalar sums: loss, correct, count, baseline_correct, unigram_loss.
  """
  tokens = batch['tokens']
  ids = jnp.maximum(batch['index'], 0)
  masked = _mask(config, rngs.eval_key(config.data.split_seed, 'fixed'), tokens, ids,
                 vocab_size, None, eval_mode=True)
  weights = masked['weights'] * batch['weights'][:, None]  # [B, P]
  model = state_lib.merge_model(graphdef, params)
  logits = model(masked['inputs'], masked['positions'],
                 padding_mask=tokens != tokenizer_lib.PAD_ID, train=False)
  labels = masked['labels']
  loss, count = lm_losses.masked_lm_loss(logits, labels, weights)
  correct, _ = lm_losses.weighted_accuracy(logits, labels, weights)
  return dict(loss=loss, correct=correct, count=count,
              baseline_correct=jnp.sum((labels == most_frequent) * weights),
              unigram_loss=jnp.sum(jnp.where(weights > 0, -log_unigram[labels], 0.0) * weights))


def evaluate(params, rows, eval_fn, mesh, config) -> dict[str, float]:
  """Runs ``eval_fn`` over the whole held-out split; returns the ``eval/*`` metrics."""
  t = driver.sum_over_split(eval_fn, params, rows, mesh,
                            global_batch_size=config.eval.global_batch_size)
  n = max(t['count'], 1.0)
  return {'mlm_loss': t['loss'] / n, 'mlm_accuracy': t['correct'] / n,
          'perplexity': float(np.exp(t['loss'] / n)), 'num_tokens': t['count'],
          'baseline_accuracy': t['baseline_correct'] / n, 'unigram_loss': t['unigram_loss'] / n}


# ----------------------------------------------------------------------------- run

def create_train_state(config, data, mesh, rng) -> state_lib.TrainState:
  """A fresh TrainState (model and AdamW) built directly on the mesh."""
  cfg = model_config(config, data['tokenizer'].vocab_size)
  return state_lib.init_on_mesh(lambda rngs_: transformer.MaskedLM(cfg, rngs=rngs_),
                                optim.make_optimizer(config.optim, config.num_train_steps),
                                mesh, rng)


def warm_start(state: state_lib.TrainState, config, mesh) -> state_lib.TrainState:
  """``state`` with the parameters of ``config.init_from``'s newest checkpoint (its Adam
  moments start at zero, as a fresh state's do; a checkpoint of this run still wins).

  Raises:
    ValueError: ``init_from`` holds another experiment's run or another model (naming the
      fields that differ); FileNotFoundError: no checkpoint or tokenizer there.
  """
  source, manager = pretrained_lib.open_workdir(config.init_from, 'config.init_from',
                                                among=(EXPERIMENT,))
  try:
    ours = model_config(config, source.tokenizer.vocab_size)
    ignored = dict(dropout_rate=0.0, dtype='float32', remat=False)  # no effect on weights
    theirs = dataclasses.replace(source.model_config, **ignored)
    if dataclasses.replace(ours, **ignored) != theirs:
      differ = [f.name for f in dataclasses.fields(ours)
                if getattr(dataclasses.replace(ours, **ignored), f.name) != getattr(theirs, f.name)]
      raise ValueError(f'config.init_from={config.init_from}: its model differs in '
                       f'{", ".join(differ)}; set model.* and data.seq_len as it has them.')
    params = pretrained_lib.restore_params(source, manager, mesh)
  finally:
    manager.close()
  return state.replace(params=jax.device_put(params, state_lib.shardings(state).params))


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict:
  """Pretrains the masked LM on held-out MLM accuracy and loss (the protocol:
  ``experiments/__init__.py``)."""
  mesh, run = loop.start(config, workdir, EXPERIMENT, validate_config)
  data = prepare_data(config, workdir, expected_sha256=run.saved_meta.get('data_sha256'))
  rng_init, rng_train, _ = rngs.run_keys(config.seed)
  state = create_train_state(config, data, mesh, rng_init)
  if config.get('init_from') and not run.saved_meta:  # a resumed run has its own weights
    state = warm_start(state, config, mesh)
  tok = data['tokenizer']
  eval_fn = sharding.jit_eval_step(functools.partial(
      eval_step, graphdef=state.graphdef, config=config, vocab_size=tok.vocab_size,
      log_unigram=jnp.asarray(data['log_unigram']), most_frequent=data['most_frequent']),
      state_lib.shardings(state).params, mesh)
  return loop.train(
      run, state,
      functools.partial(train_step, config=config, **step_constants(config, data)),
      pipeline.batch_getter(data['train'], mesh, config),
      lambda state, step: evaluate(state.params, data['eval'], eval_fn, mesh, config),
      rng=rng_train, info=data['info'],
      tokens_per_step=config.global_batch_size * config.data.seq_len)


if __name__ == '__main__':
  cli.run(get_config, train_and_evaluate)
