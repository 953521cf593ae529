"""Tests for jaxssl.data.corpus and the local_text TFDS builder."""

import hashlib
import json
import math
import os
import subprocess
import sys
import time

import ml_collections
import pytest
import tensorflow_datasets as tfds
from ml_collections import config_dict

from jaxssl.data import corpus
from jaxssl.data import text
from jaxssl.data.builders import local_text

_NO_DOWNLOAD = tfds.download.DownloadConfig(try_download_gcs=False)


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


def _framed_sha256(*contents: bytes) -> str:
  digest = hashlib.sha256()
  for data in contents:
    digest.update(len(data).to_bytes(8, 'big') + data)
  return digest.hexdigest()


@pytest.fixture(scope='module')
def pydoc_corpus(tmp_path_factory):
  cache = tmp_path_factory.mktemp('cache')
  return corpus.load_corpus(_data(cache_dir=str(cache))), cache


@pytest.fixture
def two_files(tmp_path):
  """a.txt and b.txt; b repeats a document of a."""
  (tmp_path / 'b.txt').write_text('Doc B1\n\nshared\n', encoding='utf-8')
  (tmp_path / 'a.txt').write_text(
      'Title\n=====\nDoc A1\n\nshared\n\n\nDoc   A2\r\n', encoding='utf-8')
  return tmp_path


def test_pydoc_corpus(pydoc_corpus):
  got, cache = pydoc_corpus
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
  config_name = local_text.make_config((), max_chars=2000).name
  assert os.listdir(cache / 'tfds' / 'local_text') == [config_name]


def test_files_corpus_hand_worked(two_files):
  data = _data(files=str(two_files / '*.txt'), cache_dir=str(two_files / 'cache'),
               validation_fraction=0.5)
  got = corpus.load_corpus(data)
  # a.txt first (sorted paths); the rule line goes; 'shared' of b.txt is a duplicate.
  documents = ['Title\nDoc A1', 'shared', 'Doc A2', 'Doc B1']
  keys = {d: hashlib.sha256(f'0\0{d}'.encode()).digest() for d in documents}
  held_out = sorted(documents, key=keys.__getitem__)[:2]
  assert got.validation == [d for d in documents if d in held_out]
  assert got.train == [d for d in documents if d not in held_out]
  assert got.source == f'files:{two_files}/*.txt'
  assert got.sha256 == _framed_sha256((two_files / 'a.txt').read_bytes(),
                                      (two_files / 'b.txt').read_bytes())


def test_comma_separated_globs(two_files):
  data = _data(files=f'{two_files}/b.txt, {two_files}/a*', cache_dir=str(two_files / 'cache'),
               validation_fraction=0.5)
  got = corpus.load_corpus(data)
  expected = ['Title\nDoc A1', 'shared', 'Doc A2', 'Doc B1']
  assert sorted(got.train + got.validation) == sorted(expected)


def test_held_out_depends_only_on_split_seed_and_text():
  documents = [f'document number {i}' for i in range(40)]
  mask = corpus.held_out_mask(documents, fraction=0.1, seed=3)
  assert sum(mask) == 4
  reordered = documents[::-1]
  mask_reordered = corpus.held_out_mask(reordered, fraction=0.1, seed=3)
  assert ({d for d, m in zip(documents, mask) if m}
          == {d for d, m in zip(reordered, mask_reordered) if m})
  assert corpus.held_out_mask(documents, fraction=0.1, seed=4) != mask


def test_split_seed_changes_held_out(two_files):
  cache = str(two_files / 'cache')
  pattern = str(two_files / '*.txt')
  splits = {tuple(corpus.load_corpus(_data(files=pattern, cache_dir=cache, split_seed=s,
                                           validation_fraction=0.25)).validation)
            for s in range(8)}
  assert len(splits) > 1 and all(len(v) == 1 for v in splits)


def test_no_matching_file(tmp_path):
  with pytest.raises(FileNotFoundError, match=r'data\.files.*nothing-\*\.txt'):
    corpus.load_corpus(_data(files=str(tmp_path / 'nothing-*.txt'), cache_dir=str(tmp_path)))


def test_empty_corpus(tmp_path):
  (tmp_path / 'empty.txt').write_text('  \n\n******\n\t\n', encoding='utf-8')
  with pytest.raises(ValueError, match=r'files:.*empty\.txt.*no text'):
    corpus.load_corpus(_data(files=str(tmp_path / '*.txt'), cache_dir=str(tmp_path / 'c')))


def test_invalid_utf8_names_file(tmp_path):
  (tmp_path / 'good.txt').write_text('fine text', encoding='utf-8')
  (tmp_path / 'latin1.txt').write_bytes('caf\xe9 au lait'.encode('latin-1'))
  with pytest.raises(ValueError, match=r'latin1\.txt is not valid UTF-8'):
    corpus.load_corpus(_data(files=str(tmp_path / '*.txt'), cache_dir=str(tmp_path / 'c')))


