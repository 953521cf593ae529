r"""VAE train step: jaxssl (experiments/vae.py) against the same network in plain PyTorch.

  python benchmarks/vae_vs_pytorch.py                   # default config: 8x8x1 digits
  python benchmarks/vae_vs_pytorch.py --quick           # fewer, shorter blocks: < 1 min
  python benchmarks/vae_vs_pytorch.py --image_size 28   # MNIST-sized (28x28x1)
  python benchmarks/vae_vs_pytorch.py --image_size 32 --likelihood logistic   # CIFAR-10-sized

Needs torch (``pip install -e '.[bench]'`` in a separate virtualenv). The jaxssl side is the
experiment's own code: ``experiments.vae.create_train_state`` and ``train_step``, jitted
by ``jaxssl.parallel.sharding.jit_train_step`` (state donated) as ``loop.train``
does, with each batch placed by ``sharding.put_batch``. The PyTorch side is
written here, layer for layer from ``jaxssl.models.conv_ae`` and ``jaxssl.models.vae`` at
``experiments.vae.get_config()``'s settings: encoder 2x - 1, then 4x4 stride-2 'SAME'
convolutions of ``model.widths`` channels with exact GELU, then a dense layer to 2Z (mean and
log-variance, the latter clipped to [-30, 30]); decoder dense Z -> the encoder's last map,
GELU, 4x4 stride-2 transposed convolutions with GELU, a 3x3 convolution to C channels (2C for
'logistic') and a crop to H x W. One reparameterised sample per image, loss = mean over the
batch of -(log p(x | z) - KL) in nats per image, Bernoulli pixels on the binarised bytes
(``byte >= 128``) or the discretised logistic; AdamW (b1 0.9, b2 0.999, eps 1e-8, weight
decay 0) with linear warmup then cosine decay; ``global_batch_size`` images per step. Both
steps also compute the experiment's metrics (reconstruction, KL, bits/dim, gradient norm,
learning rate) and neither reads anything back to the host between steps. PyTorch runs in
its usual NCHW layout and eager mode with its default optimizer implementation.

Timed: full train steps on random uint8 images of the chosen shape (the content does not
change the work), ``--warmup`` steps first (the first, with jaxssl's compilation, timed
apart), then the median over ``--repeats`` blocks of ``--steps`` steps. Each framework runs in
its own subprocess pinned to the same ``--threads`` CPUs, one after the other, so the memory
columns are per framework. The parameter counts of the two networks must be equal, or the
script exits with status 1. The last line is ``vae_examples_per_s_ratio=<jaxssl / pytorch>``.

On shared cores PyTorch's OpenMP threads slow down far more than XLA's (see
``torch_common``): the script prints a note when the load is high; compare with ``--threads 1``
then, and read the ``cpu_ms/step`` column.
"""

from __future__ import annotations

import functools
import math

import torch_common
import torch_images

NUM_LEVELS = 256
BINARY_THRESHOLD = 128
LOG_VAR_MIN, LOG_VAR_MAX = -30.0, 30.0  # jaxssl.losses.vae's clip
MIN_LOG_SCALE, MAX_LOG_SCALE = -8.0, 20.0  # jaxssl.losses.vae's logistic log-scale clip


def jaxssl_worker(args) -> dict:
  """Times ``experiments.vae``'s jitted train step (with ``--likelihood``); returns the
  worker's result dict."""
  from experiments import vae  # pylint: disable=import-outside-toplevel

  def make_config():
    config = vae.get_config()
    config.method.likelihood = args.likelihood
    return config

  return torch_images.time_image_jax(
      args, vae, make_config, loss_key='loss',
      params_of=lambda state: {'vae': torch_images.jax_param_count(state.params)})


# ----------------------------------------------------------------------------- PyTorch

