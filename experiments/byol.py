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
SimCLR's (experiments/simclr.py). Results on 2 CPU cores: see README.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import ml_collections
import optax
from flax import nnx

from experiments import simclr
from jaxssl.losses import contrastive
from jaxssl.train import cli, config_checks, optim
from jaxssl.train import state as state_lib

EXPERIMENT = 'byol'
TARGET_PARTS = ('encoder', 'projector')  # the target network: no predictor


def get_config() -> ml_collections.ConfigDict:
  """The default run: digits, 1,000 steps of 256 images, about 6 minutes on 2 cores."""
  c = simclr.base_config()
  c.model.predictor_dims = (256, 64)  # (hidden, out) of the online predictor.
  c.method.tau0 = 0.99  # Target decay at step 0, rising to 1 (BYOL: 0.996 for 1000 epochs).
  return c


def smoke_config() -> ml_collections.ConfigDict:
  """A few steps of a small model on the digits: seconds, for tests."""
  c = simclr.smoke_for(get_config())
  c.model.predictor_dims = (16, 8)
  return c


def validate_config(config: ml_collections.ConfigDict, num_devices: int) -> None:
  """Raises ValueError naming the first bad field; runs before any data or compilation."""
  simclr.validate_base(config, num_devices)
  sizes = config.model.predictor_dims
  if len(sizes) != 2 or min(sizes) < 1:
    raise ValueError(f'model.predictor_dims={sizes} must be positive (hidden, out)')
  config_checks.in_unit_interval(config, 'method.tau0')
  if config.method.tau0 >= 1:
    raise ValueError(f'method.tau0={config.method.tau0} must be < 1: at 1 the target network '
                     'never moves')


def target_network(graphdef, state):
  """The target (EMA) network as a module."""
  target = state.extra['target']
  return state_lib.merge_model(graphdef, target['params'], target['batch_stats'])


def train_step(state, batch, rng, *, graphdefs, tx, config, total_steps):
  """One AdamW step of the online network, then the target's EMA update; pure, jit-compiled
  once.

  Args:
    state: TrainState; ``params`` and ``extra['batch_stats']`` are the online network's,
      ``extra['target']`` the target's ``{'params', 'batch_stats'}``.
    batch: {'image': uint8 [B, H, W, C], 'label': int32 [B] (unused)} global images.
    rng: the run's key; views come from (rng, step, position in the batch).
    graphdefs: {'online': ..., 'target': ...}.

  Returns:
    (state, metrics): f32 scalars ``loss`` (the symmetrised loss, in [0, 8]), ``tau`` (the
    EMA rate used after this step), ``grad_norm``, ``learning_rate``.
  """
  v1, v2 = simclr.views(batch, rng, state.step, config)
  b = v1.shape[0]
  x = jnp.concatenate([v1, v2])
  target = target_network(graphdefs['target'], state)
  z = jax.lax.stop_gradient(target(x, train=True)['projection'])  # [2B, P]
  target_stats = state_lib.batch_stats(target)

  def loss_fn(params):
    online = state_lib.merge_model(graphdefs['online'], params, state.extra['batch_stats'])
    p = online(x, train=True)['prediction']  # [2B, P]
    loss = contrastive.byol_loss(p[:b], z[b:]) + contrastive.byol_loss(p[b:], z[:b])
    return loss, state_lib.batch_stats(online)

  (loss, stats), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
  tau = contrastive.byol_tau(state.step, total_steps=total_steps, tau0=config.method.tau0)
  new = state_lib.apply_gradients(state, grads, tx)
  online_part = {k: new.params[k] for k in TARGET_PARTS}
  new_target = {'params': contrastive.ema_update(state.extra['target']['params'], online_part,
                                                 tau),
                'batch_stats': target_stats}
  schedule = optim.make_schedule(config.optim, total_steps)
  metrics = dict(loss=loss, tau=tau, grad_norm=optax.global_norm(grads),
                 learning_rate=jnp.asarray(schedule(state.step), jnp.float32))
  return new.replace(extra=dict(new.extra, batch_stats=stats, target=new_target)), metrics


def embed_fn(graphdefs, config=None):
  """The online encoder's features, frozen (``simclr.embed_fn``)."""
  return simclr.embed_fn(graphdefs['online'], config)


encoder_variables = simclr.encoder_variables
prepare_data = simclr.prepare_data


def create_train_state(config, mesh, data):
  """(graphdefs, tx, state, shardings): a fresh state built directly on the mesh; the
  target starts as a copy of the online encoder and projector."""
  tx = optim.make_optimizer(config.optim, data['num_train_steps'])
  shape = data['image_shape']
  graphdefs = {
      name: state_lib.split_model_with_stats(nnx.eval_shape(
          lambda p=predictor: simclr.make_network(config, shape, nnx.Rngs(0), predictor=p,
                                                   projector_bias=False)))[0]
      for name, predictor in (('online', True), ('target', False))}

  def init(key):
    online = simclr.make_network(config, shape, nnx.Rngs(params=key), predictor=True,
                                 projector_bias=False)
    _, params, stats = state_lib.split_model_with_stats(online)
    target = {'params': {k: params[k] for k in TARGET_PARTS},
              'batch_stats': {k: stats[k] for k in TARGET_PARTS}}
    return state_lib.create(params, tx, extra={'batch_stats': stats, 'target': target})

  state, shardings = state_lib.jit_init(init, mesh,
                                        jax.random.fold_in(jax.random.key(config.seed), 0))
  return graphdefs, tx, state, shardings


def make_train_step(config, graphdefs, tx, data):
  """``train_step`` bound to this run (not yet jitted)."""
  return functools.partial(train_step, graphdefs=graphdefs, tx=tx, config=config,
                           total_steps=data['num_train_steps'])


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str, *,
                       fail_at_step: int | None = None) -> dict:
  """Trains and evaluates, resuming from ``workdir``; returns and writes the summary. Errors
  as ``simclr.train_and_evaluate``."""
  return simclr.run(config, workdir, experiment=EXPERIMENT, validate=validate_config,
                    create_state=create_train_state, make_step=make_train_step,
                    encoder=embed_fn, fail_at_step=fail_at_step)


if __name__ == '__main__':
  cli.run(get_config, train_and_evaluate)
