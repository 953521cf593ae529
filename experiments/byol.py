r"""BYOL: self-supervised learning of an image encoder without negatives.

Grill et al. 2020, "Bootstrap Your Own Latent: A New Approach to Self-Supervised Learning"
(arXiv:2006.07733): an online network (encoder, projector, predictor) learns to predict the
projection that a target network (encoder, projector) gives of another view of the same
image; the target is not trained by gradients but follows the online weights as an
exponential moving average whose rate tau rises from ``method.tau0`` to 1 on a cosine
schedule over the run (their section 3.2), updated after every optimizer step. The loss is
their symmetrised eq. 2: 2 - 2 cos(p_1, sg(z'_2)) + 2 - 2 cos(p_2, sg(z'_1)).

  python -m experiments.byol --workdir=/tmp/byol
  python -m experiments.byol --workdir=/tmp/byol_mnist --config.data.files='/data/*-ubyte.gz'

The target network's parameters and BatchNorm statistics live in ``TrainState.extra``
(``extra['target']``), so checkpoints resume the exact trajectory. Both networks see the two
views of the global batch in one pass (BatchNorm over all 2B views, synchronised across
devices); the target's running statistics follow its own train-mode passes. The projector's
last layer has no bias: the predictor's BatchNorm would cancel it (see ``convnet.MLPHead``).

Data, augmentations, encoder and the downstream evaluation (``eval/linear_probe_accuracy``,
``eval/knn_accuracy``, ``eval/kmeans_*`` and their ``eval/random_encoder_*`` baselines) are
those of experiments/simclr.py, so the two compare directly. Results on 2 CPU cores: see
README.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import ml_collections
import optax
from flax import nnx

from jaxssl import config_checks
from jaxssl.data import augment, images, pipeline
from jaxssl.eval import features as features_lib
from jaxssl.eval import representation
from jaxssl.losses import contrastive
from jaxssl.models import convnet
from jaxssl.train import cli, loop, optim, rngs, run_config
from jaxssl.train import state as state_lib

EXPERIMENT = 'byol'
TARGET_PARTS = ('encoder', 'projector')  # the target network: no predictor


def get_config() -> ml_collections.ConfigDict:
  """The default run: digits, 1,000 steps of 256 images, about 6 minutes on 2 cores."""
  c = run_config.base_config(
      images.data_config(), global_batch_size=256, num_epochs=200, num_train_steps=1000,
      log_every_steps=100, eval_every_steps=500, checkpoint_every_steps=500)  # 5 steps/epoch

  c.model = ml_collections.ConfigDict()
  c.model.widths = (32, 64, 128)  # Encoder channels (ConvNet); features: the last width.
  c.model.projector_dims = (256, 64)  # (hidden, out) of the projection head.
  c.model.predictor_dims = (256, 64)  # (hidden, out) of the online predictor.

  c.method = ml_collections.ConfigDict()
  c.method.augment = augment.digits_augment_config()  # Two views of each image.
  c.method.tau0 = 0.99  # Target decay at step 0, rising to 1 (BYOL: 0.996 for 1000 epochs).

  c.optim = optim.adamw_config(learning_rate=2e-3, warmup_steps=100, weight_decay=1e-4)
  c.eval = representation.digits_eval_config()  # The downstream protocol on frozen features.
  return c


def smoke_config() -> ml_collections.ConfigDict:
  """A few steps of a small model on the digits: seconds, for tests."""
  c = representation.smoke_eval(run_config.smoke(get_config(), global_batch_size=16,
                                                 eval_batch_size=128))
  c.model.widths = (4, 8)
  c.model.projector_dims = (16, 8)
  c.model.predictor_dims = (16, 8)
  return c


def validate_config(config: ml_collections.ConfigDict, num_devices: int) -> None:
  """Raises ValueError naming the first bad field; runs before any data or compilation."""
  run_config.check_training(config, num_devices)
  images.check_config(config)
  config_checks.positive(config, 'num_epochs')
  augment.check_config(config.method.augment, prefix='method.augment')
  representation.check_config(config.eval)
  config_checks.whole_batch_steps(config, 'BatchNorm normalises over the whole batch')
  config_checks.positive_sizes(config, 'model.widths')
  config_checks.positive_sizes(config, 'model.projector_dims', 'model.predictor_dims', length=2)
  config_checks.in_unit_interval(config, 'method.tau0')
  if config.method.tau0 >= 1:
    raise ValueError(f'method.tau0={config.method.tau0} must be < 1: at 1 the target network '
                     'never moves')


def prepare_data(config: ml_collections.ConfigDict, workdir: str) -> dict:
  """SimCLR's data: labelled train/test images and the run's length (``images.for_training``).

  Raises:
    ValueError: as ``experiments.simclr.prepare_data``.
  """
  del workdir  # the images keep nothing there
  data = images.for_training(config, labels_needed_by='the downstream evaluation')
  representation.check_fits(config.eval, len(data['test']['label']))
  return data


def make_network(config, image_shape, rngs_: nnx.Rngs, *, predictor: bool) -> convnet.SSLNet:
  """Encoder + projection head (no bias in its last layer: the predictor's BatchNorm would
  cancel it), + the predictor for the online network."""
  return convnet.SSLNet(image_shape, tuple(config.model.widths),
                        tuple(config.model.projector_dims),
                        tuple(config.model.predictor_dims) if predictor else None,
                        projector_bias=False, rngs=rngs_)


def train_step(state, batch, rng, *, config, total_steps):
  """One AdamW step of the online network, then the target's EMA update; pure, jit-compiled
  once.

  Args:
    state: TrainState; ``params`` and ``extra['batch_stats']`` are the online network's,
      ``extra['target']`` the target's ``{'params', 'batch_stats'}``; ``graphdef`` has
      'online' and 'target'.
    batch: {'image': uint8 [B, H, W, C], 'label': int32 [B] (unused)} global images.
    rng: the run's train key; views come from (rng, step, position in the batch).
    total_steps: the run's length, for the EMA rate's cosine schedule.

  Returns:
    (state, metrics): f32 scalars ``loss`` (the symmetrised loss, in [0, 8]), ``tau`` (the
    EMA rate used after this step), ``grad_norm``.
  """
  v1, v2 = augment.two_views(rngs.step_key(rng, 'views'),
                             batch['image'].astype(jnp.float32) / 255.0, state.step,
                             config.method.augment)
  b = v1.shape[0]
  x = jnp.concatenate([v1, v2])
  target = state.extra['target']
  target = state_lib.merge_model(state.graphdef['target'], target['params'],
                                 target['batch_stats'])
  z = jax.lax.stop_gradient(target(x, train=True)['projection'])  # [2B, P]
  target_stats = state_lib.batch_stats(target)

  def loss_fn(params):
    online = state_lib.merge_model(state.graphdef['online'], params, state.extra['batch_stats'])
    p = online(x, train=True)['prediction']  # [2B, P]
    loss = contrastive.byol_loss(p[:b], z[b:]) + contrastive.byol_loss(p[b:], z[:b])
    return loss, state_lib.batch_stats(online)

  (loss, stats), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
  tau = contrastive.byol_tau(state.step, total_steps=total_steps, tau0=config.method.tau0)
  new = state.apply_gradients(grads)
  online_part = {k: new.params[k] for k in TARGET_PARTS}
  new_target = {'params': contrastive.ema_update(state.extra['target']['params'], online_part,
                                                 tau),
                'batch_stats': target_stats}
  metrics = dict(loss=loss, tau=tau, grad_norm=optax.global_norm(grads))
  return new.replace(extra=dict(new.extra, batch_stats=stats, target=new_target)), metrics


def step_constants(config, data) -> dict:
  """``train_step``'s constants: the run's length."""
  del config
  return {'total_steps': data['num_train_steps']}


def embed_fn(graphdef, config=None) -> features_lib.NnxEmbedFn:
  """The frozen online encoder's features for the downstream protocol (eval-mode BatchNorm;
  ``graphdef`` the state's, with 'online'; ``config`` is not needed)."""
  del config
  return features_lib.nnx_embed_fn(graphdef['online'], lambda module, x, train: module(
      x, train=train)['features'])


