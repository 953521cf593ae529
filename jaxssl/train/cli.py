"""The command line every training experiment shares: ``--config.*``, ``--workdir``,
``--multiprocess``, and one-line errors for bad input.

Flags are defined when ``run`` is called (under ``if __name__ == '__main__'``), so importing
several experiments in one process (tests, sweeps) defines nothing twice.
"""

from __future__ import annotations

import difflib
import os
import signal
import sys
import threading
from typing import Callable

import ml_collections
from absl import app, flags, logging
from ml_collections import config_flags

from jaxssl.parallel import mesh as mesh_lib
from jaxssl.train import checkpoint, loop


PREEMPTED_EXIT_STATUS = 143  # 128 + SIGTERM
# What a run reports as one ``error:`` line: bad config, data or workdir (missing, not a
# folder, not writable: OSError names the path), unreadable checkpoints, divergence.
RUN_ERRORS = (ValueError, OSError, FloatingPointError, checkpoint.NoReadableCheckpoint)


TERMINATED_LINE = ('preempted (SIGTERM) outside the training loop (setup, data preparation or '
                   'the final summary): saved checkpoints are kept; run the same command again '
                   'to resume')


def exit_on_sigterm() -> None:
  """From now on, SIGTERM outside the training loop prints ``TERMINATED_LINE`` and exits at
  once with ``PREEMPTED_EXIT_STATUS`` (``os._exit``: no ``except`` clause can swallow it).

  Outside the loop no checkpoint is being written: the loop installs its own handler
  (checkpoint, then ``loop.Preempted``) while it runs and defers SIGTERM until its saves are
  complete. What the exit interrupts (data preparation, restoring, the final evaluation and
  summary) a rerun redoes. Only from the main thread (Python handles signals there only).
  """
  if threading.current_thread() is threading.main_thread():
    signal.signal(signal.SIGTERM, _exit_terminated)


def _exit_terminated(signum, frame):
  del signum, frame
  for stream in (sys.stdout, sys.stderr):  # what was printed before the line
    try:
      stream.flush()
    except (OSError, ValueError, RuntimeError):  # closed, or interrupted mid-write
      pass
  os.write(2, f'\n{TERMINATED_LINE}\n'.encode())  # a progress bar may have left a partial line
  os._exit(PREEMPTED_EXIT_STATUS)


def exit_preempted(e: loop.Preempted) -> None:
  """Prints the preemption line and exits with ``PREEMPTED_EXIT_STATUS``."""
  print(e, file=sys.stderr)
  sys.exit(PREEMPTED_EXIT_STATUS)


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
  (non-finite metrics) each exit with one line ``error: ...`` and status 1. SIGTERM
  (preemption) checkpoints the current step and exits with status 143 (128 + SIGTERM, so a
  scheduler that restarts failed jobs restarts it) and one line saying so; outside the
  training loop (one process, once the imports are done) it exits the same way without a new
  checkpoint (``exit_on_sigterm``). With ``--multiprocess``, JAX's preemption sync point
  handles SIGTERM.
  """
  default = get_config()
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
      exit_on_sigterm()
    try:
      if multiprocess.value:
        mesh_lib.initialize_distributed()
      summary = train_and_evaluate(config.value, workdir.value)
    except RUN_ERRORS as e:
      sys.exit(f'error: {e}')
    except loop.Preempted as e:
      exit_preempted(e)
    logging.info('summary: %s', {k: v for k, v in summary.items() if k.startswith('eval/')})

  app.run(main, flags_parser=lambda argv: parse_flags(argv, default))


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
