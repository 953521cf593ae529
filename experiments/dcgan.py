r"""DCGAN: a generator of images trained against a discriminator, scored in a classifier's
features.

Goodfellow et al. 2014 (arXiv:1406.2661), non-saturating generator loss (their section 3);
Radford, Metz & Chintala 2016 (arXiv:1511.06434): transposed-convolution generator,
convolutional discriminator with BatchNorm, Adam 2e-4 with beta1 0.5 (their section 4). A
step is one discriminator update on a global batch of real images and as many samples,
then one generator update on fresh samples; each network has its own Adam state and
BatchNorm statistics (over the global batch, in ``TrainState.extra``).

  python -m experiments.dcgan --workdir=/tmp/dcgan
  python -m experiments.dcgan --workdir=/tmp/dcgan_mnist --config.data.files='/data/*-ubyte.gz'

Sample quality (README: DCGAN): ``eval/fd_classifier``, the Fréchet distance between the
features of a small classifier (fitted to the training split, cached in
``WORKDIR/fd_classifier``) of eval-mode samples from fixed latents and of the test images,
against ``eval/fd_classifier_untrained`` and ``eval/fd_classifier_train_images``; class
coverage and entropy of the samples.
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from flax import nnx

from jaxssl import config_checks, fileio
from jaxssl.data import images, pipeline
from jaxssl.eval import driver, generative
from jaxssl.losses import gan as gan_losses
from jaxssl.models import gan
from jaxssl.parallel import sharding
from jaxssl.train import cli, loop, optim, rngs, run_config, writers
from jaxssl.train import state as state_lib

EXPERIMENT = 'dcgan'
NETWORKS = ('generator', 'discriminator')


def get_config() -> ml_collections.ConfigDict:
  """The default run: 8x8 digits, about 2 minutes on 2 cores."""
  # A step sees global_batch_size real images and as many samples.
  c = run_config.base_config(
      images.data_config(), global_batch_size=64, num_epochs=100, num_train_steps=4000,
      log_every_steps=200, eval_every_steps=1000, checkpoint_every_steps=1000)

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

  return c


def smoke_config() -> ml_collections.ConfigDict:
  """A few steps of small networks on the digits: seconds, for tests."""
  c = run_config.smoke(get_config(), global_batch_size=16, eval_batch_size=64)
  c.model.latent_dim = 8
  c.model.generator_widths = (16, 8)
  c.model.discriminator_widths = (8, 16)
  c.eval.num_samples = 128
  c.eval.grid_samples = 16
  c.classifier.num_steps = 40
  c.classifier.widths = (8, 16)
  c.classifier.feature_dim = 16
  return c


# ----------------------------------------------------------------------------- config

def validate_config(config: ml_collections.ConfigDict, num_devices: int) -> None:
  """Raises ValueError naming the first bad field; runs before any data or compilation."""
  run_config.check_training(config, num_devices)
  images.check_config(config)
  config_checks.whole_batch_steps(config, 'BatchNorm normalises over the whole batch')
  config_checks.positive_sizes(config, 'model.generator_widths', 'model.discriminator_widths',
                               'classifier.widths')
  config_checks.positive(config, 'num_epochs', 'model.latent_dim', 'eval.num_samples',
                         'eval.grid_samples', 'eval.png_scale',
                         'classifier.num_steps', 'classifier.batch_size',
                         'classifier.feature_dim')
  config_checks.positive_float(config, 'method.discriminator_lr_scale',
                               'classifier.learning_rate')
  config_checks.in_open_unit_interval(config, 'eval.min_class_fraction')
  if config.eval.num_samples < 2:
    raise ValueError(f'eval.num_samples={config.eval.num_samples} must be >= 2 (a covariance)')
  if config.eval.grid_samples > config.eval.num_samples:
    raise ValueError(f'eval.grid_samples={config.eval.grid_samples} must be <= '
                     f'eval.num_samples={config.eval.num_samples} (the grid shows samples)')


# ----------------------------------------------------------------------------- data

def prepare_data(config: ml_collections.ConfigDict, workdir: str) -> dict:
  """Train/test images (uint8 [N, H, W, C]) and labels, the run's length in steps and the
  data facts.

  Raises:
    ValueError: empty data, too few training images for one step, or unlabelled data (the
      feature classifier needs labels).
  """
  del workdir  # the images keep nothing there
  return images.for_training(
      config, labels_needed_by='the feature classifier of eval/fd_classifier')


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


def _network(state, name):
  return state_lib.merge_model(state.graphdef[name], state.params[name],
                               state.extra['batch_stats'][name])


def _update(state, name, grads, new_stats):
  """``state`` with network ``name``'s Adam update and BatchNorm statistics replaced (the
  other network's fields, and ``step``, untouched)."""
  updates, opt = state.tx[name].update(grads, state.opt_state[name], state.params[name])
  params = dict(state.params, **{name: optax.apply_updates(state.params[name], updates)})
  stats = dict(state.extra['batch_stats'], **{name: new_stats})
  return state.replace(params=params, opt_state=dict(state.opt_state, **{name: opt}),
                       extra=dict(state.extra, batch_stats=stats))


