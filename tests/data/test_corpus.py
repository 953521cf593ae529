"""Tests for jaxssl.data.corpus: sources, scanning (dedup, held out), streaming documents."""

import hashlib
import math
import os
import subprocess
import sys
import time
import types

import ml_collections
import numpy as np
import pytest
from ml_collections import config_dict

from jaxssl.data import corpus
from jaxssl.data import text
from tests.data import text_builder


def _data(**overrides) -> ml_collections.ConfigDict:
  """The `data` config as the trainer defines it, with `overrides`."""
  data = ml_collections.ConfigDict({
      'name': 'pydoc',
      'files': config_dict.placeholder(str),
      'data_dir': config_dict.placeholder(str),
      'cache_dir': config_dict.placeholder(str),
      'text_key': 'text',
      'train_split': 'train',
      'eval_split': config_dict.placeholder(str),
      'validation_fraction': 0.05,
      'split_seed': 0,
      'max_document_chars': 2000,
      'max_documents': config_dict.placeholder(int),
  })
  data.update(overrides)
  return data


def _load(data):
  """Both splits' documents in source order, through open_source, scan and documents."""
  source = corpus.open_source(data)
  plan = corpus.scan(source, data)
  docs = list(corpus.documents(source, plan, 'test'))
  return types.SimpleNamespace(
      train=[d for s, d in docs if s == corpus.TRAIN],
      validation=[d for s, d in docs if s == corpus.EVAL],
      sha256=plan.sha256, source=source.source, plan=plan)


def _framed_sha256(*contents: bytes) -> str:
  digest = hashlib.sha256()
  for data in contents:
    digest.update(len(data).to_bytes(8, 'big') + data)
  return digest.hexdigest()


@pytest.fixture
def two_files(tmp_path):
  """a.txt and b.txt; b repeats a document of a."""
  (tmp_path / 'b.txt').write_text('Doc B1\n\nshared\n', encoding='utf-8')
  (tmp_path / 'a.txt').write_text(
      'Title\n=====\nDoc A1\n\nshared\n\n\nDoc   A2\r\n', encoding='utf-8')
  return tmp_path


def test_pydoc_corpus():
  got = _load(_data())
  documents = list(dict.fromkeys(
      text.split_documents(text.clean_text(text.pydoc_text()), max_chars=2000)))
  assert got.source == 'pydoc'
  assert got.sha256 == _framed_sha256(text.pydoc_text().encode('utf-8'))
  assert len(got.validation) == math.ceil(0.05 * len(documents))
  assert len(got.train) + len(got.validation) == len(documents)
  assert not set(got.train) & set(got.validation)
  # Both splits keep source order.
  position = {doc: i for i, doc in enumerate(documents)}
  assert [position[d] for d in got.train] == sorted(position[d] for d in got.train)
  assert [position[d] for d in got.validation] == sorted(position[d] for d in got.validation)


def test_files_corpus_hand_worked(two_files):
  got = _load(_data(files=str(two_files / '*.txt'), validation_fraction=0.5))
  # a.txt first (sorted paths); the rule line goes; 'shared' of b.txt is a duplicate.
  documents = ['Title\nDoc A1', 'shared', 'Doc A2', 'Doc B1']
  keys = {d: hashlib.sha256(f'0\0{d}'.encode()).digest() for d in documents}
  held_out = sorted(documents, key=keys.__getitem__)[:2]
  assert got.validation == [d for d in documents if d in held_out]
  assert got.train == [d for d in documents if d not in held_out]
  assert got.source == f'files:{two_files}/*.txt'
  assert got.sha256 == _framed_sha256((two_files / 'a.txt').read_bytes(),
                                      (two_files / 'b.txt').read_bytes())
  # The duplicate 'shared' (5th in the stream) is dropped.
  expected = [corpus.EVAL if d in held_out else corpus.TRAIN for d in documents]
  assert list(got.plan.split) == expected + [corpus.DROPPED]


def test_comma_separated_globs(two_files):
  got = _load(_data(files=f'{two_files}/b.txt, {two_files}/a*', validation_fraction=0.5))
  expected = ['Title\nDoc A1', 'shared', 'Doc A2', 'Doc B1']
  assert sorted(got.train + got.validation) == sorted(expected)


