"""The shared command line: bad input ends in one ``error:`` line, never a traceback."""

import os
import subprocess
import sys

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
