"""Tests for jaxssl.data.token_cache and lm_data.eval_rows: prepare once, read rows by index."""

import hashlib
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from jaxssl.data import corpus
from jaxssl.data import lm_data
from jaxssl.data import packing
from jaxssl.data import token_cache
from jaxssl.data import tokenizer as tokenizer_lib

_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _data(files, **overrides):
  data = lm_data.data_config(vocab_size=120, seq_len=16)
  data.files = files
  data.validation_fraction = 0.2
  data.update(overrides)
  return data


@pytest.fixture
def text_files(tmp_path):
  words = 'alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu'.split()
  rng = np.random.default_rng(0)
  for f in range(3):
    paragraphs = [' '.join(rng.choice(words, size=rng.integers(3, 30))) for _ in range(25)]
    (tmp_path / f'{f}.txt').write_text('\n\n'.join(paragraphs + ['a repeated paragraph']),
                                       encoding='utf-8')
  return tmp_path


def _documents(data):
  source = corpus.open_source(data)
  docs = list(corpus.documents(source, corpus.scan(source, data), 'test'))
  return ([d for s, d in docs if s == corpus.TRAIN], [d for s, d in docs if s == corpus.EVAL])


@pytest.mark.parametrize('kind', [packing.MLM, packing.CAUSAL])
def test_rows_equal_packing_the_encoded_documents(text_files, tmp_path, kind):
  data = _data(str(text_files / '*.txt'))
  got = token_cache.prepare(data, kind=kind, cache_dir=tmp_path / 'cache')
  train, held_out = _documents(data)
  tok = got.tokenizer
  assert tok.vocab_size > tokenizer_lib.NUM_SPECIAL
  for docs, rows in ((train, got.train), (held_out, got.eval)):
    ids = tok.encode(docs)
    packer = packing.RowPacker(kind, seq_len=16, start_id=tokenizer_lib.CLS_ID,
                               end_id=tokenizer_lib.SEP_ID, pad_id=tokenizer_lib.PAD_ID)
    parts = [packer.add(ids), packer.finish()]
    for key in token_cache.ROW_KEYS:
      np.testing.assert_array_equal(rows[key].read_all(),
                                    np.concatenate([p[key] for p in parts]))
  np.testing.assert_array_equal(
      got.unigram_counts, np.bincount(np.concatenate(tok.encode(train)), minlength=tok.vocab_size))
  meta = got.meta
  assert (meta['num_train_documents'], meta['num_eval_documents']) == (len(train), len(held_out))
  assert meta['num_eval_bytes'] == sum(len(d.encode()) for d in held_out)
  assert meta['dtype'] == 'uint16'
  # The tokenizer learned from every training document (they fit the default budget).
  assert meta['num_tokenizer_documents'] == len(train)
  assert meta['tokenizer_sha256'] == hashlib.sha256(
      (got.path / 'tokenizer.model').read_bytes()).hexdigest()


def test_a_prepared_corpus_is_opened_without_reading_it(text_files, tmp_path, monkeypatch):
  data = _data(str(text_files / '*.txt'))
  first = token_cache.prepare(data, kind=packing.MLM, cache_dir=tmp_path / 'cache')

  def fail(*args, **kwargs):
    raise AssertionError('the corpus was read again')

  monkeypatch.setattr(corpus, 'scan', fail)
  monkeypatch.setattr(corpus, 'documents', fail)
  again = token_cache.prepare(data, kind=packing.MLM, cache_dir=tmp_path / 'cache')
  assert again.path == first.path and again.meta == first.meta


def test_settings_and_edits_get_their_own_entry(text_files, tmp_path):
  cache = tmp_path / 'cache'
  data = _data(str(text_files / '*.txt'))
  base = token_cache.prepare(data, kind=packing.MLM, cache_dir=cache)
  for change in ({'seq_len': 12}, {'vocab_size': 100}, {'max_document_chars': 50},
                 {'split_seed': 1}):
    other = token_cache.prepare(_data(str(text_files / '*.txt'), **change), kind=packing.MLM,
                                cache_dir=cache)
    assert other.path != base.path, change
  assert token_cache.prepare(data, kind=packing.CAUSAL, cache_dir=cache).path != base.path
  (text_files / '1.txt').write_text('an edited file\n\nwith new text', encoding='utf-8')
  edited = token_cache.prepare(data, kind=packing.MLM, cache_dir=cache)
  assert edited.path != base.path and edited.meta['sha256'] != base.meta['sha256']


def test_an_entry_without_meta_is_rebuilt_not_served(text_files, tmp_path):
  data = _data(str(text_files / '*.txt'))
  cache = tmp_path / 'cache'
  good = token_cache.prepare(data, kind=packing.MLM, cache_dir=cache)
  expected = good.train['tokens'].read_all()
  (good.path / 'meta.json').unlink()  # as a killed preparation leaves it
  (good.path / 'train.tokens').write_bytes(b'half written')
  again = token_cache.prepare(data, kind=packing.MLM, cache_dir=cache)
  np.testing.assert_array_equal(again.train['tokens'].read_all(), expected)
  assert not [p for p in os.listdir(again.path) if p.endswith('.tmp')]


