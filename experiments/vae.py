r"""Variational autoencoder: ELBO, importance-weighted bound and bits/dim on images.

Kingma & Welling 2014, "Auto-Encoding Variational Bayes" (arXiv:1312.6114): encoder
q(z | x) = N(mean(x), diag(exp(log_var(x)))), prior N(0, I), decoder p(x | z); training
maximises the ELBO (their eq. 3) with one reparameterised sample per image. Evaluation adds
the importance-weighted bound of Burda et al. 2016 (arXiv:1509.00519, eq. 8) with K =
``method.num_iwae_samples``. ``method.likelihood`` makes p(x | z) a probability of the
discrete image: 'bernoulli' (bytes >= 128 are ones) or 'logistic' (the 256 grey levels,
discretised logistic of Salimans et al. 2017, arXiv:1701.05517).

  python -m experiments.vae --workdir=/tmp/vae
  python -m experiments.vae --workdir=/tmp/vae_logistic --config.method.likelihood=logistic

Test-split metrics in nats per image (README: VAE): ``eval/elbo``, ``eval/iwae_bound``,
``eval/bits_per_dim`` against the independent-pixel baseline ``eval/elbo_baseline``.
Expected (defaults, under a minute on 2 CPU cores): eval/elbo -17.9 against -25.1,
eval/iwae_bound -16.8 (K = 32), 0.40 bits/dim against 0.57.
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from jaxssl import config_checks
from jaxssl.data import images, pipeline
from jaxssl.eval import driver
from jaxssl.eval import features as features_lib
from jaxssl.losses import vae as vae_losses
from jaxssl.models import vae as vae_model
from jaxssl.parallel import sharding
from jaxssl.train import cli, loop, optim, rngs, run_config, writers
from jaxssl.train import state as state_lib
from jaxssl.train import step as train_step_lib

EXPERIMENT = 'vae'


def get_config() -> ml_collections.ConfigDict:
  """The default run: binarised digits, 8 latent dimensions, under a minute on 2 cores."""
  c = run_config.base_config(
      images.data_config(), global_batch_size=64, num_epochs=90, num_train_steps=4000,
      log_every_steps=200, eval_every_steps=1000, checkpoint_every_steps=1000)

  c.model = ml_collections.ConfigDict()
  c.model.latent_dim = 8  # Z: dimensions of the Gaussian latent.
  c.model.widths = (32, 64)  # Channels of the stride-2 convolutions (each halves H and W).
  c.model.activation = 'gelu'  # gelu | relu.

  c.method = ml_collections.ConfigDict()
  c.method.likelihood = 'bernoulli'  # bernoulli (binarised images) | logistic (256 levels).
  c.method.num_iwae_samples = 32  # K latents per test image (ELBO estimate and IWAE bound).

  c.optim = optim.adamw_config(learning_rate=2e-3, warmup_steps=100)

  c.eval = ml_collections.ConfigDict()
  c.eval.global_batch_size = 256  # Test images per eval step (each decoded K times).
  c.eval.num_images = 8  # Test images shown with their reconstructions.
  c.eval.num_samples = 64  # Images decoded from prior samples (a square-ish grid).
  c.eval.num_interpolations = 4  # Pairs of test images interpolated between, one row each.
  c.eval.interpolation_steps = 8  # Decoded points per pair, both posterior means included.
  c.eval.png_scale = 4  # PNG enlargement by pixel repetition (8x8 digits are tiny).

  return c


def smoke_config() -> ml_collections.ConfigDict:
  """A few steps of a small model on the digits: seconds, for tests."""
  c = run_config.smoke(get_config(), global_batch_size=16, eval_batch_size=128)
  c.model.latent_dim = 4
  c.model.widths = (4, 8)
  c.method.num_iwae_samples = 8
  c.eval.num_samples = 16
  c.eval.num_interpolations = 2
  c.eval.interpolation_steps = 4
  return c


# ----------------------------------------------------------------------------- config

def validate_config(config: ml_collections.ConfigDict, num_devices: int) -> None:
  """Raises ValueError naming the first bad field; runs before any data or compilation."""
  run_config.check_training(config, num_devices)
  images.check_config(config)
  config_checks.positive(config, 'num_epochs', 'model.latent_dim', 'method.num_iwae_samples',
                         'eval.num_images', 'eval.num_samples', 'eval.num_interpolations',
                         'eval.interpolation_steps', 'eval.png_scale')
  config_checks.one_of(config, 'model.activation', ('gelu', 'relu'))
  config_checks.one_of(config, 'method.likelihood', vae_model.LIKELIHOODS)
  if config.eval.interpolation_steps < 2:
    raise ValueError(f'eval.interpolation_steps={config.eval.interpolation_steps} must be '
                     '>= 2 (both ends of each interpolation)')
  config_checks.positive_sizes(config, 'model.widths')


# ----------------------------------------------------------------------------- data

def prepare_data(config: ml_collections.ConfigDict, workdir: str) -> dict:
  """Train/test images (uint8 [N, H, W, C]) and labels, the independent-pixel baseline, the
  run's length in steps (``num_train_steps``), and the data facts.

  Raises:
    ValueError: empty data, or too few training images for one step (or for the warmup).
  """
  del workdir  # the images keep nothing there
  data = images.for_training(config)
  return dict(data, baseline=vae_model.fit_baseline(data['train']['image'],
                                                    config.method.likelihood))


# ----------------------------------------------------------------------------- steps

def train_step(state, batch, rng, *, config):
  """One AdamW step on the negative ELBO of a global batch; pure and jit-compiled once.

  The latent noise of the whole global batch is drawn first from ``fold_in(rng, step)``, so
  gradient accumulation and the device count do not change it; each image gets one
  reparameterised sample z = mean + exp(log_var / 2) * eps (Kingma & Welling, section 2.4).

  Args:
    state: TrainState.
    batch: {'image': uint8 [B, H, W, C], 'label': int32 [B]} global (sharded) images.

  Returns:
    (state, metrics): f32 scalars ``loss`` (negative ELBO, nats per image, mean over the
    global batch), ``reconstruction`` (its log p(x | z) term) and ``kl``, ``bits_per_dim``
    (of the ELBO), ``grad_norm``.
  """
  x = vae_model.model_input(batch['image'], config.method.likelihood)  # [B, H, W, C]
  eps = jax.random.normal(jax.random.fold_in(rng, state.step),
                          (x.shape[0], config.model.latent_dim), jnp.float32)  # [B, Z]

  def sums_fn(params, mb, _):
    model = state_lib.merge_model(state.graphdef, params)
    mean, log_var = model.encode(mb['x'])  # [b, Z] each
    z = mean + jnp.exp(0.5 * log_var) * mb['eps']
    log_lik = model.log_likelihood(model.decode(z), mb['x'])  # [b]
    kl = vae_losses.gaussian_kl(mean, log_var)  # [b]
    negative_elbo = -vae_losses.elbo(log_lik, kl)  # [b]
    return jnp.sum(negative_elbo), {'count': jnp.asarray(kl.shape[0], jnp.float32),
                                    'reconstruction': jnp.sum(log_lik), 'kl': jnp.sum(kl)}

  grads, sums = train_step_lib.accumulate_gradients(
      sums_fn, state.params, {'x': x, 'eps': eps}, rng, config.optim.grad_accum_steps)
  grads = train_step_lib.divide(grads, sums['count'])  # mean over the global batch
  loss = sums['loss'] / sums['count']
  metrics = dict(loss=loss, reconstruction=sums['reconstruction'] / sums['count'],
                 kl=sums['kl'] / sums['count'],
                 bits_per_dim=vae_losses.bits_per_dim(-loss, math.prod(x.shape[1:])),
                 grad_norm=optax.global_norm(grads))
  return state.apply_gradients(grads), metrics


def eval_step(params, batch, *, graphdef, config, baseline):
  """Per-image test bounds (the host averages them over the real rows).

  Image i's K latent samples come from (``data.split_seed``, its index i), so they are the
  same for every seed, batch size and device count.

  Args:
    batch: {'image': uint8 [B, H, W, C], 'weights': f32 [B], 'index': int32 [B], ...}.
    baseline: ``fit_baseline``'s outputs, float32 [H, W, C] each.

  Returns:
    dict of f32 [B], nats per image unless stated: elbo, reconstruction, kl, bits_per_dim,
    iwae_bound, elbo_baseline, bits_per_dim_baseline, and weights (1 real, 0 padding).
  """
  x = vae_model.model_input(batch['image'], config.method.likelihood)  # [B, H, W, C]
  key = rngs.eval_key(config.data.split_seed, 'fixed')
  keys = jax.vmap(functools.partial(jax.random.fold_in, key))(jnp.maximum(batch['index'], 0))
  model = state_lib.merge_model(graphdef, params)
  # One image at a time under vmap, so each image's samples depend on its own key only.
  out = jax.vmap(lambda k, image: model(image[None], k,
                                        num_samples=config.method.num_iwae_samples))(keys, x)
  elbo = out['elbo'][:, 0]  # [B]
  log_weights = out['log_weights'][:, :, 0].T  # [K, B]
  baseline = model.log_likelihood(
      {name: jnp.broadcast_to(value, x.shape) for name, value in baseline.items()}, x)  # [B]
  num_dims = math.prod(x.shape[1:])
  return dict(elbo=elbo, reconstruction=out['log_likelihood'][:, 0], kl=out['kl'][:, 0],
              bits_per_dim=vae_losses.bits_per_dim(elbo, num_dims),
              iwae_bound=vae_losses.iwae_bound(log_weights),
              elbo_baseline=baseline,
              bits_per_dim_baseline=vae_losses.bits_per_dim(baseline, num_dims),
              weights=batch['weights'])


def evaluate(params, data, eval_fn, mesh, config) -> dict[str, float]:
  """Test-split metrics: ``eval_step``'s values averaged over every test image."""
  per_image = driver.per_example_over_split(eval_fn, params, data['test'], mesh,
                                            global_batch_size=config.eval.global_batch_size)
  return {name: float(np.mean(values, dtype=np.float64)) for name, values in per_image.items()}


