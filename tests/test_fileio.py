"""Atomic writes: the whole new content or the old file, and no temporary left behind."""

import os

import pytest

from jaxssl import fileio


def test_write_replaces_the_file_and_leaves_no_temporary(tmp_path):
  path = tmp_path / 'sub' / 'summary.json'
  fileio.write_atomic(path, 'old\n')
  fileio.write_atomic(path, b'\x00new')
  assert path.read_bytes() == b'\x00new'
  assert os.listdir(path.parent) == ['summary.json']


def test_a_failed_write_keeps_the_old_file_and_removes_its_temporary(tmp_path):
  path = tmp_path / 'results.md'
  fileio.write_atomic(path, 'good')
  with pytest.raises(TypeError):
    fileio.write_atomic(path, 12345)  # neither str nor bytes: fails while writing
  assert path.read_text() == 'good'
  assert os.listdir(tmp_path) == ['results.md']
