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