def test_tokenizer_sample_is_bounded_seeded_and_deterministic(text_files, tmp_path):
  data = _data(str(text_files / '*.txt'), tokenizer_sample_chars=1500)
  got = token_cache.prepare(data, kind=packing.MLM, cache_dir=tmp_path / 'a')
  train, _ = _documents(data)
  # Worked out here: training documents by sha256(split_seed, text), up to the first one past
  # 1500 characters.
  ordered = sorted(train, key=lambda d: hashlib.sha256(f'0\0{d}'.encode()).digest())
  total, expected = 0, 0
  for doc in ordered:
    total, expected = total + len(doc), expected + 1
    if total > 1500:
      break
  assert got.meta['num_tokenizer_documents'] == expected < len(train)
  assert got.meta['num_tokenizer_chars'] == total
  other_seed = token_cache.prepare(_data(str(text_files / '*.txt'), tokenizer_sample_chars=1500,
                                         split_seed=1), kind=packing.MLM, cache_dir=tmp_path / 'a')
  assert other_seed.meta['tokenizer_sha256'] != got.meta['tokenizer_sha256']


_PREPARE = """
import json, sys
from jaxssl.data import lm_data, packing, token_cache
data = lm_data.data_config(vocab_size=120, seq_len=16)
data.update(json.loads(sys.argv[1]))
got = token_cache.prepare(data, kind=packing.MLM, cache_dir=sys.argv[2])
print(json.dumps([str(got.path), got.meta]))
"""


def test_two_processes_preparing_at_once_agree(text_files, tmp_path):
  settings = json.dumps({'files': str(text_files / '*.txt'), 'validation_fraction': 0.2,
                         'tokenizer_sample_chars': 1500})
  # Two processes into one cache (racing), a third into its own: all byte-identical.
  caches = [tmp_path / 'shared', tmp_path / 'shared', tmp_path / 'own']
  procs = [subprocess.Popen([sys.executable, '-c', _PREPARE, settings, str(c)], cwd=_ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                            env={**os.environ, 'PYTHONHASHSEED': str(i)})
           for i, c in enumerate(caches)]
  outputs = [json.loads(p.communicate(timeout=120)[0].strip().split('\n')[-1]) for p in procs]
  assert [p.returncode for p in procs] == [0, 0, 0]
  assert outputs[0] == outputs[1] and outputs[0][1] == outputs[2][1]
  shared, own = outputs[0][0], outputs[2][0]
  assert sorted(os.listdir(shared)) == sorted(os.listdir(own)) == [
      'eval.segment_ids', 'eval.tokens', 'meta.json', 'tokenizer.model', 'train.segment_ids',
      'train.tokens', 'unigram.npy']
  for name in os.listdir(own):
    with open(os.path.join(shared, name), 'rb') as a, open(os.path.join(own, name), 'rb') as b:
      assert a.read() == b.read(), name


def test_eval_rows_whole_split_or_a_fixed_sample(text_files, tmp_path):
  data = _data(str(text_files / '*.txt'), seq_len=4, validation_fraction=0.5)
  got = token_cache.prepare(data, kind=packing.CAUSAL, cache_dir=tmp_path / 'cache')
  num_rows = len(got.eval['tokens'])
  everything = got.eval['tokens'].read_all()
  whole, fraction = lm_data.eval_rows(got.eval, max_rows=num_rows, seed=0)
  assert fraction == 1.0
  np.testing.assert_array_equal(whole['tokens'], everything)
  sample, fraction = lm_data.eval_rows(got.eval, max_rows=10, seed=0)
  chosen = np.sort(np.random.default_rng([0, 1]).choice(num_rows, 10, replace=False))
  np.testing.assert_array_equal(sample['tokens'], everything[chosen])
  np.testing.assert_array_equal(sample['segment_ids'],
                                got.eval['segment_ids'].read_all()[chosen])
  assert fraction == 10 / num_rows
  again, _ = lm_data.eval_rows(got.eval, max_rows=10, seed=0)
  np.testing.assert_array_equal(again['tokens'], sample['tokens'])
  other, _ = lm_data.eval_rows(got.eval, max_rows=10, seed=1)
  assert not np.array_equal(other['tokens'], sample['tokens'])


def test_a_cache_dir_that_is_a_file_fails_before_reading(text_files, tmp_path, monkeypatch):
  (tmp_path / 'a-file').write_text('x')
  monkeypatch.setattr(corpus, 'scan', lambda *a: pytest.fail('the corpus was read'))
  with pytest.raises(ValueError, match=r'data\.cache_dir=.*a-file.* is a file'):
    token_cache.prepare(_data(str(text_files / '*.txt')), kind=packing.MLM,
                        cache_dir=tmp_path / 'a-file')
