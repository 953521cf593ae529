r"""DCGAN: a generator of images trained against a discriminator, scored in a classifier's
features.

Goodfellow et al. 2014, "Generative Adversarial Nets" (arXiv:1406.2661) with the
non-saturating generator loss of their section 3; Radford, Metz & Chintala 2016, "Unsupervised
Representation Learning with Deep Convolutional Generative Adversarial Networks"
(arXiv:1511.06434): transposed-convolution generator and convolutional discriminator with
BatchNorm, Adam with learning rate 2e-4 and beta1 0.5 (their section 4).

  python -m experiments.dcgan --workdir=/tmp/dcgan
  python -m experiments.dcgan --workdir=/tmp/dcgan_mnist --config.data.files='/data/*-ubyte.gz'

Each step is one discriminator update on a global batch of real images and as many samples,
then one generator update on fresh samples, each with its own Adam state. BatchNorm
statistics live in ``TrainState.extra`` and are computed over the global batch (synchronised
across devices); each network's running statistics change only in its own update.

Default data: scikit-learn's bundled 8x8 digits through the local TFDS pipeline (``data.*``
as in experiments/autoencoder.py). Sample quality, on ``eval.num_samples`` images generated
in eval mode from fixed latents: ``eval/fd_classifier``, the Fréchet distance between
Gaussians fitted to the penultimate-layer features of a small classifier (trained on the
same training split, cached in ``WORKDIR/fd_classifier``, the same for every seed) on the
test images and on the samples. It is not FID (no Inception network); compare it with
``eval/fd_classifier_untrained`` (the generator at initialisation) and
``eval/fd_classifier_train_images`` (the training images themselves: a generator that
copied them). ``eval/classes_covered`` counts the classes the classifier assigns to at least
``eval.min_class_fraction`` of the samples and ``eval/class_entropy`` is the entropy of that
histogram (nats; ln 10 = 2.30 when uniform). Sample grids go to TensorBoard and
``WORKDIR/images/samples_<step>.png``.

Measured with the defaults (2,200 steps; 1 min 55 s on 2 CPU cores): eval/fd_classifier
9.53 against 1294.2 for the untrained generator and 5.07 for the training images; 10 of 10
classes covered, class entropy 2.294 nats; the classifier's test accuracy 0.975.
"""

from __future__ import annotations

import functools
import math
import os
import time

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from flax import nnx

from jaxssl.data import images
from jaxssl.eval import generative
from jaxssl.losses import gan as gan_losses
from jaxssl.models import gan
from jaxssl.parallel import mesh as mesh_lib
from jaxssl.parallel import sharding
from jaxssl.train import checkpoint, cli, config_checks, loop, optim, writers
from jaxssl.train import state as state_lib

EXPERIMENT = 'dcgan'
NETWORKS = ('generator', 'discriminator')
# Tags folded into the data.split_seed key: fixed eval latents and the feature classifier.
_EVAL_LATENTS, _CLASSIFIER = 0x5A3E, 0xC1A5


def get_config() -> ml_collections.ConfigDict:
  """The default run: 8x8 digits, about 2 minutes on 2 cores."""
  c = ml_collections.ConfigDict()
  c.seed = 0  # Root of every random choice of training (init, latents, data order).
  c.global_batch_size = 64  # Real images per step (and as many samples), over all devices.
  c.num_epochs = 100  # Passes over the training images (digits: 22 steps each) ...
  c.num_train_steps = 4000  # ... capped at this many steps.
  c.log_every_steps = 200  # Train metrics cadence.
  c.eval_every_steps = 1000  # Sample-quality evaluation and sample grids (and at the end).
  c.checkpoint_every_steps = 1000  # Orbax save cadence (and always at the end).
  c.max_checkpoints_to_keep = 3  # Older step folders are deleted.

  c.data = images.data_config()

  c.model = ml_collections.ConfigDict()
  c.model.latent_dim = 32  # Z: dimensions of the N(0, I) latent.
  c.model.generator_widths = (128, 64)  # Projection channels, then one per upsampling.
  c.model.discriminator_widths = (64, 128)  # Channels of the stride-2 convolutions.

  c.method = ml_collections.ConfigDict()
  c.method.discriminator_lr_scale = 1.0  # D's learning rate / G's (two time-scale rule).

  # Both networks use these settings, each with its own Adam state (DCGAN: 2e-4, b1 0.5).
  c.optim = optim.adamw_config(learning_rate=2e-4, warmup_steps=0, decay='constant', b1=0.5)

  c.eval = ml_collections.ConfigDict()
  c.eval.num_samples = 1000  # Generated images scored (fixed latents, eval-mode BatchNorm).
  c.eval.global_batch_size = 500  # Latents per generation batch.
  c.eval.min_class_fraction = 0.01  # A class is covered above this fraction of samples.
  c.eval.grid_samples = 64  # Samples shown in the grid (the first of the fixed latents).
  c.eval.png_scale = 4  # PNG enlargement by pixel repetition (8x8 digits are tiny).

  c.classifier = ml_collections.ConfigDict()  # The feature network of eval/fd_classifier.
  c.classifier.num_steps = 600  # Adam steps on the training split.
  c.classifier.batch_size = 128
  c.classifier.learning_rate = 2e-3
  c.classifier.widths = (32, 64)  # Stride-2 convolution channels.
  c.classifier.feature_dim = 64  # F: width of the feature layer the distance is taken in.

  c.mesh = mesh_lib.mesh_config()  # All devices data-parallel; --config.mesh.fsdp=N shards.
  return c


