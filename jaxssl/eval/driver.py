"""Runs a jitted eval function over every row of a held-out split, each row once.

Batches from ``data.pipeline.eval_batches`` (padding rows with ``weights`` 0.0), placed on the
mesh: the result is the same on any number of devices and processes.
"""

from __future__ import annotations

from typing import Callable

import jax
import numpy as np

from jaxssl.data import pipeline
from jaxssl.parallel import sharding


def _batches(rows: dict, mesh, global_batch_size: int):
  for batch in pipeline.eval_batches(rows, global_batch_size=global_batch_size,
                                     process_index=jax.process_index(),
                                     process_count=jax.process_count()):
    yield sharding.put_batch(batch, mesh)


def sum_over_split(eval_fn: Callable, params, rows: dict, mesh, *,
                   global_batch_size: int) -> dict[str, float]:
  """{name: float} totals of ``eval_fn``'s sums over the split.

  Args:
    eval_fn: jitted ``(params, batch) -> {name: f32 scalar sum}``; ``batch`` holds the keys
      of ``rows`` plus ``weights`` [b] and ``index`` [b].
    params: what ``eval_fn`` reads, on the mesh.
    rows: the split's arrays, leading dimension N.
    mesh: the mesh the batches are placed on.
    global_batch_size: rows per eval batch over all processes.
  """
  totals = None
  for batch in _batches(rows, mesh, global_batch_size):
    sums = eval_fn(params, batch)
    totals = sums if totals is None else jax.tree.map(lambda a, b: a + b, totals, sums)
  return jax.tree.map(float, jax.device_get(totals))


def per_example_over_split(eval_fn: Callable, params, rows: dict, mesh, *,
                           global_batch_size: int) -> dict[str, np.ndarray]:
  """{name: numpy [N]}: ``eval_fn``'s per-row values over the real rows, in split order.

  ``eval_fn``: jitted ``(params, batch) -> {name: [b] array}`` passing ``weights`` [b] through
  (to drop padding rows); other arguments as ``sum_over_split``.
  """
  per_row = {}
  for batch in _batches(rows, mesh, global_batch_size):
    for name, value in jax.device_get(eval_fn(params, batch)).items():
      per_row.setdefault(name, []).append(np.asarray(value))
  per_row = {name: np.concatenate(values) for name, values in per_row.items()}
  real = per_row.pop('weights') > 0
  return {name: values[real] for name, values in per_row.items()}