def test_too_small_corpus(tmp_path):
  (tmp_path / 'one.txt').write_text('only one document\n\nonly one document\n', encoding='utf-8')
  with pytest.raises(ValueError, match='too small'):
    corpus.load_corpus(_data(files=str(tmp_path / '*.txt'), cache_dir=str(tmp_path / 'c')))


@pytest.mark.parametrize('fraction', [0.0, 1.0, -0.1])
def test_bad_validation_fraction(two_files, fraction):
  with pytest.raises(ValueError, match='data.validation_fraction'):
    corpus.load_corpus(_data(files=str(two_files / '*.txt'), cache_dir=str(two_files / 'c'),
                             validation_fraction=fraction))


def test_changed_file_is_prepared_again(two_files):
  data = _data(files=str(two_files / '*.txt'), cache_dir=str(two_files / 'cache'),
               validation_fraction=0.5)
  before = corpus.load_corpus(data)
  (two_files / 'b.txt').write_text('Doc B1 edited\n\nnew doc\n', encoding='utf-8')
  after = corpus.load_corpus(data)
  assert before.sha256 != after.sha256
  assert 'Doc B1 edited' in after.train + after.validation
  assert 'Doc B1' not in after.train + after.validation
  assert len(os.listdir(two_files / 'cache' / 'tfds' / 'local_text')) == 2


def test_max_chars_changes_config_name(two_files):
  paths = [str(two_files / 'a.txt')]
  names = {local_text.make_config(paths, max_chars=m).name for m in (100, 200)}
  assert len(names) == 2 and all(n.startswith('files_') and len(n) == 22 for n in names)


def test_cache_dir_from_environment(two_files, monkeypatch):
  monkeypatch.setenv('JAXSSL_CACHE_DIR', str(two_files / 'env-cache'))
  corpus.load_corpus(_data(files=str(two_files / '*.txt'), validation_fraction=0.5))
  assert (two_files / 'env-cache' / 'tfds' / 'local_text').is_dir()


def test_stale_incomplete_dir_is_removed_not_served(two_files):
  paths = [str(two_files / 'a.txt'), str(two_files / 'b.txt')]
  config = local_text.make_config(paths, max_chars=2000)
  data_dir = two_files / 'tfds'
  stale = data_dir / 'local_text' / config.name / 'incomplete.ABC123_1.0.0'
  stale.mkdir(parents=True)
  (stale / 'dataset_info.json').write_text('{half written')
  builder = local_text.prepare(config, data_dir=data_dir)
  expected = ['Title\nDoc A1', 'shared', 'Doc A2', 'Doc B1', 'shared']  # No dedup here.
  assert local_text.read_documents(builder) == expected
  assert os.listdir(data_dir / 'local_text' / config.name) == ['1.0.0']


_LOAD_SCRIPT = """
import json, sys
import ml_collections
from jaxssl.data import corpus
got = corpus.load_corpus(ml_collections.ConfigDict(json.loads(sys.argv[1])))
print(json.dumps([got.sha256, got.train, got.validation]))
"""


def test_concurrent_preparation(tmp_path):
  for i in range(30):
    (tmp_path / f'{i:02d}.txt').write_text(f'file {i}\n\n' + 'word ' * 500, encoding='utf-8')
  data = json.dumps({'files': str(tmp_path / '*.txt'), 'cache_dir': str(tmp_path / 'cache'),
                     'validation_fraction': 0.1})
  procs = [subprocess.Popen([sys.executable, '-c', _LOAD_SCRIPT, data], stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True) for _ in range(2)]
  outputs = [p.communicate(timeout=120)[0] for p in procs]
  assert [p.returncode for p in procs] == [0, 0]
  first, second = (json.loads(o.strip().split('\n')[-1]) for o in outputs)
  assert first == second
  # 30 titles + the shared 'word ...' text, cut into 2000 + 499 characters.
  assert len(first[1]) + len(first[2]) == 32
  root = tmp_path / 'cache' / 'tfds' / 'local_text'
  (config_dir,) = os.listdir(root)
  assert os.listdir(root / config_dir) == ['1.0.0']


# Named TFDS datasets.


@pytest.fixture(scope='module')
def prepared_local_text(tmp_path_factory):
  """A `local_text` dataset prepared in its own data_dir, as a named dataset."""
  root = tmp_path_factory.mktemp('named')
  (root / 'src.txt').write_text(
      '\n\n'.join(f'Paragraph {i} of a small named dataset.' for i in range(20)),
      encoding='utf-8')
  config = local_text.make_config([str(root / 'src.txt')], max_chars=2000)
  data_dir = root / 'tfds'
  local_text.prepare(config, data_dir=data_dir)
  return f'local_text/{config.name}', str(data_dir)