def smoke_config() -> ml_collections.ConfigDict:
  """A few steps of small networks on the digits: seconds, for tests."""
  c = get_config()
  c.global_batch_size = 16
  c.num_train_steps = 6
  c.log_every_steps = 2
  c.eval_every_steps = 0
  c.checkpoint_every_steps = 3
  c.model.latent_dim = 8
  c.model.generator_widths = (16, 8)
  c.model.discriminator_widths = (8, 16)
  c.eval.num_samples = 128
  c.eval.global_batch_size = 64
  c.eval.grid_samples = 16
  c.classifier.num_steps = 40
  c.classifier.widths = (8, 16)
  c.classifier.feature_dim = 16
  return c


# ----------------------------------------------------------------------------- config

def validate_config(config: ml_collections.ConfigDict, num_devices: int) -> None:
  """Raises ValueError naming the first bad field; runs before any data or compilation."""
  config_checks.check_training(config, num_devices, jax.process_count())
  images.check_config(config)
  config_checks.positive(config, 'num_epochs', 'model.latent_dim', 'eval.num_samples',
                         'eval.grid_samples', 'eval.png_scale',
                         'classifier.num_steps', 'classifier.batch_size',
                         'classifier.feature_dim')
  config_checks.positive_float(config, 'method.discriminator_lr_scale',
                               'classifier.learning_rate')
  config_checks.in_open_unit_interval(config, 'eval.min_class_fraction')
  if config.optim.grad_accum_steps != 1:
    raise ValueError(f'optim.grad_accum_steps={config.optim.grad_accum_steps} must be 1: '
                     'BatchNorm normalises over the whole batch, so micro-batches would '
                     'change the model')
  if config.eval.num_samples < 2:
    raise ValueError(f'eval.num_samples={config.eval.num_samples} must be >= 2 (a covariance)')
  if config.eval.grid_samples > config.eval.num_samples:
    raise ValueError(f'eval.grid_samples={config.eval.grid_samples} must be <= '
                     f'eval.num_samples={config.eval.num_samples} (the grid shows samples)')
  for field in ('model.generator_widths', 'model.discriminator_widths', 'classifier.widths'):
    widths = config_checks.get(config, field)
    if not widths or min(widths) < 1:
      raise ValueError(f'{field}={widths} must be positive channel counts')


# ----------------------------------------------------------------------------- data

def to_model_range(image):
  """uint8 [B, H, W, C] (NumPy or jax) -> float32 in [-1, 1], the generator's tanh range."""
  return image.astype(jnp.float32) / 127.5 - 1.0


def to_uint8(x: jax.Array) -> jax.Array:
  """Generator outputs in [-1, 1] -> uint8 images, the inverse of ``to_model_range`` up to
  rounding to the 256 grey levels real images have."""
  return jnp.round((jnp.clip(x, -1.0, 1.0) + 1.0) * 127.5).astype(jnp.uint8)


def prepare_data(config: ml_collections.ConfigDict) -> dict:
  """Train/test images (uint8 [N, H, W, C]) and labels, the run's length in steps and the
  data facts.

  Raises:
    ValueError: empty data, too few training images for one step, or unlabelled data (the
      feature classifier needs labels).
  """
  data = images.load_images(config.data)
  if data.num_classes < 2:
    raise ValueError(f'{data.source} has {data.num_classes} classes: the feature classifier '
                     'of eval/fd_classifier needs labelled images of at least 2 classes')
  train = data.train
  return dict(train=train, test=data.test, image_shape=tuple(train['image'].shape[1:]),
              num_classes=data.num_classes, info=dict(data.info),
              num_train_steps=loop.steps_for_epochs(config, len(train['image']), unit='images'))


