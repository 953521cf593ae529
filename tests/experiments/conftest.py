"""Session fixtures for the experiment tests: one TFDS cache, one smoke run per experiment."""

import pytest

from tests.experiments.helpers import smoke


@pytest.fixture(scope='session')
def cache_dir(tmp_path_factory):
  return str(tmp_path_factory.mktemp('cache'))


@pytest.fixture(scope='session')
def smoke_run(cache_dir, tmp_path_factory):
  """``smoke_run(module) -> (workdir, summary)``: the module's smoke config trained once per
  session (tests must not write into that workdir except to re-run the same config)."""
  runs = {}

  def get(module):
    if module not in runs:
      workdir = str(tmp_path_factory.mktemp(module.EXPERIMENT))
      runs[module] = workdir, module.train_and_evaluate(smoke(module, cache_dir), workdir)
    return runs[module]

  return get