def test_named_dataset_array_record(prepared_local_text):
  name, data_dir = prepared_local_text
  got = corpus.load_corpus(_data(name=name, data_dir=data_dir, validation_fraction=0.1))
  expected = [f'Paragraph {i} of a small named dataset.' for i in range(20)]
  assert got.source == f'tfds:{name}'
  assert len(got.validation) == 2
  assert sorted(got.train + got.validation) == sorted(expected)
  assert got.sha256 == corpus.load_corpus(_data(name=name, data_dir=data_dir)).sha256


def test_named_dataset_max_documents(prepared_local_text):
  name, data_dir = prepared_local_text
  got = corpus.load_corpus(_data(name=name, data_dir=data_dir, max_documents=5,
                                 validation_fraction=0.2))
  assert sorted(got.train + got.validation) == sorted(
      f'Paragraph {i} of a small named dataset.' for i in range(5))


def test_named_dataset_eval_split(prepared_local_text):
  name, data_dir = prepared_local_text
  got = corpus.load_corpus(_data(name=name, data_dir=data_dir, train_split='train[:15]',
                                 eval_split='train[15:]'))
  assert got.train == [f'Paragraph {i} of a small named dataset.' for i in range(15)]
  assert got.validation == [f'Paragraph {i} of a small named dataset.' for i in range(15, 20)]


def test_named_dataset_bad_split_and_key(prepared_local_text):
  name, data_dir = prepared_local_text
  with pytest.raises(ValueError, match='data.train_split'):
    corpus.load_corpus(_data(name=name, data_dir=data_dir, train_split='test'))
  with pytest.raises(ValueError, match='data.text_key'):
    corpus.load_corpus(_data(name=name, data_dir=data_dir, text_key='content'))
  with pytest.raises(ValueError, match='data.max_documents'):
    corpus.load_corpus(_data(name=name, data_dir=data_dir, max_documents=0))


_TFRECORD_SCRIPT = """
import json, sys
import ml_collections, tensorflow_datasets as tfds
from jaxssl.data import corpus
from jaxssl.data.builders import local_text
config = local_text.make_config([sys.argv[1]], max_chars=2000)
local_text.LocalText(config=config, data_dir=sys.argv[2]).download_and_prepare(
    file_format='tfrecord', download_config=tfds.download.DownloadConfig(try_download_gcs=False))
data = ml_collections.ConfigDict(dict(name='local_text/' + config.name, data_dir=sys.argv[2],
                                      validation_fraction=0.5))
got = corpus.load_corpus(data)
print(json.dumps([got.train, got.validation]))
"""


def test_named_dataset_tfrecord(tmp_path):
  # In a subprocess: reading tfrecord imports TensorFlow, kept out of this process.
  (tmp_path / 'src.txt').write_text('alpha\n\nbeta\n\ngamma\n\ndelta\n', encoding='utf-8')
  out = subprocess.run(
      [sys.executable, '-c', _TFRECORD_SCRIPT, str(tmp_path / 'src.txt'), str(tmp_path / 'tfds')],
      capture_output=True, text=True, timeout=180, check=True).stdout
  train, validation = json.loads(out.strip().split('\n')[-1])
  assert len(validation) == 2
  assert sorted(train + validation) == ['alpha', 'beta', 'delta', 'gamma']


def test_unprepared_dataset_fails_fast(tmp_path):
  start = time.monotonic()
  with pytest.raises(FileNotFoundError) as info:
    corpus.load_corpus(_data(name='tiny_shakespeare', data_dir=str(tmp_path)))
  assert time.monotonic() - start < 10
  message = str(info.value)
  assert "data.name='tiny_shakespeare'" in message
  assert str(tmp_path) in message
  assert 'tfds build tiny_shakespeare' in message


def test_unknown_dataset_name(tmp_path):
  with pytest.raises(ValueError, match=r"data\.name='no_such_dataset_xyz'"):
    corpus.load_corpus(_data(name='no_such_dataset_xyz', data_dir=str(tmp_path)))


_SHAKESPEARE = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__)))), '..', 'shared', 'data', 'tinyshakespeare.txt')


@pytest.mark.skipif(not os.path.exists(_SHAKESPEARE),
                    reason='../shared/data/tinyshakespeare.txt is absent (a user checkout)')
def test_tiny_shakespeare_from_shared_data(tmp_path):
  with open(_SHAKESPEARE, 'rb') as f:
    raw = f.read()
  assert hashlib.md5(raw).hexdigest() == '6fb458f1232090904fb40fe944165e91'  # shared README
  loaded = corpus.load_corpus(_data(files=_SHAKESPEARE, cache_dir=str(tmp_path),
                                    validation_fraction=0.1))
  assert loaded.sha256 == _framed_sha256(raw)
  documents = loaded.train + loaded.validation
  # Speeches are separated by blank lines; none is longer than max_document_chars.
  assert len(documents) > 7000 and max(len(d) for d in documents) <= 2000
  assert all('\n\n' not in d for d in documents)
  assert len(loaded.validation) == math.ceil(0.1 * len(documents))
  assert not set(loaded.train) & set(loaded.validation)
  assert documents[0].startswith('First Citizen:')
