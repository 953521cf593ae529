r"""SimCLR: contrastive self-supervised learning of an image encoder.

Chen, Kornblith, Norouzi & Hinton 2020, "A Simple Framework for Contrastive Learning of
Visual Representations" (arXiv:2002.05709): two random views of every image of a batch go
through an encoder f and a projection head g; the NT-Xent loss (their eq. 1, temperature
``method.temperature``) makes the two projections of an image the most similar pair among
the 2N of the global batch, the other 2N - 2 being its negatives. The representation used
downstream is f's output, before g.

  python -m experiments.simclr --workdir=/tmp/simclr
  python -m experiments.simclr --workdir=/tmp/simclr_mnist \
      --config.data.files='/data/*-ubyte.gz'

The batch's images, their views and the similarity matrix are global arrays: under jit the
negatives of every anchor come from the whole global batch on any number of devices, and
BatchNorm normalises over it (synchronised BatchNorm). Views are drawn per image from (seed,
step, position in the global batch), so they do not depend on the device count either.

Default data: scikit-learn's bundled 8x8 digits through the local TFDS pipeline (``data.*``
as in experiments/autoencoder.py). Evaluation (``jaxssl.eval.representation``, the protocol
every image representation learner here is measured with), on the frozen encoder's
features: ``eval/linear_probe_accuracy`` (logistic regression, train split -> test split),
``eval/knn_accuracy`` (weighted kNN, Wu et al. 2018), ``eval/kmeans_ari`` and
``eval/kmeans_nmi`` (k-means of the test features), and the same for the encoder at its
random initialisation (``eval/random_encoder_*``), the baseline the training must beat.
Results on 2 CPU cores: see README.
"""

from __future__ import annotations

import functools
import time
from typing import Callable

import jax
import jax.numpy as jnp
import ml_collections
import optax
from flax import nnx

from jaxssl.data import augment, images
from jaxssl.eval import representation
from jaxssl.losses import contrastive
from jaxssl.models import convnet
from jaxssl.parallel import mesh as mesh_lib
from jaxssl.parallel import sharding
from jaxssl.train import checkpoint, cli, config_checks, loop, optim, writers
from jaxssl.train import state as state_lib

EXPERIMENT = 'simclr'
_AUGMENT = 0xA6  # tag folded into the seed's key for the views


# ----------------------------------------------------------------------------- config

def augment_config() -> ml_collections.ConfigDict:
  """SimCLR's augmentations scaled to 8x8 grey digits: milder crops (a digit must stay
  recognisable), no flip (a mirrored digit is another symbol), brightness and contrast
  jitter, light pixel noise."""
  return augment.simclr_augment_config(crop_scale=(0.35, 1.0), flip_prob=0.0,
                                       brightness=0.4, contrast=0.4, saturation=0.0,
                                       jitter_prob=0.8, noise_std=0.05)


def representation_config() -> ml_collections.ConfigDict:
  """The downstream protocol's ``config.eval`` block, the same for every image learner.

  Wu et al.'s k = 200 neighbours were chosen for 1.28M ImageNet images; on the digits
  (about 144 training images per class) k = 20 keeps the vote within a class's
  neighbourhood. T = 0.1 as in the paper."""
  c = representation.eval_config()
  c.knn_k = 20
  return c


def base_config() -> ml_collections.ConfigDict:
  """What SimCLR and BYOL share: data, encoder, augmentations, evaluation, schedule."""
  c = ml_collections.ConfigDict()
  c.seed = 0  # Root of every random choice of training (init, views, data order).
  c.global_batch_size = 256  # Images per step (2x as many views), over all devices.
  c.num_epochs = 200  # Passes over the training images (digits: 5 steps each) ...
  c.num_train_steps = 1000  # ... capped at this many steps.
  c.log_every_steps = 100  # Train metrics cadence.
  c.eval_every_steps = 500  # Downstream evaluation (and at the end).
  c.checkpoint_every_steps = 500  # Orbax save cadence (and always at the end).
  c.max_checkpoints_to_keep = 3  # Older step folders are deleted.

  c.data = images.data_config()

  c.model = ml_collections.ConfigDict()
  c.model.widths = (32, 64, 128)  # Encoder channels (ConvNet); features: the last width.
  c.model.projector_dims = (256, 64)  # (hidden, out) of the projection head.

  c.method = ml_collections.ConfigDict()
  c.method.augment = augment_config()

  c.optim = optim.adamw_config(learning_rate=2e-3, warmup_steps=100, weight_decay=1e-4)
  c.eval = representation_config()
  c.mesh = mesh_lib.mesh_config()  # All devices data-parallel; --config.mesh.fsdp=N shards.
  return c


def get_config() -> ml_collections.ConfigDict:
  """The default run: digits, 1,000 steps of 256 images, about 5 minutes on 2 cores."""
  c = base_config()
  c.method.temperature = 0.2  # NT-Xent temperature (SimCLR: 0.5 on CIFAR-10 at batch 512).
  return c


