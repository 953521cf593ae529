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

import functools
import hashlib
import os
import sys
import time

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from absl import app, flags, logging
from flax import nnx
from ml_collections import config_dict, config_flags

from jaxssl.data import corpus as corpus_lib
from jaxssl.data import masking, packing, pipeline
from jaxssl.data import tokenizer as tokenizer_lib
from jaxssl.losses import lm as lm_losses
from jaxssl.models import transformer
from jaxssl.parallel import mesh as mesh_lib
from jaxssl.parallel import sharding
from jaxssl.train import checkpoint, config_checks, loop, optim, writers
from jaxssl.train import state as state_lib

EXPERIMENT = 'mlm_pretrain'


def get_config() -> ml_collections.ConfigDict:
  """The default run: BERT-mini (RoPE) on the pydoc corpus, about 7 minutes on 2 CPU cores."""
  c = ml_collections.ConfigDict()
  c.seed = 0  # Root of every random choice of training (init, masks, dropout, data order).
  c.global_batch_size = 32  # Rows per optimizer step, over all devices and processes.
  c.num_train_steps = 400  # Optimizer steps.
  c.log_every_steps = 50  # Train metrics cadence.
  c.eval_every_steps = 200  # Held-out evaluation cadence (and always at the end).
  c.checkpoint_every_steps = 200  # Orbax save cadence (and always at the end).
  c.max_checkpoints_to_keep = 3  # Older step folders are deleted.

  c.data = ml_collections.ConfigDict()
  c.data.name = 'pydoc'  # 'pydoc' (embedded) or a TFDS text dataset name, e.g. 'lm1b'.
  c.data.files = config_dict.placeholder(str)  # Glob(s) of UTF-8 text files; overrides name.
  c.data.data_dir = config_dict.placeholder(str)  # TFDS data_dir of a prepared dataset.
  c.data.cache_dir = config_dict.placeholder(str)  # Local TFDS builds ($JAXSSL_CACHE_DIR).
  c.data.text_key = 'text'  # Feature holding the text in a TFDS dataset.
  c.data.train_split = 'train'  # TFDS split read for training.
  c.data.eval_split = config_dict.placeholder(str)  # TFDS held-out split; else a fraction.
  c.data.validation_fraction = 0.1  # Documents held out when there is no eval_split.
  c.data.split_seed = 0  # Fixes the held-out documents and the eval masks; not `seed`.
  c.data.max_document_chars = 2000  # Longer blank-line blocks are chunked.
  c.data.max_documents = config_dict.placeholder(int)  # Cap on documents read from TFDS.
  c.data.vocab_size = 4096  # SentencePiece pieces (a soft limit on small corpora).
  c.data.seq_len = 128  # L: tokens per packed row, [CLS] included.

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

  c.optim = ml_collections.ConfigDict()
  c.optim.learning_rate = 1e-3  # Peak AdamW rate.
  c.optim.warmup_steps = 100  # Linear warmup from 0 (0 starts at the peak).
  c.optim.decay = 'linear'  # linear | cosine | constant after warmup.
  c.optim.weight_decay = 0.01  # Decoupled; never on biases or LayerNorm.
  c.optim.b1 = 0.9
  c.optim.b2 = 0.98
  c.optim.eps = 1e-6
  c.optim.grad_clip_norm = 1.0  # Global-norm clipping; 0 disables.
  c.optim.grad_accum_steps = 1  # Micro-batches per step (same update as one large batch).

  c.eval = ml_collections.ConfigDict()
  c.eval.global_batch_size = 64  # Rows per eval step; the last batch is padded and weighted.

  c.mesh = ml_collections.ConfigDict()
  c.mesh.data = -1  # Data-parallel size; -1 = every device not used by fsdp.
  c.mesh.fsdp = 1  # Parameter-sharding size.
  return c


def smoke_config() -> ml_collections.ConfigDict:
  """A tiny model for a few steps on a slice of the pydoc corpus: seconds, for tests."""
  c = get_config()
  c.global_batch_size = 8
  c.num_train_steps = 6
  c.log_every_steps = 2
  c.eval_every_steps = 0
  c.checkpoint_every_steps = 3
  c.data.vocab_size = 300
  c.data.seq_len = 32
  c.data.validation_fraction = 0.02
  c.model.preset = 'tiny'
  c.optim.warmup_steps = 2
  c.eval.global_batch_size = 16
  return c


# ----------------------------------------------------------------------------- config