def encoder_variables(state) -> dict:
  """The variables ``embed_fn`` reads: the online network's parameters and statistics."""
  return {'params': state.params, 'batch_stats': state.extra['batch_stats']}


def create_train_state(config, data, mesh, rng) -> state_lib.TrainState:
  """A fresh TrainState built directly on the mesh; the target starts as a copy of the online
  encoder and projector."""
  tx = optim.make_optimizer(config.optim, data['num_train_steps'])
  shape = data['image_shape']
  graphdef = state_lib.frozen(**{
      name: state_lib.split_model_with_stats(nnx.eval_shape(
          lambda p=predictor: make_network(config, shape, nnx.Rngs(0), predictor=p)))[0]
      for name, predictor in (('online', True), ('target', False))})

  def init(key):
    online = make_network(config, shape, nnx.Rngs(params=key), predictor=True)
    _, params, stats = state_lib.split_model_with_stats(online)
    target = {'params': {k: params[k] for k in TARGET_PARTS},
              'batch_stats': {k: stats[k] for k in TARGET_PARTS}}
    return state_lib.create(params, tx, graphdef=graphdef,
                            extra={'batch_stats': stats, 'target': target})

  return state_lib.jit_init(init, mesh, rng)


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict:
  """Trains the online network towards its EMA target; measures the encoder downstream
  against its random initialisation, measured once and kept in the checkpoints' meta (the
  protocol: ``experiments/__init__.py``)."""
  mesh, run = loop.start(config, workdir, EXPERIMENT, validate_config)
  data = prepare_data(config, workdir)
  rng_init, rng_train, _ = rngs.run_keys(config.seed)
  state = create_train_state(config, data, mesh, rng_init)
  embed = embed_fn(state.graphdef)

  def evaluate(state, prefix=''):
    return representation.evaluate_representation(embed, encoder_variables(state), data['eval'],
                                                  config.eval, prefix=prefix, mesh=mesh)

  random_encoder = run.saved_meta.get('random_encoder') or evaluate(state, 'random_encoder_')
  return loop.train(run, state,
                    functools.partial(train_step, config=config, **step_constants(config, data)),
                    pipeline.batch_getter(data['train'], mesh, config),
                    lambda state, step: dict(evaluate(state), **random_encoder),
                    rng=rng_train, info=data['info'], num_train_steps=data['num_train_steps'],
                    extra_meta={'random_encoder': random_encoder})


if __name__ == '__main__':
  cli.run(get_config, train_and_evaluate)
