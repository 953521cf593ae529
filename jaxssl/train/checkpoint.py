"""Orbax checkpoints: one folder per step under ``WORKDIR/checkpoints``.

Each checkpoint holds the TrainState (params, optimizer state, step, extras) and a JSON
``meta`` item (experiment name, resolved config). The data position needs no entry: every
experiment's batches are a pure function of (seed, step).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time

import jax
import numpy as np
from jax.experimental import multihost_utils
import orbax.checkpoint as ocp


def make_manager(workdir: str, *, max_to_keep: int = 3,
                 enable_async: bool = True) -> ocp.CheckpointManager:
  """A CheckpointManager over ``WORKDIR/checkpoints`` with items 'state' and 'meta'."""
  options = ocp.CheckpointManagerOptions(max_to_keep=max_to_keep,
                                         enable_async_checkpointing=enable_async,
                                         cleanup_tmp_directories=True)
  manager = ocp.CheckpointManager(os.path.join(os.path.abspath(workdir), 'checkpoints'),
                                  options=options, item_names=('state', 'meta'))
  _await_tmp_cleanup(manager)
  return manager


def _await_tmp_cleanup(manager: ocp.CheckpointManager) -> None:
  """Waits for the manager's start-up sweep of ``*.orbax-checkpoint-tmp`` folders.

  Orbax 0.12 runs that sweep on a background thread and ``close()`` does not wait for it;
  a process that exits soon after (an input error right after opening the workdir) then
  prints a "cannot schedule new futures after interpreter shutdown" traceback from it.
  The sweep only lists one folder, so waiting costs nothing.
  """
  wait = getattr(manager, '_maybe_await_cleanup_tmp_directory', None)
  if wait is not None:
    wait()


def save(manager: ocp.CheckpointManager, step: int, state, meta: dict) -> None:
  """Starts an (async) save of ``state`` and ``meta`` at ``step``; returns immediately."""
  manager.save(step, args=ocp.args.Composite(state=ocp.args.StandardSave(state),
                                             meta=ocp.args.JsonSave(meta)), force=True)


def abstract_like(state, shardings):
  """ShapeDtypeStructs of ``state`` carrying ``shardings``: the restore target."""
  return jax.tree.map(lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s),
                      state, shardings)


# What Orbax raises for a damaged checkpoint (measured with 0.12: truncated files give
# JSONDecodeError/ValueError, a missing item folder KeyError, missing data files TensorStore's
# ValueError, unreadable files OSError). Anything else (out of memory, a device error) is not
# damage and propagates.
DAMAGE_ERRORS = (OSError, ValueError, LookupError)


def restore_latest(manager: ocp.CheckpointManager, target):
  """Restores the newest checkpoint that reads back, onto ``target``'s shapes and shardings.

  A checkpoint that fails to read (truncated or deleted files: ``DAMAGE_ERRORS``) is
  reported with a warning naming its folder, and the next older one is tried. When an older
  one reads back, the damaged newer folders are moved to ``WORKDIR/damaged_checkpoints/<step>``
  (kept for inspection), so the resumed run can save those steps again. With several
  processes, each reads its own shards: a step counts as read only when every process read
  it (an all-gather per step tried), so all of them resume from the same step.

  Args:
    manager: from ``make_manager``.
    target: pytree of ``jax.ShapeDtypeStruct`` with shardings (see ``abstract_like``).

  Returns:
    (state, step, meta), or (None, None, None) when the workdir has no checkpoint.

  Raises:
    NoReadableCheckpoint: checkpoints exist but none of them can be read (names every
      folder), so a run never silently starts from scratch over them.
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
      where = os.path.join(str(manager.directory), str(step))
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
  root = os.path.join(os.path.dirname(str(manager.directory)), 'damaged_checkpoints')
  if jax.process_index() == 0:
    os.makedirs(root, exist_ok=True)
    for step in steps:
      src, dest = os.path.join(str(manager.directory), str(step)), os.path.join(root, str(step))
      if os.path.exists(dest):
        dest = f'{dest}-{time.time_ns()}'
      shutil.move(src, dest)
      logging.warning('moved the damaged checkpoint %s to %s', src, dest)
  if jax.process_count() > 1:
    multihost_utils.sync_global_devices('jaxssl_set_aside_damaged_checkpoints')
  manager.reload()


class NoReadableCheckpoint(RuntimeError):
  """Checkpoints exist in the workdir but none of them reads back."""


