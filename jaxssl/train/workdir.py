"""A run's workdir: who owns it, whether a config may resume it, what it has finished.

``start`` is the first thing every experiment does with its workdir: it refuses a workdir of
another experiment or an incompatible config, writes ``config.json`` and appends this start
to ``run_info.json`` (``provenance``). ``finished_summary`` tells sweeps and comparisons
whether a run is already done. Checkpoint I/O itself is ``train.checkpoint``.
"""

from __future__ import annotations

import dataclasses
import json
import time

import jax
import ml_collections

from jaxssl import config_checks, fileio
from jaxssl.train import checkpoint, provenance, writers

# Fields that may differ between a checkpoint and the config resuming it: the run's length
# and cadence, and model.remat (recomputation in the backward pass: same values, less memory).
RESUMABLE_CHANGES = ('num_train_steps', 'log_every_steps', 'eval_every_steps',
                     'checkpoint_every_steps', 'max_checkpoints_to_keep', 'model.remat')
_SUMMARY_ADVICE = 'delete it to run again (a run with checkpoints resumes from them)'


@dataclasses.dataclass
class Run:
  """One start of an experiment in its workdir.

  Attributes:
    workdir: the output folder.
    experiment: the experiment's name, stored with every checkpoint and summary.
    config: the resolved config.
    saved_meta: the JSON meta of the newest checkpoint ({} in a fresh workdir).
    start_time: ``time.time()`` at ``start``; the summary's ``wall_time_s`` counts from it.
  """
  workdir: str
  experiment: str
  config: ml_collections.ConfigDict
  saved_meta: dict
  start_time: float

  def check_data(self, info: dict) -> None:
    """Refuses to resume onto other data: the checkpoints' ``data_sha256`` (if any) must
    equal ``info['data/sha256']``.

    Raises:
      ValueError: naming the workdir, the data source and both hashes.
    """
    saved = self.saved_meta.get('data_sha256')
    if saved not in (None, info['data/sha256']):
      raise ValueError(f'{self.workdir}: its checkpoints were trained on data with sha256 '
                       f'{saved}, but {info["data/source"]} now gives {info["data/sha256"]}; '
                       'use another --workdir or restore the data')


def start(workdir: str, experiment: str, config: ml_collections.ConfigDict) -> Run:
  """Creates ``workdir`` (a folder or ``gs://bucket/...``), refuses a foreign one, records the
  config and this start.

  Raises:
    ValueError: checkpoints of another experiment or an incompatible config
      (``check_resumable``), or, in a workdir without checkpoints (k-means, compare, a run
      that stopped before its first save), a ``run_info.json`` or ``summary.json`` written by
      another experiment or not readable.
    OSError: the workdir cannot be made or written; in a bucket, also a storage emulator
      (``STORAGE_EMULATOR_HOST``) that does not answer or a bucket that does not exist.
  """
  start = time.time()
  root = fileio.path(workdir)
  fileio.check_reachable(workdir)
  root.mkdir(parents=True, exist_ok=True)
  meta = {}
  if (root / 'checkpoints').is_dir():  # opening a manager creates it (locally)
    manager = checkpoint.make_manager(workdir, enable_async=False)
    try:
      meta = check_resumable(manager, experiment, config) or {}
    finally:
      manager.close()
  if not meta:
    _check_owner(workdir, experiment)
  try:
    writers.write_json(root / 'config.json', config.to_dict())
  except OSError as e:
    if not fileio.is_cloud(workdir):
      raise
    raise OSError(f'workdir {workdir} is not writable ({type(e).__name__}: {e}); does its '
                  'bucket exist, and may these credentials write to it?') from e
  if jax.process_index() == 0:  # only it writes; the others skip the git calls too
    provenance.append_run_record(workdir, provenance.run_record(
        experiment=experiment, seed=config.get('seed')))
  return Run(workdir, experiment, config, meta, start)


