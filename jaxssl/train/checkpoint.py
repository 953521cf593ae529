"""Orbax checkpoints: one folder per step under ``WORKDIR/checkpoints``.

Each checkpoint holds the TrainState (params, optimizer state, step, extras) and a JSON
``meta`` item (experiment name, resolved config). The data position needs no entry: every
experiment's batches are a pure function of (seed, step).
"""

from __future__ import annotations

import logging
import os

import jax
import orbax.checkpoint as ocp


def make_manager(workdir: str, *, max_to_keep: int = 3,
                 enable_async: bool = True) -> ocp.CheckpointManager:
  """A CheckpointManager over ``WORKDIR/checkpoints`` with items 'state' and 'meta'."""
  options = ocp.CheckpointManagerOptions(max_to_keep=max_to_keep,
                                         enable_async_checkpointing=enable_async,
                                         cleanup_tmp_directories=True)
  return ocp.CheckpointManager(os.path.join(os.path.abspath(workdir), 'checkpoints'),
                               options=options, item_names=('state', 'meta'))


def save(manager: ocp.CheckpointManager, step: int, state, meta: dict) -> None:
  """Starts an (async) save of ``state`` and ``meta`` at ``step``; returns immediately."""
  manager.save(step, args=ocp.args.Composite(state=ocp.args.StandardSave(state),
                                             meta=ocp.args.JsonSave(meta)), force=True)


def abstract_like(state, shardings):
  """ShapeDtypeStructs of ``state`` carrying ``shardings``: the restore target."""
  return jax.tree.map(lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s),
                      state, shardings)


def restore_latest(manager: ocp.CheckpointManager, target):
  """Restores the newest checkpoint that reads back, onto ``target``'s shapes and shardings.

  A checkpoint that fails to read (truncated or deleted files) is reported with a warning
  naming its folder, and the next older one is tried.

  Args:
    manager: from ``make_manager``.
    target: pytree of ``jax.ShapeDtypeStruct`` with shardings (see ``abstract_like``).

  Returns:
    (state, step, meta), or (None, None, None) when the workdir has no checkpoint.

  Raises:
    RuntimeError: checkpoints exist but none of them can be read (names every folder), so a
      run never silently starts from scratch over them.
  """
  steps = sorted(manager.all_steps(), reverse=True)
  failures = []
  for step in steps:
    try:
      restored = manager.restore(step, args=ocp.args.Composite(
          state=ocp.args.StandardRestore(target), meta=ocp.args.JsonRestore()))
      return restored['state'], step, restored['meta']
    except Exception as e:  # Orbax raises many types for damaged files.  pylint: disable=broad-except
      where = os.path.join(str(manager.directory), str(step))
      logging.warning('checkpoint %s could not be restored (%s: %s); trying an older one',
                      where, type(e).__name__, e)
      failures.append(f'{where}: {type(e).__name__}: {e}')
  if failures:
    raise RuntimeError('no checkpoint in the workdir could be restored:\n' + '\n'.join(failures))
  return None, None, None
