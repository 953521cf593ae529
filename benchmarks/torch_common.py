"""Shared pieces of the benchmarks that race a jaxssl train step against a PyTorch one: the
worker processes, memory readings, the command line every comparison has, its entry point
(``run``) and the PyTorch worker's start, learning-rate schedule and gradient norm.

The language-model helpers (``mlm_vs_pytorch.py``, ``clm_vs_pytorch.py``) are in
``torch_lm.py``, the image ones (``vae_vs_pytorch.py``, ``dcgan_vs_pytorch.py``) in
``torch_images.py``.

Each framework runs in its own subprocess (``--worker jaxssl``, then ``--worker pytorch...``,
one after the other, never at the same time), pinned to the same ``--threads`` CPUs before it
imports its framework, so that its peak resident memory (VmHWM) is its own and the two never
compete for cores. The jaxssl worker runs first and returns, besides its timings, ``spec``:
the resolved configuration as JSON, which the PyTorch workers receive through ``--spec`` so
that both sides train the same thing and the PyTorch process never imports jax. A worker
prints one line ``RESULT <json>``; the parent gathers them and prints the tables (``run``).

On a machine whose cores other processes also use, PyTorch's OpenMP threads (which meet at a
barrier after every parallel operator) slow down far more than XLA's: measured at load
average 9-12 on 2 cores, the same PyTorch VAE step took about 30 ms with 1 thread and 250-700
ms with 2. ``warn_if_loaded`` prints a note then; the image tables' ``cpu_ms/step`` column
(CPU time of the worker, all threads; ``torch_images.py``) is inflated less than wall time.

Nothing here imports jax or torch at module level: the parent process needs neither, and
``require_torch`` can fail fast with a one-line message when torch is absent.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import os
import resource
import subprocess
import sys
import types
from typing import Callable, Sequence

INSTALL_HINT = ("pip install -e '.[bench]' in a separate virtualenv (never into the jaxssl "
                'one) and run this script with its python')
RESULT_PREFIX = 'RESULT '


# ----------------------------------------------------------------------------- processes

def require_torch(modules: Sequence[str] = ('torch',)) -> None:
  """Exits with status 2 and a one-line message on stderr unless every module imports."""
  missing = [m for m in modules if importlib.util.find_spec(m) is None]
  if missing:
    verb = 'is' if len(missing) == 1 else 'are'
    print(f'error: {" and ".join(missing)} {verb} not installed: {INSTALL_HINT}',
          file=sys.stderr)
    sys.exit(2)


def pin_cpus(threads: int) -> list[int]:
  """Restricts this process to its first ``threads`` schedulable CPUs; returns their ids.

  Call before importing jax or torch: XLA's CPU client sizes its intra-op thread pool from
  the schedulable CPUs when it starts, and OpenMP (torch) reads OMP_NUM_THREADS at load.

  Raises:
    ValueError: ``threads`` < 1 or more than the CPUs this process may use.
  """
  cpus = sorted(os.sched_getaffinity(0))
  if not 1 <= threads <= len(cpus):
    raise ValueError(f'--threads={threads} must be in [1, {len(cpus)}] (schedulable CPUs)')
  for var in ('OMP_NUM_THREADS', 'MKL_NUM_THREADS', 'OPENBLAS_NUM_THREADS'):
    os.environ[var] = str(threads)
  os.sched_setaffinity(0, cpus[:threads])
  return cpus[:threads]


def memory_mib() -> dict[str, float]:
  """This process's resident memory in MiB: ``rss`` now (VmRSS) and ``peak`` so far (VmHWM,
  the same as ``ru_maxrss``, which is the fallback where /proc is missing)."""
  fields = {}
  try:
    with open('/proc/self/status') as f:
      for line in f:
        name, _, value = line.partition(':')
        if name in ('VmRSS', 'VmHWM'):
          fields[name] = float(value.split()[0]) / 1024  # kB -> MiB
  except OSError:
    pass
  max_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
  return {'rss': fields.get('VmRSS', max_rss), 'peak': fields.get('VmHWM', max_rss)}


def start_peak_window() -> dict[str, float]:
  """``memory_mib()`` now, then restarts the kernel's high-water mark (Linux clear_refs 5):
  a later ``memory_mib()['peak']`` is the largest RSS from this call on (at least the RSS
  now, which stays resident).

  Raises:
    OSError: /proc/self/clear_refs cannot be written.
  """
  now = memory_mib()
  with open('/proc/self/clear_refs', 'w') as f:
    f.write('5')
  return now


def emit(result: dict) -> None:
  """Worker side: prints ``result`` as the ``RESULT <json>`` line ``run_worker`` reads."""
  print(RESULT_PREFIX + json.dumps(result), flush=True)


def run_worker(script: str, argv: Sequence[str]) -> dict:
  """Runs ``python script *argv`` in a fresh process and returns its ``emit``ted dict.

  Lines of the worker's stderr that mention donation, recompilation or a warning are passed
  on, so a silent slowdown (e.g. donated buffers JAX could not use) shows in the log.

  Raises:
    SystemExit: the worker failed or printed no result (its output tail is printed).
  """
  cmd = [sys.executable, script, *argv]
  proc = subprocess.run(cmd, capture_output=True, text=True, check=False,
                        env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL='3'))
  results = [line[len(RESULT_PREFIX):] for line in proc.stdout.splitlines()
             if line.startswith(RESULT_PREFIX)]
  if proc.returncode != 0 or not results:
    print(proc.stdout[-4000:], proc.stderr[-4000:], sep='\n', file=sys.stderr)
    sys.exit(f'worker failed (exit status {proc.returncode}): {" ".join(cmd)[:300]}')
  for line in proc.stderr.splitlines():
    if any(word in line.lower() for word in ('donat', 'recompil', 'userwarning')):
      print(f'[worker stderr] {line}')
  return json.loads(results[-1])


def run_workers(script: str, argv: Sequence[str],
                torch_workers: Sequence[str] = ('pytorch',)) -> tuple[dict, list[dict]]:
  """Runs ``--worker jaxssl``, then each PyTorch worker given the jaxssl result's ``spec``
  through ``--spec``; returns (jaxssl result, [PyTorch results])."""
  jax_r = run_worker(script, [*argv, '--worker=jaxssl'])
  spec = f'--spec={json.dumps(jax_r["spec"])}'
  return jax_r, [run_worker(script, [*argv, f'--worker={w}', spec]) for w in torch_workers]


def load_average() -> str:
  """The 1-, 5- and 15-minute load averages, for the log (the cores may be shared)."""
  return ', '.join(f'{x:.2f}' for x in os.getloadavg())


def warn_if_loaded(threads: int) -> None:
  """Prints a note when the 1-minute load average exceeds the CPU count less ``threads``:
  other processes then share the cores, which inflates both timings and hurts PyTorch's
  OpenMP threads (they wait for each other at every parallel region) more than XLA's."""
  load, cpus = os.getloadavg()[0], os.cpu_count() or 1
  if load > max(cpus - threads, 0) + 0.5:
    print(f'note: load average {load:.2f} on {cpus} CPUs before the run: the cores are '
          'shared with other processes, so both timings are inflated and noisy (PyTorch\'s '
          'OpenMP threads suffer most); rerun on an idle machine for numbers to quote')


