"""The text side shared by the language-model experiments: config, prepared rows, eval sample."""

from __future__ import annotations

import dataclasses

import jax
from jax.experimental import multihost_utils
import ml_collections
from ml_collections import config_dict
import numpy as np

from jaxssl import config_checks
from jaxssl import fileio
from jaxssl.data import corpus
from jaxssl.data import sources
from jaxssl.data import token_cache
from jaxssl.data import tokenizer as tokenizer_lib


@dataclasses.dataclass(frozen=True)
class LMData:
  """A language-model experiment's data: training rows on disk, fixed held-out rows in memory.

  Attributes:
    train: ``{'tokens', 'segment_ids': rowfile.RowFile}`` int32 [N, L], read per batch.
    eval: ``{'tokens', 'segment_ids'}`` int32 [M, L] NumPy: every held-out row, or a fixed
      seeded sample of ``data.max_eval_rows`` of them (``eval_rows``).
    tokenizer: the corpus's ``tokenizer.Tokenizer`` (also copied to WORKDIR/tokenizer.model).
    unigram_counts: int64 [V] training-token counts.
    eval_bytes: UTF-8 bytes of held-out text behind ``eval`` (pro rata rows for a sample).
    info: flat JSON-able ``data/...`` facts for ``summary.json``.
  """
  train: dict
  eval: dict
  tokenizer: tokenizer_lib.Tokenizer
  unigram_counts: np.ndarray
  eval_bytes: float
  info: dict


def data_config(*, vocab_size: int, seq_len: int) -> ml_collections.ConfigDict:
  """The ``config.data`` of a language-model experiment (the pydoc corpus by default)."""
  c = ml_collections.ConfigDict()
  c.name = 'pydoc'  # 'pydoc' (embedded) or a TFDS text dataset name, e.g. 'lm1b'.
  c.files = config_dict.placeholder(str)  # Glob(s) of UTF-8 text files; overrides name.
  c.data_dir = config_dict.placeholder(str)  # TFDS data_dir of a prepared dataset.
  c.cache_dir = config_dict.placeholder(str)  # Prepared corpora ($JAXSSL_CACHE_DIR).
  c.text_key = 'text'  # Feature holding the text in a TFDS dataset.
  c.train_split = 'train'  # TFDS split read for training.
  c.eval_split = config_dict.placeholder(str)  # TFDS held-out split; else a fraction.
  c.validation_fraction = 0.1  # Documents held out when there is no eval_split.
  c.split_seed = 0  # Fixes the held-out documents (and MLM eval masks); not `seed`.
  c.max_document_chars = 2000  # Longer blank-line blocks are chunked.
  c.max_documents = config_dict.placeholder(int)  # Cap on documents read from TFDS.
  c.vocab_size = vocab_size  # SentencePiece pieces (a soft limit on small corpora).
  c.tokenizer_sample_chars = 10_000_000  # The tokenizer learns from at most ~this much text.
  c.tokenizer_model = config_dict.placeholder(str)  # A SentencePiece model to use, not train.
  c.max_eval_rows = 4096  # Held-out rows evaluated: all if fewer, else a fixed sample.
  c.seq_len = seq_len  # L: tokens per packed row.
  return c


def smoke(data: ml_collections.ConfigDict) -> None:
  """Cuts a ``data_config`` block in place for tests: 300 pieces, 32-token rows, 2% held out."""
  data.vocab_size = 300
  data.seq_len = 32
  data.validation_fraction = 0.02


def check_config(config: ml_collections.ConfigDict, *, min_seq_len: int) -> None:
  """Checks ``config.data`` of a language-model experiment; ValueError names the first bad field."""
  config_checks.positive(config, 'data.vocab_size', 'data.seq_len', 'data.max_document_chars',
                         'data.tokenizer_sample_chars', 'data.max_eval_rows')
  config_checks.non_negative(config, 'data.split_seed')
  config_checks.in_open_unit_interval(config, 'data.validation_fraction')
  data = config.data
  if data.seq_len < min_seq_len:
    raise ValueError(f'data.seq_len={data.seq_len} must be >= {min_seq_len}')
  if data.vocab_size <= tokenizer_lib.NUM_SPECIAL:
    raise ValueError(f'data.vocab_size={data.vocab_size} must exceed the '
                     f'{tokenizer_lib.NUM_SPECIAL} special tokens')