def validate_config(config: ml_collections.ConfigDict, num_devices: int) -> None:
  """Raises ValueError naming the first bad field; runs before any data or compilation."""
  config_checks.positive(config, 'global_batch_size', 'num_train_steps', 'data.vocab_size',
                         'data.seq_len', 'data.max_document_chars', 'eval.global_batch_size',
                         'optim.grad_accum_steps', 'max_checkpoints_to_keep')
  config_checks.non_negative(config, 'log_every_steps', 'eval_every_steps',
                             'checkpoint_every_steps', 'optim.warmup_steps',
                             'optim.weight_decay', 'optim.grad_clip_norm', 'seed',
                             'data.split_seed')
  config_checks.in_unit_interval(config, 'method.replace_prob', 'method.random_prob',
                                 'optim.b1', 'optim.b2')
  config_checks.in_open_unit_interval(config, 'method.mask_rate', 'data.validation_fraction')
  config_checks.positive_float(config, 'optim.learning_rate', 'optim.eps')
  config_checks.one_of(config, 'model.preset', transformer.PRESETS)
  config_checks.one_of(config, 'model.dtype', ('float32', 'bfloat16'))
  config_checks.one_of(config, 'model.position_encoding', ('learned', 'rope'))
  config_checks.one_of(config, 'optim.decay', ('linear', 'cosine', 'constant'))
  if not 0 <= config.model.dropout_rate < 1:
    raise ValueError(f'model.dropout_rate={config.model.dropout_rate} must be in [0, 1)')
  if config.method.replace_prob + config.method.random_prob > 1:
    raise ValueError('method.replace_prob + method.random_prob must be <= 1')
  if config.data.seq_len < 3:
    raise ValueError(f'data.seq_len={config.data.seq_len} must be >= 3 ([CLS] x [SEP])')
  if config.data.vocab_size <= tokenizer_lib.NUM_SPECIAL:
    raise ValueError(f'data.vocab_size={config.data.vocab_size} must exceed the '
                     f'{tokenizer_lib.NUM_SPECIAL} special tokens')
  if config.optim.warmup_steps > config.num_train_steps:
    raise ValueError(f'optim.warmup_steps={config.optim.warmup_steps} exceeds '
                     f'num_train_steps={config.num_train_steps}')
  mesh_lib.mesh_shape(config.mesh, num_devices)
  micro = config.global_batch_size // config.optim.grad_accum_steps
  if config.global_batch_size % config.optim.grad_accum_steps or micro % num_devices:
    raise ValueError(
        f'global_batch_size={config.global_batch_size} must split into '
        f'optim.grad_accum_steps={config.optim.grad_accum_steps} micro-batches that are each '
        f'a multiple of the {num_devices} devices')
  sharding_fields = (('global_batch_size', config.global_batch_size),
                     ('eval.global_batch_size', config.eval.global_batch_size))
  for field, value in sharding_fields:
    if value % num_devices or value % jax.process_count():
      raise ValueError(f'{field}={value} must be a multiple of the {num_devices} devices and '
                       f'{jax.process_count()} processes')


# ----------------------------------------------------------------------------- data

def _sha256(path: str) -> str:
  with open(path, 'rb') as f:
    return hashlib.sha256(f.read()).hexdigest()