def _check_owner(workdir: str, experiment: str) -> None:
  """Raises ValueError if ``WORKDIR/run_info.json`` (a record per start, also of runs that
  crashed before their summary) or ``summary.json`` names another experiment, or is not
  readable JSON."""
  for name, advice in (('run_info.json', 'move it away'),
                       ('summary.json', 'delete it (checkpoints are kept and a rerun '
                                        'evaluates again)')):
    path = fileio.path(workdir) / name
    if not path.exists():
      continue
    try:
      content = json.loads(path.read_text(encoding='utf-8'))
      records = content if isinstance(content, list) else [content]
      owners = {r.get('experiment') for r in records} - {None}
    except (OSError, ValueError, AttributeError) as e:
      raise ValueError(f'{path} is not readable ({e}); {advice} or use another '
                       '--workdir') from e
    if owners - {experiment}:
      raise ValueError(f'workdir {workdir} holds a run of experiment '
                       f'{sorted(owners - {experiment})[0]!r}, not {experiment!r} (see {path}): '
                       'use another --workdir')


def config_differences(saved: dict, current: dict) -> list[str]:
  """Dotted fields whose values differ, ignoring ``RESUMABLE_CHANGES``; both sides compared as
  JSON stores them (a tuple equals the list it is saved as)."""
  a = config_checks.flatten(config_checks.as_json(saved))
  b = config_checks.flatten(config_checks.as_json(current))
  return sorted(f for f in set(a) | set(b)
                if f not in RESUMABLE_CHANGES and a.get(f) != b.get(f))


def check_resumable(manager, experiment: str, config: ml_collections.ConfigDict) -> dict | None:
  """The meta of the newest checkpoint with a readable one (damaged ones are skipped here and
  reported by the restore), or None; refuses another experiment's or config's checkpoints.

  Raises:
    ValueError: naming the other experiment, or every differing field with both values.
  """
  _, meta = checkpoint.latest_meta(manager)
  where = manager.directory.parent  # the workdir, not its checkpoints folder
  if meta is not None:
    if meta.get('experiment') != experiment:
      raise ValueError(f'workdir {where} holds checkpoints of experiment '
                       f'{meta.get("experiment")!r}, not {experiment!r}: use another --workdir')
    diffs = config_differences(meta.get('config', {}), config.to_dict())
    if diffs:
      a = config_checks.flatten(config_checks.as_json(meta.get('config', {})))
      b = config_checks.flatten(config_checks.as_json(config.to_dict()))
      details = ', '.join(f'{f}: {a.get(f)!r} in the checkpoint vs {b.get(f)!r} now'
                          for f in diffs)
      raise ValueError(f'workdir {where} was trained with another config '
                       f'({details}); use another --workdir or the same values')
  return meta


def finished_summary(workdir: str, experiment: str,
                     config: ml_collections.ConfigDict | dict) -> dict | None:
  """``WORKDIR/summary.json`` if it records a finished run of ``experiment`` with exactly
  ``config`` (every field, cadences and length too; compared as JSON stores it), else None.

  Every ``train_and_evaluate`` writes the summary last, atomically, so sweeps and comparisons
  read it instead of training again.

  Raises:
    ValueError: ``summary.json`` exists but is not a readable JSON object; names the file.
  """
  path = fileio.path(workdir) / 'summary.json'
  try:
    summary = json.loads(path.read_text(encoding='utf-8'))
  except FileNotFoundError:
    return None
  except (OSError, ValueError) as e:  # json.JSONDecodeError and UnicodeDecodeError too
    raise ValueError(f'{path} is not a readable summary ({e}); {_SUMMARY_ADVICE}') from e
  if not isinstance(summary, dict):
    raise ValueError(f'{path} is not a readable summary (a JSON {type(summary).__name__}, '
                     f'not an object); {_SUMMARY_ADVICE}')
  if isinstance(config, ml_collections.ConfigDict):
    config = config.to_dict()
  same = (summary.get('experiment') == experiment
          and summary.get('config') == config_checks.as_json(config))
  return summary if same else None
