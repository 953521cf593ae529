r"""Image classification with a pretrained image encoder: fine-tune, probe, or train from scratch.

Restores the encoder of an ``autoencoder``, ``vae``, ``simclr`` or ``byol`` workdir's newest
checkpoint (read-only, never its training data), adds a linear head on its features and
trains on a labelled image set (``--config.data.*``, the image experiments' data block: the
bundled digits by default, IDX files, a prepared TFDS set), e.g. an encoder pretrained on
MNIST-like strokes moved to the digits:

  python -m experiments.simclr --workdir=/tmp/simclr --config.data.files='/data/*-ubyte.gz'
  python -m experiments.image_classify --workdir=/tmp/cls --config.pretrained_workdir=/tmp/simclr

Modes (``--config.mode``), as ``experiments.text_classify``'s: ``finetune`` (encoder and head
train, BatchNorm on batch statistics as ``jaxssl.eval.finetune``), ``probe`` (the encoder frozen
with BatchNorm on its running averages, only the head trains, at ``optim.probe_learning_rate``)
and ``scratch`` (the same architecture from random weights of ``seed``). Target images become
the encoder's input by ``jaxssl.data.image_convert`` (uint8 / 255 as every learner trained,
luma 3 -> 1 or copies 1 -> C, bilinear antialiased resize), inside the jitted steps.
Validation accuracy (``eval/accuracy``, a split of the training images fixed by
``data.split_seed``) picks the step whose weights are tested; the test split is read once,
at the end (``test/accuracy``, ``test/macro_f1``), beside the majority class and logistic
regression on the resized pixels (C chosen on validation), fitted on the same labelled
subset (``data.label_fraction``: stratified, nested). Label-efficiency curves: a sweep over
``data.label_fraction``, ``mode`` and ``seed`` (README), the linear evaluation and
fine-tuning on 1% and 10% label subsets of SimCLR (Chen et al. 2020, arXiv:2002.05709), here
without augmentation and with validation picking the step instead of a fixed schedule.
Measured (simclr on the 28x28 strokes stand-in -> the digits, 2 cores): README.
"""

from __future__ import annotations

import functools
import json
import logging

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

import experiments
from experiments import pretrained_images
from jaxssl import config_checks, fileio
from jaxssl.data import image_convert, image_tasks, images, pipeline, sources
from jaxssl.eval import classification, driver
from jaxssl.parallel import sharding
from jaxssl.train import cli, loop, optim, rngs, run_config, writers
from jaxssl.train import state as state_lib

EXPERIMENT = 'image_classify'
MODES = ('finetune', 'probe', 'scratch')
FEATURE_PART = 'encoder'  # every learner's features come from this part of its network
_FIELD = 'config.pretrained_workdir'


def get_config() -> ml_collections.ConfigDict:
  """The default run: the digits on a pretrained workdir's encoder, 300 steps of 64."""
  # 300 steps of 64 are about 15 epochs of the digits' 1,293 training images (SimCLR
  # fine-tunes 60 epochs on 1% of ImageNet) and many more of a small label subset, where
  # validation picks the step.
  c = run_config.base_config(
      image_tasks.data_config(), global_batch_size=64, num_train_steps=300, log_every_steps=50,
      eval_every_steps=25, checkpoint_every_steps=150)
  c.pretrained_workdir = ''  # An autoencoder, vae, simclr or byol workdir (required).
  c.mode = 'finetune'  # finetune | probe | scratch.
  c.optim = optim.adamw_config(learning_rate=1e-3, warmup_steps=30, decay='cosine',
                               weight_decay=1e-4)
  # mode=probe: the head's rate. Frozen features are small (pooled ReLU outputs ~0.1), so
  # the head needs large weights: SimCLR strokes28 -> digits, 10% of the labels, validation
  # accuracy 0.903 at 1e-2, 0.944 at 5e-2, 0.958 at 0.1 and at 0.3.
  c.optim.probe_learning_rate = 0.1
  c.eval = ml_collections.ConfigDict()
  c.eval.global_batch_size = 256  # Images per eval step; the last batch is padded.
  c.eval.pixel_c = (0.01, 0.1, 1.0, 10.0)  # The pixel baseline's C grid, chosen on validation.
  c.eval.pixel_max_iter = 1000  # lbfgs iterations of the pixel baseline.
  return c


