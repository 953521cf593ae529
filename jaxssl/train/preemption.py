"""SIGTERM (preemption, ``scancel``, a spot VM's notice), inside and outside the loop.

Inside the training loop ``SigtermWatch`` turns SIGTERM into a flag the loop polls at every
step: it checkpoints that step and raises ``Preempted``. Outside the loop (data preparation,
restoring, the final summary) ``exit_on_sigterm`` exits at once: no checkpoint is being
written there, and a rerun redoes that work. Either way the process exits with status 143
and one line. The whole story is in the README ("Fault tolerance").
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading

import jax

EXIT_STATUS = 143  # 128 + SIGTERM: a scheduler that restarts failed jobs restarts it
OUTSIDE_LOOP_LINE = ('preempted (SIGTERM) outside the training loop (setup, data preparation '
                     'or the final summary): saved checkpoints are kept; run the same command '
                     'again to resume')


class Preempted(Exception):
  """SIGTERM arrived: a checkpoint of ``step`` was saved and the run stopped."""

  def __init__(self, step: int):
    super().__init__(f'preempted (SIGTERM) at step {step}: its checkpoint is saved; run '
                     'the same command again to resume')
    self.step = step


class SigtermWatch:
  """Notices SIGTERM while installed (``with``).

  One process flags it locally; several processes use JAX's preemption sync point (through
  the Orbax ``manager``), so all of them stop at the same step. A flagged SIGTERM that nobody
  acted on (the block ended without an exception) is sent again on exit, to the handler that
  was there before, unless ``hand_on`` is False (an error is already on its way out).
  """

  def __init__(self, manager, hand_on: bool = True):
    self.manager, self.requested, self.hand_on = manager, False, hand_on
    self._multi = jax.process_count() > 1
    self._installed, self._previous = False, None

  def __enter__(self):
    if not self._multi and threading.current_thread() is threading.main_thread():
      self._previous = signal.signal(signal.SIGTERM, self._handle)
      self._installed = True
    return self

  def _handle(self, signum, frame):  # only sets a flag: logging here could re-enter a log call
    del signum, frame
    self.requested = True

  def __exit__(self, exc_type, *exc):
    if self._installed:  # None: the previous handler was not set from Python
      signal.signal(signal.SIGTERM, signal.SIG_DFL if self._previous is None else self._previous)
      if self.requested and exc_type is None and self.hand_on:
        signal.raise_signal(signal.SIGTERM)

  def due(self, step: int) -> bool:
    """True when the run should checkpoint ``step`` and stop (call it at every step)."""
    if self._multi:
      return self.manager.reached_preemption(step)
    if self.requested:
      logging.warning('SIGTERM received: checkpointing step %d, then stopping', step)
    return self.requested


def exit_on_sigterm() -> None:
  """From now on, SIGTERM outside the training loop prints ``OUTSIDE_LOOP_LINE`` and exits at
  once with ``EXIT_STATUS`` (``os._exit``, so no ``except`` clause can swallow it). Only from
  the main thread (Python handles signals there only)."""
  if threading.current_thread() is threading.main_thread():
    signal.signal(signal.SIGTERM, _exit_terminated)


def _exit_terminated(signum, frame):
  del signum, frame
  for stream in (sys.stdout, sys.stderr):  # what was printed before the line
    try:
      stream.flush()
    except (OSError, ValueError, RuntimeError):  # closed, or interrupted mid-write
      pass
  os.write(2, f'\n{OUTSIDE_LOOP_LINE}\n'.encode())  # a progress bar may have left a partial line
  os._exit(EXIT_STATUS)


def exit_preempted(e: Preempted) -> None:
  """Prints the preemption line and exits with ``EXIT_STATUS``."""
  print(e, file=sys.stderr)
  sys.exit(EXIT_STATUS)
