"""Batches of packed rows as pure functions of (seed, step), sliced per process.

Each epoch is a fresh permutation from ``np.random.default_rng([seed, epoch])`` and nothing
else, so a resumed run reads exactly the batches it would have (no state to checkpoint).
Process p holds rows [p*b, (p+1)*b) of the global batch, b = global_batch_size //
process_count. Rows are NumPy arrays or ``rowfile.RowFile``s (on disk, in a bucket): either
way only the rows of this process's slice are read.
"""

import functools
from collections.abc import Callable, Iterator, Mapping

import jax
import numpy as np

from jaxssl.parallel import sharding


def _num_rows(rows: Mapping[str, np.ndarray]) -> int:
  """The shared leading dimension of every array in ``rows``; ValueError if none or unequal."""
  lengths = {key: len(value) for key, value in rows.items()}
  if not lengths or len(set(lengths.values())) != 1:
    raise ValueError(f'rows must be arrays with one shared leading dimension, got {lengths}.')
  return next(iter(lengths.values()))


def _per_process_size(global_batch_size: int, process_index: int, process_count: int) -> int:
  """b = global_batch_size // process_count.

  Raises:
    ValueError: naming ``global_batch_size`` if it is not a positive multiple of
      ``process_count``, or if ``process_index`` is not in [0, process_count).
  """
  if global_batch_size < 1 or process_count < 1:
    raise ValueError(
        f'global_batch_size={global_batch_size} and process_count={process_count} '
        'must be >= 1.'
    )
  if global_batch_size % process_count:
    raise ValueError(
        f'global_batch_size={global_batch_size} is not divisible by '
        f'process_count={process_count}.'
    )
  if not 0 <= process_index < process_count:
    raise ValueError(f'process_index={process_index} not in [0, {process_count}).')
  return global_batch_size // process_count


@functools.lru_cache(maxsize=4)
def epoch_permutation(num_rows: int, *, seed: int, epoch: int) -> np.ndarray:
  """The order of the rows in one epoch: a pure function of (seed, epoch).

  Cached per (N, seed, epoch): drawing is O(N), a step's worth of time at N = 1e6.

  Returns:
    int64 [N], read-only (shared by the cache): a permutation of range(N), from
    ``np.random.default_rng([seed, epoch])``.
  """
  order = np.random.default_rng([seed, epoch]).permutation(num_rows).astype(np.int64)
  order.setflags(write=False)
  return order


def train_batch(
    rows: Mapping[str, np.ndarray],
    step: int,
    *,
    seed: int,
    global_batch_size: int,
    process_index: int = 0,
    process_count: int = 1,
) -> dict[str, np.ndarray]:
  """This process's slice of the global training batch of ``step``: the keys of ``rows``, b rows.

  An epoch is N // B steps (the permutation's last partial batch is dropped); step s takes
  positions [(s % steps_per_epoch) * B, ... + B) of epoch s // steps_per_epoch's permutation.

  Args:
    rows: arrays with a shared leading dimension N (e.g. ``tokens`` int32 [N, L] and
      ``segment_ids`` int32 [N, L]); every key is sliced alike.
    step: the training step, >= 0; seed: the data seed.
    global_batch_size: B, rows per step over all processes; b = B // process_count.

  Raises:
    ValueError: naming ``global_batch_size`` if N < B or B is not divisible by
      ``process_count``; if ``step`` < 0 or ``rows`` arrays differ in length.
  """
  num_rows = _num_rows(rows)
  local = _per_process_size(global_batch_size, process_index, process_count)
  if num_rows < global_batch_size:
    raise ValueError(
        f'global_batch_size={global_batch_size} exceeds the {num_rows} rows of the '
        'training data: lower it or add data.'
    )
  if step < 0:
    raise ValueError(f'step must be >= 0, got {step}.')
  steps_per_epoch = num_rows // global_batch_size
  epoch, step_in_epoch = divmod(step, steps_per_epoch)
  start = step_in_epoch * global_batch_size + process_index * local
  indices = epoch_permutation(num_rows, seed=seed, epoch=epoch)[start:start + local]
  return {key: value[indices] for key, value in rows.items()}


def eval_batches(
    rows: Mapping[str, np.ndarray],
    *,
    global_batch_size: int,
    process_index: int = 0,
    process_count: int = 1,
) -> Iterator[dict[str, np.ndarray]]:
  """Every row exactly once, in order, in batches of this process's slice.

  ceil(N / B) global batches, the same number on every process; batch i holds rows
  [i*B, (i+1)*B), process p positions [p*b, (p+1)*b) of it, b = B // process_count. Positions
  past N are padding: all zeros in every key (PAD tokens, segment 0), weight 0, index -1.

  Yields:
    The keys of ``rows`` (leading dimension b) plus ``weights`` float32 [b] (1.0 real row, 0.0
    padding) and ``index`` int32 [b] (global row index; -1 padding).

  Raises:
    ValueError: naming ``global_batch_size`` if not divisible by ``process_count``.
  """
  num_rows = _num_rows(rows)
  local = _per_process_size(global_batch_size, process_index, process_count)
  for start in range(0, num_rows, global_batch_size):
    index = start + process_index * local + np.arange(local)
    real = index < num_rows
    safe = np.where(real, index, 0)
    batch = {}
    for key, value in rows.items():
      mask = real.reshape((-1,) + (1,) * (value.ndim - 1))
      batch[key] = np.where(mask, value[safe], np.zeros((), value.dtype))
    batch['weights'] = real.astype(np.float32)
    batch['index'] = np.where(real, index, -1).astype(np.int32)
    yield batch


def batch_getter(rows: Mapping[str, np.ndarray], mesh, config) -> Callable[[int], dict]:
  """``step -> batch`` of global arrays on ``mesh`` (the loop's ``get_batch``): this process's
  slice of ``train_batch`` with ``config.seed`` and ``config.global_batch_size``."""
  def get_batch(step):
    return sharding.put_batch(train_batch(
        rows, step, seed=config.seed, global_batch_size=config.global_batch_size,
        process_index=jax.process_index(), process_count=jax.process_count()), mesh)
  return get_batch


def steps_for_epochs(config, num_examples: int, *, unit: str = 'examples') -> int:
  """A run's length counted in epochs with a step cap: min(``num_epochs`` * (num_examples //
  ``global_batch_size``), ``num_train_steps``) (an epoch's last partial batch is no step).

  Raises:
    ValueError: the data gives no step, or fewer steps than ``optim.warmup_steps``; names
      the ``unit`` counted ('images').
  """
  steps = min(config.num_train_steps,
              config.num_epochs * (num_examples // config.global_batch_size))
  if steps < 1 or config.optim.warmup_steps > steps:
    raise ValueError(f'{num_examples} training {unit} give {steps} steps of '
                     f'global_batch_size={config.global_batch_size}, fewer than '
                     f'optim.warmup_steps={config.optim.warmup_steps} or none at all')
  return steps


def subset_batch_size(global_batch_size: int, num_examples: int, num_devices: int) -> int:
  """The training batch of a small labelled subset: ``global_batch_size``, or fewer when the
  subset is smaller (the largest multiple of ``num_devices`` that fits).

  Raises:
    ValueError: fewer examples than devices.
  """
  size = min(global_batch_size, num_examples - num_examples % num_devices)
  if size < 1:
    raise ValueError(f'{num_examples} labelled training examples cannot fill a batch over '
                     f'{num_devices} devices: raise data.label_fraction.')
  return size
