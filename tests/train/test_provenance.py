"""The reproducibility record: versions, git commit, one record per start."""

import json
import subprocess

import jax
import ml_collections
import pytest

from jaxssl.train import provenance, workdir


def test_versions_are_the_installed_ones_and_missing_is_none():
  versions = provenance.package_versions(('jax', 'no-such-distribution-xyz'))
  assert versions == {'jax': jax.__version__, 'no-such-distribution-xyz': None}


def test_git_state_of_a_fresh_repository(tmp_path):
  def git(*args):
    return subprocess.run(['git', '-C', str(tmp_path), *args], capture_output=True,
                          text=True, check=True).stdout.strip()
  try:
    git('init', '-q')
  except (OSError, subprocess.CalledProcessError):
    pytest.skip('no git executable')
  (tmp_path / 'a.txt').write_text('1')
  git('add', 'a.txt')
  git('-c', 'user.name=t', '-c', 'user.email=t@t', 'commit', '-qm', 'one')
  head = git('rev-parse', 'HEAD')
  assert provenance.git_state(str(tmp_path)) == {'git_commit': head, 'git_dirty': False}
  (tmp_path / 'a.txt').write_text('2')
  assert provenance.git_state(str(tmp_path)) == {'git_commit': head, 'git_dirty': True}
  (tmp_path / 'a.txt').write_text('1')
  (tmp_path / '.gitignore').write_text('runs/\n')
  git('add', '.gitignore')
  git('-c', 'user.name=t', '-c', 'user.email=t@t', 'commit', '-qm', 'two')
  head = git('rev-parse', 'HEAD')
  (tmp_path / 'runs').mkdir()
  (tmp_path / 'runs' / 'summary.json').write_text('{}')  # ignored: still clean
  assert provenance.git_state(str(tmp_path)) == {'git_commit': head, 'git_dirty': False}
  (tmp_path / 'my_experiment.py').write_text('')  # a new file the run may have used
  assert provenance.git_state(str(tmp_path)) == {'git_commit': head, 'git_dirty': True}


def test_no_repository_gives_none(tmp_path_factory):
  plain = tmp_path_factory.mktemp('plain')
  assert provenance.git_state(str(plain)) == {'git_commit': None, 'git_dirty': None}


def test_each_start_appends_a_record(tmp_path):
  config = ml_collections.ConfigDict({'seed': 7})
  workdir.start(str(tmp_path), 'kmeans', config)
  workdir.start(str(tmp_path), 'kmeans', config)
  records = json.loads((tmp_path / 'run_info.json').read_text())
  assert len(records) == 2
  for r in records:
    assert r['experiment'] == 'kmeans' and r['seed'] == 7
    assert r['versions']['jax'] == jax.__version__
    assert r['device_count'] == jax.device_count() and r['backend'] == jax.default_backend()
  assert json.loads((tmp_path / 'config.json').read_text()) == {'seed': 7}


def test_a_damaged_record_file_is_named(tmp_path):
  (tmp_path / 'run_info.json').write_text('{"a": 1}')
  with pytest.raises(ValueError, match='run_info.json must hold a JSON list'):
    provenance.append_run_record(str(tmp_path), {'x': 1})
  (tmp_path / 'run_info.json').write_text('[{"x": ')
  with pytest.raises(ValueError, match='run_info.json is not readable JSON'):
    provenance.append_run_record(str(tmp_path), {'x': 1})
