r"""Text classification with a pretrained language model: fine-tune, probe, or train from scratch.

Restores the Transformer (``MaskedLM.encoder`` or ``CausalLM.decoder``) and the tokenizer of an
``mlm_pretrain`` or ``clm_pretrain`` workdir's newest checkpoint, adds a pooled linear head
(``models.text_classifier``) and trains on a labelled task (``data.text_tasks``):

  python -m experiments.mlm_pretrain --workdir=/tmp/mlm
  python -m experiments.text_classify --workdir=/tmp/cls --config.pretrained_workdir=/tmp/mlm

Modes (``--config.mode``): ``finetune`` (everything trains; BERT's recipe, Devlin et al. 2019,
Sec. 4: AdamW, warmup then linear decay; optional layer-wise learning-rate decay,
``optim.layer_decay``, as ELECTRA, Clark et al. 2020), ``probe`` (the pretrained backbone
frozen, only the head trains, at ``optim.probe_learning_rate``) and ``scratch`` (the same
architecture and tokenizer, random weights). Validation accuracy (``eval/accuracy``) picks the
step whose weights are tested; the test split is read once, at the end (``test/accuracy``,
``test/macro_f1``), beside two baselines fitted on the same labelled subset: TF-IDF + logistic
regression (C chosen on validation) and the majority class. Label-efficiency curves: a sweep
over ``data.label_fraction``, ``mode`` and ``seed`` (README).
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from absl import logging
from flax import nnx
from jax.experimental import multihost_utils
from sklearn import feature_extraction, linear_model

import experiments
from experiments import pretrained as pretrained_lib
from jaxssl import config_checks, fileio
from jaxssl.data import pipeline, text, text_tasks
from jaxssl.data import tokenizer as tokenizer_lib
from jaxssl.eval import classification, driver
from jaxssl.models import text_classifier
from jaxssl.parallel import sharding
from jaxssl.train import cli, loop, optim, rngs, run_config
from jaxssl.train import state as state_lib
from jaxssl.train import workdir as workdir_lib

EXPERIMENT = 'text_classify'
MODES = ('finetune', 'probe', 'scratch')
_BACKBONE = {'mlm_pretrain': 'encoder', 'clm_pretrain': 'decoder'}  # its name in the LM


def get_config() -> ml_collections.ConfigDict:
  """The default run: the stdlib_docs task on a pretrained workdir's model, 150 steps."""
  # 150 steps of 32 are about 2 epochs of the whole stdlib_docs pool (BERT fine-tunes for
  # 2-4) and many of a small label subset, where validation picks the step.
  c = run_config.base_config(
      text_tasks.data_config(), global_batch_size=32, num_train_steps=150, log_every_steps=25,
      eval_every_steps=25, checkpoint_every_steps=75)
  c.pretrained_workdir = ''  # An mlm_pretrain or clm_pretrain workdir (required).
  c.mode = 'finetune'  # finetune | probe | scratch.

  c.model = ml_collections.ConfigDict()
  c.model.pooling = 'auto'  # cls | mean | last; auto: mean for MLM, last for causal LMs.
  c.model.dropout_rate = 0.1  # Inside the backbone (replaces the pretraining value).
  c.model.head_dropout = 0.1  # On the pooled vector.
  # Tokens per text, [CLS] and [SEP] included (0: the LM's seq_len); 64 holds 68% of the
  # stdlib_docs docstrings whole (128: 86%) at about half the step time.
  c.model.max_len = 64

  c.tapt = ml_collections.ConfigDict()  # Task-adaptive pretraining (MLM workdirs only).
  c.tapt.steps = 0  # > 0: continue the MLM on the task's training texts first.
  c.tapt.learning_rate = 1e-4  # Its peak rate (Gururangan et al. 2020 use 1e-4).

  c.optim = optim.adamw_config(learning_rate=1e-4, warmup_steps=30, decay='linear',
                               weight_decay=0.01)
  c.optim.layer_decay = 1.0  # Layer l of n gets learning_rate * layer_decay**(n + 1 - l).
  c.optim.probe_learning_rate = 1e-3  # mode=probe: the head's rate.

  c.eval = ml_collections.ConfigDict()
  c.eval.global_batch_size = 128  # Texts per eval step; the last batch is padded.
  c.eval.tfidf_c = (0.1, 1.0, 10.0, 100.0)  # The baseline's C grid, chosen on validation.
  return c