def eval_rows(rows: dict, *, max_rows: int, seed: int) -> tuple[dict, float]:
  """The held-out rows evaluated, in memory: all N if N <= ``max_rows``, else a sample.

  The sample is ``max_rows`` distinct rows in file order, drawn by
  ``np.random.default_rng([seed, 1])``: the same at every evaluation, on every device and
  process count. Returns ``({key: int32 [M, L]}, M / N)``.
  """
  num_rows = len(rows['tokens'])
  if num_rows <= max_rows:
    return {key: value.read_all() for key, value in rows.items()}, 1.0
  chosen = sources.eval_sample(num_rows, max_rows, seed, 1)
  return {key: value[chosen] for key, value in rows.items()}, max_rows / num_rows


def load(data: ml_collections.ConfigDict, workdir: str, *, kind: str,
         expected_sha256: str | None = None) -> LMData:
  """Prepares (once) or opens the corpus of ``data`` as ``kind`` rows (``token_cache``).

  In a run of several processes, process 0 prepares first and the others then find the entry
  (in a cache shared by all hosts) or build the identical one (in a per-host cache).
  ``expected_sha256`` is the corpus hash the workdir's checkpoints were trained on (None for a
  fresh run).

  Raises:
    ValueError: the corpus no longer has ``expected_sha256`` (resume onto edited data), or
      an empty or too small corpus (see ``corpus.scan``).
    FileNotFoundError: ``data.files`` matches nothing, or a TFDS dataset is not prepared.
  """
  cache = sources.cache_dir(data)
  if jax.process_count() > 1:
    # A bad source (no file, unprepared TFDS) fails on every process alike, not on process 0
    # alone while the others wait at the barrier.
    corpus.open_source(data)
    if jax.process_index() == 0:
      token_cache.prepare(data, kind=kind, cache_dir=cache)
    multihost_utils.sync_global_devices('jaxssl: corpus prepared')
  prepared = token_cache.prepare(data, kind=kind, cache_dir=cache)
  meta = prepared.meta
  if expected_sha256 not in (None, meta['sha256']):
    raise ValueError(f'{workdir}: its checkpoints were trained on a corpus with sha256 '
                     f'{expected_sha256}, but {meta["source"]} now gives {meta["sha256"]} (was '
                     'a file edited?); use another --workdir or restore the data')
  fileio.write_atomic(fileio.join(workdir, 'tokenizer.model'),
                      (prepared.path / 'tokenizer.model').read_bytes())
  evaluated, fraction = eval_rows(prepared.eval, max_rows=data.max_eval_rows,
                                  seed=data.split_seed)
  info = {'data/source': meta['source'], 'data/sha256': meta['sha256'],
          'data/prepared': str(prepared.path),
          'data/tokenizer_sha256': meta['tokenizer_sha256'], 'data/vocab_size': meta['vocab_size'],
          'data/num_eval_rows_evaluated': int(len(evaluated['tokens']))}
  for key in ('train_documents', 'eval_documents', 'train_tokens', 'eval_tokens',
              'train_rows', 'eval_rows', 'tokenizer_documents', 'tokenizer_chars',
              'train_packed_documents'):
    info[f'data/num_{key}'] = meta[f'num_{key}']
  return LMData(prepared.train, evaluated, prepared.tokenizer, prepared.unigram_counts,
                meta['num_eval_bytes'] * fraction, info)


def add_one_log_probs(counts: np.ndarray, support: np.ndarray) -> np.ndarray:
  """Unigram log-probabilities with add-one (Laplace) smoothing over ``support``.

  counts [V] of the training split, support bool [V] (the ids the model may predict) ->
  float32 [V] natural logs: log((c + 1) / (sum c + |support|)) on the support, -inf elsewhere.
  """
  counts = np.where(support, counts, 0).astype(np.float64)
  with np.errstate(divide='ignore'):
    return np.where(support, np.log((counts + 1.0) / (counts.sum() + support.sum())),
                    -np.inf).astype(np.float32)
