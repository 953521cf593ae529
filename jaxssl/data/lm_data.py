"""The text side shared by the language-model experiments: corpus, tokenizer, token counts."""

from __future__ import annotations

import dataclasses
import hashlib
import os

import ml_collections
from ml_collections import config_dict
import numpy as np

from jaxssl.data import corpus as corpus_lib
from jaxssl.data import tokenizer as tokenizer_lib
from jaxssl import config_checks


@dataclasses.dataclass(frozen=True)
class TokenizedCorpus:
  """A corpus split into documents and encoded.

  Attributes:
    corpus: the ``corpus.Corpus`` (text of each split, sha256, source).
    tokenizer: the workdir's ``tokenizer.Tokenizer``.
    train_ids, eval_ids: int32 [n_i] token ids of each document.
    info: flat JSON-able ``data/...`` facts for ``summary.json``.
  """
  corpus: corpus_lib.Corpus
  tokenizer: tokenizer_lib.Tokenizer
  train_ids: list[np.ndarray]
  eval_ids: list[np.ndarray]
  info: dict


def data_config(*, vocab_size: int, seq_len: int) -> ml_collections.ConfigDict:
  """The ``config.data`` of a language-model experiment (the pydoc corpus by default)."""
  c = ml_collections.ConfigDict()
  c.name = 'pydoc'  # 'pydoc' (embedded) or a TFDS text dataset name, e.g. 'lm1b'.
  c.files = config_dict.placeholder(str)  # Glob(s) of UTF-8 text files; overrides name.
  c.data_dir = config_dict.placeholder(str)  # TFDS data_dir of a prepared dataset.
  c.cache_dir = config_dict.placeholder(str)  # Local TFDS builds ($JAXSSL_CACHE_DIR).
  c.text_key = 'text'  # Feature holding the text in a TFDS dataset.
  c.train_split = 'train'  # TFDS split read for training.
  c.eval_split = config_dict.placeholder(str)  # TFDS held-out split; else a fraction.
  c.validation_fraction = 0.1  # Documents held out when there is no eval_split.
  c.split_seed = 0  # Fixes the held-out documents (and MLM eval masks); not `seed`.
  c.max_document_chars = 2000  # Longer blank-line blocks are chunked.
  c.max_documents = config_dict.placeholder(int)  # Cap on documents read from TFDS.
  c.vocab_size = vocab_size  # SentencePiece pieces (a soft limit on small corpora).
  c.seq_len = seq_len  # L: tokens per packed row.
  return c


def smoke(data: ml_collections.ConfigDict) -> None:
  """Cuts a ``data_config`` block in place for tests: 300 pieces, 32-token rows, 2% held out."""
  data.vocab_size = 300
  data.seq_len = 32
  data.validation_fraction = 0.02


def check_config(config: ml_collections.ConfigDict, *, min_seq_len: int) -> None:
  """Checks ``config.data`` of a language-model experiment; ValueError names the first bad field."""
  config_checks.positive(config, 'data.vocab_size', 'data.seq_len', 'data.max_document_chars')
  config_checks.non_negative(config, 'data.split_seed')
  config_checks.in_open_unit_interval(config, 'data.validation_fraction')
  data = config.data
  if data.seq_len < min_seq_len:
    raise ValueError(f'data.seq_len={data.seq_len} must be >= {min_seq_len}')
  if data.vocab_size <= tokenizer_lib.NUM_SPECIAL:
    raise ValueError(f'data.vocab_size={data.vocab_size} must exceed the '
                     f'{tokenizer_lib.NUM_SPECIAL} special tokens')


def _sha256(path: str) -> str:
  with open(path, 'rb') as f:
    return hashlib.sha256(f.read()).hexdigest()


def load_tokenized(data: ml_collections.ConfigDict, workdir: str, *,
                   expected_sha256: str | None = None) -> TokenizedCorpus:
  """Loads the corpus of ``data`` and encodes it with the workdir's tokenizer.

  The tokenizer (``WORKDIR/tokenizer.model``) is trained on the training split, or reused when
  trained on this corpus and ``data.vocab_size``. ``expected_sha256`` is the corpus hash the
  workdir's checkpoints were trained on (None for a fresh run), checked before the tokenizer.

  Raises:
    ValueError: the corpus no longer has ``expected_sha256`` (resume onto edited data), or
      an empty or too small corpus (see ``corpus.load_corpus``).
    FileNotFoundError: ``data.files`` matches nothing.
  """
  corpus = corpus_lib.load_corpus(data)
  if expected_sha256 not in (None, corpus.sha256):
    raise ValueError(f'{workdir}: its checkpoints were trained on a corpus with sha256 '
                     f'{expected_sha256}, but {corpus.source} now gives {corpus.sha256} (was a '
                     'file edited?); use another --workdir or restore the data')
  model_path = os.path.join(workdir, 'tokenizer.model')
  tok = tokenizer_lib.load_or_train(corpus.train, vocab_size=data.vocab_size,
                                    model_path=model_path, corpus_sha256=corpus.sha256)
  train_ids, eval_ids = tok.encode(corpus.train), tok.encode(corpus.validation)
  info = {
      'data/source': corpus.source,
      'data/sha256': corpus.sha256,
      'data/num_train_documents': len(corpus.train),
      'data/num_eval_documents': len(corpus.validation),
      'data/num_train_tokens': int(sum(len(d) for d in train_ids)),
      'data/num_eval_tokens': int(sum(len(d) for d in eval_ids)),
      'data/vocab_size': tok.vocab_size,
      'data/tokenizer_sha256': _sha256(model_path),
  }
  return TokenizedCorpus(corpus, tok, train_ids, eval_ids, info)


def add_one_log_probs(counts: np.ndarray, support: np.ndarray) -> np.ndarray:
  """Unigram log-probabilities with add-one (Laplace) smoothing over ``support``.

  counts [V] of the training split, support bool [V] (the ids the model may predict) ->
  float32 [V] natural logs: log((c + 1) / (sum c + |support|)) on the support, -inf elsewhere.
  """
  counts = np.where(support, counts, 0).astype(np.float64)
  with np.errstate(divide='ignore'):
    return np.where(support, np.log((counts + 1.0) / (counts.sum() + support.sum())),
                    -np.inf).astype(np.float32)