def decoder_mean(model, z: jax.Array) -> jax.Array:
  """Mean image of p(x | z): sigmoid(logits) (Bernoulli) or the logistic's location, which
  is its mean up to the pooling of the tails into the end levels. z: [B, Z] -> [B, H, W, C]."""
  outputs = model.decode(z)
  if 'logits' in outputs:
    return jax.nn.sigmoid(outputs['logits'])
  return outputs['mean']


def grid_step(params, images, *, graphdef, config):
  """The pictures of ``image_grids``, computed in one compiled call at posterior means (no
  sampling noise).

  Args:
    params: the VAE's parameters.
    images: {'shown': uint8 [n, H, W, C], the test images reconstructed; and, if there are
      interpolations, 'ends': uint8 [2P, H, W, C], pair j being images 2j and 2j + 1}.

  Returns:
    dict of float32 in [0, 1] (decoder means, see ``decoder_mean``): 'inputs' [n, H, W, C]
    (the images as modelled), 'reconstructions' [n, H, W, C], 'samples' [S, H, W, C] with
    S = ``eval.num_samples`` decoded from z ~ p(z), the same z in every run (drawn from
    ``data.split_seed``), and with 'ends' 'interpolations' [P, T + 2, H, W, C]: the first
    image, T = ``eval.interpolation_steps`` decoder means along the line between the two
    posterior means, the second image.
  """
  model = state_lib.merge_model(graphdef, params)
  x = vae_model.model_input(images['shown'], config.method.likelihood)  # [n, H, W, C]
  out = dict(inputs=x, reconstructions=decoder_mean(model, model.encode(x)[0]))
  key = rngs.eval_key(config.data.split_seed, 'prior')
  z = jax.random.normal(key, (config.eval.num_samples, config.model.latent_dim), jnp.float32)
  out['samples'] = decoder_mean(model, z)
  if 'ends' in images:
    ends = vae_model.model_input(images['ends'], config.method.likelihood)
    first, second = ends[0::2], ends[1::2]  # [P, H, W, C] each
    z_first, z_second = model.encode(first)[0], model.encode(second)[0]  # [P, Z] each
    t = jnp.linspace(0.0, 1.0, config.eval.interpolation_steps)[None, :, None]  # [1, T, 1]
    z = z_first[:, None] + t * (z_second - z_first)[:, None]  # [P, T, Z]
    frames = decoder_mean(model, z.reshape(-1, config.model.latent_dim))  # [P T, H, W, C]
    frames = frames.reshape((first.shape[0], -1) + first.shape[1:])  # [P, T, H, W, C]
    out['interpolations'] = jnp.concatenate([first[:, None], frames, second[:, None]],
                                            axis=1)  # [P, T + 2, H, W, C]
  return out


