"""A workdir in a bucket (the local GCS emulator): a run that crashes after a checkpoint
resumes and ends with a local run's results; from the command line, where jaxssl reaches the
emulator only through STORAGE_EMULATOR_HOST (the child processes get none of the variables
``fileio`` derives from it), the same after a real SIGKILL (slow), and a missing bucket or a
silent emulator is one error line naming the workdir.
"""

import json
import os
import signal
import struct
import subprocess
import sys
import time

import numpy as np
import pytest

from experiments import autoencoder, mlm_pretrain
from jaxssl import fileio
from jaxssl.data import text
from tests import gcs_emulator as emulator_lib
from tests.data import image_builder
from jaxssl.train import workdir as workdir_lib
from tests.experiments.helpers import command_flags, evals, fail_after, smoke

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
N = 600  # checkpoint cadence; the run has 2N steps, about 3 s after the step-N checkpoint
# What fileio derives from STORAGE_EMULATOR_HOST, kept from the children.
DERIVED = set(fileio.derived_environment({'STORAGE_EMULATOR_HOST': 'x'})) | {
    'FSSPEC_GCS_TOKEN'}


def _env(emulator_url):
  env = {k: v for k, v in os.environ.items() if k not in DERIVED}
  env['PYTHONPATH'] = os.pathsep.join([ROOT, *filter(None, [env.get('PYTHONPATH')])])
  if emulator_url:
    env['STORAGE_EMULATOR_HOST'] = emulator_url
  return env