# ----------------------------------------------------------------------------- steps

def make_networks(config, image_shape, rngs: nnx.Rngs) -> dict[str, nnx.Module]:
  """{'generator': gan.Generator, 'discriminator': gan.Discriminator} of the config."""
  g_rngs, d_rngs = nnx.Rngs(rngs.params()), nnx.Rngs(rngs.params())
  return {'generator': gan.Generator(config.model.latent_dim, image_shape,
                                     tuple(config.model.generator_widths), rngs=g_rngs),
          'discriminator': gan.Discriminator(image_shape,
                                             tuple(config.model.discriminator_widths),
                                             rngs=d_rngs)}


def make_optimizers(config, total_steps: int) -> dict[str, optax.GradientTransformation]:
  """One optimizer per network: ``config.optim``, D's rate scaled by
  ``method.discriminator_lr_scale``."""
  d_optim = ml_collections.ConfigDict(config.optim.to_dict())
  d_optim.learning_rate = config.optim.learning_rate * config.method.discriminator_lr_scale
  return {'generator': optim.make_optimizer(config.optim, total_steps),
          'discriminator': optim.make_optimizer(d_optim, total_steps)}


def _network(graphdefs, state, name):
  return state_lib.merge_model(graphdefs[name], state.params[name],
                               state.extra['batch_stats'][name])


def _update(state, name, grads, new_stats, tx):
  """``state`` with network ``name``'s Adam update and BatchNorm statistics replaced (the
  other network's fields, and ``step``, untouched)."""
  updates, opt = tx[name].update(grads, state.opt_state[name], state.params[name])
  params = dict(state.params, **{name: optax.apply_updates(state.params[name], updates)})
  stats = dict(state.extra['batch_stats'], **{name: new_stats})
  return state.replace(params=params, opt_state=dict(state.opt_state, **{name: opt}),
                       extra=dict(state.extra, batch_stats=stats))


def discriminator_step(state, real, z, *, graphdefs, tx):
  """One D update on real images and G's samples (G in train mode, its statistics dropped).

  Args:
    state: TrainState with ``params``/``opt_state``/``extra['batch_stats']`` per network.
    real: float32 [B, H, W, C] in [-1, 1].
    z: float32 [B, Z] latents of the samples.

  Returns:
    (state, metrics): only D's parameters, Adam state and statistics change (BatchNorm runs
    on the real batch, then on the sample batch, as in the DCGAN reference code). Metrics:
    ``d_loss`` (nats per image pair, mean over the batch), ``d_real`` and ``d_fake`` (mean
    D probability of real and of samples), ``d_grad_norm``.
  """
  fake = jax.lax.stop_gradient(_network(graphdefs, state, 'generator')(z, train=True))

  def loss_fn(d_params):
    d = state_lib.merge_model(graphdefs['discriminator'], d_params,
                              state.extra['batch_stats']['discriminator'])
    real_logits, fake_logits = d(real, train=True), d(fake, train=True)
    loss = jnp.mean(gan_losses.discriminator_loss(real_logits, fake_logits))
    return loss, (state_lib.batch_stats(d), real_logits, fake_logits)

  (loss, (stats, real_logits, fake_logits)), grads = jax.value_and_grad(loss_fn, has_aux=True)(
      state.params['discriminator'])
  metrics = dict(d_loss=loss, d_real=jnp.mean(jax.nn.sigmoid(real_logits)),
                 d_fake=jnp.mean(jax.nn.sigmoid(fake_logits)),
                 d_grad_norm=optax.global_norm(grads))
  return _update(state, 'discriminator', grads, stats, tx), metrics


def generator_step(state, z, *, graphdefs, tx):
  """One G update on the non-saturating loss -log D(G(z)) (D in train mode, frozen, its
  statistics dropped).

  Args:
    state: as for ``discriminator_step``.
    z: float32 [B, Z] latents.

  Returns:
    (state, metrics): only G's parameters, Adam state and statistics change. Metrics:
    ``g_loss`` (nats per sample), ``g_grad_norm``.
  """
  def loss_fn(g_params):
    g = state_lib.merge_model(graphdefs['generator'], g_params,
                              state.extra['batch_stats']['generator'])
    d = _network(graphdefs, state, 'discriminator')  # its updated statistics are dropped
    logits = d(g(z, train=True), train=True)
    return jnp.mean(gan_losses.generator_loss(logits)), state_lib.batch_stats(g)

  (loss, stats), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params['generator'])
  metrics = dict(g_loss=loss, g_grad_norm=optax.global_norm(grads))
  return _update(state, 'generator', grads, stats, tx), metrics