def discriminator_step(state, real, z):
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
  fake = jax.lax.stop_gradient(_network(state, 'generator')(z, train=True))

  def loss_fn(d_params):
    d = state_lib.merge_model(state.graphdef['discriminator'], d_params,
                              state.extra['batch_stats']['discriminator'])
    real_logits, fake_logits = d(real, train=True), d(fake, train=True)
    loss = jnp.mean(gan_losses.discriminator_loss(real_logits, fake_logits))
    return loss, (state_lib.batch_stats(d), real_logits, fake_logits)

  (loss, (stats, real_logits, fake_logits)), grads = jax.value_and_grad(loss_fn, has_aux=True)(
      state.params['discriminator'])
  metrics = dict(d_loss=loss, d_real=jnp.mean(jax.nn.sigmoid(real_logits)),
                 d_fake=jnp.mean(jax.nn.sigmoid(fake_logits)),
                 d_grad_norm=optax.global_norm(grads))
  return _update(state, 'discriminator', grads, stats), metrics


def generator_step(state, z):
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
    g = state_lib.merge_model(state.graphdef['generator'], g_params,
                              state.extra['batch_stats']['generator'])
    d = _network(state, 'discriminator')  # its updated statistics are dropped
    logits = d(g(z, train=True), train=True)
    return jnp.mean(gan_losses.generator_loss(logits)), state_lib.batch_stats(g)

  (loss, stats), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params['generator'])
  metrics = dict(g_loss=loss, g_grad_norm=optax.global_norm(grads))
  return _update(state, 'generator', grads, stats), metrics


def train_step(state, batch, rng, *, config):
  """A D update then a G update on one global batch; pure and jit-compiled once.

  Both latent batches are drawn whole from ``fold_in(rng, step)``, so the device count does
  not change them.

  Args:
    state: TrainState.
    batch: {'image': uint8 [B, H, W, C], 'label': int32 [B]} global (sharded) images.

  Returns:
    (state with ``step`` + 1, metrics): f32 scalars of both updates (see
    ``discriminator_step``, ``generator_step``).
  """
  key = jax.random.fold_in(rng, state.step)
  b, z_dim = batch['image'].shape[0], config.model.latent_dim
  z_d = jax.random.normal(jax.random.fold_in(key, 0), (b, z_dim), jnp.float32)
  z_g = jax.random.normal(jax.random.fold_in(key, 1), (b, z_dim), jnp.float32)
  state, d_metrics = discriminator_step(state, gan.to_model_range(batch['image']), z_d)
  state, g_metrics = generator_step(state, z_g)
  return state.replace(step=state.step + 1), dict(d_metrics, **g_metrics)


# ----------------------------------------------------------------------------- eval

def eval_latents(config) -> np.ndarray:
  """float32 [eval.num_samples, Z]: the same latents for every seed and run (from
  ``data.split_seed``), so evaluations compare generators, not draws."""
  key = rngs.eval_key(config.data.split_seed, 'prior')
  return np.asarray(jax.random.normal(key, (config.eval.num_samples, config.model.latent_dim),
                                      jnp.float32))


def sample_step(generator, batch, *, graphdef):
  """Eval-mode samples: {'image': uint8 [b, H, W, C], 'weights'} for ``batch['z']`` [b, Z];
  ``generator`` = {'params', 'batch_stats'} of G."""
  g = state_lib.merge_model(graphdef, generator['params'], generator['batch_stats'])
  return {'image': gan.to_uint8(g(batch['z'], train=False)), 'weights': batch['weights']}


def generate(sample_fn, state, latents, mesh, config) -> np.ndarray:
  """uint8 [N, H, W, C]: G of ``state`` (eval mode) on ``latents`` [N, Z], in order."""
  generator = {'params': state.params['generator'],
               'batch_stats': state.extra['batch_stats']['generator']}
  return driver.per_example_over_split(sample_fn, generator, {'z': latents}, mesh,
                                       global_batch_size=config.eval.global_batch_size)['image']


