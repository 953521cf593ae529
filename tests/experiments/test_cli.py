"""The shared command line: bad input ends in one ``error:`` line, never a traceback."""

import os
import subprocess
import sys

import orbax.checkpoint as ocp
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _run(module, *flags):
  proc = subprocess.run([sys.executable, '-m', f'experiments.{module}', *flags], cwd=ROOT,
                        capture_output=True, text=True, timeout=300, check=False)
  return proc.returncode, proc.stderr


@pytest.mark.parametrize('module, flag, expected', [
    ('clm_pretrain', '--config.optim.learnig_rate=1',
     'error: unknown --config field: optim.learnig_rate: Did you mean "optim.learning_rate"?'),
    ('autoencoder', '--config.modle.latent_dim=3',
     'error: unknown --config field: modle.latent_dim: Did you mean "model"?'),
    ('simclr', '--config.method.temprature=0.1',
     'error: unknown --config field: method.temprature: Did you mean "method.temperature"?'),
    ('vae', '--config.num_train_steps=abc',
     "error: flag --config.num_train_steps=abc: invalid literal for int() with base 10: 'abc'"),
    ('clm_pretrain', '--config.data.files=/nonexistent/none*.txt',
     "error: data.files: no file matches '/nonexistent/none*.txt'"),
])
def test_bad_input_is_one_error_line(module, flag, expected, tmp_path):
  rc, stderr = _run(module, f'--workdir={tmp_path / "w"}', flag,
                    f'--config.data.cache_dir={tmp_path / "cache"}')
  assert rc == 1
  assert 'Traceback' not in stderr, stderr[-3000:]
  assert stderr.rstrip().splitlines()[-1].startswith(expected), stderr[-1000:]


def test_a_field_given_twice_is_refused(tmp_path):
  # ml_collections would append the second tuple to the first: widths (4, 8, 2, 2).
  rc, stderr = _run('autoencoder', f'--workdir={tmp_path / "w"}', '--config.model.widths=(4,8)',
                    '--config.model.widths=(2,2)')
  assert rc == 1 and 'Traceback' not in stderr, stderr[-3000:]
  assert stderr.rstrip().splitlines()[-1] == (
      'error: --config.model.widths is given more than once; give it once')
  assert not (tmp_path / 'w').exists()


def test_bad_distributed_environment_is_one_error_line(tmp_path):
  env = {**os.environ, 'JAX_COORDINATOR_ADDRESS': '127.0.0.1:1', 'JAX_NUM_PROCESSES': '2',
         'JAX_PROCESS_ID': '0', 'JAX_INITIALIZATION_TIMEOUT': '10s'}
  proc = subprocess.run([sys.executable, '-m', 'experiments.mlm_pretrain', '--multiprocess',
                         f'--workdir={tmp_path / "w"}'], cwd=ROOT, env=env,
                        capture_output=True, text=True, timeout=300, check=False)
  assert proc.returncode == 1
  assert 'Traceback' not in proc.stderr, proc.stderr[-3000:]
  assert proc.stderr.rstrip().splitlines()[-1] == (
      "error: environment variable JAX_INITIALIZATION_TIMEOUT='10s' must be an integer >= 1")


def test_a_workdir_that_is_a_file_is_one_error_line(tmp_path):
  path = tmp_path / 'a_file'
  path.write_text('not a folder')
  rc, stderr = _run('autoencoder', f'--workdir={path}',
                    f'--config.data.cache_dir={tmp_path / "cache"}')
  assert rc == 1
  assert 'Traceback' not in stderr, stderr[-3000:]
  last = stderr.rstrip().splitlines()[-1]
  assert last.startswith('error: [Errno 17] File exists') and str(path) in last, last


# Runs the autoencoder through cli.run and sends SIGTERM from inside it: argv[1] says where.
#   prepare_data: before the loop, in code that catches every Exception (the signal must
#     not be swallowed); write_summary: after the loop; finished: inside the loop's handler,
#     after its last look at the flag (the "training finished" log line).
_SIGTERM_DRIVER = '''
import os, signal, sys, time
from experiments import autoencoder
from jaxssl.train import cli, loop, writers
where = sys.argv[1]
kill = lambda: os.kill(os.getpid(), signal.SIGTERM)
if where == 'prepare_data':
  real = autoencoder.prepare_data
  def prepare_data(config, workdir):
    try:
      kill()
      time.sleep(0.5)  # the handler runs here
    except Exception:
      pass
    return real(config, workdir)
  autoencoder.prepare_data = prepare_data
elif where == 'write_summary':
  real = writers.write_summary
  def write_summary(*args, **kwargs):
    kill()
    return real(*args, **kwargs)
  writers.write_summary = write_summary
else:
  real_info = loop.logging.info
  def info(msg, *args):
    if msg.startswith('training finished'):
      kill()
    return real_info(msg, *args)
  loop.logging.info = info
sys.argv = ['autoencoder'] + sys.argv[2:]
cli.run(autoencoder.get_config, autoencoder.train_and_evaluate)
'''


