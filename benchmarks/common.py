"""What the training-loop benchmarks share: an experiment's step and batches, and a rate timer.

``build`` assembles the pieces an experiment's ``train_and_evaluate`` hands to
``jaxssl.train.loop.train`` (a fresh TrainState, the step jitted over the mesh as the loop jits
it, ``pipeline.batch_getter``) through the experiment protocol (``experiments/__init__.py``),
without checkpoints, writers or evaluation.
"""

from __future__ import annotations

import dataclasses
import functools
import time
from typing import Any, Callable

import jax
import ml_collections
import numpy as np

import experiments
from jaxssl.data import pipeline
from jaxssl.parallel import mesh as mesh_lib
from jaxssl.parallel import sharding
from jaxssl.train import rngs
from jaxssl.train import state as state_lib

EXPERIMENTS = experiments.TRAINING  # k-means has no train step


@dataclasses.dataclass
class Built:
  """One experiment ready to train.

  Attributes:
    module: the experiment module.
    config: its config (as given).
    mesh: the ('data', 'fsdp') mesh over every device.
    data: what the experiment's ``prepare_data`` returned.
    state: a fresh TrainState on the mesh (the jitted step donates it).
    shardings: the state's shardings.
    step: the experiment's ``train_step`` bound to the config, not jitted (what the loop takes).
    train_step: ``step`` jitted over the mesh as the loop jits it (state donated).
    get_batch: ``pipeline.batch_getter``'s ``step -> batch`` of global arrays on the mesh.
    rng: the run's train key (``rngs.run_keys(seed).train``), as the loop passes it.
    num_train_steps: the run's length in steps.
  """
  module: Any
  config: ml_collections.ConfigDict
  mesh: Any
  data: dict
  state: Any
  shardings: Any
  step: Callable
  train_step: Callable
  get_batch: Callable[[int], dict]
  rng: jax.Array
  num_train_steps: int


def module(name: str):
  """``experiments.<name>``, one of the training ``EXPERIMENTS``.

  Raises:
    ValueError: ``name`` is not one of ``EXPERIMENTS`` (k-means has no train step).
  """
  try:
    return experiments.module_of(name, among=EXPERIMENTS)
  except ValueError as e:
    raise ValueError(f'unknown experiment: {e}') from e


def config_of(name: str, quick: bool) -> ml_collections.ConfigDict:
  """The experiment's ``smoke_config()`` if ``quick``, else its ``get_config()``."""
  m = module(name)
  return m.smoke_config() if quick else m.get_config()


def build(name: str, config: ml_collections.ConfigDict, workdir: str,
          data: dict | None = None) -> Built:
  """The experiment's data, fresh state, jitted step and batch getter, as its
  ``train_and_evaluate`` makes them (nothing restored; no writer, manager or evaluation).

  Args:
    name: one of ``EXPERIMENTS``.
    config: the experiment's config.
    workdir: scratch folder (the language models train their tokenizer there).
    data: what the experiment's ``prepare_data`` returned for this config's ``data`` and
      ``seed`` (saves loading it again), or None to call it.

  Raises:
    ValueError: an unknown experiment or a config the experiment rejects.
  """
  m = module(name)
  mesh = mesh_lib.make_mesh(config.mesh)
  m.validate_config(config, mesh.devices.size)
  data = data or m.prepare_data(config, workdir)
  rng_init, rng_train, _ = rngs.run_keys(config.seed)
  state = m.create_train_state(config, data, mesh, rng_init)
  shardings = state_lib.shardings(state)
  step = functools.partial(m.train_step, config=config,
                           **experiments.step_constants(m, config, data))
  train_step = sharding.jit_train_step(step, shardings, mesh)
  get_batch = pipeline.batch_getter(data['train'], mesh, config)
  return Built(m, config, mesh, data, state, shardings, step, train_step, get_batch, rng_train,
               data.get('num_train_steps', config.num_train_steps))


def copy_state(state):
  """A copy of ``state`` on the same shardings (the jitted step donates its input)."""
  return jax.tree.map(lambda x: x.copy(), state)


def rates(calls: dict[str, Callable[[int], Any]], *, min_seconds: float,
          repeats: int = 3, max_calls: int = 10_000) -> dict[str, float]:
  """Calls per second of each ``call(i)`` for i = 0, 1, 2, ..., timed in alternation.

  Each window makes n calls of one function back to back and waits for all their outputs once
  at its end, so dispatch overlaps execution as in a training loop. n is chosen per function
  from one warm-up call (after a compiling one) so that a window lasts about ``min_seconds``.
  The windows of the functions take turns (``repeats`` rounds), so a change in the machine's
  load during the run falls on all of them alike; each rate is the median over its windows.

  Args:
    calls: ``{name: i -> pytree of arrays}``, the outputs to wait for (not arrays that a later
      call donates); ``i`` counts that function's calls, warm-ups included.
    min_seconds: the target length of a window (seconds).
    repeats: timed windows per function.
    max_calls: cap on n.

  Returns:
    {name: calls per second}.
  """
  counters = {name: iter(range(1 << 62)) for name in calls}
  sizes = {}
  for name, call in calls.items():
    jax.block_until_ready(call(next(counters[name])))  # compiles
    t = time.perf_counter()
    jax.block_until_ready(call(next(counters[name])))
    sizes[name] = int(np.clip(min_seconds / max(time.perf_counter() - t, 1e-9), 2, max_calls))
  measured = {name: [] for name in calls}
  for _ in range(repeats):
    for name, call in calls.items():
      outs = []
      t = time.perf_counter()
      for _ in range(sizes[name]):
        outs.append(call(next(counters[name])))
      jax.block_until_ready(outs)
      measured[name].append(sizes[name] / (time.perf_counter() - t))
  return {name: float(np.median(r)) for name, r in measured.items()}