def smoke_for(c: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """``c`` shrunk to a few steps of a small encoder: seconds, for tests."""
  c.global_batch_size = 16
  c.num_train_steps = 6
  c.log_every_steps = 2
  c.eval_every_steps = 0
  c.checkpoint_every_steps = 3
  c.model.widths = (4, 8)
  c.model.projector_dims = (16, 8)
  c.optim.warmup_steps = 2
  c.eval.global_batch_size = 128
  c.eval.probe_c = (1.0,)
  c.eval.probe_max_iter = 100
  c.eval.kmeans_n_init = 1
  return c


def smoke_config() -> ml_collections.ConfigDict:
  """A few steps of a small model on the digits: seconds, for tests."""
  return smoke_for(get_config())


def validate_base(config: ml_collections.ConfigDict, num_devices: int) -> None:
  """The checks SimCLR and BYOL share; ValueError naming the first bad field."""
  config_checks.check_training(config, num_devices, jax.process_count())
  images.check_config(config)
  config_checks.positive(config, 'num_epochs')
  augment.check_config(config.method.augment, prefix='method.augment')
  representation.check_config(config.eval)
  if config.optim.grad_accum_steps != 1:
    raise ValueError(f'optim.grad_accum_steps={config.optim.grad_accum_steps} must be 1: '
                     'the loss and BatchNorm compare each image with the whole batch, so '
                     'micro-batches would change the objective')
  for field in ('model.widths', 'model.projector_dims'):
    sizes = config_checks.get(config, field)
    if not sizes or min(sizes) < 1:
      raise ValueError(f'{field}={sizes} must be positive sizes')
  if len(config.model.projector_dims) != 2:
    raise ValueError(f'model.projector_dims={config.model.projector_dims} must be '
                     '(hidden, out)')


def validate_config(config: ml_collections.ConfigDict, num_devices: int) -> None:
  """Raises ValueError naming the first bad field; runs before any data or compilation."""
  validate_base(config, num_devices)
  config_checks.positive_float(config, 'method.temperature')


# ----------------------------------------------------------------------------- data

def prepare_data(config: ml_collections.ConfigDict) -> dict:
  """Train/test images (uint8 [N, H, W, C]) and labels, the run's length in steps, and the
  data facts.

  Raises:
    ValueError: empty data, too few training images for one step, fewer than 2 classes
      (the downstream evaluation classifies), or more ``eval.kmeans_n_clusters`` than test
      images.
  """
  data = images.load_images(config.data)
  if data.num_classes < 2:
    raise ValueError(f'{data.source} has {data.num_classes} classes: the downstream '
                     'evaluation needs labelled images of at least 2 classes')
  representation.check_fits(config.eval, len(data.test['label']))
  return dict(train=data.train, test=data.test, num_classes=data.num_classes,
              image_shape=tuple(data.train['image'].shape[1:]), info=dict(data.info),
              num_train_steps=loop.steps_for_epochs(config, len(data.train['image']),
                                                    unit='images'))


def views(batch, rng, step, config):
  """The two views (float32 [B, H, W, C] in [0, 1]) of a global batch of uint8 images."""
  x = batch['image'].astype(jnp.float32) / 255.0
  return augment.two_views(jax.random.fold_in(rng, _AUGMENT), x, step, config.method.augment)


# ----------------------------------------------------------------------------- evaluation

def _features(module, x, train):
  return module(x, train=train)['features']


def embed_fn(graphdef, config=None) -> representation.NnxEmbedFn:
  """``embed_fn`` of the network ``graphdef``: its encoder's features (before the
  projection head), eval-mode BatchNorm (``config`` is not needed)."""
  del config
  return representation.nnx_embed_fn(graphdef, _features)


def encoder_variables(state) -> dict:
  """The variables ``embed_fn`` reads: the online network's parameters and statistics."""
  return {'params': state.params, 'batch_stats': state.extra['batch_stats']}


def downstream(embed, state, data, mesh, config, prefix='') -> dict[str, float]:
  """The representation protocol (``jaxssl.eval.representation``) on ``state``'s encoder."""
  return representation.evaluate_representation(
      embed, encoder_variables(state), data, config.eval, prefix=prefix, mesh=mesh)


# ----------------------------------------------------------------------------- steps

def make_network(config, image_shape, rngs: nnx.Rngs, *, predictor=False,
                 projector_bias=True) -> convnet.SSLNet:
  """Encoder + projection head (+ BYOL's predictor) of the config."""
  return convnet.SSLNet(image_shape, tuple(config.model.widths),
                        tuple(config.model.projector_dims),
                        tuple(config.model.predictor_dims) if predictor else None,
                        projector_bias=projector_bias, rngs=rngs)


def train_step(state, batch, rng, *, graphdef, tx, config, total_steps):
  """One AdamW step of NT-Xent on a global batch; pure and jit-compiled once.

  Args:
    state: TrainState; ``extra['batch_stats']`` holds the BatchNorm statistics.
    batch: {'image': uint8 [B, H, W, C], 'label': int32 [B] (unused)} global images.
    rng: the run's key; views come from (rng, step, position in the batch).

  Returns:
    (state, metrics): f32 scalars ``loss`` (NT-Xent, nats per anchor, mean over the 2B
    anchors; chance level ln(2B - 1)), ``contrastive_accuracy`` (fraction of anchors whose
    positive is the most similar of their 2B - 1 candidates), ``grad_norm``,
    ``learning_rate``.
  """
  v1, v2 = views(batch, rng, state.step, config)
  b = v1.shape[0]

  def loss_fn(params):
    net = state_lib.merge_model(graphdef, params, state.extra['batch_stats'])
    z = net(jnp.concatenate([v1, v2]), train=True)['projection']  # BatchNorm over 2B views
    sim = contrastive.similarity(z[:b], z[b:])
    loss = jnp.mean(contrastive.nt_xent_from_similarity(sim, temperature=config.method
                                                        .temperature))
    return loss, (state_lib.batch_stats(net), sim)

  (loss, (stats, sim)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
  schedule = optim.make_schedule(config.optim, total_steps)
  metrics = dict(loss=loss, contrastive_accuracy=jnp.mean(contrastive.contrastive_accuracy(sim)),
                 grad_norm=optax.global_norm(grads),
                 learning_rate=jnp.asarray(schedule(state.step), jnp.float32))
  state = state_lib.apply_gradients(state, grads, tx)
  return state.replace(extra=dict(state.extra, batch_stats=stats)), metrics


# ----------------------------------------------------------------------------- run

def create_train_state(config, mesh, data):
  """(graphdef, tx, state, shardings): a fresh state built directly on the mesh."""
  tx = optim.make_optimizer(config.optim, data['num_train_steps'])
  graphdef, state, shardings = state_lib.init_on_mesh(
      lambda rngs: make_network(config, data['image_shape'], rngs), tx, mesh,
      jax.random.fold_in(jax.random.key(config.seed), 0), batch_stats=True)
  return graphdef, tx, state, shardings


def make_train_step(config, graphdef, tx, data):
  """``train_step`` bound to this run (not yet jitted)."""
  return functools.partial(train_step, graphdef=graphdef, tx=tx, config=config,
                           total_steps=data['num_train_steps'])


def run(config: ml_collections.ConfigDict, workdir: str, *, experiment: str,
        validate: Callable, create_state: Callable, make_step: Callable,
        encoder: Callable, fail_at_step: int | None = None) -> dict:
  """``train_and_evaluate`` of SimCLR or BYOL, given their ``validate_config``,
  ``create_train_state``, ``make_train_step`` and ``embed_fn``.

  The random-initialisation baseline is measured once, on the fresh state of the first
  start, and kept in the checkpoints' meta, so a resumed run reports the same
  ``eval/random_encoder_*`` without measuring it again.
  """
  t_start = time.time()
  mesh = mesh_lib.make_mesh(config.mesh)
  validate(config, mesh.devices.size)
  saved_meta = checkpoint.open_workdir(workdir, experiment=experiment, config=config)
  data = prepare_data(config)
  checkpoint.check_data(saved_meta, data['info'], workdir)
  total_steps = data['num_train_steps']

  graphdef, tx, state, shardings = create_state(config, mesh, data)
  embed = encoder(graphdef, config)
  random_encoder = saved_meta.get('random_encoder') or downstream(
      embed, state, data, mesh, config, prefix='random_encoder_')
  manager, state, restored_step = checkpoint.restore_or_keep(
      workdir, state, shardings, max_to_keep=config.max_checkpoints_to_keep)
  jit_step = sharding.jit_train_step(make_step(config, graphdef, tx, data),
                                     shardings, mesh)
  get_batch = loop.batch_getter(data['train'], mesh, seed=config.seed,
                                global_batch_size=config.global_batch_size)
  writer = writers.create_writer(workdir)

  def run_eval(state, step):
    del step
    return dict(downstream(embed, state, data, mesh, config), **random_encoder)

  return loop.run_and_summarize(
      state, experiment=experiment, workdir=workdir, config=config,
      info=dict(data['info'], num_train_steps=total_steps), restored_from_step=restored_step,
      start_time=t_start, extra_meta={'random_encoder': random_encoder},
      num_train_steps=total_steps, train_step=jit_step, get_batch=get_batch, writer=writer,
      manager=manager, eval_fn=run_eval, examples_per_step=config.global_batch_size,
      fail_at_step=fail_at_step)


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str, *,
                       fail_at_step: int | None = None) -> dict:
  """Trains and evaluates; resumes from ``workdir``'s latest checkpoint if there is one.

  Returns:
    The summary dict also written to ``WORKDIR/summary.json``.

  Raises:
    ValueError: a bad config value (before any data is read or anything compiles), data too
      small for one batch or without labels, or a workdir written by another experiment or
      an incompatible config or data.
  """
  return run(config, workdir, experiment=EXPERIMENT, validate=validate_config,
             create_state=create_train_state, make_step=make_train_step,
             encoder=embed_fn, fail_at_step=fail_at_step)


if __name__ == '__main__':
  cli.run(get_config, train_and_evaluate)
