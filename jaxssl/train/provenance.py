"""What a run was made with: package versions, the code's git commit, the machine.

Every start of an experiment appends one record to ``WORKDIR/run_info.json`` (a resumed run
adds a record; the first stays), next to the resolved ``config.json``, so a result can be
traced to the exact code and stack that produced it.
"""

from __future__ import annotations

import datetime
import functools
import importlib.metadata
import json
import os
import platform
import subprocess
import sys

import jax

from jaxssl import fileio
from jaxssl.train import writers

# The distributions whose versions change results or speed.
PACKAGES = ('jax', 'jaxlib', 'flax', 'optax', 'orbax-checkpoint', 'numpy', 'ml-collections',
            'tensorflow-datasets', 'array-record', 'grain', 'tensorflow-cpu', 'clu',
            'scikit-learn', 'sentencepiece', 'jaxssl')


@functools.cache
def package_versions(names: tuple[str, ...] = PACKAGES) -> dict[str, str | None]:
  """Installed versions, read once per process (a sweep starts many runs in one).

  Args:
    names: distribution names as pip knows them (a tuple, so the result can be cached).

  Returns:
    {name: version string, or None when it is not installed}.
  """
  out = {}
  for name in names:
    try:
      out[name] = importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
      out[name] = None
  return out


def git_state(path: str | None = None) -> dict[str, str | bool | None]:
  """The git commit of the checkout holding ``path`` (default: this package).

  Returns:
    {'git_commit': 40-hex SHA or None, 'git_dirty': True when files differ from that commit
    or are new and not ignored, None when unknown}. Both None outside a git checkout (an installed wheel)
    or without a ``git`` executable.
  """
  path = path or os.path.dirname(os.path.abspath(__file__))

  def git(*args):
    return subprocess.run(['git', '-C', path, *args], capture_output=True, text=True,
                          timeout=10, check=True).stdout.strip()

  try:
    commit = git('rev-parse', 'HEAD')
    dirty = bool(git('status', '--porcelain'))  # untracked files too: a copied experiment
  except (OSError, subprocess.SubprocessError):
    return {'git_commit': None, 'git_dirty': None}
  return {'git_commit': commit, 'git_dirty': dirty}


def run_record(*, experiment: str, seed) -> dict:
  """One start's record.

  Returns:
    {'experiment', 'seed', 'started_utc' (ISO 8601, UTC, seconds), 'argv', 'python',
    'platform', 'versions' (`package_versions`), 'git_commit', 'git_dirty' (`git_state`),
    'backend', 'device_kind', 'device_count', 'process_count'}.
  """
  devices = jax.devices()
  return {
      'experiment': experiment, 'seed': seed,
      'started_utc': datetime.datetime.now(datetime.timezone.utc).isoformat(timespec='seconds'),
      'argv': list(sys.argv), 'python': platform.python_version(),
      'platform': platform.platform(), 'versions': package_versions(), **git_state(),
      'backend': jax.default_backend(), 'device_kind': devices[0].device_kind,
      'device_count': len(devices), 'process_count': jax.process_count(),
  }


def append_run_record(workdir: str, record: dict) -> list[dict]:
  """Appends ``record`` to ``WORKDIR/run_info.json`` (a JSON list; process 0 writes).

  Returns:
    Every record now in the file, oldest first.

  Raises:
    ValueError: the existing file is not a JSON list (names the file).
  """
  path = fileio.path(workdir) / 'run_info.json'
  records = []
  if path.exists():
    try:
      records = json.loads(path.read_text(encoding='utf-8'))
    except (OSError, ValueError) as e:
      raise ValueError(f'{path} is not readable JSON ({e}); move it away or use another '
                       '--workdir') from e
    if not isinstance(records, list):
      raise ValueError(f'{path} must hold a JSON list of run records')
  records.append(record)
  writers.write_json(path, records)
  return records
