"""The image comparisons (``vae_vs_pytorch.py``, ``dcgan_vs_pytorch.py``): blocks of steps,
examples/s and CPU time per step.

The command line (``image_parser``), the timed blocks (``time_steps``; the jaxssl side in
``time_image_jax``), parameter counts that must agree on both sides, the table
(``compare_images``, ``print_image_table``) and PyTorch layers shaped as Flax's 'SAME'
convolutions (``torch_same_conv``, ``torch_upsample2``). Processes, memory and the entry
point are ``torch_common``'s. Nothing here imports jax or torch at module level.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import statistics
import sys
import time
from typing import Callable

import numpy as np

import torch_common

IMAGE_SHAPES = {8: (8, 8, 1), 28: (28, 28, 1), 32: (32, 32, 3)}  # digits, MNIST, CIFAR-10


def image_parser(doc: str, *, warmup: int, steps: int, quick: dict) -> argparse.ArgumentParser:
  """The command line of both image comparisons (quick: the block sizes of ``--quick``)."""
  parser = torch_common.make_parser(
      doc, threads=min(2, len(os.sched_getaffinity(0))), quick=quick,
      quick_help=' '.join(f'--{k} {v}' for k, v in quick.items()) + ': under a minute')
  parser.add_argument('--image_size', type=int, default=8, choices=sorted(IMAGE_SHAPES),
                      help='8: 8x8x1 digits (the default data); 28: 28x28x1; 32: 32x32x3')
  parser.add_argument('--warmup', type=int, default=warmup, help='untimed steps first')
  parser.add_argument('--steps', type=int, default=steps, help='steps per timed block')
  parser.add_argument('--repeats', type=int, default=5, help='timed blocks (median taken)')
  return parser


def make_batches(shape, batch_size: int, count: int = 8, seed: int = 0) -> list[np.ndarray]:
  """``count`` batches of random uint8 images [B, H, W, C], cycled through by both sides."""
  rng = np.random.default_rng(seed)
  return [rng.integers(0, 256, (batch_size,) + shape, dtype=np.uint8) for _ in range(count)]


def time_steps(step: Callable[[int], None], sync: Callable[[], None], *, examples_per_step: int,
               warmup: int, steps: int, repeats: int) -> dict:
  """Examples per second of full train steps, after warm-up.

  ``step(i)`` runs train step i (dispatch only is fine); ``sync()`` waits until every
  dispatched step has finished. The first call (JIT compilation for jaxssl) is timed on its
  own, then ``warmup - 1`` more steps run untimed, then ``repeats`` blocks of ``steps`` steps
  are each timed from the first dispatch to the end of ``sync``.

  Returns:
    {'first_step_s': seconds of step 0 including compilation, 'examples_per_s': median over
    the blocks, 'examples_per_s_blocks': every block's rate, 'cpu_ms_per_step': median over
    the blocks of this process's CPU time (user + system, all threads) per step, which other
    processes on the machine inflate less than wall time, 'steps_run': total steps}.
  """
  t = time.perf_counter()
  step(0)
  sync()
  first = time.perf_counter() - t
  i = 1
  for _ in range(max(warmup - 1, 0)):
    step(i)
    i += 1
  sync()
  rates, cpu_ms = [], []
  for _ in range(repeats):
    t, cpu = time.perf_counter(), time.process_time()
    for _ in range(steps):
      step(i)
      i += 1
    sync()
    rates.append(steps * examples_per_step / (time.perf_counter() - t))
    cpu_ms.append(1e3 * (time.process_time() - cpu) / steps)
  return {'first_step_s': first, 'examples_per_s': statistics.median(rates),
          'examples_per_s_blocks': rates, 'cpu_ms_per_step': statistics.median(cpu_ms),
          'steps_run': i}


def time_image_steps(args, step, sync, *, batch_size: int, import_mib: float, version: str,
                     threads: int, params: dict, last_loss: Callable[[], float]) -> dict:
  """``time_steps`` with the command line's block sizes, plus the fields ``print_image_table``
  and ``check_param_counts`` read (``last_loss()`` is called after the steps)."""
  timing = time_steps(step, sync, examples_per_step=batch_size, warmup=args.warmup,
                      steps=args.steps, repeats=args.repeats)
  return dict(timing, version=version, batch_size=batch_size, threads=threads, params=params,
              rss_import_mib=import_mib, peak_rss_mib=torch_common.memory_mib()['peak'],
              last_loss=float(last_loss()))


def time_image_jax(args, experiment, make_config: Callable, *, params_of: Callable,
                   loss_key: str) -> dict:
  """Times ``experiment``'s (``experiments.vae`` or ``dcgan``) jitted train step as its
  ``train_and_evaluate`` runs it (state donated, each batch placed by ``put_batch``) on
  random images of ``--image_size``; returns the jaxssl result (``spec``: the config).

  Args:
    experiment: the imported experiment module (import it just before: the RSS after the
      imports is measured here).
    make_config: ``() -> ConfigDict`` of the experiment.
    params_of: ``state -> {network name: parameter count}``.
    loss_key: the metric reported as ``last_loss``.
  """
  import jax  # pylint: disable=import-outside-toplevel
  from jaxssl.parallel import mesh as mesh_lib  # pylint: disable=import-outside-toplevel
  from jaxssl.parallel import sharding  # pylint: disable=import-outside-toplevel
  from jaxssl.train import rngs  # pylint: disable=import-outside-toplevel
  from jaxssl.train import state as state_lib  # pylint: disable=import-outside-toplevel
  import experiments  # pylint: disable=import-outside-toplevel
  import_mib = torch_common.memory_mib()['rss']
  shape = IMAGE_SHAPES[args.image_size]
  config = make_config()
  mesh = mesh_lib.make_mesh(config.mesh)
  data = {'image_shape': shape, 'num_train_steps': config.num_train_steps}
  rng_init, rng, _ = rngs.run_keys(config.seed)  # rng: the train key, as the loop passes it
  state = experiment.create_train_state(config, data, mesh, rng_init)
  step_fn = sharding.jit_train_step(
      functools.partial(experiment.train_step, config=config,
                        **experiments.step_constants(experiment, config, data)),
      state_lib.shardings(state), mesh)
  batches = make_batches(shape, config.global_batch_size)
  labels = np.zeros((config.global_batch_size,), np.int32)
  carry = {'state': state, 'metrics': None}
  params = params_of(state)

  def step(i):
    batch = sharding.put_batch({'image': batches[i % len(batches)], 'label': labels}, mesh)
    carry['state'], carry['metrics'] = step_fn(carry['state'], batch, rng)

  def sync():
    jax.block_until_ready((carry['state'], carry['metrics']))

  out = time_image_steps(args, step, sync, batch_size=config.global_batch_size,
                         import_mib=import_mib, version=f'jax {jax.__version__}',
                         threads=len(os.sched_getaffinity(0)), params=params,
                         last_loss=lambda: carry['metrics'][loss_key])
  return dict(out, spec=json.loads(config.to_json()),
              compilations=step_fn._cache_size())  # pylint: disable=protected-access


def jax_param_count(params) -> int:
  """Number of scalars in a pytree of parameter arrays."""
  import jax  # pylint: disable=import-outside-toplevel
  return int(sum(x.size for x in jax.tree.leaves(params)))


def torch_param_count(module) -> int:
  """Number of scalars in a torch module's parameters (BatchNorm running statistics are
  buffers, not parameters, as in jaxssl where they are ``nnx.BatchStat``)."""
  return int(sum(p.numel() for p in module.parameters()))


def check_param_counts(results: dict[str, dict]) -> None:
  """Prints every network's parameter count on both sides; exits with status 1 naming the
  network when they differ (the two sides would then not be the same model)."""
  jax_counts, torch_counts = results['jaxssl']['params'], results['pytorch']['params']
  bad = []
  for name in jax_counts:
    ours, theirs = jax_counts[name], torch_counts.get(name)
    print(f'parameters {name:14} jaxssl {ours:>10,}   pytorch '
          f'{theirs if theirs is None else format(theirs, ",")!s:>10}')
    if ours != theirs:
      bad.append(name)
  if bad or set(torch_counts) != set(jax_counts):
    sys.exit(f'parameter counts differ ({", ".join(bad) or "network names"}): the PyTorch '
             'networks are not the jaxssl ones')


def print_image_table(results: dict[str, dict], batch_size: int) -> None:
  """One row per framework: version, threads, first step, median examples/s (and the range
  over blocks), ms per step, resident memory after imports and at the peak (MiB)."""
  print(f'\n{"":8} {"version":>16} {"threads":>7} {"first_step_s":>12} {"examples/s":>10} '
        f'{"(min-max)":>11} {"ms/step":>8} {"cpu_ms/step":>11} {"rss_import":>10} {"peak_rss":>8} '
        f'{"peak-import":>11} {"last_loss":>9}')
  for name in ('jaxssl', 'pytorch'):
    r = results[name]
    rates = r['examples_per_s_blocks']
    print(f'{name:8} {r["version"]:>16} {r["threads"]:>7} {r["first_step_s"]:12.2f} '
          f'{r["examples_per_s"]:10.0f} {f"{min(rates):.0f}-{max(rates):.0f}":>11} '
          f'{1e3 * batch_size / r["examples_per_s"]:8.2f} {r["cpu_ms_per_step"]:11.2f} '
          f'{r["rss_import_mib"]:10.0f} '
          f'{r["peak_rss_mib"]:8.0f} {r["peak_rss_mib"] - r["rss_import_mib"]:11.0f} '
          f'{r["last_loss"]:9.3f}')
  print('(examples/s and ms/step: wall time, median over the timed blocks; cpu_ms/step: the '
        "worker's CPU time over all its threads, median; memory in MiB: resident after "
        'imports, VmHWM peak of the worker process, and their difference)')


def compare_images(script: str, args, *, describe: Callable[..., str], loss_note: str,
                   ratio_name: str) -> tuple:
  """``torch_common.run``'s ``compare`` for the images: the jaxssl worker, then the PyTorch
  one; checks that the batch sizes and parameter counts agree, prints ``describe(args,
  batch size, 'HxWxC')`` and the table. The ratio is jaxssl examples/s over PyTorch's."""
  jax_r, (torch_r,) = torch_common.run_workers(script, sys.argv[1:])
  results, batch = {'jaxssl': jax_r, 'pytorch': torch_r}, jax_r['batch_size']
  if torch_r['batch_size'] != batch:
    sys.exit(f'batch sizes differ: {batch} and {torch_r["batch_size"]}')
  shape = 'x'.join(map(str, IMAGE_SHAPES[args.image_size]))
  print(f'{describe(args, batch, shape)}; {args.threads} threads each '
        f'(torch.get_num_threads() = {torch_r["threads"]}, jaxssl CPUs allowed = {jax_r["threads"]}); warm-up '
        f'{args.warmup} steps, median of {args.repeats} blocks of {args.steps} steps')
  check_param_counts(results)
  print_image_table(results, batch)
  print(loss_note)
  print(f'jaxssl jitted step compilations: {jax_r["compilations"]} (1 = no recompilation)')
  return ratio_name, jax_r['examples_per_s'] / torch_r['examples_per_s'], None