def restore_or_keep(workdir: str, state, shardings, *, max_to_keep: int = 3):
  """Opens the workdir's CheckpointManager and restores its newest readable checkpoint.

  Returns:
    (manager, state, step): ``state`` restored onto its shardings, or unchanged with
    step None when the workdir has no checkpoint. On an error the manager is closed first.

  Raises:
    NoReadableCheckpoint: checkpoints exist but none reads back (see ``restore_latest``).
  """
  manager = make_manager(workdir, max_to_keep=max_to_keep)
  try:
    restored, step, _ = restore_latest(manager, abstract_like(state, shardings))
  except BaseException:
    manager.close()
    raise
  if restored is None:
    return manager, state, None
  logging.info('resumed from step %d', step)
  return manager, restored, step


def latest_meta(manager: ocp.CheckpointManager) -> tuple[int | None, dict | None]:
  """(step, meta) of the newest checkpoint whose JSON meta reads back, or (None, None)."""
  for step in sorted(manager.all_steps(), reverse=True):
    try:
      return step, manager.restore(step, args=ocp.args.Composite(
          meta=ocp.args.JsonRestore()))['meta']
    except Exception as e:  # pylint: disable=broad-except
      logging.warning('could not read the meta of checkpoint %s: %s', step, e)
  return None, None


def open_workdir(workdir: str, *, experiment: str, config) -> dict:
  """Creates ``workdir``, refuses a foreign one, and records the resolved config and this
  start (versions, git commit, devices: ``provenance.append_run_record``).

  The checkpoints' meta is read with a manager that is closed again, so nothing is left
  running if loading the data fails next.

  Args:
    workdir: the run's output folder.
    experiment: the experiment's name, stored with every checkpoint.
    config: the resolved ``ml_collections.ConfigDict``; written to ``WORKDIR/config.json``.

  Returns:
    The meta of the newest checkpoint ({} for a fresh workdir).

  Raises:
    ValueError: checkpoints of another experiment or an incompatible config (see
      ``config_checks.check_workdir``), or, in a workdir without checkpoints (k-means,
      compare, a run that stopped before its first save), a ``run_info.json`` or
      ``summary.json`` written by another experiment or not readable.
  """
  # pylint: disable-next=import-outside-toplevel
  from jaxssl.train import config_checks, provenance, writers
  os.makedirs(workdir, exist_ok=True)
  meta = {}
  if os.path.isdir(os.path.join(workdir, 'checkpoints')):  # opening a manager creates it
    manager = make_manager(workdir, enable_async=False)
    try:
      meta = config_checks.check_workdir(manager, experiment, config) or {}
    finally:
      manager.close()
  if not meta:
    _check_owner(workdir, experiment)
  writers.write_json(os.path.join(workdir, 'config.json'), config.to_dict())
  if jax.process_index() == 0:  # only it writes; the others skip the git calls too
    provenance.append_run_record(workdir, provenance.run_record(
        experiment=experiment, seed=config.get('seed')))
  return meta


def _check_owner(workdir: str, experiment: str) -> None:
  """Raises ValueError if ``WORKDIR/run_info.json`` (a record per start, also of runs that
  crashed before their summary) or ``summary.json`` names another experiment, or is not
  readable JSON."""
  for name, advice in (('run_info.json', 'move it away'),
                       ('summary.json', 'delete it (checkpoints are kept and a rerun '
                                        'evaluates again)')):
    path = os.path.join(workdir, name)
    if not os.path.exists(path):
      continue
    try:
      with open(path, encoding='utf-8') as f:
        content = json.load(f)
      records = content if isinstance(content, list) else [content]
      owners = {r.get('experiment') for r in records} - {None}
    except (OSError, ValueError, AttributeError) as e:
      raise ValueError(f'{path} is not readable ({e}); {advice} or use another '
                       '--workdir') from e
    if owners - {experiment}:
      raise ValueError(f'workdir {workdir} holds a run of experiment '
                       f'{sorted(owners - {experiment})[0]!r}, not {experiment!r} (see {path}): '
                       'use another --workdir')


def check_data(saved_meta: dict, info: dict, workdir: str) -> None:
  """Refuses to resume onto other data: ``saved_meta['data_sha256']`` (if any) must equal
  ``info['data/sha256']``.

  Raises:
    ValueError: naming the workdir, the data source and both hashes.
  """
  saved = saved_meta.get('data_sha256')
  if saved not in (None, info['data/sha256']):
    raise ValueError(f'{workdir}: its checkpoints were trained on data with sha256 {saved}, '
                     f'but {info["data/source"]} now gives {info["data/sha256"]}; use another '
                     '--workdir or restore the data')
