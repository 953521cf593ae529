"""A real SIGKILL after the step-N checkpoint, then a restart: same result as no kill; a
real SIGTERM (preemption): a checkpoint of the current step, exit status 143, and a restart
with the same result.

Slow tier (``pytest -m slow``): three processes of ``python -m experiments.<name>`` per case.
"""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from experiments import clm_pretrain, mlm_pretrain
from tests.experiments.helpers import command_flags

pytestmark = pytest.mark.slow

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
N = 150  # checkpoint cadence; the run has 2N steps
B = 32  # rows a step: an epoch of the smoke corpus (~5,400 rows) is ~170 steps


def _flags(module, workdir, cache_dir):
  """Command-line overrides turning the default config into the smoke config (2N steps)."""
  smoke = module.smoke_config()
  smoke.num_train_steps, smoke.checkpoint_every_steps = 2 * N, N
  smoke.log_every_steps = 50
  smoke.global_batch_size = B
  smoke.data.cache_dir = cache_dir
  return [f'--workdir={workdir}', *command_flags(module, smoke)]


def _start(module, workdir, cache_dir):
  return subprocess.Popen([sys.executable, '-m', module.__name__,
                           *_flags(module, workdir, cache_dir)], cwd=ROOT,
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def _evals(workdir):
  with open(os.path.join(workdir, 'summary.json')) as f:
    summary = json.load(f)
  return {k: v for k, v in summary.items() if k.startswith('eval/')}, summary


@pytest.mark.parametrize('module', [mlm_pretrain, clm_pretrain], ids=lambda m: m.EXPERIMENT)
def test_sigkill_after_checkpoint_then_restart_matches(module, tmp_path):
  cache = str(tmp_path / 'cache')
  reference = _start(module, str(tmp_path / 'ref'), cache)
  assert reference.wait(timeout=600) == 0, reference.stderr.read().decode()[-3000:]

  workdir = str(tmp_path / 'killed')
  proc = _start(module, workdir, cache)
  ckpt = os.path.join(workdir, 'checkpoints', str(N))
  deadline = time.time() + 600
  while not os.path.isdir(ckpt) and proc.poll() is None and time.time() < deadline:
    time.sleep(0.01)
  assert proc.poll() is None, 'the run ended before it could be killed: raise N'
  proc.send_signal(signal.SIGKILL)
  proc.wait()
  assert not os.path.exists(os.path.join(workdir, 'summary.json'))

  restarted = _start(module, workdir, cache)
  assert restarted.wait(timeout=600) == 0, restarted.stderr.read().decode()[-3000:]
  ours, summary = _evals(workdir)
  assert summary['restored_from_step'] == N
  assert ours == _evals(str(tmp_path / 'ref'))[0]
  # The kill fell mid-epoch and the run crossed an epoch boundary: batches read from the
  # prepared row files by (seed, step) neither repeat nor skip across the restart.
  steps_per_epoch = summary['data/num_train_rows'] // B
  assert N % steps_per_epoch and steps_per_epoch < 2 * N, steps_per_epoch


def test_sigterm_saves_exits_143_and_the_restart_matches(tmp_path):
  module = mlm_pretrain
  cache = str(tmp_path / 'cache')
  reference = _start(module, str(tmp_path / 'ref'), cache)
  assert reference.wait(timeout=600) == 0, reference.stderr.read().decode()[-3000:]

  workdir = str(tmp_path / 'preempted')
  proc = _start(module, workdir, cache)
  ckpt_dir = os.path.join(workdir, 'checkpoints')
  deadline = time.time() + 600
  while not os.path.isdir(os.path.join(ckpt_dir, str(N))) and proc.poll() is None and \
      time.time() < deadline:
    time.sleep(0.01)
  assert proc.poll() is None, 'the run ended before it could be preempted: raise N'
  proc.send_signal(signal.SIGTERM)
  assert proc.wait(timeout=120) == 143
  last_line = proc.stderr.read().decode().rstrip().splitlines()[-1]
  assert last_line.startswith('preempted (SIGTERM) at step '), last_line
  step = int(last_line.split('at step ')[1].split(':')[0])
  assert N < step < 2 * N  # a step after the cadence checkpoint, saved on the way out
  assert str(step) in os.listdir(ckpt_dir)
  assert not [d for d in os.listdir(ckpt_dir) if 'tmp' in d]  # the save was complete

  restarted = _start(module, workdir, cache)
  assert restarted.wait(timeout=600) == 0, restarted.stderr.read().decode()[-3000:]
  ours, summary = _evals(workdir)
  assert summary['restored_from_step'] == step
  assert ours == _evals(str(tmp_path / 'ref'))[0]