def train_step(state, batch, rng, *, graphdefs, tx, config, total_steps):
  """A D update then a G update on one global batch; pure and jit-compiled once.

  Both latent batches are drawn whole from ``fold_in(rng, step)``, so the device count does
  not change them.

  Args:
    state: TrainState.
    batch: {'image': uint8 [B, H, W, C], 'label': int32 [B]} global (sharded) images.

  Returns:
    (state with ``step`` + 1, metrics): f32 scalars of both updates (see
    ``discriminator_step``, ``generator_step``) and ``learning_rate`` (G's).
  """
  key = jax.random.fold_in(rng, state.step)
  b, z_dim = batch['image'].shape[0], config.model.latent_dim
  z_d = jax.random.normal(jax.random.fold_in(key, 0), (b, z_dim), jnp.float32)
  z_g = jax.random.normal(jax.random.fold_in(key, 1), (b, z_dim), jnp.float32)
  state, d_metrics = discriminator_step(state, to_model_range(batch['image']), z_d,
                                        graphdefs=graphdefs, tx=tx)
  state, g_metrics = generator_step(state, z_g, graphdefs=graphdefs, tx=tx)
  schedule = optim.make_schedule(config.optim, total_steps)
  metrics = dict(d_metrics, **g_metrics,
                 learning_rate=jnp.asarray(schedule(state.step), jnp.float32))
  return state.replace(step=state.step + 1), metrics


# ----------------------------------------------------------------------------- eval

def eval_latents(config) -> np.ndarray:
  """float32 [eval.num_samples, Z]: the same latents for every seed and run (from
  ``data.split_seed``), so evaluations compare generators, not draws."""
  key = jax.random.fold_in(jax.random.key(config.data.split_seed), _EVAL_LATENTS)
  return np.asarray(jax.random.normal(key, (config.eval.num_samples, config.model.latent_dim),
                                      jnp.float32))


def sample_step(generator, batch, *, graphdef):
  """Eval-mode samples: {'image': uint8 [b, H, W, C], 'weights'} for ``batch['z']`` [b, Z];
  ``generator`` = {'params', 'batch_stats'} of G."""
  g = state_lib.merge_model(graphdef, generator['params'], generator['batch_stats'])
  return {'image': to_uint8(g(batch['z'], train=False)), 'weights': batch['weights']}


def generate(sample_fn, state, latents, mesh, config) -> np.ndarray:
  """uint8 [N, H, W, C]: G of ``state`` (eval mode) on ``latents`` [N, Z], in order."""
  generator = {'params': state.params['generator'],
               'batch_stats': state.extra['batch_stats']['generator']}
  return loop.per_example_over_split(sample_fn, generator, {'z': latents}, mesh,
                                     global_batch_size=config.eval.global_batch_size)['image']


def fit_classifier(data, workdir, config):
  """The feature classifier (cached in ``WORKDIR/fd_classifier``) and the reference features.

  Returns:
    dict: ``classify`` (uint8 images -> (logits, features)), ``test_features`` [M, F],
    ``accuracy`` on the test split, ``fd_train_images`` (training vs test images).
  """
  c = config.classifier
  seed = int(jax.random.randint(jax.random.fold_in(jax.random.key(config.data.split_seed),
                                                   _CLASSIFIER), (), 0, 2**31 - 1))
  graphdef, params = generative.load_or_train_classifier(
      os.path.join(workdir, 'fd_classifier'), data['train']['image'], data['train']['label'],
      data['num_classes'], data_sha256=data['info']['data/sha256'], seed=seed,
      num_steps=c.num_steps, batch_size=min(c.batch_size, len(data['train']['image'])),
      learning_rate=c.learning_rate, widths=tuple(c.widths), feature_dim=c.feature_dim)
  classify = functools.partial(generative.classify, graphdef, params)
  test_logits, test_features = classify(data['test']['image'])
  train_features = classify(data['train']['image'])[1]
  return dict(classify=classify, test_features=test_features,
              accuracy=float(np.mean(np.argmax(test_logits, -1) == data['test']['label'])),
              fd_train_images=generative.fd_between(train_features, test_features))


