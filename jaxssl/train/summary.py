"""Whether a workdir already holds a finished run: its ``summary.json``.

Every ``train_and_evaluate`` writes ``WORKDIR/summary.json`` last (``writers.write_summary``,
atomically), with the experiment's name and the resolved config. A summary that records the
same experiment and the same config is the finished run: sweeps and comparisons read it
instead of training (or restoring and evaluating) again.
"""

from __future__ import annotations

import json
import os

import ml_collections

from jaxssl.train import config_checks

_ADVICE = 'delete it to run again (a run with checkpoints resumes from them)'


def finished_summary(workdir: str, experiment: str,
                     config: ml_collections.ConfigDict | dict) -> dict | None:
  """The summary of a finished run of ``experiment`` with exactly ``config``, or None.

  Args:
    workdir: the run's output folder (it need not exist).
    experiment: the experiment's name, as its summaries record it (``EXPERIMENT``).
    config: the run's resolved config. Every field counts, the cadences and
      ``num_train_steps`` too: a summary of the same run with another length or eval
      cadence is not this run's. Compared as JSON stores it (a tuple equals its list).

  Returns:
    The ``WORKDIR/summary.json`` dict, or None when the file is absent or records another
    experiment or another config (the experiment itself then resumes, or refuses a foreign
    workdir).

  Raises:
    ValueError: ``summary.json`` exists but is not a readable JSON object; names the file.
  """
  path = os.path.join(workdir, 'summary.json')
  try:
    with open(path, encoding='utf-8') as f:
      summary = json.load(f)
  except FileNotFoundError:
    return None
  except (OSError, ValueError) as e:  # json.JSONDecodeError and UnicodeDecodeError too
    raise ValueError(f'{path} is not a readable summary ({e}); {_ADVICE}') from e
  if not isinstance(summary, dict):
    raise ValueError(f'{path} is not a readable summary (a JSON {type(summary).__name__}, '
                     f'not an object); {_ADVICE}')
  if isinstance(config, ml_collections.ConfigDict):
    config = config.to_dict()
  same = (summary.get('experiment') == experiment
          and summary.get('config') == config_checks.as_json(config))
  return summary if same else None