def _start(workdir, cache_dir, cwd, emulator_url=None, **overrides):
  """``python -m experiments.autoencoder`` on its smoke config (2N steps), run in ``cwd``
  (so a URI taken for a local path shows there)."""
  config = autoencoder.smoke_config()
  config.num_train_steps, config.checkpoint_every_steps, config.log_every_steps = 2 * N, N, 200
  config.data.cache_dir = cache_dir
  for name, value in overrides.items():
    config[name] = value
  return subprocess.Popen(
      [sys.executable, '-m', 'experiments.autoencoder', f'--workdir={workdir}',
       *command_flags(autoencoder, config)], cwd=cwd, env=_env(emulator_url),
      stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def _digits_idx() -> dict[str, bytes]:
  """scikit-learn's digits as an IDX pair (plain, uint8 [N, 8, 8] and labels [N])."""
  images, labels = image_builder.digits()
  def idx(array):
    return struct.pack('>BBBB', 0, 0, 0x08, array.ndim) + struct.pack(
        f'>{array.ndim}I', *array.shape) + array.astype(np.uint8).tobytes()
  return {'train-images-idx3-ubyte': idx(images[..., 0]), 'train-labels-idx1-ubyte': idx(labels)}


def test_images_cache_and_workdir_in_a_bucket_resume_after_a_crash_to_the_local_results(
    gcs, tmp_path, monkeypatch):
  # An image experiment with every path in the bucket: its IDX files, the decoded images and
  # the workdir; crashed after its step-3 checkpoint and resumed, it ends with the results of
  # an uninterrupted run on local copies of the same files.
  (tmp_path / 'local').mkdir()
  for name, data in _digits_idx().items():
    (tmp_path / 'local' / name).write_bytes(data)
    fileio.write_atomic(f'{gcs}/idx/{name}', data)
  local = smoke(autoencoder, str(tmp_path / 'cache'),
                **{'data.files': str(tmp_path / 'local' / '*-ubyte')})
  reference = autoencoder.train_and_evaluate(local, str(tmp_path / 'ref'))
  monkeypatch.chdir(tmp_path / 'local')  # a URI taken for a local path would be written here
  config = smoke(autoencoder, f'{gcs}/cache', **{'data.files': f'{gcs}/idx/*-ubyte'})
  workdir = f'{gcs}/run'
  fail_after(3, autoencoder, config, workdir)  # crashes after step 3 and its checkpoint
  resumed = autoencoder.train_and_evaluate(config, workdir)
  assert resumed['restored_from_step'] == 3
  assert evals(resumed) == evals(reference)
  assert resumed['data/sha256'] == reference['data/sha256']
  assert evals(workdir_lib.finished_summary(workdir, autoencoder.EXPERIMENT, config)) == evals(
      reference)
  assert fileio.path(f'{gcs}/cache/images').is_dir()
  assert sorted(os.listdir(tmp_path / 'local')) == sorted(_digits_idx())


def test_the_masked_lm_with_corpus_cache_and_workdir_in_a_bucket_matches_a_local_run(
    gcs, tmp_path, monkeypatch):
  # The main job with every path in the bucket: its text files, the prepared corpus and the
  # workdir; crashed after its step-3 checkpoint and resumed, it ends with the results of an
  # uninterrupted run on a local copy of the same files.
  pydoc = text.pydoc_text()
  corpus = pydoc[:len(pydoc) // 4]
  (tmp_path / 'local').mkdir()
  (tmp_path / 'local' / 'a.txt').write_text(corpus, encoding='utf-8')
  fileio.write_atomic(f'{gcs}/corpus/a.txt', corpus)
  local = smoke(mlm_pretrain, str(tmp_path / 'cache'),
                **{'data.files': str(tmp_path / 'local' / '*.txt')})
  reference = mlm_pretrain.train_and_evaluate(local, str(tmp_path / 'ref'))
  monkeypatch.chdir(tmp_path / 'local')  # a URI taken for a local path would be written here
  config = smoke(mlm_pretrain, f'{gcs}/cache', **{'data.files': f'{gcs}/corpus/*.txt'})
  workdir = f'{gcs}/run'
  fail_after(3, mlm_pretrain, config, workdir)
  resumed = mlm_pretrain.train_and_evaluate(config, workdir)
  assert resumed['restored_from_step'] == 3
  assert evals(resumed) == evals(reference)
  assert resumed['data/sha256'] == reference['data/sha256']
  assert resumed['data/prepared'].startswith(f'{gcs}/cache/text/')
  assert fileio.path(f'{workdir}/tokenizer.model').read_bytes() == (
      tmp_path / 'ref' / 'tokenizer.model').read_bytes()
  assert sorted(os.listdir(tmp_path / 'local')) == ['a.txt']


@pytest.mark.slow
def test_sigkill_in_a_bucket_then_restart_matches_an_uninterrupted_run(gcs, gcs_emulator,
                                                                      tmp_path):
  cache, cwd = str(tmp_path / 'cache'), tmp_path / 'cwd'
  cwd.mkdir()
  reference = _start(str(tmp_path / 'ref'), cache, cwd)
  assert reference.wait(timeout=600) == 0, reference.stderr.read()[-3000:]
  with open(tmp_path / 'ref' / 'summary.json', encoding='utf-8') as f:
    expected = json.load(f)

  workdir = f'{gcs}/run'  # this process reads it through the emulator too (``gcs``)
  prefix = workdir.removeprefix(f'gs://{gcs_emulator.bucket}/')
  proc = _start(workdir, cache, cwd, gcs_emulator.url)
  committed = f'{prefix}/checkpoints/{N}/commit_success.txt'  # Orbax's marker in a bucket
  deadline = time.time() + 600
  while (committed not in gcs_emulator.object_names(f'{prefix}/checkpoints/{N}/')
         and proc.poll() is None and time.time() < deadline):
    time.sleep(0.05)
  assert proc.poll() is None, f'the run ended before it could be killed (raise N): {proc.stderr.read()[-3000:]}'
  proc.send_signal(signal.SIGKILL)
  proc.wait()
  assert f'{prefix}/summary.json' not in gcs_emulator.object_names(prefix)

  restarted = _start(workdir, cache, cwd, gcs_emulator.url)
  assert restarted.wait(timeout=600) == 0, restarted.stderr.read()[-3000:]
  summary = json.loads(fileio.read_text(f'{workdir}/summary.json'))
  assert summary['restored_from_step'] == N and summary['step'] == 2 * N
  assert evals(summary) == evals(expected)
  assert not os.listdir(cwd)  # nothing went to a local path
  names = gcs_emulator.object_names(prefix)
  runs = json.loads(fileio.read_text(f'{workdir}/run_info.json'))
  assert [r['experiment'] for r in runs] == ['autoencoder'] * 2
  assert len([n for n in names if '/events.out.tfevents.' in n]) == 2  # one per start
  assert {f'{prefix}/checkpoints/{s}/commit_success.txt' for s in (N, 2 * N)} <= set(names)
  assert any(n.startswith(f'{prefix}/images/') and n.endswith('.png') for n in names)


@pytest.mark.parametrize('case', ['no_bucket', 'silent_emulator'])
def test_a_missing_bucket_or_silent_emulator_is_one_error_line(case, gcs_emulator, tmp_path):
  if case == 'no_bucket':
    workdir, url = 'gs://no-such-bucket/run', gcs_emulator.url
    expected = f'error: workdir {workdir} is not writable'
  else:
    workdir, url = f'gs://{gcs_emulator.bucket}/run', f'http://127.0.0.1:{emulator_lib.free_port()}'
    expected = f'error: {workdir}: the storage emulator at {url} (STORAGE_EMULATOR_HOST) does not'
  start = time.monotonic()
  proc = _start(workdir, str(tmp_path / 'cache'), tmp_path, url)
  stderr = proc.communicate(timeout=300)[1]
  assert proc.returncode == 1 and 'Traceback' not in stderr, stderr[-3000:]
  assert stderr.rstrip().splitlines()[-1].startswith(expected), stderr[-1000:]
  assert time.monotonic() - start < 60  # not gcsfs's and tensorstore's minutes of retries
