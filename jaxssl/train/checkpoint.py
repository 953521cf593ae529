"""Orbax checkpoints: one folder per step under ``WORKDIR/checkpoints``.

Each checkpoint holds the TrainState's arrays (params, optimizer state, step, extras; its
static graphdef and optimizer are rebuilt from the config) and a JSON ``meta`` item
(experiment name, resolved config, data hash). The data position needs no entry: every
experiment's batches are a pure function of (seed, step). Workdir ownership and resume
rules: ``train.workdir``.
"""

from __future__ import annotations

import logging
import time

import jax
import numpy as np
from jax.experimental import multihost_utils
import orbax.checkpoint as ocp

from jaxssl import fileio


def make_manager(workdir: str, *, max_to_keep: int = 3, enable_async: bool = True,
                 read_only: bool = False) -> ocp.CheckpointManager:
  """A CheckpointManager over ``WORKDIR/checkpoints`` with items 'state' and 'meta'.

  ``read_only``: for another run's workdir (a pretrained model): nothing there is created,
  cleaned up or deleted, even while that run is still writing.

  ``workdir`` may be a bucket (``gs://...``): Orbax then marks a finished step with a
  ``commit_success.txt`` instead of renaming its temporary folder (no atomic rename there).
  """
  fileio.check_reachable(workdir)  # tensorstore would retry a silent emulator for minutes
  # The step folders are made in save() and only the writes run in the background: Orbax's
  # default makes them on a thread too, and when that mkdir failed (a full or read-only disk)
  # its writer threads waited out a 300 s timeout before the process could exit.
  options = ocp.CheckpointManagerOptions(
      max_to_keep=max_to_keep, enable_async_checkpointing=enable_async,
      cleanup_tmp_directories=not read_only, read_only=read_only, create=not read_only,
      async_options=ocp.AsyncOptions(create_directories_asynchronously=False))
  manager = ocp.CheckpointManager(fileio.path(workdir) / 'checkpoints', options=options,
                                  item_names=('state', 'meta'))
  _await_tmp_cleanup(manager)
  return manager


def _await_tmp_cleanup(manager: ocp.CheckpointManager) -> None:
  """Waits for the manager's start-up sweep of ``*.orbax-checkpoint-tmp`` folders: Orbax
  runs it on a thread that ``close()`` does not wait for, and a process exiting soon after
  printed a traceback from it. The sweep lists one folder, so waiting costs nothing."""
  wait = getattr(manager, '_maybe_await_cleanup_tmp_directory', None)
  if wait is not None:
    wait()


def save(manager: ocp.CheckpointManager, step: int, state, meta: dict) -> None:
  """Starts an (async) save of ``state`` and ``meta`` at ``step``; returns immediately."""
  manager.save(step, args=ocp.args.Composite(state=ocp.args.StandardSave(state),
                                             meta=ocp.args.JsonSave(meta)), force=True)


def abstract_like(state):
  """ShapeDtypeStructs of ``state`` (on the mesh) carrying its shardings: the restore
  target, so every process reads only its shards."""
  return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding),
                      state)


# What Orbax raises for a damaged checkpoint (measured with 0.12: truncated files give
# JSONDecodeError/ValueError, a missing item folder KeyError, missing data files TensorStore's
# ValueError, unreadable files OSError). Anything else (out of memory, a device error) is not
# damage and propagates.
DAMAGE_ERRORS = (OSError, ValueError, LookupError)


def restore_latest(manager: ocp.CheckpointManager, target):
  """Restores the newest checkpoint that reads back onto ``target`` (``abstract_like``).

  A damaged one (``DAMAGE_ERRORS``) is reported and the next older tried; once one reads
  back, the damaged newer folders move to ``WORKDIR/damaged_checkpoints/<step>``. With
  several processes a step counts as read only when every process read its shards.

  Returns:
    (state, step, meta), or (None, None, None) when the workdir has no checkpoint.

  Raises:
    NoReadableCheckpoint: checkpoints exist but none reads back (names every folder).
  """
  steps = sorted(manager.all_steps(), reverse=True)
  failures = []
  for step in steps:
    restored, reason = None, None
    try:
      restored = manager.restore(step, args=ocp.args.Composite(
          state=ocp.args.StandardRestore(target), meta=ocp.args.JsonRestore()))
    except DAMAGE_ERRORS as e:
      reason = f'{type(e).__name__}: {_first_line(e)}'
    if not _on_every_process(reason is None):
      where = str(manager.directory / str(step))
      reason = reason or 'another process could not read its part'
      logging.warning('checkpoint %s could not be restored (%s); trying an older one', where,
                      reason)
      failures.append(f'{where}: {reason}')
      continue
    if failures:
      _set_aside(manager, [s for s in steps if s > step])
    return restored['state'], step, restored['meta']
  if failures:
    raise NoReadableCheckpoint('no checkpoint in the workdir could be restored:\n'
                               + '\n'.join(failures))
  return None, None, None