# What the scale benchmarks (text_scale.py, image_scale.py) share: each measurement runs in a
# child process of the script, so peak RSS is the training process's own.


def peak_rss_mb() -> float:
  """This process's peak resident set size in MB (Linux reports KiB)."""
  import resource  # pylint: disable=import-outside-toplevel
  return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def train_with_timed_batches(train_and_evaluate, config, workdir: str):
  """Runs ``train_and_evaluate(config, workdir)`` recording when the loop asks for each batch.

  Returns:
    (call times in ``time.time()`` seconds, the training rows the batches were read from,
    seconds per step): the loop asks for batch s+1 once step s-1 is done, so in steady state
    the calls are one step apart (the first two, compile and warm-up, are left out).
  """
  calls, seen = [], {}
  getter = pipeline.batch_getter

  def timed_getter(rows, mesh, cfg):
    get_batch, seen['rows'] = getter(rows, mesh, cfg), rows

    def get(step):
      calls.append(time.time())
      return get_batch(step)
    return get

  pipeline.batch_getter = timed_getter
  try:
    train_and_evaluate(config, workdir)
  finally:
    pipeline.batch_getter = getter
  return calls, seen['rows'], (calls[-1] - calls[2]) / (len(calls) - 3)


def batch_read_seconds(rows, config, *, num_batches: int, first_step: int) -> float:
  """Mean seconds ``pipeline.train_batch`` takes to read one global batch of ``rows``."""
  start = time.perf_counter()
  for step in range(first_step, first_step + num_batches):
    pipeline.train_batch(rows, step, seed=config.seed, global_batch_size=config.global_batch_size)
  return (time.perf_counter() - start) / num_batches


def run_child(script: str, *args: str) -> dict:
  """Runs ``python script *args`` from the repository root; returns its last line as JSON."""
  import json  # pylint: disable=import-outside-toplevel
  import os  # pylint: disable=import-outside-toplevel
  import subprocess  # pylint: disable=import-outside-toplevel
  import sys  # pylint: disable=import-outside-toplevel
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  out = subprocess.run([sys.executable, script, *args], cwd=root, check=True,
                       stdout=subprocess.PIPE, text=True).stdout
  return json.loads(out.strip().split('\n')[-1])


def scale_main(script: str, *, doc: str, root: str, steps: int, what: str, generate,
               child_prepare, child_train, describe) -> None:
  """The scale benchmarks' command line: for each ``--sizes_mb`` size, ``generate(folder,
  size_mb)`` once, then ``child_prepare(folder, cache)`` and ``child_train(folder, cache,
  workdir, steps, spawned)`` each in a child process; prints ``describe(size, prepare, train)``
  per size and the peak training RSS ratio of the largest size to the smallest."""
  import argparse  # pylint: disable=import-outside-toplevel
  import json  # pylint: disable=import-outside-toplevel
  import os  # pylint: disable=import-outside-toplevel
  parser = argparse.ArgumentParser(description=doc.split('\n')[0])
  parser.add_argument('--sizes_mb', default='100,2000')
  parser.add_argument('--steps', type=int, default=steps)
  parser.add_argument('--root', default=root)
  parser.add_argument('--child', nargs='+', help=argparse.SUPPRESS)
  args = parser.parse_args()
  if args.child:
    kind, *rest = args.child
    result = (child_prepare(*rest) if kind == 'prepare' else
              child_train(*rest[:3], int(rest[3]), float(rest[4])))
    print(json.dumps(result))
    return
  rows = []
  for size in [int(s) for s in args.sizes_mb.split(',')]:
    folder = os.path.join(args.root, f'{what}-{size}mb')
    cache = os.path.join(args.root, f'cache-{size}mb')
    start = time.perf_counter()
    generate(folder, size)
    print(f'{size} MB {what} ready ({time.perf_counter() - start:.0f} s)', flush=True)
    prep = run_child(script, '--child', 'prepare', folder, cache)
    workdir = os.path.join(args.root, f'run-{size}mb-{time.time_ns()}')
    train = run_child(script, '--child', 'train', folder, cache, workdir, str(args.steps),
                      str(time.time()))
    rows.append((size, train['peak_rss_mb']))
    print(describe(size, prep, train), flush=True)
  if len(rows) > 1:
    (small, small_rss), (large, large_rss) = rows[0], rows[-1]
    print(f'peak training RSS {large} MB / {small} MB = {large_rss / small_rss:.3f} '
          '(goal <= 1.15)')