def smoke_config() -> ml_collections.ConfigDict:
  """A few steps with a small batch: seconds, for tests (needs pretrained_workdir)."""
  c = run_config.smoke(get_config(), global_batch_size=8, eval_batch_size=32)
  c.eval_every_steps = 3
  c.model.max_len = 32
  return c


def validate_config(config: ml_collections.ConfigDict, num_devices: int) -> None:
  """Raises ValueError naming the first bad field; runs before any data or compilation."""
  run_config.check_training(config, num_devices)
  config_checks.one_of(config, 'mode', MODES)
  config_checks.one_of(config, 'model.pooling', ('auto',) + text_classifier.POOLINGS)
  if not config.pretrained_workdir:
    raise ValueError('config.pretrained_workdir is required: an mlm_pretrain or clm_pretrain '
                     'workdir (mode=scratch uses its tokenizer and architecture).')
  if config.optim.grad_accum_steps != 1:
    raise ValueError('optim.grad_accum_steps must be 1 for text_classify')
  for field in ('model.dropout_rate', 'model.head_dropout'):
    if not 0 <= config_checks.get(config, field) < 1:
      raise ValueError(f'{field}={config_checks.get(config, field)} must be in [0, 1)')
  if not 0 < config.optim.layer_decay <= 1:
    raise ValueError(f'optim.layer_decay={config.optim.layer_decay} must be in (0, 1]')
  config_checks.positive_float(config, 'optim.probe_learning_rate', 'tapt.learning_rate')
  config_checks.non_negative(config, 'tapt.steps')
  if config.model.max_len < 0 or 0 < config.model.max_len < 3:
    raise ValueError(f'model.max_len={config.model.max_len} must be 0 or >= 3')
  for field in ('test_fraction', 'validation_fraction'):
    config_checks.in_open_unit_interval(config, f'data.{field}')
  if not 0 < config.data.label_fraction <= 1:
    raise ValueError(f'data.label_fraction={config.data.label_fraction} must be in (0, 1]')
  if not config.eval.tfidf_c or min(config.eval.tfidf_c) <= 0:
    raise ValueError(f'eval.tfidf_c={config.eval.tfidf_c} must be positive numbers')


# ----------------------------------------------------------------------------- data

def encode(tok: tokenizer_lib.Tokenizer, texts, max_len: int) -> np.ndarray:
  """int32 [N, max_len] rows: [CLS] + the first max_len - 2 pieces of the cleaned text +
  [SEP], then [PAD] (the layout of the pretraining rows, ``data.packing``)."""
  rows = np.full((len(texts), max_len), tokenizer_lib.PAD_ID, np.int32)
  for i, ids in enumerate(tok.encode([text.clean_text(t) for t in texts])):
    ids = ids[:max_len - 2]
    rows[i, 0], rows[i, 1:1 + len(ids)], rows[i, 1 + len(ids)] = (
        tokenizer_lib.CLS_ID, ids, tokenizer_lib.SEP_ID)
  return rows