def _on_every_process(ok: bool) -> bool:
  """True when ``ok`` holds on every process (an all-gather; no communication with one)."""
  if jax.process_count() == 1:
    return ok
  return bool(np.all(multihost_utils.process_allgather(np.asarray(ok))))


def _first_line(e: Exception, limit: int = 200) -> str:
  """The first line of an exception's message, at most ``limit`` characters (TensorStore's
  errors carry pages of spec)."""
  text = (str(e).strip().splitlines() or [''])[0]
  return text if len(text) <= limit else text[:limit] + '...'


def _set_aside(manager: ocp.CheckpointManager, steps: list[int]) -> None:
  """Moves the damaged checkpoints of ``steps`` to ``WORKDIR/damaged_checkpoints/<step>``
  (process 0 moves, every process waits for it) and refreshes the manager's step list."""
  root = manager.directory.parent / 'damaged_checkpoints'
  if jax.process_index() == 0:
    for step in steps:
      src, dest = manager.directory / str(step), root / str(step)
      if dest.exists():
        dest = root / f'{step}-{time.time_ns()}'
      fileio.move_tree(src, dest)
      logging.warning('moved the damaged checkpoint %s to %s', src, dest)
  if jax.process_count() > 1:
    multihost_utils.sync_global_devices('jaxssl_set_aside_damaged_checkpoints')
  manager.reload()


class NoReadableCheckpoint(RuntimeError):
  """Checkpoints exist in the workdir but none of them reads back."""


def restore_or_keep(workdir: str, state, *, max_to_keep: int = 3):
  """Opens the workdir's CheckpointManager and restores its newest readable checkpoint.

  Returns:
    (manager, state, step, meta): ``state`` restored onto its shardings with the JSON meta
    saved beside it, or unchanged with step and meta None when the workdir has no
    checkpoint. On an error the manager is closed first.

  Raises:
    NoReadableCheckpoint: checkpoints exist but none reads back (see ``restore_latest``).
  """
  manager = make_manager(workdir, max_to_keep=max_to_keep)
  try:
    restored, step, meta = restore_latest(manager, abstract_like(state))
  except BaseException:
    manager.close()
    raise
  if restored is None:
    return manager, state, None, None
  logging.info('resumed from step %d', step)
  return manager, restored, step, meta


def latest_meta(manager: ocp.CheckpointManager) -> tuple[int | None, dict | None]:
  """(step, meta) of the newest checkpoint whose JSON meta reads back, or (None, None)."""
  for step in sorted(manager.all_steps(), reverse=True):
    try:
      return step, manager.restore(step, args=ocp.args.Composite(
          meta=ocp.args.JsonRestore()))['meta']
    except Exception as e:  # pylint: disable=broad-except
      logging.warning('could not read the meta of checkpoint %s: %s', step, e)
  return None, None


def _contents(root) -> str:
  """What a folder holds, for the errors: its first entries, or that it is empty or absent."""
  if not root.exists():
    return 'it does not exist'
  names = sorted(p.name for p in root.iterdir())
  if not names:
    return 'it is empty'
  return f'it holds {", ".join(names[:8])}{", ..." if len(names) > 8 else ""}'


def open_other_run(workdir: str, field: str, among: tuple[str, ...], what: str
                   ) -> tuple[int, dict, ocp.CheckpointManager]:
  """Opens another run's workdir read-only (a pretrained model) and reads its newest meta.

  Args:
    workdir: the workdir (local or ``gs://``); field: the config field that named it.
    among: the experiments accepted; what: how the errors call them ("image learners").

  Returns:
    (step, meta, manager): the read-only manager stays open for restoring; close it.

  Raises:
    FileNotFoundError: no checkpoints folder (naming ``field``, the path and what it holds)
      or no readable checkpoint meta.
    ValueError: the workdir belongs to an experiment not in ``among``, naming it.
  """
  root = fileio.path(workdir)
  names = ', '.join(among[:-1]) + f' or {among[-1]}' if len(among) > 1 else among[0]
  if not (root / 'checkpoints').is_dir():
    raise FileNotFoundError(f'{field}={workdir} holds no checkpoints ({_contents(root)}); '
                            f'give the workdir of a {names} run.')
  manager = make_manager(workdir, read_only=True)
  try:
    step, meta = latest_meta(manager)
    if meta is None:
      raise FileNotFoundError(f'{field}={workdir} holds no readable checkpoint.')
    if meta.get('experiment') not in among:
      raise ValueError(f'{field}={workdir} holds a {meta.get("experiment")!r} run; '
                       f'{what} ({", ".join(among)}) are restored here.')
  except BaseException:
    manager.close()
    raise
  return step, meta, manager
