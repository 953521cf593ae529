"""The command line every training experiment shares: ``--config.*``, ``--workdir``,
``--multiprocess``, and one-line errors for bad input.

Flags are defined when ``run`` is called (under ``if __name__ == '__main__'``), so importing
several experiments in one process (tests, sweeps) defines nothing twice.
"""

from __future__ import annotations

import difflib
import sys
from typing import Callable

import ml_collections
from absl import app, flags, logging
from ml_collections import config_flags

from jaxssl.parallel import mesh as mesh_lib
from jaxssl.train import checkpoint, preemption


# What a run reports as one ``error:`` line: bad config, data or workdir (missing, not a
# folder, not writable: OSError names the path), unreadable checkpoints, divergence.
RUN_ERRORS = (ValueError, OSError, FloatingPointError, checkpoint.NoReadableCheckpoint)


def parse_flags(argv, default: ml_collections.ConfigDict | None = None):
  """absl's flag parsing with one ``error:`` line for a bad value, a missing required flag
  or (given the ``default`` config) a misspelt ``--config`` field; for ``app.run``'s
  ``flags_parser``."""
  try:
    return flags.FLAGS(argv)
  except (AttributeError, KeyError) as e:  # a misspelt --config field
    if default is None:
      raise
    sys.exit(f'error: unknown --config field: {_unknown_field(argv, default, e)}')
  except flags.Error as e:  # a value of the wrong type, a missing --workdir, ...
    sys.exit(f'error: {e}')


def run(get_config: Callable[[], ml_collections.ConfigDict],
        train_and_evaluate: Callable[..., dict]) -> None:
  """Parses the flags and calls ``train_and_evaluate(config, workdir)``.

  ``--config.<field>=<value>`` overrides ``get_config()``; a misspelt field, a bad config
  value, missing or bad data, a foreign workdir, unreadable checkpoints and a diverged run
  (non-finite metrics) each exit with one line ``error: ...`` and status 1; SIGTERM exits
  with status 143 and one line (``train.preemption``).
  """
  default = get_config()
  repeated = _repeated_config_fields(sys.argv)
  if repeated:  # ml_collections would concatenate a repeated tuple field's values
    sys.exit(f'error: --config.{repeated} is given more than once; give it once')
  try:  # overrides are applied here, as the flag is defined, so a misspelt field fails here
    config = config_flags.DEFINE_config_dict('config', get_config(), lock_config=True)
  except (AttributeError, KeyError) as e:
    sys.exit(f'error: unknown --config field: {_unknown_field(sys.argv, default, e)}')
  workdir = flags.DEFINE_string('workdir', None, 'Output folder (resumes if it has '
                                'checkpoints).', required=True)
  multiprocess = flags.DEFINE_bool(
      'multiprocess', False, 'Call jax.distributed.initialize() first (TPU pod slices, '
      'SLURM, or JAX_COORDINATOR_ADDRESS/JAX_NUM_PROCESSES/JAX_PROCESS_ID set).')

  def main(argv):
    if len(argv) > 1:
      raise app.UsageError(f'unexpected arguments: {argv[1:]}')
    if not multiprocess.value:  # several processes: JAX's preemption notifier owns SIGTERM
      preemption.exit_on_sigterm()
    try:
      if multiprocess.value:
        mesh_lib.initialize_distributed()
      summary = train_and_evaluate(config.value, workdir.value)
    except RUN_ERRORS as e:
      sys.exit(f'error: {e}')
    except preemption.Preempted as e:
      preemption.exit_preempted(e)
    logging.info('summary: %s', {k: v for k, v in summary.items() if k.startswith('eval/')})

  app.run(main, flags_parser=lambda argv: parse_flags(argv, default))


def _repeated_config_fields(argv) -> str | None:
  """The first dotted field that ``argv`` sets with two ``--config.<field>`` flags, or None."""
  seen = set()
  for arg in argv[1:]:
    if arg.startswith('--config.'):
      field = arg[len('--config.'):].split('=', 1)[0]
      if field in seen:
        return field
      seen.add(field)
  return None


def _unknown_field(argv, config: ml_collections.ConfigDict, e: Exception) -> str:
  """``a.b.c: Did you mean "a.b.d"?`` for the first ``--config.a.b.c=`` in ``argv`` that
  ``config`` lacks, or ml_collections' own message when none is found."""
  for arg in argv[1:]:
    if not arg.startswith('--config.'):
      continue
    path = arg[len('--config.'):].split('=', 1)[0]
    node, parts = config, path.split('.')
    for i, part in enumerate(parts):
      if isinstance(node, ml_collections.ConfigDict) and part in node:
        node = node[part]
        continue
      if not isinstance(node, ml_collections.ConfigDict):
        break  # a field below a leaf: let ml_collections word it
      prefix = '.'.join(parts[:i])
      close = difflib.get_close_matches(part, list(node.keys()), n=1)
      hint = f': Did you mean "{prefix + "." if prefix else ""}{close[0]}"?' if close else ''
      return f'{path}{hint}'
  return _one_line(e)


def _one_line(e: Exception) -> str:
  """ml_collections nests the KeyError's repr in the message: unwrap it onto one line."""
  text = str(e)
  for _ in range(3):
    text = text.strip('\'"').replace('\\n', ' ').replace("\\'", "'")
  return ' '.join(text.replace("' ", ': ', 1).split())