def adapt_to_task(config, task: text_tasks.TextTask, workdir: str) -> str:
  """Task-adaptive pretraining (Gururangan et al. 2020, arXiv:2004.10964, TAPT): continues the
  masked LM of ``pretrained_workdir`` on the task's unlabelled training texts (never its
  validation or test texts) for ``tapt.steps`` steps, as an ``mlm_pretrain`` run in
  ``WORKDIR/tapt`` (resumed if interrupted, only read once finished). Its corpus is
  ``WORKDIR/tapt/corpus.txt``, one text per blank-line-separated block.

  Returns:
    ``WORKDIR/tapt``, the workdir the classifier then starts from.

  Raises:
    ValueError: ``pretrained_workdir`` is not an ``mlm_pretrain`` run.
  """
  source, manager = pretrained_lib.open_workdir(config.pretrained_workdir,
                                                'config.pretrained_workdir',
                                                among=('mlm_pretrain',))
  manager.close()
  tapt_dir = fileio.join(workdir, 'tapt')
  corpus = fileio.path(tapt_dir) / 'corpus.txt'
  content = '\n\n'.join(' '.join(t.split()) for t in task.unlabelled).encode('utf-8')
  # Rewritten only when it changed: its mtime is part of the token cache's key.
  if jax.process_index() == 0 and (not corpus.exists() or corpus.read_bytes() != content):
    fileio.write_atomic(corpus, content)
  if jax.process_count() > 1:
    multihost_utils.sync_global_devices('jaxssl: task-adaptive corpus written')
  mlm = experiments.module_of('mlm_pretrain')
  c = ml_collections.ConfigDict(source.config.to_dict())
  c.update_from_flattened_dict({
      'seed': config.seed, 'init_from': config.pretrained_workdir, 'data.files': str(corpus),
      'data.cache_dir': None, 'data.tokenizer_model': None, 'num_train_steps': config.tapt.steps,
      'eval_every_steps': config.tapt.steps, 'checkpoint_every_steps': config.tapt.steps,
      'log_every_steps': min(50, config.tapt.steps), 'mesh': config.mesh.to_dict(),
      'optim.learning_rate': config.tapt.learning_rate,
      'optim.warmup_steps': min(source.config.optim.warmup_steps, config.tapt.steps // 10)})
  if workdir_lib.finished_summary(tapt_dir, 'mlm_pretrain', c) is None:
    logging.info('task-adaptive pretraining: %d steps in %s', config.tapt.steps, tapt_dir)
    mlm.train_and_evaluate(c, tapt_dir)
  return tapt_dir


def prepare_data(config: ml_collections.ConfigDict, workdir: str | None) -> dict:
  """Reads the task, adapts the model to it when ``tapt.steps`` > 0 (``adapt_to_task``),
  reads the model's tokenizer and encodes every split.

  Returns a dict with ``train`` / ``validation`` / ``test`` ({'tokens': int32 [N, L],
  'label': int32 [N]}), ``task`` (``text_tasks.TextTask``), ``pretrained`` and its
  ``manager`` (read-only, open: close it), and ``info``.
  """
  task = text_tasks.load(config.data)
  model_workdir = config.pretrained_workdir
  if config.tapt.steps:
    if workdir is None:
      raise ValueError('tapt.steps > 0 needs the run\'s workdir (WORKDIR/tapt)')
    model_workdir = adapt_to_task(config, task, workdir)
  pretrained, manager = pretrained_lib.open_workdir(model_workdir, 'config.pretrained_workdir')
  try:
    max_len = config.model.max_len or pretrained.config.data.seq_len
    if max_len > pretrained.model_config.max_len and (
        pretrained.model_config.position_encoding == 'learned'):
      raise ValueError(f'model.max_len={max_len} exceeds the {pretrained.model_config.max_len} '
                       'positions the pretrained model learned.')
  except BaseException:
    manager.close()
    raise
  tok = pretrained.tokenizer
  splits = {name: {'tokens': encode(tok, part.texts, max_len), 'label': part.labels}
            for name, part in (('train', task.train), ('validation', task.validation),
                               ('test', task.test))}
  if workdir is not None and jax.process_index() == 0:  # the run's own copy
    fileio.write_atomic(fileio.join(workdir, 'tokenizer.model'),
                        (fileio.path(model_workdir) / 'tokenizer.model').read_bytes())
  info = dict(task.info, **{'pretrained/experiment': pretrained.experiment,
                            'pretrained/step': pretrained.step,
                            'pretrained/data_sha256': pretrained.data_sha256,
                            'data/max_len': max_len})
  return dict(splits, task=task, pretrained=pretrained, manager=manager, info=info)


# ----------------------------------------------------------------------------- model

def pooling(config, pretrained: pretrained_lib.Pretrained) -> str:
  """``model.pooling``, where 'auto' is 'last' for a causal LM (GPT) and 'mean' for a masked
  LM: MLM-only pretraining never trains the [CLS] output (no next-sentence task), and on
  stdlib_docs a probe of the default MLM's mean-pooled features scored 0.26 test accuracy
  against 0.20 for [CLS] (10% of the labels); Reimers & Gurevych 2019 found the same."""
  if config.model.pooling != 'auto':
    return config.model.pooling
  return 'last' if pretrained.model_config.causal else 'mean'


def update_scales(params: dict, config, num_layers: int) -> dict:
  """A float per parameter leaf that multiplies its update: 0 for the backbone in a probe;
  ``layer_decay ** (n + 1 - l)`` for layer l (embeddings 0, blocks 1..n, head n + 1)."""
  def scale(path, _):
    keys = [getattr(k, 'key', getattr(k, 'idx', None)) for k in path]
    if keys[0] == 'head':
      return 1.0
    if config.mode == 'probe':
      return 0.0
    layer = int(keys[2]) + 1 if keys[1] == 'blocks' else (
        num_layers if keys[1] == 'final_norm' else 0)
    return float(config.optim.layer_decay ** (num_layers + 1 - layer))
  return jax.tree_util.tree_map_with_path(scale, params)


def make_optimizer(config, params: dict, num_layers: int) -> optax.GradientTransformation:
  """``optim.make_optimizer`` (at ``probe_learning_rate`` in a probe), each update then
  multiplied by its ``update_scales`` (so frozen weights neither move nor decay)."""
  optim_config = config.optim
  if config.mode == 'probe':
    optim_config = ml_collections.ConfigDict(
        dict(config.optim.to_dict(), learning_rate=config.optim.probe_learning_rate))
  scales = update_scales(params, config, num_layers)
  tx = optim.make_optimizer(optim_config, config.num_train_steps)
  if all(s == 1.0 for s in jax.tree.leaves(scales)):
    return tx
  return optax.chain(tx, optax.stateless(
      lambda updates, _: jax.tree.map(lambda u, s: u * s, updates, scales)))


def create_train_state(config, data, mesh, rng) -> state_lib.TrainState:
  """A fresh TrainState on the mesh: the pretrained backbone (random for mode=scratch), a
  new head, the optimizer and ``extra['best']`` (``loop.best_state``)."""
  pretrained = data['pretrained']
  cfg = dataclasses.replace(pretrained.model_config, dropout_rate=config.model.dropout_rate)
  make = lambda rngs_: text_classifier.TextClassifier(
      cfg, len(data['task'].classes), pooling=pooling(config, pretrained),
      head_dropout=config.model.head_dropout, rngs=rngs_)
  graphdef, abstract = state_lib.split_model(nnx.eval_shape(lambda: make(nnx.Rngs(0))))
  tx = make_optimizer(config, abstract, cfg.num_layers)
  backbone = None
  if config.mode != 'scratch':
    backbone = pretrained_lib.restore_params(pretrained, data['manager'], mesh)[
        _BACKBONE[pretrained.experiment]]

  def init(key, backbone):
    params = state_lib.split_model(make(nnx.Rngs(params=key)))[1]
    if backbone is not None:
      params = dict(params, backbone=backbone)
    return state_lib.create(params, tx, graphdef=graphdef,
                            extra={'best': loop.best_state(params)})

  out = sharding.tree_shardings(jax.eval_shape(init, rng, backbone), mesh)
  return jax.jit(init, out_shardings=out)(rng, backbone)


# ----------------------------------------------------------------------------- steps

def train_step(state, batch, rng, *, config):
  """One AdamW step of softmax cross-entropy on a global batch; pure, jit-compiled once.

  batch: {'tokens': int32 [B, L], 'label': int32 [B]}. Dropout keys: fold_in(rng, step).
  Returns (state, metrics): f32 scalars loss (nats per example), accuracy, grad_norm.
  """
  key = jax.random.fold_in(rng, state.step)

  def loss_fn(params):
    model = state_lib.merge_model(state.graphdef, params)
    logits = model(batch['tokens'], train=True, rng_dropout=key,
                   frozen=config.mode == 'probe')
    loss = optax.softmax_cross_entropy_with_integer_labels(logits, batch['label']).mean()
    return loss, logits

  (loss, logits), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
  accuracy = jnp.mean(jnp.argmax(logits, -1) == batch['label'])
  return state.apply_gradients(grads), dict(loss=loss, accuracy=accuracy,
                                            grad_norm=optax.global_norm(grads))


def predict_step(params, batch, *, graphdef):
  """Per row: predicted class (int32 [b]), cross-entropy (f32 [b]), ``weights`` passed on."""
  logits = state_lib.merge_model(graphdef, params)(batch['tokens'])
  loss = optax.softmax_cross_entropy_with_integer_labels(logits, batch['label'])
  return dict(pred=jnp.argmax(logits, -1).astype(jnp.int32), loss=loss,
              weights=batch['weights'])


def evaluate_split(predict_fn, params, rows, mesh, config, num_classes) -> dict[str, float]:
  out = driver.per_example_over_split(predict_fn, params, rows, mesh,
                                      global_batch_size=config.eval.global_batch_size)
  return dict(classification.scores(out['pred'], rows['label'], num_classes),
              loss=float(out['loss'].mean()))


def baselines(task: text_tasks.TextTask, c_grid) -> dict[str, float]:
  """Test accuracy and macro-F1 of TF-IDF (word 1-2 grams, sublinear tf) + logistic
  regression, C picked on validation accuracy (first best), and of the majority class of the
  labelled subset; plus the chosen C and its validation accuracy."""
  vectorizer = feature_extraction.text.TfidfVectorizer(sublinear_tf=True, ngram_range=(1, 2))
  x_train = vectorizer.fit_transform(task.train.texts)
  x_val, x_test = vectorizer.transform(task.validation.texts), vectorizer.transform(
      task.test.texts)
  k = len(task.classes)
  fits = []
  for c in c_grid:
    if len(np.unique(task.train.labels)) < 2:  # a 1-class subset: LR cannot fit
      break
    model = linear_model.LogisticRegression(C=c, max_iter=2000).fit(x_train, task.train.labels)
    fits.append((np.mean(model.predict(x_val) == task.validation.labels), -len(fits), c, model))
  out = {}
  if fits:
    val_acc, _, c, model = max(fits, key=lambda f: f[:2])
    tfidf = classification.scores(model.predict(x_test), task.test.labels, k)
    out.update(tfidf_accuracy=tfidf['accuracy'], tfidf_macro_f1=tfidf['macro_f1'],
               tfidf_c=float(c), tfidf_validation_accuracy=float(val_acc))
  out.update(classification.majority(task.train.labels, task.test.labels, k))
  return out


# ----------------------------------------------------------------------------- run

def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict:
  """Trains the classifier, selecting on validation accuracy; tests once (the protocol:
  ``experiments/__init__.py``)."""
  mesh, run = loop.start(config, workdir, EXPERIMENT, validate_config)
  data = prepare_data(config, workdir)
  try:
    rng_init, rng_train, _ = rngs.run_keys(config.seed)
    state = create_train_state(config, data, mesh, rng_init)
  finally:
    data['manager'].close()
  k = len(data['task'].classes)
  predict_fn = sharding.jit_eval_step(
      functools.partial(predict_step, graphdef=state.graphdef),
      state_lib.shardings(state).params, mesh)
  batch_config = ml_collections.ConfigDict(dict(
      seed=config.seed, global_batch_size=pipeline.subset_batch_size(
      config.global_batch_size, len(data['task'].train), mesh.devices.size)))

  def test(params):
    return dict(evaluate_split(predict_fn, params, data['test'], mesh, config, k),
                **baselines(data['task'], config.eval.tfidf_c))

  return loop.train(
      run, state, functools.partial(train_step, config=config),
      pipeline.batch_getter(data['train'], mesh, batch_config),
      lambda state, step: evaluate_split(predict_fn, state.params, data['validation'], mesh,
                                         config, k),
      rng=rng_train, info=dict(data['info'],
                               **{'data/global_batch_size': batch_config.global_batch_size}),
      select='accuracy', test=test)


if __name__ == '__main__':
  cli.run(get_config, train_and_evaluate)
