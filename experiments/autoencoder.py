r"""Convolutional (denoising) autoencoder, with reconstruction-error anomaly detection.

Hinton & Salakhutdinov 2006 (autoencoders); Vincent, Larochelle, Bengio & Manzagol 2008,
"Extracting and Composing Robust Features with Denoising Autoencoders": with
``--config.method.noise_std`` (Gaussian) or ``--config.method.mask_prob`` (masking noise)
the encoder sees a corrupted image and the decoder must return the clean one.

  python -m experiments.autoencoder --workdir=/tmp/ae
  python -m experiments.autoencoder --workdir=/tmp/dae --config.method.noise_std=0.3
  python -m experiments.autoencoder --workdir=/tmp/ae7 --config.method.anomaly_class=7

Default data: scikit-learn's bundled 8x8 digits (1,797 images) through the image cache
(``jaxssl.data.image_cache``, as every image source); ``--config.data.name=mnist
--config.data.data_dir=...`` or ``--config.data.files='/path/*-ubyte.gz'`` read MNIST-style
data. Metrics (test split):
``eval/mse``, ``eval/psnr`` (dB, mean over images) against ``eval/psnr_mean_image`` (always
predicting the training mean image), for denoising ``eval/psnr_noisy`` (the corrupted
input's PSNR), ``eval/compression_ratio``, and with ``method.anomaly_class=c`` (class c left
out of training) ``eval/anomaly_auroc`` of the reconstruction error. Reconstructions go to
TensorBoard and ``WORKDIR/images/*.png``. Results on 2 CPU cores: see README.
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from sklearn import metrics as sk_metrics

from jaxssl import config_checks
from jaxssl.data import augment, images, pipeline
from jaxssl.eval import driver
from jaxssl.eval import features as features_lib
from jaxssl.losses import reconstruction
from jaxssl.losses import vae as vae_losses
from jaxssl.models import conv_ae
from jaxssl.parallel import sharding
from jaxssl.train import cli, loop, optim, rngs, run_config, writers
from jaxssl.train import state as state_lib
from jaxssl.train import step as train_step_lib

EXPERIMENT = 'autoencoder'


def get_config() -> ml_collections.ConfigDict:
  """The default run: digits, 16 latent numbers per 64-pixel image, under a minute on 2 cores."""
  c = run_config.base_config(
      images.data_config(), global_batch_size=64, num_epochs=150, num_train_steps=4000,
      log_every_steps=200, eval_every_steps=1000, checkpoint_every_steps=1000)

  c.model = ml_collections.ConfigDict()
  c.model.latent_dim = 16  # Z: numbers per image in the bottleneck.
  c.model.widths = (32, 64)  # Channels of the stride-2 convolutions (each halves H and W).
  c.model.activation = 'gelu'  # gelu | relu.

  c.method = ml_collections.ConfigDict()
  c.method.noise_std = 0.0  # Gaussian corruption of the input (denoising AE); 0 = plain AE.
  c.method.mask_prob = 0.0  # Masking corruption: probability a pixel is zeroed.
  c.method.anomaly_class = -1  # Leave this class out of training and score it; -1 = off.
  # What training minimises per image: 'cross_entropy' (pixels in [0, 1] as Bernoulli
  # targets of the logits) or 'squared_error' of sigmoid(logits). Squared error through a
  # sigmoid stops learning on mostly-black images (MNIST): once the logits are very negative,
  # its gradient carries sigmoid'(logit) ~ 0; cross-entropy's is sigmoid(logit) - x.
  c.method.loss = 'cross_entropy'

  c.optim = optim.adamw_config(learning_rate=2e-3, warmup_steps=100)

  c.eval = ml_collections.ConfigDict()
  c.eval.global_batch_size = 256  # Images per eval step; the last batch is padded.
  c.eval.num_images = 8  # Test images shown (with their reconstructions) in the grids.
  c.eval.png_scale = 4  # PNG enlargement by pixel repetition (8x8 digits are tiny).

  return c


def smoke_config() -> ml_collections.ConfigDict:
  """A few steps of a small model on the digits: seconds, for tests."""
  c = run_config.smoke(get_config(), global_batch_size=16, eval_batch_size=128)
  c.model.latent_dim = 4
  c.model.widths = (4, 8)
  return c


# ----------------------------------------------------------------------------- config

def validate_config(config: ml_collections.ConfigDict, num_devices: int) -> None:
  """Raises ValueError naming the first bad field; runs before any data or compilation."""
  run_config.check_training(config, num_devices)
  images.check_config(config)
  config_checks.positive(config, 'num_epochs', 'model.latent_dim', 'eval.num_images',
                         'eval.png_scale')
  config_checks.one_of(config, 'model.activation', ('gelu', 'relu'))
  config_checks.non_negative(config, 'method.noise_std')
  config_checks.in_unit_interval(config, 'method.mask_prob')
  config_checks.one_of(config, 'method.loss', ('cross_entropy', 'squared_error'))
  if config.method.anomaly_class < -1:
    raise ValueError(f'method.anomaly_class={config.method.anomaly_class} must be a class '
                     'index >= 0, or -1 for off')
  if config.method.mask_prob >= 1:
    raise ValueError(f'method.mask_prob={config.method.mask_prob} must be < 1')
  config_checks.positive_sizes(config, 'model.widths')


def denoising(config) -> bool:
  return config.method.noise_std > 0 or config.method.mask_prob > 0


# ----------------------------------------------------------------------------- data

def prepare_data(config: ml_collections.ConfigDict, workdir: str) -> dict:
  """Train/test images (uint8 [N, H, W, C]) and labels, the training mean image, the run's
  length in steps (``num_train_steps``), and the data facts.

  With ``method.anomaly_class=c`` the training split loses every image of class c.

  Raises:
    ValueError: an anomaly class the data does not have, empty data, or too few training
      images for one step (or for the warmup).
  """
  del workdir  # the images keep nothing there
  c = config.method.anomaly_class
  data = images.for_training(config, train_keep=(lambda labels: labels != c) if c >= 0 else None)
  if c >= data['num_classes']:
    raise ValueError(f'method.anomaly_class={c} is not a class of {data["info"]["data/source"]} '
                     f'(labels 0..{data["num_classes"] - 1})')
  mean_image = images.pixel_mean(data['train']['image']) / 255.0  # [H, W, C]
  return dict(data, mean_image=mean_image.astype(np.float32))


def _as_float(image):
  return image.astype(jnp.float32) / 255.0


# ----------------------------------------------------------------------------- steps

def train_step(state, batch, rng, *, config):
  """One AdamW step on a global batch of images; pure and jit-compiled once.

  The corruption of the whole global batch is drawn first from ``fold_in(rng, step)``, so
  gradient accumulation and the device count do not change it.

  Args:
    state: TrainState.
    batch: {'image': uint8 [B, H, W, C], 'label': int32 [B]} global (sharded) images.

  Returns:
    (state, metrics): f32 scalars ``loss`` (``method.loss`` summed over an image's pixels,
    mean over the global batch: Bernoulli cross-entropy in nats, or squared error), ``mse``
    (of sigmoid(logits), per pixel), ``grad_norm``.
  """
  x = _as_float(batch['image'])
  noisy = augment.corrupt(jax.random.fold_in(rng, state.step), x,
                          noise_std=config.method.noise_std, mask_prob=config.method.mask_prob)

  def sums_fn(params, mb, _):
    logits, _ = state_lib.merge_model(state.graphdef, params)(mb['noisy'])
    squared = reconstruction.squared_error(jax.nn.sigmoid(logits), mb['clean'])  # [b]
    if config.method.loss == 'cross_entropy':
      per_image = -vae_losses.bernoulli_log_likelihood(logits, mb['clean'])  # [b]
    else:
      per_image = squared
    return jnp.sum(per_image), {'count': jnp.asarray(squared.shape[0], jnp.float32),
                                'squared': jnp.sum(squared)}

  grads, sums = train_step_lib.accumulate_gradients(
      sums_fn, state.params, {'noisy': noisy, 'clean': x}, rng, config.optim.grad_accum_steps)
  grads = train_step_lib.divide(grads, sums['count'])  # mean over the global batch
  loss = sums['loss'] / sums['count']
  metrics = dict(loss=loss, mse=sums['squared'] / sums['count'] / math.prod(x.shape[1:]),
                 grad_norm=optax.global_norm(grads))
  return state.apply_gradients(grads), metrics


def eval_inputs(x, index, config):
  """The encoder's inputs at evaluation: test image ``index[i]``'s corruption comes from
  (``data.split_seed``, that index) alone, so it is the same for every seed, batch size and
  device count, and the same in the metrics and in the grids.

  Args:
    x: float32 [B, H, W, C] clean images in [0, 1].
    index: int32 [B] their rows in the test split.

  Returns:
    float32 [B, H, W, C]: the corrupted images (``x`` itself for a plain autoencoder).
  """
  key = rngs.eval_key(config.data.split_seed, 'fixed')
  keys = jax.vmap(functools.partial(jax.random.fold_in, key))(index)
  return jax.vmap(lambda k, image: augment.corrupt(
      k, image[None], noise_std=config.method.noise_std,
      mask_prob=config.method.mask_prob)[0])(keys, x)


def eval_step(params, batch, *, graphdef, config, mean_image):
  """Per-image test metrics (the host averages them over the real rows).

  The eval corruption of each image comes from (``data.split_seed``, its index), so it is
  the same for every seed, batch size and device count.

  Returns:
    dict of f32 [B]: mse, psnr (dB), psnr_mean_image, psnr_noisy, and weights.
  """
  x = _as_float(batch['image'])
  noisy = eval_inputs(x, jnp.maximum(batch['index'], 0), config)
  logits, _ = state_lib.merge_model(graphdef, params)(noisy)
  mse = reconstruction.mse(jax.nn.sigmoid(logits), x)
  return dict(mse=mse, psnr=reconstruction.psnr(mse),
              psnr_mean_image=reconstruction.psnr(
                  reconstruction.mse(jnp.broadcast_to(mean_image, x.shape), x)),
              psnr_noisy=reconstruction.psnr(reconstruction.mse(noisy, x)),
              weights=batch['weights'])


def evaluate(params, data, eval_fn, mesh, config) -> dict[str, float]:
  """Test-split metrics: means over every test image, and the anomaly AUROC if asked for."""
  per_image = driver.per_example_over_split(eval_fn, params, data['test'], mesh,
                                           global_batch_size=config.eval.global_batch_size)
  h, w, c = data['image_shape']
  result = {k: float(np.mean(v)) for k, v in per_image.items()}
  result['compression_ratio'] = h * w * c / config.model.latent_dim
  if not denoising(config):
    del result['psnr_noisy']
  if config.method.anomaly_class >= 0:
    is_anomaly = data['test']['label'] == config.method.anomaly_class
    result['anomaly_auroc'] = float(sk_metrics.roc_auc_score(is_anomaly, per_image['mse']))
  return result


def grid_step(params, images, *, graphdef, config):
  """The pictures of the reconstruction grid, computed in one compiled call.

  Args:
    params: the autoencoder's parameters.
    images: uint8 [n, H, W, C], the first n test images (row i is test image i, whose
      corruption ``eval_inputs`` draws as in the metrics).

  Returns:
    dict of float32 [n, H, W, C] in [0, 1]: 'clean' (the images), 'noisy' (the encoder's
    inputs) and 'reconstruction' (sigmoid of the decoder's logits).
  """
  x = _as_float(images)
  noisy = eval_inputs(x, jnp.arange(x.shape[0]), config)
  logits, _ = state_lib.merge_model(graphdef, params)(noisy)
  return dict(clean=x, noisy=noisy, reconstruction=jax.nn.sigmoid(logits))


def make_grid_fn(config, graphdef, data, param_shardings, mesh):
  """``params -> grid_step(params, first test images)``, jitted for the whole run (the
  images are constants of the compiled function), its outputs replicated on the mesh."""
  n = min(config.eval.num_images, len(data['test']['image']))
  return jax.jit(functools.partial(grid_step, images=data['test']['image'][:n],
                                   graphdef=graphdef, config=config),
                 in_shardings=(param_shardings,), out_shardings=sharding.replicated(mesh))


def image_grids(grid_fn, params, config) -> dict[str, np.ndarray]:
  """Test images, their corrupted inputs (denoising) and reconstructions, one row each
  (``grid_fn``: ``make_grid_fn``'s function)."""
  pictures = jax.device_get(grid_fn(params))
  rows = [pictures['clean']] + ([pictures['noisy']] if denoising(config) else []) + [
      pictures['reconstruction']]
  return {'reconstructions': writers.image_grid(np.concatenate(rows),
                                                columns=len(pictures['clean']))}


def embed_fn(graphdef, config) -> features_lib.NnxEmbedFn:
  """The frozen encoder for the downstream protocol (``jaxssl.eval.representation``):
  the bottleneck code [B, Z] of images in [0, 1] (``config`` is not needed)."""
  del config
  return features_lib.nnx_embed_fn(graphdef, lambda module, x, train: module.encode(x))


def encoder_variables(state) -> dict:
  """The variables ``embed_fn`` reads."""
  return {'params': state.params}


# ----------------------------------------------------------------------------- run

def create_train_state(config, data, mesh, rng) -> state_lib.TrainState:
  """A fresh TrainState (model and AdamW) built directly on the mesh."""
  return state_lib.init_on_mesh(
      lambda rngs_: conv_ae.Autoencoder(data['image_shape'], config.model.latent_dim,
                                        tuple(config.model.widths),
                                        activation=config.model.activation, rngs=rngs_),
      optim.make_optimizer(config.optim, data['num_train_steps']), mesh, rng)


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict:
  """Trains the (denoising) autoencoder on test PSNR and, with an anomaly class, AUROC;
  writes reconstruction grids (the protocol: ``experiments/__init__.py``)."""
  mesh, run = loop.start(config, workdir, EXPERIMENT, validate_config)
  data = prepare_data(config, workdir)
  rng_init, rng_train, _ = rngs.run_keys(config.seed)
  state = create_train_state(config, data, mesh, rng_init)
  params_sharding = state_lib.shardings(state).params
  eval_fn = sharding.jit_eval_step(functools.partial(
      eval_step, graphdef=state.graphdef, config=config,
      mean_image=jnp.asarray(data['mean_image'])), params_sharding, mesh)
  grid_fn = make_grid_fn(config, state.graphdef, data, params_sharding, mesh)

  evaluate_and_show = lambda state, step: dict(
      image_grids(grid_fn, state.params, config),
      **evaluate(state.params, data, eval_fn, mesh, config))

  info = dict(data['info'], **{'data/num_train_used': len(data['train']['image'])})
  return loop.train(run, state, functools.partial(train_step, config=config),
                    pipeline.batch_getter(data['train'], mesh, config), evaluate_and_show,
                    rng=rng_train, info=info, num_train_steps=data['num_train_steps'])


if __name__ == '__main__':
  cli.run(get_config, train_and_evaluate)
