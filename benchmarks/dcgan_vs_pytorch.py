r"""DCGAN train step: jaxssl (experiments/dcgan.py) against the same networks in plain PyTorch.

  python benchmarks/dcgan_vs_pytorch.py                   # default config: 8x8x1 digits
  python benchmarks/dcgan_vs_pytorch.py --quick           # fewer, shorter blocks: < 1 min
  python benchmarks/dcgan_vs_pytorch.py --image_size 28   # MNIST-sized (28x28x1)
  python benchmarks/dcgan_vs_pytorch.py --image_size 32   # CIFAR-10-sized (32x32x3)

Needs torch (``pip install -e '.[bench]'`` in a separate virtualenv). The jaxssl side is the
experiment's own code: ``experiments.dcgan.create_train_state`` (``make_networks``,
``make_optimizers``) and ``train_step``, jitted by
``jaxssl.parallel.sharding.jit_train_step`` (state donated) as ``loop.train`` does,
each batch placed by ``sharding.put_batch``. The PyTorch side is written here, layer for
layer from ``jaxssl.models.gan`` at ``experiments.dcgan.get_config()``'s settings:

* generator: Linear(Z -> h w widths[0], no bias), BatchNorm, ReLU, then a 4x4 stride-2
  transposed convolution per further width (no bias, BatchNorm, ReLU) and a last one to C
  channels (with bias, tanh), cropped to H x W;
* discriminator: 4x4 stride-2 'SAME' convolutions (the first with bias and no BatchNorm, the
  others without bias and with BatchNorm), LeakyReLU(0.2), then Linear(-> 1);
* BatchNorm momentum 0.1 (Flax 0.9), eps 1e-5, batch statistics in training mode;
* one step = one discriminator update on ``global_batch_size`` real images and as many
  samples (generator in train mode, no gradient), loss mean of softplus(-D(x)) +
  softplus(D(G(z))); then one generator update on fresh latents with the non-saturating loss
  mean softplus(-D(G(z))), the discriminator frozen (its weights get no gradient, as in
  jaxssl, which differentiates G's parameters only); each network with its own AdamW
  (lr 2e-4, b1 0.5, b2 0.999, eps 1e-8, weight decay 0, constant rate).

Both steps also compute the experiment's metrics (D's probabilities, both gradient norms) and
neither reads anything back to the host between steps. One difference is left in, being
negligible in cost: PyTorch's BatchNorm updates the running statistics of the network that is
not being trained in an update (jaxssl computes and drops them). PyTorch runs in its usual
NCHW layout and eager mode with its default optimizer implementation.

Timed: full train steps (one D and one G update) on random uint8 images of the chosen shape,
``--warmup`` steps first (the first, with jaxssl's compilation, timed apart), then the median
over ``--repeats`` blocks of ``--steps`` steps; examples/s counts the real images per step.
Each framework runs in its own subprocess pinned to the same ``--threads`` CPUs, one after the
other, so the memory columns are per framework. Each network's parameter count must be equal
on both sides, or the script exits with status 1. The last line is
``dcgan_examples_per_s_ratio=<jaxssl / pytorch>``.

On shared cores PyTorch's OpenMP threads slow down far more than XLA's (see
``torch_common``): the script prints a note when the load is high; compare with ``--threads 1``
then, and read the ``cpu_ms/step`` column.
"""

from __future__ import annotations

import functools
import math

import torch_common
import torch_images

LEAKY_SLOPE = 0.2
BN_MOMENTUM_TORCH = 0.1  # jaxssl.models.gan.BN_MOMENTUM = 0.9 is PyTorch's 1 - 0.9
BN_EPSILON = 1e-5


def jaxssl_worker(args) -> dict:
  """Times ``experiments.dcgan``'s jitted train step; returns the worker's result dict."""
  from experiments import dcgan  # pylint: disable=import-outside-toplevel
  return torch_images.time_image_jax(
      args, dcgan, dcgan.get_config, loss_key='d_loss',
      params_of=lambda state: {name: torch_images.jax_param_count(state.params[name])
                               for name in dcgan.NETWORKS})


# ----------------------------------------------------------------------------- PyTorch

def _batch_norm(features: int):
  from torch import nn  # pylint: disable=import-outside-toplevel
  return nn.BatchNorm2d(features, eps=BN_EPSILON, momentum=BN_MOMENTUM_TORCH)