def sample_metrics(samples, reference, config) -> dict[str, float]:
  """fd_classifier, classes_covered and class_entropy of uint8 samples [N, H, W, C]."""
  logits, features = reference['classify'](samples)
  return generative.sample_quality(features, logits, reference['test_features'],
                                   min_fraction=config.eval.min_class_fraction)


# ----------------------------------------------------------------------------- run

def create_train_state(config, mesh, data):
  """(graphdefs, tx, state, shardings): a fresh state built directly on the mesh.

  ``state.params``, ``state.opt_state`` and ``state.extra['batch_stats']`` are dicts keyed by
  'generator' and 'discriminator'; ``graphdefs`` and ``tx`` likewise.
  """
  tx = make_optimizers(config, data['num_train_steps'])
  abstract = nnx.eval_shape(lambda: make_networks(config, data['image_shape'], nnx.Rngs(0)))
  graphdefs = {n: state_lib.split_model_with_stats(abstract[n])[0] for n in NETWORKS}

  def init(key):
    networks = make_networks(config, data['image_shape'], nnx.Rngs(params=key))
    split = {n: state_lib.split_model_with_stats(networks[n])[1:] for n in NETWORKS}
    params = {n: split[n][0] for n in NETWORKS}
    return state_lib.TrainState(
        step=jnp.zeros((), jnp.int32), params=params,
        opt_state={n: tx[n].init(params[n]) for n in NETWORKS},
        extra={'batch_stats': {n: split[n][1] for n in NETWORKS}})

  state, shardings = state_lib.jit_init(init, mesh,
                                        jax.random.fold_in(jax.random.key(config.seed), 0))
  return graphdefs, tx, state, shardings


def make_train_step(config, graphdefs, tx, data):
  """``train_step`` bound to this run (not yet jitted)."""
  return functools.partial(train_step, graphdefs=graphdefs, tx=tx, config=config,
                           total_steps=data['num_train_steps'])


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
  t_start = time.time()
  mesh = mesh_lib.make_mesh(config.mesh)
  validate_config(config, mesh.devices.size)
  saved_meta = checkpoint.open_workdir(workdir, experiment=EXPERIMENT, config=config)
  data = prepare_data(config)
  checkpoint.check_data(saved_meta, data['info'], workdir)
  total_steps = data['num_train_steps']
  reference = fit_classifier(data, workdir, config)

  graphdefs, tx, state, shardings = create_train_state(config, mesh, data)
  sample_fn = sharding.jit_eval_step(
      functools.partial(sample_step, graphdef=graphdefs['generator']),
      {'params': shardings.params['generator'],
       'batch_stats': shardings.extra['batch_stats']['generator']}, mesh)
  latents = eval_latents(config)
  untrained = sample_metrics(generate(sample_fn, state, latents, mesh, config), reference,
                             config)
  fixed = dict(fd_classifier_untrained=untrained['fd_classifier'],
               fd_classifier_train_images=reference['fd_train_images'],
               classifier_accuracy=reference['accuracy'])

  manager, state, restored_step = checkpoint.restore_or_keep(
      workdir, state, shardings, max_to_keep=config.max_checkpoints_to_keep)
  jit_step = sharding.jit_train_step(make_train_step(config, graphdefs, tx, data), shardings,
                                     mesh)
  get_batch = loop.batch_getter(data['train'], mesh, seed=config.seed,
                                global_batch_size=config.global_batch_size)
  writer = writers.create_writer(workdir)

  def run_eval(state, step):
    samples = generate(sample_fn, state, latents, mesh, config)
    shown = samples[:config.eval.grid_samples].astype(np.float32) / 255.0
    grid = writers.image_grid(shown, columns=math.ceil(math.sqrt(len(shown))))
    writers.write_image_grids(writer, workdir, step, {'samples': grid},
                              scale=config.eval.png_scale)
    return dict(sample_metrics(samples, reference, config), **fixed)

  return loop.run_and_summarize(
      state, experiment=EXPERIMENT, workdir=workdir, config=config,
      info=dict(data['info'], num_train_steps=total_steps), restored_from_step=restored_step,
      start_time=t_start, num_train_steps=total_steps, train_step=jit_step,
      get_batch=get_batch, writer=writer, manager=manager, eval_fn=run_eval,
      examples_per_step=config.global_batch_size, fail_at_step=fail_at_step)


if __name__ == '__main__':
  cli.run(get_config, train_and_evaluate)