def make_grid_fn(config, graphdef, data, param_shardings, mesh):
  """``params -> grid_step(params, test images)``, jitted for the whole run (the images are
  constants of the compiled function), its outputs replicated on the mesh: the first
  ``eval.num_images`` test images, and the first ``2 eval.num_interpolations`` (fewer if the
  split is smaller) as pairs."""
  test = data['test']['image']
  images = {'shown': test[:min(config.eval.num_images, len(test))]}
  pairs = min(config.eval.num_interpolations, len(test) // 2)
  if pairs:
    images['ends'] = test[:2 * pairs]
  return jax.jit(functools.partial(grid_step, images=images, graphdef=graphdef, config=config),
                 in_shardings=(param_shardings,), out_shardings=sharding.replicated(mesh))


def image_grids(grid_fn, params, config) -> dict[str, np.ndarray]:
  """uint8 pictures of what the model does (``grid_fn``: ``make_grid_fn``'s function; see
  ``grid_step``): 'reconstructions' (the test images as modelled, i.e. binarised for
  'bernoulli', over their reconstructions), 'samples' (a square-ish grid) and
  'interpolations' (one row per pair)."""
  pictures = jax.device_get(grid_fn(params))
  n = len(pictures['inputs'])
  grids = {
      'reconstructions': writers.image_grid(
          np.concatenate([pictures['inputs'], pictures['reconstructions']]), columns=n),
      'samples': writers.image_grid(
          pictures['samples'], columns=math.ceil(math.sqrt(config.eval.num_samples)))}
  if 'interpolations' in pictures:
    rows = pictures['interpolations']  # [P, T + 2, H, W, C]
    grids['interpolations'] = writers.image_grid(rows.reshape((-1,) + rows.shape[2:]),
                                                 columns=rows.shape[1])
  return grids


def embed_fn(graphdef, config) -> features_lib.NnxEmbedFn:
  """The frozen encoder for the downstream protocol (``jaxssl.eval.representation``): the
  posterior mean [B, Z] of images in [0, 1], binarised first as in training when the
  likelihood is Bernoulli."""
  binary = config.method.likelihood == 'bernoulli'

  def posterior_mean(module, x, train):
    del train
    if binary:  # the same test as model_input on the bytes: x * 255 >= 128
      x = (x * (vae_model.NUM_LEVELS - 1) >= vae_model.BINARY_THRESHOLD - 0.5).astype(
          jnp.float32)
    return module.encode(x)[0]

  return features_lib.nnx_embed_fn(graphdef, posterior_mean)


def encoder_variables(state) -> dict:
  """The variables ``embed_fn`` reads."""
  return {'params': state.params}


# ----------------------------------------------------------------------------- run

def create_train_state(config, data, mesh, rng) -> state_lib.TrainState:
  """A fresh TrainState (model and AdamW) built directly on the mesh."""
  return state_lib.init_on_mesh(
      lambda rngs_: vae_model.VAE(data['image_shape'], config.model.latent_dim,
                                  tuple(config.model.widths),
                                  likelihood=config.method.likelihood,
                                  num_levels=vae_model.NUM_LEVELS,
                                  activation=config.model.activation, rngs=rngs_),
      optim.make_optimizer(config.optim, data['num_train_steps']), mesh, rng)


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict:
  """Trains the VAE on the test ELBO and IWAE bound; writes reconstructions, samples and
  interpolations (the protocol: ``experiments/__init__.py``)."""
  mesh, run = loop.start(config, workdir, EXPERIMENT, validate_config)
  data = prepare_data(config, workdir)
  rng_init, rng_train, _ = rngs.run_keys(config.seed)
  state = create_train_state(config, data, mesh, rng_init)
  params_sharding = state_lib.shardings(state).params
  eval_fn = sharding.jit_eval_step(functools.partial(
      eval_step, graphdef=state.graphdef, config=config,
      baseline={k: jnp.asarray(v) for k, v in data['baseline'].items()}), params_sharding, mesh)
  grid_fn = make_grid_fn(config, state.graphdef, data, params_sharding, mesh)

  evaluate_and_show = lambda state, step: dict(
      image_grids(grid_fn, state.params, config),
      **evaluate(state.params, data, eval_fn, mesh, config))

  return loop.train(run, state, functools.partial(train_step, config=config),
                    pipeline.batch_getter(data['train'], mesh, config), evaluate_and_show,
                    rng=rng_train, info=data['info'], num_train_steps=data['num_train_steps'])


if __name__ == '__main__':
  cli.run(get_config, train_and_evaluate)
