"""Session fixtures: one TFDS cache, one smoke run per experiment, one GCS emulator."""

import itertools

import pytest

from jaxssl import fileio
from tests import gcs_emulator as emulator_lib
from tests.experiments.helpers import counting, smoke


@pytest.fixture(scope='session')
def cache_dir(tmp_path_factory):
  return str(tmp_path_factory.mktemp('cache'))


@pytest.fixture(scope='session')
def smoke_run(cache_dir, tmp_path_factory):
  """``smoke_run(module) -> (workdir, summary)``: the module's smoke config trained once per
  session (tests must not write into that workdir except to re-run the same config).
  ``smoke_run.train_step_compilations[module]``: the traces and compilations of its
  ``train_step`` during that run (``helpers.counting``)."""
  runs = {}

  def get(module):
    if module not in runs:
      workdir = str(tmp_path_factory.mktemp(module.EXPERIMENT))
      with counting() as counts:
        runs[module] = workdir, module.train_and_evaluate(smoke(module, cache_dir), workdir)
      get.train_step_compilations[module] = counts
    return runs[module]

  get.train_step_compilations = {}
  return get


@pytest.fixture(scope='session')
def gcs_emulator(tmp_path_factory):
  """A GCS emulator on 127.0.0.1 (``tests.gcs_emulator.Emulator``) with an empty bucket
  ``gcs_emulator.BUCKET``, started on first use and stopped at the end of the session."""
  emulator = emulator_lib.Emulator(str(tmp_path_factory.mktemp('gcs') / 'emulator.log'))
  yield emulator
  emulator.stop()


_prefixes = itertools.count()


@pytest.fixture
def gcs(gcs_emulator, monkeypatch, request):
  """``gs://<bucket>/<test name>-<n>``: a fresh folder in the emulator, with this process's
  STORAGE_EMULATOR_HOST (and what ``fileio`` derives from it) set for the test."""
  monkeypatch.setenv('STORAGE_EMULATOR_HOST', gcs_emulator.url)
  for name, value in fileio.derived_environment().items():
    monkeypatch.setenv(name, value)
  fileio.configure_storage()
  name = request.node.name.replace('[', '-').replace(']', '')
  return f'gs://{gcs_emulator.bucket}/{name}-{next(_prefixes)}'
