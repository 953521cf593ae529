"""Session fixtures: one TFDS cache, one smoke run per experiment."""

import pytest

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
