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

Default data: scikit-learn's bundled 8x8 digits through the image cache (``data.*``
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

import jax
import jax.numpy as jnp
import ml_collections
import optax

from jaxssl import config_checks
from jaxssl.data import augment, images, pipeline
from jaxssl.eval import features as features_lib
from jaxssl.eval import representation
from jaxssl.losses import contrastive
from jaxssl.models import convnet
from jaxssl.train import cli, loop, optim, rngs, run_config
from jaxssl.train import state as state_lib

EXPERIMENT = 'simclr'


# ----------------------------------------------------------------------------- config

def get_config() -> ml_collections.ConfigDict:
  """The default run: digits, 1,000 steps of 256 images, about 5 minutes on 2 cores."""
  c = run_config.base_config(
      images.data_config(), global_batch_size=256, num_epochs=200, num_train_steps=1000,
      log_every_steps=100, eval_every_steps=500, checkpoint_every_steps=500)  # 5 steps/epoch

  c.model = ml_collections.ConfigDict()
  c.model.widths = (32, 64, 128)  # Encoder channels (ConvNet); features: the last width.
  c.model.projector_dims = (256, 64)  # (hidden, out) of the projection head.

  c.method = ml_collections.ConfigDict()
  c.method.augment = augment.digits_augment_config()  # Two views of each image.
  c.method.temperature = 0.2  # NT-Xent temperature (SimCLR: 0.5 on CIFAR-10 at batch 512).

  c.optim = optim.adamw_config(learning_rate=2e-3, warmup_steps=100, weight_decay=1e-4)
  c.eval = representation.digits_eval_config()  # The downstream protocol on frozen features.
  return c


def smoke_config() -> ml_collections.ConfigDict:
  """A few steps of a small model on the digits: seconds, for tests."""
  c = representation.smoke_eval(run_config.smoke(get_config(), global_batch_size=16,
                                                 eval_batch_size=128))
  c.model.widths = (4, 8)
  c.model.projector_dims = (16, 8)
  return c


def validate_config(config: ml_collections.ConfigDict, num_devices: int) -> None:
  """Raises ValueError naming the first bad field; runs before any data or compilation."""
  run_config.check_training(config, num_devices)
  images.check_config(config)
  config_checks.positive(config, 'num_epochs')
  augment.check_config(config.method.augment, prefix='method.augment')
  representation.check_config(config.eval)
  config_checks.whole_batch_steps(config, 'the loss and BatchNorm compare each image with the '
                                   'whole batch')
  config_checks.positive_float(config, 'method.temperature')
  config_checks.positive_sizes(config, 'model.widths')
  config_checks.positive_sizes(config, 'model.projector_dims', length=2)


# ----------------------------------------------------------------------------- data

def prepare_data(config: ml_collections.ConfigDict, workdir: str) -> dict:
  """Train/test images (uint8 [N, H, W, C]) and labels, the run's length in steps, and the
  data facts (``images.for_training``).

  Raises:
    ValueError: empty data, too few training images for one step, fewer than 2 classes
      (the downstream evaluation classifies), or more ``eval.kmeans_n_clusters`` than test
      images.
  """
  del workdir  # the images keep nothing there
  data = images.for_training(config, labels_needed_by='the downstream evaluation')
  representation.check_fits(config.eval, len(data['test']['label']))
  return data


# ----------------------------------------------------------------------------- steps

def train_step(state, batch, rng, *, config):
  """One AdamW step of NT-Xent on a global batch; pure and jit-compiled once.

  Args:
    state: TrainState; ``extra['batch_stats']`` holds the BatchNorm statistics.
    batch: {'image': uint8 [B, H, W, C], 'label': int32 [B] (unused)} global images.
    rng: the run's train key; views come from (rng, step, position in the batch).

  Returns:
    (state, metrics): f32 scalars ``loss`` (NT-Xent, nats per anchor, mean over the 2B
    anchors; chance level ln(2B - 1)), ``contrastive_accuracy`` (fraction of anchors whose
    positive is the most similar of their 2B - 1 candidates), ``grad_norm``.
  """
  v1, v2 = augment.two_views(rngs.step_key(rng, 'views'),
                             batch['image'].astype(jnp.float32) / 255.0, state.step,
                             config.method.augment)
  b = v1.shape[0]

  def loss_fn(params):
    net = state_lib.merge_model(state.graphdef, params, state.extra['batch_stats'])
    z = net(jnp.concatenate([v1, v2]), train=True)['projection']  # BatchNorm over 2B views
    sim = contrastive.similarity(z[:b], z[b:])
    loss = jnp.mean(contrastive.nt_xent_from_similarity(sim, temperature=config.method
                                                        .temperature))
    return loss, (state_lib.batch_stats(net), sim)

  (loss, (stats, sim)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
  metrics = dict(loss=loss, contrastive_accuracy=jnp.mean(contrastive.contrastive_accuracy(sim)),
                 grad_norm=optax.global_norm(grads))
  state = state.apply_gradients(grads)
  return state.replace(extra=dict(state.extra, batch_stats=stats)), metrics


# ----------------------------------------------------------------------------- representation

def embed_fn(graphdef, config=None) -> features_lib.NnxEmbedFn:
  """The frozen encoder for the downstream protocol: its features (before the projection
  head), eval-mode BatchNorm (``config`` is not needed)."""
  del config
  return features_lib.nnx_embed_fn(graphdef, lambda module, x, train: module(
      x, train=train)['features'])


def encoder_variables(state) -> dict:
  """The variables ``embed_fn`` reads: the network's parameters and statistics."""
  return {'params': state.params, 'batch_stats': state.extra['batch_stats']}


# ----------------------------------------------------------------------------- run

def create_train_state(config, data, mesh, rng) -> state_lib.TrainState:
  """A fresh TrainState (encoder + projection head, AdamW) built directly on the mesh."""
  return state_lib.init_on_mesh(
      lambda rngs_: convnet.SSLNet(data['image_shape'], tuple(config.model.widths),
                                   tuple(config.model.projector_dims), rngs=rngs_),
      optim.make_optimizer(config.optim, data['num_train_steps']), mesh, rng,
      with_stats=True)


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict:
  """Trains the encoder with NT-Xent and measures it downstream against its random
  initialisation, measured once on the first start and kept in the checkpoints' meta (the
  protocol: ``experiments/__init__.py``)."""
  mesh, run = loop.start(config, workdir, EXPERIMENT, validate_config)
  data = prepare_data(config, workdir)
  rng_init, rng_train, _ = rngs.run_keys(config.seed)
  state = create_train_state(config, data, mesh, rng_init)
  embed = embed_fn(state.graphdef)
  downstream = lambda state, prefix='': representation.evaluate_representation(
      embed, encoder_variables(state), data['eval'], config.eval, prefix=prefix, mesh=mesh)
  random_encoder = run.saved_meta.get('random_encoder') or downstream(state, 'random_encoder_')
  return loop.train(run, state, functools.partial(train_step, config=config),
                    pipeline.batch_getter(data['train'], mesh, config),
                    lambda state, step: dict(downstream(state), **random_encoder),
                    rng=rng_train, info=data['info'], num_train_steps=data['num_train_steps'],
                    extra_meta={'random_encoder': random_encoder})


if __name__ == '__main__':
  cli.run(get_config, train_and_evaluate)