def smoke_config() -> ml_collections.ConfigDict:
  """A few steps with a small batch: seconds, for tests (needs pretrained_workdir)."""
  c = run_config.smoke(get_config(), global_batch_size=16, eval_batch_size=128)
  c.eval_every_steps = 3
  c.eval.pixel_c = (1.0,)
  c.eval.pixel_max_iter = 100
  return c


def validate_config(config: ml_collections.ConfigDict, num_devices: int) -> None:
  """Raises ValueError naming the first bad field; runs before any data or compilation."""
  run_config.check_training(config, num_devices)
  image_tasks.check_config(config)
  config_checks.one_of(config, 'mode', MODES)
  if not config.pretrained_workdir:
    raise ValueError(f'{_FIELD} is required: the workdir of a run of '
                     f'{", ".join(experiments.LEARNERS)} (mode=scratch uses its architecture).')
  if config.optim.grad_accum_steps != 1:
    raise ValueError('optim.grad_accum_steps must be 1 for image_classify')
  config_checks.positive_float(config, 'optim.probe_learning_rate')
  if not config.eval.pixel_c or min(config.eval.pixel_c) <= 0:
    raise ValueError(f'eval.pixel_c={config.eval.pixel_c} must be positive numbers')
  config_checks.positive(config, 'eval.pixel_max_iter')


# ----------------------------------------------------------------------------- data

def prepare_data(config: ml_collections.ConfigDict, workdir: str | None) -> dict:
  """Opens the pretrained workdir (``pretrained_images.open_workdir``) and loads the target
  task (``image_tasks.load``).

  Returns a dict with ``train`` (the labelled subset) and ``validation`` ({'image': uint8
  [N, H, W, C] on disk, 'label': int32 [N]}), ``test`` (in memory), ``num_classes``,
  ``learner`` (``pretrained_images.Learner``) and its ``manager`` (read-only, open: close it),
  and ``info``.

  Raises:
    As ``open_workdir`` and ``image_tasks.load``; ValueError for channels that do not convert
    (``image_convert.check_channels``).
  """
  del workdir  # nothing is kept there
  learner, manager = pretrained_images.open_workdir(config.pretrained_workdir, _FIELD)
  try:
    task = image_tasks.load(config.data)
    image_convert.check_channels(task['info']['data/image_shape'][-1], learner.image_shape[-1])
  except BaseException:
    manager.close()
    raise
  info = dict(task['info'], **{
      'data/input_shape': list(learner.image_shape),
      'pretrained/experiment': learner.experiment, 'pretrained/step': learner.step,
      'pretrained/data_sha256': learner.data_sha256})
  return dict(task, learner=learner, manager=manager, info=info)


# ----------------------------------------------------------------------------- model

def param_labels(params: dict, mode: str) -> dict:
  """'train' or 'frozen' per leaf: the head trains; the learner's feature part
  (``FEATURE_PART``) too unless probing; BatchNorm statistics (set by the step, not the
  optimizer) and the parts the features never use (projector, predictor, decoder) never."""
  def label(path, _):
    keys = [getattr(k, 'key', None) for k in path]
    trains = keys[0] == 'head' or (mode != 'probe' and keys[:2] == ['backbone', FEATURE_PART])
    return 'train' if trains else 'frozen'
  return jax.tree_util.tree_map_with_path(label, params)


def make_optimizer(config) -> optax.GradientTransformation:
  """``optim.make_optimizer`` (at ``probe_learning_rate`` in a probe) on the 'train' leaves;
  the 'frozen' ones neither move nor decay and keep no optimizer state."""
  optim_config = config.optim
  if config.mode == 'probe':
    optim_config = ml_collections.ConfigDict(
        dict(config.optim.to_dict(), learning_rate=config.optim.probe_learning_rate))
  return optax.multi_transform(
      {'train': optim.make_optimizer(optim_config, config.num_train_steps),
       'frozen': optax.set_to_zero()}, functools.partial(param_labels, mode=config.mode))