def prepare_data(config: ml_collections.ConfigDict, workdir: str,
                 expected_sha256: str | None = None) -> dict:
  """Loads the corpus, trains (or reuses) the tokenizer, packs rows and unigram statistics.

  ``expected_sha256`` (the corpus hash a checkpoint was trained on) is checked before the
  workdir's tokenizer is touched: resuming onto an edited corpus raises ValueError.

  Returns a dict with ``train`` and ``eval`` row dicts (``tokens`` int32 [N, L]), the
  ``tokenizer``, ``log_unigram`` float32 [V] (add-one smoothed over non-special ids, nats),
  ``most_frequent`` (int id), and ``info`` (flat, JSON-able corpus facts).
  """
  corpus = corpus_lib.load_corpus(config.data)
  if expected_sha256 not in (None, corpus.sha256):
    raise ValueError(f'{workdir}: its checkpoints were trained on a corpus with sha256 '
                     f'{expected_sha256}, but {corpus.source} now gives {corpus.sha256} (was a '
                     'file edited?); use another --workdir or restore the data')
  model_path = os.path.join(workdir, 'tokenizer.model')
  tok = tokenizer_lib.load_or_train(corpus.train, vocab_size=config.data.vocab_size,
                                    model_path=model_path, corpus_sha256=corpus.sha256)
  pack = functools.partial(packing.pack_documents, seq_len=config.data.seq_len,
                           cls_id=tokenizer_lib.CLS_ID, sep_id=tokenizer_lib.SEP_ID,
                           pad_id=tokenizer_lib.PAD_ID)
  train_ids, eval_ids = tok.encode(corpus.train), tok.encode(corpus.validation)
  train_rows, eval_rows = pack(train_ids), pack(eval_ids)
  counts = np.bincount(np.concatenate(train_ids), minlength=tok.vocab_size).astype(np.float64)
  counts[:tokenizer_lib.NUM_SPECIAL] = 0
  ordinary = tok.vocab_size - tokenizer_lib.NUM_SPECIAL
  log_unigram = np.log((counts + 1.0) / (counts.sum() + ordinary)).astype(np.float32)
  info = {
      'data/source': corpus.source,
      'data/sha256': corpus.sha256,
      'data/num_train_documents': len(corpus.train),
      'data/num_eval_documents': len(corpus.validation),
      'data/num_train_tokens': int(sum(len(d) for d in train_ids)),
      'data/num_eval_tokens': int(sum(len(d) for d in eval_ids)),
      'data/num_train_rows': int(train_rows['tokens'].shape[0]),
      'data/num_eval_rows': int(eval_rows['tokens'].shape[0]),
      'data/vocab_size': tok.vocab_size,
      'data/tokenizer_sha256': _sha256(model_path),
  }
  return dict(train={'tokens': train_rows['tokens']}, eval={'tokens': eval_rows['tokens']},
              tokenizer=tok, log_unigram=log_unigram, most_frequent=int(np.argmax(counts)),
              info=info)


# ----------------------------------------------------------------------------- model

def model_config(config: ml_collections.ConfigDict, vocab_size: int):
  return transformer.TransformerConfig.from_preset(
      config.model.preset, vocab_size=vocab_size, max_len=config.data.seq_len,
      dropout_rate=config.model.dropout_rate, dtype=config.model.dtype,
      pre_norm=config.model.pre_norm, position_encoding=config.model.position_encoding)


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