def test_held_out_depends_only_on_split_seed_and_text(tmp_path):
  documents = [f'document number {i}' for i in range(40)]

  def held_out(order, seed):
    (tmp_path / 'c.txt').write_text('\n\n'.join(order), encoding='utf-8')
    return set(_load(_data(files=str(tmp_path / 'c.txt'), validation_fraction=0.1,
                           split_seed=seed)).validation)

  first = held_out(documents, 3)
  assert len(first) == 4
  # The 4 smallest sha256(seed, text), worked out here independently.
  keys = sorted(documents, key=lambda d: hashlib.sha256(f'3\0{d}'.encode()).digest())
  assert first == set(keys[:4])
  assert held_out(documents[::-1], 3) == first
  assert held_out(documents, 4) != first


def test_no_matching_file(tmp_path):
  with pytest.raises(FileNotFoundError, match=r'data\.files.*nothing-\*\.txt'):
    corpus.open_source(_data(files=str(tmp_path / 'nothing-*.txt')))


def test_a_folder_given_as_files_is_named(tmp_path):
  (tmp_path / 'texts').mkdir()
  with pytest.raises(FileNotFoundError, match=r"texts' is a folder.*texts/\*\.txt"):
    corpus.open_source(_data(files=str(tmp_path / 'texts')))


def test_empty_corpus(tmp_path):
  (tmp_path / 'empty.txt').write_text('  \n\n******\n\t\n', encoding='utf-8')
  with pytest.raises(ValueError, match=r'files:.*\.txt: no text'):
    _load(_data(files=str(tmp_path / '*.txt')))


def test_invalid_utf8_names_file(tmp_path):
  (tmp_path / 'good.txt').write_text('fine text', encoding='utf-8')
  (tmp_path / 'latin1.txt').write_bytes('caf\xe9 au lait'.encode('latin-1'))
  with pytest.raises(ValueError, match=r'latin1\.txt is not valid UTF-8 \(byte 3'):
    _load(_data(files=str(tmp_path / '*.txt')))


def test_too_small_corpus(tmp_path):
  (tmp_path / 'one.txt').write_text('only one document\n\nonly one document\n', encoding='utf-8')
  with pytest.raises(ValueError, match='too small'):
    _load(_data(files=str(tmp_path / '*.txt')))


@pytest.mark.parametrize('fraction', [0.0, 1.0, -0.1])
def test_bad_validation_fraction(two_files, fraction):
  with pytest.raises(ValueError, match='data.validation_fraction'):
    _load(_data(files=str(two_files / '*.txt'), validation_fraction=fraction))


def test_fingerprint_reads_metadata_only_and_sees_edits(two_files):
  data = _data(files=str(two_files / '*.txt'), validation_fraction=0.5)
  before = corpus.open_source(data).fingerprint
  assert corpus.open_source(data).fingerprint == before
  os.utime(two_files / 'a.txt', ns=(1, 1))  # same bytes, another mtime
  assert corpus.open_source(data).fingerprint != before


def test_an_edit_between_scan_and_read_is_caught(two_files):
  data = _data(files=str(two_files / '*.txt'), validation_fraction=0.5)
  source = corpus.open_source(data)
  plan = corpus.scan(source, data)
  (two_files / 'b.txt').write_text('Doc B1 edited\n\nshared\n', encoding='utf-8')
  with pytest.raises(RuntimeError, match='changed while it was being prepared'):
    list(corpus.documents(source, plan, 'test'))


def test_streaming_reads_in_chunks(tmp_path, monkeypatch):
  # A file larger than one chunk: the documents equal the whole-text functions' result.
  monkeypatch.setattr(corpus, '_CHUNK_BYTES', 7)
  raw = text.pydoc_text()[:20000]
  (tmp_path / 'p.txt').write_text(raw, encoding='utf-8')
  got = _load(_data(files=str(tmp_path / 'p.txt'), validation_fraction=0.1))
  expected = list(dict.fromkeys(text.split_documents(text.clean_text(raw), max_chars=2000)))
  assert sorted(got.train + got.validation) == sorted(expected)


# Named TFDS datasets.


@pytest.fixture(scope='module')
def named(tmp_path_factory):
  data_dir = str(tmp_path_factory.mktemp('named') / 'tfds')
  return text_builder.prepare('paragraphs', data_dir), data_dir