def create_train_state(config, data, mesh, rng) -> state_lib.TrainState:
  """A fresh TrainState on the mesh: ``params`` {'backbone': the learner's network (restored,
  or random from ``rng`` for mode=scratch), 'batch_stats': its BatchNorm statistics ({} if
  none; in ``params`` so the selected step keeps its own), 'head': {'kernel' [D, K] LeCun
  normal, 'bias' [K] zeros}}; ``graphdef`` {'embed': the learner's ``embed_fn``,
  'input_shape': (H, W, C)}; ``extra['best']`` (``loop.best_state``).

  Raises:
    ValueError: the learner's parameters have no ``FEATURE_PART``.
  """
  learner = data['learner']
  module = experiments.module_of(learner.experiment, experiments.LEARNERS)
  rng_backbone, rng_head = jax.random.split(rng)
  if config.mode == 'scratch':
    learner_state = pretrained_images.fresh_state(learner, mesh, rng_backbone)
  else:
    learner_state = pretrained_images.restore(learner, data['manager'], mesh)
  variables = module.encoder_variables(learner_state)
  backbone, stats = variables['params'], variables.get('batch_stats') or {}
  if FEATURE_PART not in backbone:
    raise ValueError(f'{learner.experiment}: no {FEATURE_PART!r} among its parameters '
                     f'{sorted(backbone)}')
  embed = module.embed_fn(learner_state.graphdef, learner.config)
  shape = tuple(learner.image_shape)
  feature_dim = jax.eval_shape(embed, variables,
                               jax.ShapeDtypeStruct((1, *shape), jnp.float32)).shape[1]
  graphdef = state_lib.frozen(embed=embed, input_shape=shape)
  tx = make_optimizer(config)

  def init(key, backbone, stats):
    head = {'kernel': jax.nn.initializers.lecun_normal()(
                key, (feature_dim, data['num_classes']), jnp.float32),
            'bias': jnp.zeros((data['num_classes'],), jnp.float32)}
    params = {'backbone': backbone, 'batch_stats': stats, 'head': head}
    return state_lib.create(params, tx, graphdef=graphdef,
                            extra={'best': loop.best_state(params)})

  out = sharding.tree_shardings(jax.eval_shape(init, rng_head, backbone, stats), mesh)
  return jax.jit(init, out_shardings=out)(rng_head, backbone, stats)


def _logits(params, features):
  return features @ params['head']['kernel'] + params['head']['bias']  # [B, K]


# ----------------------------------------------------------------------------- steps

