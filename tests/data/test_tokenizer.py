"""Tests for jaxssl.data.tokenizer."""

import os
import subprocess
import sys

import numpy as np
import pytest

from jaxssl.data import text
from jaxssl.data import tokenizer

# Trains on the whole embedded corpus in a fresh interpreter and writes the model.
_TRAIN_SCRIPT = """
import sys
from jaxssl.data import text, tokenizer
docs = text.split_documents(text.clean_text(text.pydoc_text()), max_chars=2000)
tokenizer.train_tokenizer(docs, vocab_size=int(sys.argv[2]), model_path=sys.argv[1])
"""


def _pydoc_documents():
  return text.split_documents(text.clean_text(text.pydoc_text()), max_chars=2000)


@pytest.fixture(scope='module')
def pydoc_tokenizer(tmp_path_factory):
  path = tmp_path_factory.mktemp('tok') / 'pydoc.model'
  tokenizer.train_tokenizer(_pydoc_documents(), vocab_size=4096, model_path=path)
  return tokenizer.Tokenizer(path)


def test_training_is_identical_across_processes(tmp_path):
  paths = [tmp_path / f'{i}.model' for i in range(2)]
  # Different hash seeds: nothing may depend on Python's per-process str hashing.
  procs = [
      subprocess.Popen([sys.executable, '-c', _TRAIN_SCRIPT, str(p), '2000'],
                       env={**os.environ, 'PYTHONHASHSEED': str(i)})
      for i, p in enumerate(paths)
  ]
  assert [p.wait(timeout=120) for p in procs] == [0, 0]
  first, second = (p.read_bytes() for p in paths)
  assert len(first) > 10_000
  assert first == second


def test_training_is_identical_in_process(tmp_path):
  docs = ['the cat sat on the mat', 'the dog sat on the log', 'a cat and a dog']
  for name in ['a.model', 'b.model']:
    tokenizer.train_tokenizer(docs, vocab_size=30, model_path=tmp_path / name)
  assert (tmp_path / 'a.model').read_bytes() == (tmp_path / 'b.model').read_bytes()
  assert sorted(os.listdir(tmp_path)) == ['a.model', 'b.model']  # No temp files left.


def test_special_ids_are_fixed(pydoc_tokenizer):
  assert (tokenizer.PAD_ID, tokenizer.UNK_ID, tokenizer.CLS_ID, tokenizer.SEP_ID,
          tokenizer.MASK_ID, tokenizer.NUM_SPECIAL) == (0, 1, 2, 3, 4, 5)
  processor = pydoc_tokenizer._processor  # pylint: disable=protected-access
  pieces = [processor.id_to_piece(i) for i in range(5)]
  assert pieces == ['[PAD]', '[UNK]', '[CLS]', '[SEP]', '[MASK]']
  assert processor.pad_id() == 0 and processor.unk_id() == 1
  assert processor.bos_id() == -1 and processor.eos_id() == -1
  # Specials are never produced from text, even text that spells them.
  ids = pydoc_tokenizer.encode(['[CLS] a [MASK] b [SEP] [PAD]'])[0]
  assert not np.isin(ids, [0, 2, 3, 4]).any()


def test_pydoc_vocab_4096(pydoc_tokenizer):
  assert pydoc_tokenizer.vocab_size == 4096
  word_start = pydoc_tokenizer.word_start
  assert word_start.shape == (4096,) and word_start.dtype == bool
  assert not word_start[:tokenizer.NUM_SPECIAL].any()
  processor = pydoc_tokenizer._processor  # pylint: disable=protected-access
  assert word_start[processor.piece_to_id('\u2581the')]
  assert not word_start[processor.piece_to_id('.')]


def test_encode_decode_round_trip(pydoc_tokenizer):
  sentences = [
      'The assert statement is a convenient way to insert debugging assertions.',
      'for x in range(10): print(x)',
      '',
  ]
  encoded = pydoc_tokenizer.encode(sentences)
  assert [e.dtype for e in encoded] == [np.int32] * 3
  assert encoded[2].shape == (0,)
  assert all((e >= tokenizer.NUM_SPECIAL).all() for e in encoded)
  assert [pydoc_tokenizer.decode(e) for e in encoded] == sentences


def test_decode_drops_specials(pydoc_tokenizer):
  ids = pydoc_tokenizer.encode(['import os'])[0]
  with_specials = np.concatenate([[2], ids, [4, 3, 0, 0]])
  assert pydoc_tokenizer.decode(with_specials) == 'import os'
  with pytest.raises(ValueError, match='ids must be in'):
    pydoc_tokenizer.decode([pydoc_tokenizer.vocab_size])


def test_tiny_corpus_trains_with_soft_limit(tmp_path):
  path = tmp_path / 'tiny.model'
  tokenizer.train_tokenizer(['hello world', 'a small corpus'], vocab_size=4096, model_path=path)
  tok = tokenizer.Tokenizer(path)
  assert tokenizer.NUM_SPECIAL < tok.vocab_size < 4096
  assert tok.decode(tok.encode(['hello world'])[0]) == 'hello world'


def test_missing_and_corrupt_model(tmp_path):
  with pytest.raises(FileNotFoundError, match='missing.model'):
    tokenizer.Tokenizer(tmp_path / 'missing.model')
  bad = tmp_path / 'bad.model'
  bad.write_bytes(b'not a model')
  with pytest.raises(ValueError, match='bad.model'):
    tokenizer.Tokenizer(bad)


def test_train_rejects_bad_arguments(tmp_path):
  with pytest.raises(ValueError, match='vocab_size'):
    tokenizer.train_tokenizer(['a b'], vocab_size=5, model_path=tmp_path / 'a.model')
  with pytest.raises(ValueError, match='no text'):
    tokenizer.train_tokenizer(['', '\n '], vocab_size=50, model_path=tmp_path / 'a.model')