def train_step(state, batch, rng, *, graphdef, tx, config, vocab_size, word_start):
  """One AdamW step on a global batch; pure and jit-compiled once.

  Args:
    state: TrainState.
    batch: {'tokens': int32 [B, L]} global (sharded) rows.
    rng: the run's root key. Per-step keys are ``fold_in(rng, state.step)`` so a resumed run
      replays them; each row's masks come from (step key, row index in the global batch).

  Returns:
    (state, metrics): metrics are f32 scalars ``loss`` (nats per masked token over the global
    batch), ``mlm_accuracy``, ``grad_norm``, ``learning_rate``, ``num_masked``.
  """
  step_rng = jax.random.fold_in(rng, state.step)
  rng_mask, rng_dropout = jax.random.split(step_rng)
  tokens = batch['tokens']
  b = tokens.shape[0]
  k = config.optim.grad_accum_steps
  masked = _mask(config, rng_mask, tokens, jnp.arange(b), vocab_size, word_start,
                 eval_mode=False)
  masked['padding'] = tokens != tokenizer_lib.PAD_ID

  def loss_sum(params, mb, key):
    model = state_lib.merge_model(graphdef, params)
    logits = model(mb['inputs'], mb['positions'], padding_mask=mb['padding'], train=True,
                   rng_dropout=key)
    total, count = lm_losses.masked_lm_loss(logits, mb['labels'], mb['weights'])
    correct, _ = lm_losses.weighted_accuracy(logits, mb['labels'], mb['weights'])
    return total, (count, correct)

  def sums_and_grads(mb, key):
    (total, (count, correct)), grads = jax.value_and_grad(loss_sum, has_aux=True)(
        state.params, mb, key)
    return grads, total, count, correct

  if k == 1:
    grads, total, count, correct = sums_and_grads(masked, rng_dropout)
  else:
    # Micro-batch j holds rows j, k + j, 2k + j, ...: every device keeps its own rows.
    micro = jax.tree.map(lambda x: x.reshape(b // k, k, *x.shape[1:]).swapaxes(0, 1), masked)

    def accumulate(carry, xs):
      mb, j = xs
      return jax.tree.map(jnp.add, carry,
                          sums_and_grads(mb, jax.random.fold_in(rng_dropout, j))), None

    zeros = (jax.tree.map(jnp.zeros_like, state.params),) + (jnp.zeros((), jnp.float32),) * 3
    (grads, total, count, correct), _ = jax.lax.scan(accumulate, zeros, (micro, jnp.arange(k)))
  count = jnp.maximum(count, 1.0)
  grads = jax.tree.map(lambda g: g / count, grads)  # mean over the global masked tokens
  new_state = state_lib.apply_gradients(state, grads, tx)
  schedule = optim.make_schedule(config.optim, config.num_train_steps)
  metrics = dict(loss=total / count, mlm_accuracy=correct / count,
                 grad_norm=optax.global_norm(grads),
                 learning_rate=jnp.asarray(schedule(state.step), jnp.float32),
                 num_masked=count)
  return new_state, metrics


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
  rng = jax.random.fold_in(jax.random.key(config.data.split_seed), 0x5EED)
  tokens = batch['tokens']
  ids = jnp.maximum(batch['index'], 0)
  masked = _mask(config, rng, tokens, ids, vocab_size, None, eval_mode=True)
  weights = masked['weights'] * batch['weights'][:, None]  # [B, P]
  model = state_lib.merge_model(graphdef, params)
  logits = model(masked['inputs'], masked['positions'],
                 padding_mask=tokens != tokenizer_lib.PAD_ID, train=False)
  labels = masked['labels']
  loss, count = lm_losses.masked_lm_loss(logits, labels, weights)
  correct, _ = lm_losses.weighted_accuracy(logits, labels, weights)
  return dict(loss=loss, correct=correct, count=count,
              baseline_correct=jnp.sum((labels == most_frequent) * weights),
              unigram_loss=jnp.sum(-log_unigram[labels] * weights))


def evaluate(params, rows, eval_fn, mesh, config) -> dict[str, float]:
  """Runs ``eval_fn`` over the whole held-out split; returns the ``eval/*`` metrics."""
  totals = None
  for batch in pipeline.eval_batches(rows, global_batch_size=config.eval.global_batch_size,
                                     process_index=jax.process_index(),
                                     process_count=jax.process_count()):
    sums = eval_fn(params, sharding.put_batch(batch, mesh))
    totals = sums if totals is None else jax.tree.map(jnp.add, totals, sums)
  t = jax.tree.map(float, jax.device_get(totals))
  n = max(t['count'], 1.0)
  return {'mlm_loss': t['loss'] / n, 'mlm_accuracy': t['correct'] / n,
          'perplexity': float(np.exp(t['loss'] / n)), 'num_tokens': t['count'],
          'baseline_accuracy': t['baseline_correct'] / n, 'unigram_loss': t['unigram_loss'] / n}


# ----------------------------------------------------------------------------- run

def create_train_state(config, mesh, vocab_size):
  """(graphdef, tx, state, shardings): a fresh state built directly on the mesh."""
  cfg = model_config(config, vocab_size)
  tx = optim.make_optimizer(config.optim, config.num_train_steps)
  graphdef, _ = state_lib.split_model(nnx.eval_shape(
      lambda: transformer.MaskedLM(cfg, rngs=nnx.Rngs(0))))

  def init(rng):
    _, params = state_lib.split_model(transformer.MaskedLM(cfg, rngs=nnx.Rngs(params=rng)))
    return state_lib.create(params, tx)

  rng = jax.random.fold_in(jax.random.key(config.seed), 0)
  abstract = jax.eval_shape(init, rng)
  shardings = sharding.tree_shardings(abstract, mesh)
  state = jax.jit(init, out_shardings=shardings)(rng)
  return graphdef, tx, state, shardings


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str, *,
                       fail_at_step: int | None = None) -> dict:
  """Trains and evaluates; resumes from ``workdir``'s latest checkpoint if there is one.

  Args:
    config: see ``get_config``.
    workdir: output folder (created).
    fail_at_step: test hook, raise ``loop.SimulatedFault`` after this step.

  Returns:
    The summary dict also written to ``WORKDIR/summary.json``.

  Raises:
    ValueError: a bad config value (before any compilation), or a workdir written by another
      experiment or an incompatible config.
  """
  t_start = time.time()
  mesh = mesh_lib.make_mesh(config.mesh)
  validate_config(config, mesh.devices.size)
  os.makedirs(workdir, exist_ok=True)
  manager = checkpoint.make_manager(workdir, max_to_keep=config.max_checkpoints_to_keep)
  saved_meta = config_checks.check_workdir(manager, EXPERIMENT, config) or {}
  writers.write_json(os.path.join(workdir, 'config.json'), config.to_dict())
  data = prepare_data(config, workdir, expected_sha256=saved_meta.get('data_sha256'))
  vocab_size = data['tokenizer'].vocab_size
  word_start = jnp.asarray(data['tokenizer'].word_start)

  graphdef, tx, state, shardings = create_train_state(config, mesh, vocab_size)
  restored, restored_step, _ = checkpoint.restore_latest(
      manager, checkpoint.abstract_like(state, shardings))
  if restored is not None:
    state = restored
    logging.info('resumed from step %d', restored_step)

  step_fn = functools.partial(train_step, graphdef=graphdef, tx=tx, config=config,
                              vocab_size=vocab_size, word_start=word_start)
  replicated = sharding.replicated(mesh)
  jit_step = jax.jit(step_fn, in_shardings=(shardings, sharding.batch_sharding(mesh),
                                            replicated),
                     out_shardings=(shardings, replicated), donate_argnums=(0,))
  eval_fn = jax.jit(functools.partial(
      eval_step, graphdef=graphdef, config=config, vocab_size=vocab_size,
      log_unigram=jnp.asarray(data['log_unigram']), most_frequent=data['most_frequent']),
      in_shardings=(shardings.params, sharding.batch_sharding(mesh)), out_shardings=replicated)

  def get_batch(step):
    return sharding.put_batch(pipeline.train_batch(
        data['train'], step, seed=config.seed, global_batch_size=config.global_batch_size,
        process_index=jax.process_index(), process_count=jax.process_count()), mesh)

  writer = writers.create_writer(workdir)
  meta = {'experiment': EXPERIMENT, 'config': config.to_dict(),
          'data_sha256': data['info']['data/sha256']}
  cadence = loop.Cadence(config.num_train_steps, config.log_every_steps,
                         config.eval_every_steps, config.checkpoint_every_steps)
  try:
    state, last_eval = loop.run(
        state, train_step=jit_step, get_batch=get_batch,
        rng=jax.random.fold_in(jax.random.key(config.seed), 1), cadence=cadence,
        writer=writer, manager=manager, meta=meta,
        eval_fn=lambda s, _: evaluate(s.params, data['eval'], eval_fn, mesh, config),
        tokens_per_step=config.global_batch_size * config.data.seq_len,
        fail_at_step=fail_at_step)
  finally:
    manager.wait_until_finished()
    manager.close()
    writer.close()
  if not last_eval:  # resumed at the final step: evaluate what was restored
    last_eval = evaluate(state.params, data['eval'], eval_fn, mesh, config)
  summary = {f'eval/{k}': v for k, v in last_eval.items()}
  summary.update(data['info'])
  summary.update(step=int(jax.device_get(state.step)), seed=config.seed,
                 restored_from_step=restored_step, wall_time_s=time.time() - t_start,
                 experiment=EXPERIMENT, config=config.to_dict())
  writers.write_json(os.path.join(workdir, 'summary.json'), summary)
  return summary


# ----------------------------------------------------------------------------- main

FLAGS = flags.FLAGS
_CONFIG = config_flags.DEFINE_config_dict('config', get_config(), lock_config=True)
_WORKDIR = flags.DEFINE_string('workdir', None, 'Output folder (resumes if it has checkpoints).',
                               required=True)
_MULTIPROCESS = flags.DEFINE_bool(
    'multiprocess', False, 'Call jax.distributed.initialize() first (TPU pod slices, SLURM, '
    'or JAX_COORDINATOR_ADDRESS/JAX_NUM_PROCESSES/JAX_PROCESS_ID set).')


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {argv[1:]}')
  if _MULTIPROCESS.value:
    env = os.environ
    jax.distributed.initialize(**({'num_processes': int(env['JAX_NUM_PROCESSES']),
                                   'process_id': int(env['JAX_PROCESS_ID'])}
                                  if 'JAX_NUM_PROCESSES' in env else {}))
  try:
    summary = train_and_evaluate(_CONFIG.value, _WORKDIR.value)
  except (ValueError, FileNotFoundError) as e:  # bad config, data or workdir: one clear line
    sys.exit(f'error: {e}')
  logging.info('summary: %s', {k: v for k, v in summary.items() if k.startswith('eval/')})


if __name__ == '__main__':
  app.run(main)