def fit_classifier(data, workdir, config):
  """The feature classifier of ``eval/fd_classifier`` and its reference features
  (``generative.reference_features``; cached in ``WORKDIR/fd_classifier``, seeded from
  ``data.split_seed``, so the same for every seed)."""
  c = config.classifier
  seed = int(jax.random.randint(rngs.eval_key(config.data.split_seed, 'classifier'), (), 0,
                                2**31 - 1))
  return generative.reference_features(
      fileio.join(workdir, 'fd_classifier'), data['eval']['train'], data['test'],
      data['num_classes'],
      data_sha256=data['info']['data/sha256'], seed=seed, num_steps=c.num_steps,
      batch_size=min(c.batch_size, len(data['eval']['train']['image'])), learning_rate=c.learning_rate,
      widths=tuple(c.widths), feature_dim=c.feature_dim)


def sample_metrics(samples, reference, config) -> dict[str, float]:
  """fd_classifier, classes_covered and class_entropy of uint8 samples [N, H, W, C]."""
  logits, features = reference['classify'](samples)
  return generative.sample_quality(features, logits, reference['test_features'],
                                   min_fraction=config.eval.min_class_fraction)


# ----------------------------------------------------------------------------- run

def create_train_state(config, data, mesh, rng) -> state_lib.TrainState:
  """A fresh TrainState built directly on the mesh: ``params``, ``opt_state``,
  ``extra['batch_stats']``, ``graphdef`` and ``tx`` are keyed by 'generator' and
  'discriminator'."""
  tx = make_optimizers(config, data['num_train_steps'])
  abstract = nnx.eval_shape(lambda: make_networks(config, data['image_shape'], nnx.Rngs(0)))
  graphdef = state_lib.frozen(**{n: state_lib.split_model_with_stats(abstract[n])[0]
                                 for n in NETWORKS})

  def init(key):
    networks = make_networks(config, data['image_shape'], nnx.Rngs(params=key))
    split = {n: state_lib.split_model_with_stats(networks[n])[1:] for n in NETWORKS}
    params = {n: split[n][0] for n in NETWORKS}
    return state_lib.TrainState(
        step=jnp.zeros((), jnp.int32), params=params,
        opt_state={n: tx[n].init(params[n]) for n in NETWORKS},
        extra={'batch_stats': {n: split[n][1] for n in NETWORKS}},
        graphdef=graphdef, tx=state_lib.frozen(**tx))

  return state_lib.jit_init(init, mesh, rng)


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict:
  """Trains the GAN, scored in the features of a classifier fitted first (cached in the
  workdir); writes sample grids (the protocol: ``experiments/__init__.py``)."""
  mesh, run = loop.start(config, workdir, EXPERIMENT, validate_config)
  data = prepare_data(config, workdir)
  reference = fit_classifier(data, workdir, config)
  rng_init, rng_train, _ = rngs.run_keys(config.seed)
  state = create_train_state(config, data, mesh, rng_init)
  stat_shardings = state_lib.shardings(state)
  sample_fn = sharding.jit_eval_step(
      functools.partial(sample_step, graphdef=state.graphdef['generator']),
      {'params': stat_shardings.params['generator'],
       'batch_stats': stat_shardings.extra['batch_stats']['generator']}, mesh)
  latents = eval_latents(config)
  untrained = sample_metrics(generate(sample_fn, state, latents, mesh, config), reference,
                             config)
  fixed = dict(fd_classifier_untrained=untrained['fd_classifier'],
               fd_classifier_train_images=reference['fd_train_images'],
               classifier_accuracy=reference['accuracy'])

  def evaluate_and_show(state, step):
    samples = generate(sample_fn, state, latents, mesh, config)
    shown = samples[:config.eval.grid_samples].astype(np.float32) / 255.0
    grid = writers.image_grid(shown, columns=math.ceil(math.sqrt(len(shown))))
    return {**sample_metrics(samples, reference, config), **fixed, 'samples': grid}

  return loop.train(run, state, functools.partial(train_step, config=config),
                    pipeline.batch_getter(data['train'], mesh, config), evaluate_and_show,
                    rng=rng_train, info=data['info'], num_train_steps=data['num_train_steps'])


if __name__ == '__main__':
  cli.run(get_config, train_and_evaluate)