def test_named_dataset_array_record(named):
  name, data_dir = named
  got = _load(_data(name=name, data_dir=data_dir, validation_fraction=0.1))
  assert got.source == f'tfds:{name}'
  assert len(got.validation) == 2
  assert sorted(got.train + got.validation) == sorted(text_builder.TEXTS['paragraphs'])
  assert got.sha256 == _load(_data(name=name, data_dir=data_dir)).sha256


def test_named_dataset_max_documents(named):
  name, data_dir = named
  got = _load(_data(name=name, data_dir=data_dir, max_documents=5, validation_fraction=0.2))
  assert sorted(got.train + got.validation) == sorted(text_builder.TEXTS['paragraphs'][:5])


def test_named_dataset_eval_split(named):
  name, data_dir = named
  got = _load(_data(name=name, data_dir=data_dir, train_split='train[:15]',
                    eval_split='train[15:]'))
  assert got.train == text_builder.TEXTS['paragraphs'][:15]
  assert got.validation == text_builder.TEXTS['paragraphs'][15:]


def test_named_dataset_bad_split_and_key(named):
  name, data_dir = named
  with pytest.raises(ValueError, match='data.train_split'):
    corpus.open_source(_data(name=name, data_dir=data_dir, train_split='test'))
  with pytest.raises(ValueError, match='data.text_key'):
    corpus.open_source(_data(name=name, data_dir=data_dir, text_key='content'))
  with pytest.raises(ValueError, match='data.max_documents'):
    corpus.open_source(_data(name=name, data_dir=data_dir, max_documents=0))


_TFRECORD_SCRIPT = """
import json, sys
import ml_collections
from jaxssl.data import corpus
from tests.data import text_builder
name = text_builder.prepare('greek', sys.argv[1], file_format='tfrecord')
data = ml_collections.ConfigDict(dict(name=name, data_dir=sys.argv[1], validation_fraction=0.5))
source = corpus.open_source(data)
docs = list(corpus.documents(source, corpus.scan(source, data), 'test'))
print(json.dumps(docs))
"""


def test_named_dataset_tfrecord(tmp_path):
  # In a subprocess: reading tfrecord imports TensorFlow, kept out of this process.
  out = subprocess.run([sys.executable, '-c', _TFRECORD_SCRIPT, str(tmp_path / 'tfds')],
                       capture_output=True, text=True, timeout=180, check=True,
                       cwd=os.path.dirname(os.path.dirname(os.path.dirname(__file__)))).stdout
  docs = [tuple(d) for d in __import__('json').loads(out.strip().split('\n')[-1])]
  assert sorted(d for _, d in docs) == ['alpha', 'beta', 'delta', 'gamma']
  assert sum(s == corpus.EVAL for s, _ in docs) == 2


def test_unprepared_dataset_fails_fast(tmp_path):
  start = time.monotonic()
  with pytest.raises(FileNotFoundError) as info:
    corpus.open_source(_data(name='tiny_shakespeare', data_dir=str(tmp_path)))
  assert time.monotonic() - start < 10
  message = str(info.value)
  assert "data.name='tiny_shakespeare'" in message
  assert str(tmp_path) in message
  assert 'tfds build tiny_shakespeare' in message


def test_unknown_dataset_name(tmp_path):
  with pytest.raises(ValueError, match=r"data\.name='no_such_dataset_xyz'"):
    corpus.open_source(_data(name='no_such_dataset_xyz', data_dir=str(tmp_path)))


_SHAKESPEARE = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__)))), '..', 'shared', 'data', 'tinyshakespeare.txt')


@pytest.mark.skipif(not os.path.exists(_SHAKESPEARE),
                    reason='../shared/data/tinyshakespeare.txt is absent (a user checkout)')
def test_tiny_shakespeare_from_shared_data():
  with open(_SHAKESPEARE, 'rb') as f:
    raw = f.read()
  assert hashlib.md5(raw).hexdigest() == '6fb458f1232090904fb40fe944165e91'  # shared README
  loaded = _load(_data(files=_SHAKESPEARE, validation_fraction=0.1))
  assert loaded.sha256 == _framed_sha256(raw)
  documents = loaded.train + loaded.validation
  # Speeches are separated by blank lines; none is longer than max_document_chars.
  assert len(documents) > 7000 and max(len(d) for d in documents) <= 2000
  assert all('\n\n' not in d for d in documents)
  assert len(loaded.validation) == math.ceil(0.1 * len(documents))
  assert np.count_nonzero(loaded.plan.split == corpus.DROPPED) == (
      loaded.plan.split.size - len(documents))