def torch_generator(latent_dim: int, shape, widths):
  """``jaxssl.models.gan.Generator`` as an ``nn.Sequential`` (output before the crop)."""
  from torch import nn  # pylint: disable=import-outside-toplevel
  side = shape[0]  # square images
  for _ in widths:
    side = -(-side // 2)
  start = (widths[0], side, side)  # (D, h, w): the map len(widths) stride-2 convs would leave
  layers = [nn.Linear(latent_dim, math.prod(start), bias=False), nn.Unflatten(1, start),
            _batch_norm(widths[0]), nn.ReLU()]
  for cin, cout in zip(widths, widths[1:]):
    layers += [torch_images.torch_upsample2(cin, cout, bias=False), _batch_norm(cout),
               nn.ReLU()]
  layers += [torch_images.torch_upsample2(widths[-1], shape[2], bias=True), nn.Tanh()]
  return nn.Sequential(*layers)


def torch_discriminator(shape, widths):
  """``jaxssl.models.gan.Discriminator`` as an ``nn.Sequential``: images -> logits [B, 1]."""
  from torch import nn  # pylint: disable=import-outside-toplevel
  side, layers = shape[0], []
  for k, (cin, cout) in enumerate(zip((shape[2],) + tuple(widths[:-1]), widths)):
    layers += torch_images.torch_same_conv(cin, cout, 4, 2, side, bias=k == 0)
    if k > 0:
      layers.append(_batch_norm(cout))
    layers.append(nn.LeakyReLU(LEAKY_SLOPE))
    side = -(-side // 2)
  layers += [nn.Flatten(), nn.Linear(widths[-1] * side * side, 1)]
  return nn.Sequential(*layers)


def pytorch_worker(args) -> dict:
  """Times the PyTorch DCGAN step; returns the worker's result dict."""
  import torch  # pylint: disable=import-outside-toplevel
  import torch.nn.functional as F  # pylint: disable=import-outside-toplevel
  import_mib, config = torch_common.start_torch_worker(args, attributes=True)
  shape = torch_images.IMAGE_SHAPES[args.image_size]
  o = config.optim
  if o.decay != 'constant' or o.warmup_steps != 0 or o.grad_clip_norm > 0:
    raise NotImplementedError('the PyTorch side is written for a constant rate, no clipping')
  latent_dim, (h, w) = config.model.latent_dim, shape[:2]
  g = torch_generator(latent_dim, shape, tuple(config.model.generator_widths)).train()
  d = torch_discriminator(shape, tuple(config.model.discriminator_widths)).train()
  lrs = {'g': o.learning_rate, 'd': o.learning_rate * config.method.discriminator_lr_scale}
  g_opt, d_opt = (torch.optim.AdamW(net.parameters(), lr=lrs[k], betas=(o.b1, o.b2), eps=o.eps,
                                    weight_decay=o.weight_decay)
                  for k, net in (('g', g), ('d', d)))
  batches = [torch.from_numpy(b)
             for b in torch_images.make_batches(shape, config.global_batch_size)]
  batch_size = config.global_batch_size
  carry = {}

  def generate(z):
    return g(z)[:, :, :h, :w]

  def step(i):
    real = batches[i % len(batches)].permute(0, 3, 1, 2).float() / 127.5 - 1.0  # [B, C, H, W]
    z_d, z_g = torch.randn(batch_size, latent_dim), torch.randn(batch_size, latent_dim)
    # Discriminator update.
    with torch.no_grad():
      fake = generate(z_d)
    real_logits, fake_logits = d(real)[:, 0], d(fake)[:, 0]
    d_loss = (F.softplus(-real_logits) + F.softplus(fake_logits)).mean()
    d_opt.zero_grad(set_to_none=True)
    d_loss.backward()
    d_grad_norm = torch_common.torch_grad_norm(d)
    d_opt.step()
    # Generator update through the frozen (just updated) discriminator.
    d.requires_grad_(False)
    g_loss = F.softplus(-d(generate(z_g))[:, 0]).mean()
    g_opt.zero_grad(set_to_none=True)
    g_loss.backward()
    d.requires_grad_(True)
    g_grad_norm = torch_common.torch_grad_norm(g)
    g_opt.step()
    with torch.no_grad():
      carry['metrics'] = dict(d_loss=d_loss.detach(), d_real=torch.sigmoid(real_logits).mean(),
                              d_fake=torch.sigmoid(fake_logits).mean(), d_grad_norm=d_grad_norm,
                              g_loss=g_loss.detach(), g_grad_norm=g_grad_norm)

  return torch_images.time_image_steps(
      args, step, lambda: None, batch_size=batch_size, import_mib=import_mib,
      version=f'torch {torch.__version__}', threads=torch.get_num_threads(),
      params={'generator': torch_images.torch_param_count(g),
              'discriminator': torch_images.torch_param_count(d)},
      last_loss=lambda: carry['metrics']['d_loss'])


def describe(args, batch: int, shape: str) -> str:
  """The title of the table (``torch_images.compare_images``); ``args`` does not change it."""
  del args
  return (f'DCGAN train step (one D and one G update), experiments.dcgan defaults: images '
          f'{shape} (random uint8), batch {batch} real images + {batch} samples per update')


if __name__ == '__main__':
  torch_common.run(
      __file__, torch_images.image_parser(__doc__, warmup=5, steps=20,
                                          quick={'warmup': 2, 'steps': 5, 'repeats': 3}),
      {'jaxssl': jaxssl_worker, 'pytorch': pytorch_worker},
      functools.partial(torch_images.compare_images, describe=describe,
                        ratio_name='dcgan_examples_per_s_ratio',
                        loss_note='(last_loss: the discriminator loss of the last step, nats '
                                  'per image pair)'))