def same_padding(size: int, kernel: int, stride: int) -> tuple[int, int]:
  """(before, after) zero padding of XLA/Flax 'SAME' for one spatial axis: the output has
  ceil(size / stride) positions and any odd padding goes after (e.g. 7 -> 4 pads (1, 2))."""
  out = -(-size // stride)
  total = max((out - 1) * stride + kernel - size, 0)
  return total // 2, total - total // 2


def torch_same_conv(cin: int, cout: int, kernel: int, stride: int, size: int, *,
                    bias: bool = True) -> list:
  """PyTorch layers equal to Flax ``nnx.Conv(..., padding='SAME')`` on a square input of
  side ``size``: a Conv2d with symmetric padding, or a ZeroPad2d then an unpadded Conv2d
  when 'SAME' pads unevenly. Returns a list of modules (for ``nn.Sequential``)."""
  from torch import nn  # pylint: disable=import-outside-toplevel
  lo, hi = same_padding(size, kernel, stride)
  if lo == hi:
    return [nn.Conv2d(cin, cout, kernel, stride, padding=lo, bias=bias)]
  return [nn.ZeroPad2d((lo, hi, lo, hi)), nn.Conv2d(cin, cout, kernel, stride, bias=bias)]


def torch_upsample2(cin: int, cout: int, *, bias: bool = True):
  """PyTorch layer equal in shape to Flax ``nnx.ConvTranspose(cin, cout, (4, 4),
  strides=(2, 2), padding='SAME')``: a 4x4 stride-2 transposed convolution with padding 1,
  which doubles the height and width."""
  from torch import nn  # pylint: disable=import-outside-toplevel
  return nn.ConvTranspose2d(cin, cout, 4, 2, padding=1, bias=bias)