@pytest.mark.parametrize('where, checkpoints', [
    ('prepare_data', []),  # before the loop: nothing saved yet
    ('finished', ['2']),  # the loop's handler saw it too late to act: handed on
    ('write_summary', ['2']),  # after the loop: its checkpoint complete
])
def test_sigterm_outside_the_loop_is_one_line_and_status_143(where, checkpoints, tmp_path):
  workdir = tmp_path / 'w'
  proc = subprocess.run(
      [sys.executable, '-c', _SIGTERM_DRIVER, where, f'--workdir={workdir}',
       f'--config.data.cache_dir={tmp_path / "cache"}', '--config.num_train_steps=2',
       '--config.checkpoint_every_steps=2', '--config.eval_every_steps=0',
       '--config.optim.warmup_steps=0'],
      cwd=ROOT, capture_output=True, text=True, timeout=300, check=False)
  assert proc.returncode == 143, proc.stderr[-3000:]
  assert 'Traceback' not in proc.stderr, proc.stderr[-3000:]
  assert proc.stderr.rstrip().splitlines()[-1] == (
      'preempted (SIGTERM) outside the training loop (setup, data preparation or the final '
      'summary): saved checkpoints are kept; run the same command again to resume')
  folder = workdir / 'checkpoints'
  assert (sorted(os.listdir(folder)) if folder.exists() else []) == checkpoints
  assert not (workdir / 'summary.json').exists()


# Runs the autoencoder's smoke config through cli.run; once checkpoint 3 is complete, the
# checkpoints folder refuses new entries (os.mkdir raises EROFS below it, as on a read-only
# mount, also when running as root), so the save of step 6 fails. argv[1]: the workdir.
_READ_ONLY_DRIVER = '''
import errno, os, sys
from experiments import autoencoder
from jaxssl.train import cli
folder = os.path.join(os.path.abspath(sys.argv[1]), 'checkpoints')
mkdir = os.mkdir
def read_only_after_the_first_save(path, *args, **kwargs):
  path = os.path.abspath(os.fspath(path))
  if os.path.isdir(os.path.join(folder, '3')) and path.startswith(folder + os.sep):
    raise OSError(errno.EROFS, os.strerror(errno.EROFS), path)
  return mkdir(path, *args, **kwargs)
os.mkdir = read_only_after_the_first_save
sys.argv = ['autoencoder', '--workdir=' + sys.argv[1]] + sys.argv[2:]
cli.run(autoencoder.get_config, autoencoder.train_and_evaluate)
'''


def test_a_failed_checkpoint_save_exits_at_once_and_keeps_the_earlier_checkpoint(tmp_path):
  # Orbax 0.12 by default creates a save's folder on a background thread that the writers
  # wait on; when that mkdir failed they waited out a 300 s timeout before the process
  # could exit. The bound below is generous; the exit takes a few seconds.
  workdir, cache = tmp_path / 'w', tmp_path / 'cache'
  smoke = ['--config.num_train_steps=6', '--config.log_every_steps=2',
           '--config.eval_every_steps=0', '--config.checkpoint_every_steps=3',
           '--config.optim.warmup_steps=2', '--config.global_batch_size=16',
           '--config.model.widths=(4,8)', '--config.model.latent_dim=4',
           '--config.eval.global_batch_size=128', f'--config.data.cache_dir={cache}']
  proc = subprocess.Popen([sys.executable, '-c', _READ_ONLY_DRIVER, str(workdir), *smoke],
                          cwd=ROOT, stderr=subprocess.PIPE, text=True)
  lines = []
  try:
    for line in proc.stderr:  # until the error line (the run itself takes its time)
      lines.append(line)
      if line.startswith('error:'):
        break
    rest = proc.communicate(timeout=30)[1]  # the exit, from the error line on
  except subprocess.TimeoutExpired:
    proc.kill()
    proc.communicate()
    pytest.fail('the run did not exit within 30 s of its error line:\n' + ''.join(lines[-5:]))
  stderr = ''.join(lines) + rest
  assert proc.returncode == 1, stderr[-3000:]
  assert 'Traceback' not in stderr, stderr[-3000:]
  assert stderr.rstrip().splitlines()[-1] == (
      f"error: [Errno 30] Read-only file system: '{workdir}/checkpoints/6.orbax-checkpoint-tmp'")
  # The earlier checkpoint is intact and alone: it reads back whole.
  assert sorted(os.listdir(workdir / 'checkpoints')) == ['3']
  state = ocp.StandardCheckpointer().restore(workdir / 'checkpoints' / '3' / 'state')
  assert int(state['step']) == 3 and state['params']