def torch_vae(shape, latent_dim: int, widths, likelihood: str):
  """(encoder, decoder) ``nn.Sequential``s with the layers of ``jaxssl.models.vae.VAE``."""
  from torch import nn  # pylint: disable=import-outside-toplevel
  size, _, c = shape  # square images
  sizes = [size]  # input side of each convolution, then the bottleneck's
  for _ in widths:
    sizes.append(-(-sizes[-1] // 2))
  encoder = []
  for cin, cout, side in zip((c,) + tuple(widths[:-1]), widths, sizes):
    encoder += torch_images.torch_same_conv(cin, cout, 4, 2, side) + [nn.GELU()]
  start = (widths[-1], sizes[-1], sizes[-1])  # (D, h, w) of the encoder's last map
  encoder += [nn.Flatten(), nn.Linear(math.prod(start), 2 * latent_dim)]
  rev = tuple(reversed(widths))
  decoder = [nn.Linear(latent_dim, math.prod(start)), nn.GELU(), nn.Unflatten(1, start)]
  for cin, cout in zip(rev, rev[1:] + rev[-1:]):
    decoder += [torch_images.torch_upsample2(cin, cout), nn.GELU()]
  out_channels = c * (2 if likelihood == 'logistic' else 1)
  decoder.append(nn.Conv2d(rev[-1], out_channels, 3, padding=1))
  return nn.Sequential(*encoder), nn.Sequential(*decoder)


def torch_log_likelihood(out, x, likelihood: str):
  """log p(x | z) [B] in nats per image: Bernoulli on logits [B, C, H, W], or the discretised
  logistic (jaxssl.losses.vae) on out = [B, 2C, H, W] (means before the sigmoid, log-scales)."""
  import torch  # pylint: disable=import-outside-toplevel
  import torch.nn.functional as F  # pylint: disable=import-outside-toplevel
  if likelihood == 'bernoulli':
    return -F.binary_cross_entropy_with_logits(out, x, reduction='none').flatten(1).sum(1)
  mean, log_scale = out.chunk(2, dim=1)
  steps = NUM_LEVELS - 1
  level = torch.clamp(torch.round(x * steps), 0, steps)
  inv_scale = torch.exp(-torch.clamp(log_scale, MIN_LOG_SCALE, MAX_LOG_SCALE))
  centred = level / steps - torch.sigmoid(mean)
  half = 0.5 / steps
  upper, lower = (centred + half) * inv_scale, (centred - half) * inv_scale
  is_low, is_high = level == 0, level == steps
  zero = torch.zeros_like(upper)
  log_mass = (torch.where(is_high, zero, F.logsigmoid(upper))
              + torch.where(is_low, zero, F.logsigmoid(-lower))
              + torch.where(is_low | is_high, zero,
                            torch.log(-torch.expm1(-2 * half * inv_scale))))
  return log_mass.flatten(1).sum(1)


def pytorch_worker(args) -> dict:
  """Times the PyTorch VAE step; returns the worker's result dict."""
  import torch  # pylint: disable=import-outside-toplevel
  import_mib, config = torch_common.start_torch_worker(args, attributes=True)
  shape = torch_images.IMAGE_SHAPES[args.image_size]
  likelihood, latent_dim = config.method.likelihood, config.model.latent_dim
  if config.model.activation != 'gelu':
    raise NotImplementedError('the PyTorch side is written for GELU')
  encoder, decoder = torch_vae(shape, latent_dim, tuple(config.model.widths), likelihood)
  model = torch.nn.ModuleDict({'encoder': encoder, 'decoder': decoder}).train()
  o = config.optim
  opt = torch.optim.AdamW(model.parameters(), lr=o.learning_rate, betas=(o.b1, o.b2),
                          eps=o.eps, weight_decay=o.weight_decay)
  sched = torch.optim.lr_scheduler.LambdaLR(
      opt, torch_common.torch_lr_lambda(vars(o), config.num_train_steps))
  batches = [torch.from_numpy(b)
             for b in torch_images.make_batches(shape, config.global_batch_size)]
  num_dims = math.prod(shape)
  h, w = shape[0], shape[1]
  carry = {}

  def step(i):
    image = batches[i % len(batches)].permute(0, 3, 1, 2)  # [B, C, H, W] uint8
    if likelihood == 'bernoulli':
      x = (image >= BINARY_THRESHOLD).float()
    else:
      x = image.float() / (NUM_LEVELS - 1)
    eps = torch.randn(x.shape[0], latent_dim)
    mean, log_var = encoder(2.0 * x - 1.0).chunk(2, dim=1)
    log_var = torch.clamp(log_var, LOG_VAR_MIN, LOG_VAR_MAX)
    z = mean + torch.exp(0.5 * log_var) * eps
    out = decoder(z)[:, :, :h, :w]
    log_lik = torch_log_likelihood(out, x, likelihood)  # [B]
    kl = 0.5 * (mean * mean + torch.exp(log_var) - 1.0 - log_var).sum(1)  # [B]
    loss = (kl - log_lik).mean()
    opt.zero_grad(set_to_none=True)
    loss.backward()
    with torch.no_grad():
      carry['metrics'] = dict(
          loss=loss.detach(), reconstruction=log_lik.mean(), kl=kl.mean(),
          bits_per_dim=loss.detach() / (num_dims * math.log(2)),
          grad_norm=torch_common.torch_grad_norm(model),
          learning_rate=torch.tensor(sched.get_last_lr()[0]))
    opt.step()
    sched.step()

  return torch_images.time_image_steps(
      args, step, lambda: None, batch_size=config.global_batch_size, import_mib=import_mib,
      version=f'torch {torch.__version__}', threads=torch.get_num_threads(),
      params={'vae': torch_images.torch_param_count(model)},
      last_loss=lambda: carry['metrics']['loss'])


def describe(args, batch: int, shape: str) -> str:
  """The title of the table (``torch_images.compare_images``)."""
  return (f'VAE train step, experiments.vae defaults: images {shape} (random uint8), '
          f'likelihood {args.likelihood}, batch {batch}')


if __name__ == '__main__':
  parser = torch_images.image_parser(__doc__, warmup=10, steps=50,
                                     quick={'warmup': 3, 'steps': 10, 'repeats': 3})
  parser.add_argument('--likelihood', default='bernoulli', choices=('bernoulli', 'logistic'))
  torch_common.run(__file__, parser, {'jaxssl': jaxssl_worker, 'pytorch': pytorch_worker},
                   functools.partial(
                       torch_images.compare_images, describe=describe,
                       ratio_name='vae_examples_per_s_ratio',
                       loss_note=('(last_loss: the negative ELBO of the last step, nats per '
                                  'image; random images make it tend to H W C ln 2 for '
                                  'Bernoulli pixels)')))