def train_step(state, batch, rng, *, config):
  """One AdamW step of softmax cross-entropy on a global batch; pure, jit-compiled once.

  batch: {'image': uint8 [B, H, W, C] of the target set, 'label': int32 [B]}; the images
  become the encoder's input here. Fine-tuning normalises BatchNorm over the global batch and
  keeps its new statistics; a probe uses the running averages and never changes them. No
  randomness (no dropout, no augmentation): ``rng`` is unused.
  Returns (state, metrics): f32 scalars loss (nats per image), accuracy, grad_norm.
  """
  del rng
  embed = state.graphdef['embed']
  x = image_convert.to_input(batch['image'], state.graphdef['input_shape'])
  probe = config.mode == 'probe'

  def loss_fn(params):
    variables = {'params': params['backbone'], 'batch_stats': params['batch_stats']}
    if probe:
      features, stats = jax.lax.stop_gradient(embed(variables, x)), params['batch_stats']
    else:
      features, stats = embed.apply(variables, x, train=True)
    logits = _logits(params, features)
    loss = optax.softmax_cross_entropy_with_integer_labels(logits, batch['label']).mean()
    return loss, (logits, stats)

  (loss, (logits, stats)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
  state = state.apply_gradients(grads)
  state = state.replace(params=dict(state.params, batch_stats=stats))
  return state, dict(loss=loss, accuracy=jnp.mean(jnp.argmax(logits, -1) == batch['label']),
                     grad_norm=optax.global_norm(grads))


def predict_step(params, batch, *, graphdef):
  """Per image: predicted class (int32 [b]), cross-entropy (f32 [b]), ``weights`` passed on;
  BatchNorm on running averages."""
  x = image_convert.to_input(batch['image'], graphdef['input_shape'])
  features = graphdef['embed']({'params': params['backbone'],
                                'batch_stats': params['batch_stats']}, x)
  logits = _logits(params, features)
  loss = optax.softmax_cross_entropy_with_integer_labels(logits, batch['label'])
  return dict(pred=jnp.argmax(logits, -1).astype(jnp.int32), loss=loss,
              weights=batch['weights'])


def evaluate_split(predict_fn, params, rows, mesh, config, num_classes) -> dict[str, float]:
  """accuracy, macro_f1 and loss (nats per image) over every row of ``rows``."""
  out = driver.per_example_over_split(predict_fn, params, rows, mesh,
                                      global_batch_size=config.eval.global_batch_size)
  return dict(classification.scores(out['pred'], rows['label'], num_classes),
              loss=float(out['loss'].mean()))


def pixels(rows: dict, shape, chunk: int = 1024) -> np.ndarray:
  """float32 [N, H' W' C']: ``rows['image']`` (uint8 [N, H, W, C], on disk or in memory) as
  the encoder's input (``image_convert.to_input``), flattened, read ``chunk`` at a time."""
  convert = jax.jit(functools.partial(image_convert.to_input, shape=tuple(shape)))
  return np.concatenate([np.asarray(convert(c)).reshape(len(c), -1)
                         for c in images.chunks(rows['image'], chunk)])


def baselines(data: dict, config) -> dict[str, float]:
  """The majority class and logistic regression on the resized pixels (C from
  ``eval.pixel_c`` picked on validation), both fitted on the labelled subset (a fixed sample
  of at most ``data.max_eval_examples`` of it for the regression), scored on test.

  They depend on neither ``seed`` nor ``mode``, so the runs of a sweep share one fit: the
  figures are kept in ``<cache dir>/image_baselines/<key>.json``, keyed by the target data's
  sha256, its ``config.data`` fields, the encoder's input shape and the ``eval.pixel_*``
  settings.
  """
  key = dict(sha256=data['info']['data/sha256'], input_shape=list(data['learner'].image_shape),
             data={k: v for k, v in config.data.to_dict().items() if k != 'cache_dir'},
             pixel_c=list(config.eval.pixel_c), pixel_max_iter=config.eval.pixel_max_iter)
  path = (fileio.path(sources.cache_dir(config.data)) / 'image_baselines' /
          f'{sources.settings_key(key)}.json')
  if path.exists():
    try:
      return json.loads(path.read_text())['baselines']
    except (ValueError, KeyError) as e:  # a damaged entry is fitted again and replaced
      logging.warning('refitting the baselines: %s is unreadable (%s)', path, e)
  out = _fit_baselines(data, config)
  writers.write_json(path, dict(key=key, baselines=out))
  return out


def _fit_baselines(data: dict, config) -> dict[str, float]:
  shape, k = data['learner'].image_shape, data['num_classes']
  train = data['train']
  chosen = sources.eval_sample(len(train['label']), config.data.max_eval_examples,
                               config.data.split_seed, 4)
  fitted = image_tasks.rows(train, chosen)
  out = classification.majority(train['label'], data['test']['label'], k)
  out.update(classification.logistic_regression(
      'pixel_lr', (pixels(fitted, shape), fitted['label']),
      (pixels(data['validation'], shape), data['validation']['label']),
      (pixels(data['test'], shape), data['test']['label']), num_classes=k,
      c_grid=config.eval.pixel_c, max_iter=config.eval.pixel_max_iter))
  return {name: float(value) for name, value in out.items()}


# ----------------------------------------------------------------------------- run

def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict:
  """Trains the classifier, selecting on validation accuracy; tests once (the protocol:
  ``experiments/__init__.py``). The summary's ``eval/*`` are the selected step's."""
  mesh, run = loop.start(config, workdir, EXPERIMENT, validate_config)
  data = prepare_data(config, workdir)
  try:
    rng_init, rng_train, _ = rngs.run_keys(config.seed)
    state = create_train_state(config, data, mesh, rng_init)
  finally:
    data['manager'].close()
  k = data['num_classes']
  predict_fn = sharding.jit_eval_step(
      functools.partial(predict_step, graphdef=state.graphdef),
      state_lib.shardings(state).params, mesh)
  batch_config = ml_collections.ConfigDict(dict(
      seed=config.seed, global_batch_size=pipeline.subset_batch_size(
      config.global_batch_size, len(data['train']['label']), mesh.devices.size)))
  evaluate = lambda params, split: evaluate_split(predict_fn, params, data[split], mesh,
                                                  config, k)
  test = lambda params: dict(evaluate(params, 'test'), **baselines(data, config))
  return loop.train(
      run, state, functools.partial(train_step, config=config),
      pipeline.batch_getter(data['train'], mesh, batch_config),
      lambda state, step: evaluate(state.params, 'validation'), rng=rng_train,
      info=dict(data['info'], **{'data/global_batch_size': batch_config.global_batch_size}),
      select='accuracy', test=test)


if __name__ == '__main__':
  cli.run(get_config, train_and_evaluate)