def make_parser(doc: str, *, threads: int, quick: dict,
                quick_help: str) -> argparse.ArgumentParser:
  """The options every comparison has; ``--quick`` sets the options in ``quick`` (after
  parsing, see ``run``). ``--worker`` and ``--spec`` are internal."""
  parser = argparse.ArgumentParser(description=doc.split('\n')[0])
  parser.add_argument('--threads', type=int, default=threads,
                      help='CPUs (and threads) given to each framework, the same for both')
  parser.add_argument('--quick', action='store_true', help=quick_help)
  parser.add_argument('--worker', default='', help=argparse.SUPPRESS)
  parser.add_argument('--spec', default='{}', help=argparse.SUPPRESS)  # from the jaxssl side
  parser.set_defaults(quick_overrides=quick)
  return parser


def run(script: str, parser: argparse.ArgumentParser, workers: dict[str, Callable],
        compare: Callable, *, modules: Sequence[str] = ('torch',)) -> None:
  """A comparison's entry point.

  As a worker (``--worker NAME``): pins the CPUs (``args.cpus``), runs ``workers[NAME](args)``
  and ``emit``s its result. As the parent: exits with status 2 unless ``modules`` import,
  prints the load average, runs ``compare(script, args) -> (ratio_name, ratio, note)``, which
  starts the workers and prints the tables, and ends with ``note`` and ``<ratio_name>=<ratio>``.
  """
  args = parser.parse_args()
  if args.quick:
    vars(args).update(args.quick_overrides)
  if args.worker:
    args.cpus = pin_cpus(args.threads)
    emit(workers[args.worker](args))
    return
  require_torch(modules)
  print(f'load average before (1, 5, 15 min): {load_average()}')
  warn_if_loaded(args.threads)
  ratio_name, ratio, note = compare(os.path.abspath(script), args)
  print(f'load average after (1, 5, 15 min): {load_average()} (other load on the shared CPUs '
        'inflates and scatters timings)')
  if note:
    print(note)
  print(f'{ratio_name}={ratio:.3f}')


def start_torch_worker(args, *, attributes: bool = False) -> tuple[float, object]:
  """Gives torch ``--threads`` intra-op threads and seeds it with the spec's ``seed``.

  Returns:
    (RSS after the imports, MiB; the jaxssl worker's ``--spec``: a dict, or with
    ``attributes`` namespaces read as a ConfigDict is, ``config.optim.learning_rate``, with
    tuples as lists).
  """
  import torch  # pylint: disable=import-outside-toplevel
  torch.set_num_threads(args.threads)
  import_mib = memory_mib()['rss']
  hook = (lambda d: types.SimpleNamespace(**d)) if attributes else None
  spec = json.loads(args.spec, object_hook=hook)
  torch.manual_seed(spec.seed if attributes else spec['seed'])
  return import_mib, spec


def torch_lr_lambda(optim: dict, num_train_steps: int):
  """The multiplier of the peak rate at update k (0-based) that ``jaxssl.train.optim.
  make_schedule`` gives: linear warmup from 0, then linear/cosine decay to 0 or constant."""
  warmup, decay = optim['warmup_steps'], optim['decay']
  decay_steps = max(num_train_steps - warmup, 1)

  def factor(k: int) -> float:
    if k < warmup:
      return k / warmup
    frac = min(k - warmup, decay_steps) / decay_steps
    if decay == 'linear':
      return 1.0 - frac
    if decay == 'cosine':
      return 0.5 * (1.0 + math.cos(math.pi * frac))
    return 1.0
  return factor


def torch_grad_norm(module):
  """Global L2 norm of a module's gradients (``optax.global_norm`` of the grads), a tensor."""
  import torch  # pylint: disable=import-outside-toplevel
  return torch.nn.utils.get_total_norm([p.grad for p in module.parameters()
                                        if p.grad is not None])
