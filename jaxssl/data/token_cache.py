"""A corpus tokenized and packed once, stored as row files, reused by every run and process.

``prepare`` turns a ``corpus.TextSource`` into ``<cache_dir>/text/<key>/``: ``tokenizer.model``
(SentencePiece trained on a bounded, seeded sample of the training documents),
``{train,eval}.{tokens,segment_ids}`` (``rowfile`` rows of ``packing.RowPacker``),
``unigram.npy`` (training token counts) and ``meta.json``, written last: an entry without it is
incomplete and is never read. ``<key>`` hashes the source's fingerprint (metadata, not bytes)
and every setting that changes the result, so a prepared corpus starts a run in seconds at any
size. Memory is bounded by the tokenizer sample and a batch of documents, not the corpus
(levanter's token cache and nanoGPT's ``train.bin`` follow the same idea).
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import logging
import time

import ml_collections
import numpy as np
from etils import epath

from jaxssl import fileio
from jaxssl.data import corpus as corpus_lib
from jaxssl.data import packing
from jaxssl.data import rowfile
from jaxssl.data import sources
from jaxssl.data import text
from jaxssl.data import tokenizer as tokenizer_lib

FORMAT_VERSION = 1
ROW_KEYS = ('tokens', 'segment_ids')
_ENCODE_BATCH = 512  # documents per tokenizer call


@dataclasses.dataclass(frozen=True)
class PreparedText:
  """A prepared corpus (see module docstring).

  Attributes:
    path: the cache entry.
    meta: the contents of ``meta.json`` (counts, hashes, row counts, settings).
    tokenizer: the entry's ``tokenizer.Tokenizer``.
    train, eval: ``{'tokens', 'segment_ids': rowfile.RowFile}``, int32 [N, L] on disk.
    unigram_counts: int64 [V] training-token counts.
  """

  path: epath.Path
  meta: dict
  tokenizer: tokenizer_lib.Tokenizer
  train: dict
  eval: dict
  unigram_counts: np.ndarray


def cache_key(source: corpus_lib.TextSource, data: ml_collections.ConfigDict,
              kind: str) -> str:
  """Hex name of the entry: the source's fingerprint and every setting the result depends on."""
  settings = {
      'format': FORMAT_VERSION, 'cleaning': text.CLEANING_VERSION,
      'tokenizer': tokenizer_lib.TRAINER_VERSION, 'source': source.source,
      'fingerprint': source.fingerprint, 'kind': kind,
      **{k: data.get(k) for k in (
          'text_key', 'train_split', 'eval_split', 'validation_fraction', 'split_seed',
          'max_document_chars', 'max_documents', 'vocab_size', 'seq_len',
          'tokenizer_sample_chars')},
  }
  if data.get('tokenizer_model'):  # a given vocabulary: its content, not its path, counts
    settings['tokenizer_model_sha256'] = hashlib.sha256(
        fileio.path(data.tokenizer_model).read_bytes()).hexdigest()
  return sources.settings_key(settings)


def _tokenizer_sample(plan: corpus_lib.Plan, max_chars: int) -> np.ndarray:
  """bool [n]: training documents the tokenizer learns from, at most about ``max_chars`` chars.

  Every training document when they fit; otherwise those with the smallest ``held_out_key``
  (a seeded uniform sample, fixed by ``data.split_seed``) until the budget is reached.
  """
  train = np.flatnonzero(plan.split == corpus_lib.TRAIN)
  if plan.num_chars[train].sum() <= max_chars:
    return plan.split == corpus_lib.TRAIN
  order = train[np.argsort(plan.held_out_key[train], kind='stable')]
  # The first document past the budget is kept, so the sample is never empty.
  take = np.searchsorted(np.cumsum(plan.num_chars[order]), max_chars, side='right') + 1
  sample = np.zeros(plan.split.size, bool)
  sample[order[:take]] = True
  return sample


def _train_tokenizer(entry: epath.Path, source, plan, data) -> tuple[bytes, np.ndarray]:
  """Writes ``tokenizer.model`` trained on the sample (or copied from ``data.tokenizer_model``,
  then the sample is empty); returns its bytes and the sample mask."""
  if data.get('tokenizer_model'):
    model = fileio.path(data.tokenizer_model).read_bytes()
    entry.mkdir(parents=True, exist_ok=True)
    fileio.write_atomic(entry / 'tokenizer.model', model)
    return model, np.zeros(plan.split.size, bool)
  sample = _tokenizer_sample(plan, data.tokenizer_sample_chars)
  docs = [d for _, d in corpus_lib.documents(source, plan, 'reading the tokenizer sample',
                                             select=sample)]
  model = tokenizer_lib.train_model(docs, vocab_size=data.vocab_size)
  entry.mkdir(parents=True, exist_ok=True)
  fileio.write_atomic(entry / 'tokenizer.model', model)
  return model, sample


def _write_rows(entry: epath.Path, source, plan, tok, data, kind: str) -> dict:
  """Tokenizes and packs the kept documents into the row files (and ``unigram.npy``);
  returns their counts for ``meta.json``."""
  packers = [packing.RowPacker(kind, seq_len=data.seq_len, start_id=tokenizer_lib.CLS_ID,
                               end_id=tokenizer_lib.SEP_ID, pad_id=tokenizer_lib.PAD_ID)
             for _ in range(2)]
  dtype = rowfile.storage_dtype(max(tok.vocab_size, data.seq_len) - 1)
  names = {corpus_lib.TRAIN: 'train', corpus_lib.EVAL: 'eval'}
  writers = {(split, key): rowfile.RowWriter(entry / f'{name}.{key}', width=data.seq_len,
                                             dtype=dtype)
             for split, name in names.items() for key in ROW_KEYS}
  counts = np.zeros(tok.vocab_size, np.int64)
  num_tokens, num_packed, num_eval_bytes = [0, 0], [0, 0], 0

  def write(split, rows):
    for key in ROW_KEYS:
      writers[split, key].write(rows[key])

  def flush(batch):
    nonlocal num_eval_bytes
    for split in names:
      texts = [d for s, d in batch if s == split]
      ids = tok.encode(texts)
      num_tokens[split] += sum(x.size for x in ids)
      num_packed[split] += sum(1 for x in ids if x.size)
      if split == corpus_lib.EVAL:  # bits per byte: the held-out text's UTF-8 bytes only
        num_eval_bytes += sum(len(d.encode('utf-8')) for d in texts)
      elif ids:
        counts[:] += np.bincount(np.concatenate(ids), minlength=tok.vocab_size)
      write(split, packers[split].add(ids))

  try:
    batch = []
    for item in corpus_lib.documents(source, plan, 'tokenizing and packing'):
      batch.append(item)
      if len(batch) == _ENCODE_BATCH:
        flush(batch)
        batch = []
    flush(batch)
    for split in names:
      write(split, packers[split].finish())
  except BaseException:
    for writer in writers.values():
      writer.abort()
    raise
  for writer in writers.values():
    writer.close()
  buffer = io.BytesIO()
  np.save(buffer, counts)
  fileio.write_atomic(entry / 'unigram.npy', buffer.getvalue())
  return {
      'dtype': dtype.name,
      'num_train_tokens': num_tokens[corpus_lib.TRAIN],
      'num_eval_tokens': num_tokens[corpus_lib.EVAL],
      'num_eval_bytes': num_eval_bytes,
      # Documents with at least one token: each adds one [SEP]/[EOS] to the rows.
      'num_train_packed_documents': num_packed[corpus_lib.TRAIN],
      'num_train_rows': writers[corpus_lib.TRAIN, 'tokens'].num_rows,
      'num_eval_rows': writers[corpus_lib.EVAL, 'tokens'].num_rows,
  }


def _build(entry: epath.Path, source, data, kind: str) -> None:
  """Writes every file of the entry, ``meta.json`` last."""
  plan = corpus_lib.scan(source, data)
  model, sample = _train_tokenizer(entry, source, plan, data)
  tok = tokenizer_lib.Tokenizer(entry / 'tokenizer.model')
  meta = {
      'format': FORMAT_VERSION, 'source': source.source, 'sha256': plan.sha256,
      'kind': kind, 'seq_len': data.seq_len,
      'tokenizer_sha256': hashlib.sha256(model).hexdigest(), 'vocab_size': tok.vocab_size,
      'num_train_documents': plan.count(corpus_lib.TRAIN),
      'num_eval_documents': plan.count(corpus_lib.EVAL),
      'num_tokenizer_documents': int(sample.sum()),
      'num_tokenizer_chars': int(plan.num_chars[sample].sum()),
      **_write_rows(entry, source, plan, tok, data, kind),
  }
  fileio.write_atomic(entry / 'meta.json', json.dumps(meta, indent=1).encode('utf-8'))


def _open(entry: epath.Path) -> PreparedText:
  meta = json.loads((entry / 'meta.json').read_text())
  splits = {}
  for name in ('train', 'eval'):
    splits[name] = {key: rowfile.RowFile(entry / f'{name}.{key}', width=meta['seq_len'],
                                         dtype=np.dtype(meta['dtype']),
                                         num_rows=meta[f'num_{name}_rows'])
                    for key in ROW_KEYS}
  counts = np.load(io.BytesIO((entry / 'unigram.npy').read_bytes()))
  return PreparedText(entry, meta, tokenizer_lib.Tokenizer(entry / 'tokenizer.model'),
                      splits['train'], splits['eval'], counts)


def prepare(data: ml_collections.ConfigDict, *, kind: str,
            cache_dir: epath.PathLike) -> PreparedText:
  """The prepared entry of ``data``'s corpus for ``kind`` rows, built once if missing.

  Safe when several processes prepare at once: each file appears whole and the entry only
  with ``meta.json``; their results are byte-identical (deterministic tokenizer and packing).
  Progress lines are logged during the one-time work.

  Args:
    data: the ``data`` config (``lm_data.data_config``).
    kind: ``packing.MLM`` or ``packing.CAUSAL``.
    cache_dir: the folder holding ``text/<key>/`` (local or a bucket).

  Raises:
    As ``corpus.open_source`` and ``corpus.scan``; ValueError for a damaged entry or a
    ``cache_dir`` that is a file.
  """
  if fileio.path(cache_dir).is_file():  # fail before minutes of preparation, not after
    raise ValueError(f'data.cache_dir={cache_dir!r} is a file; give a folder.')
  source = corpus_lib.open_source(data)
  entry = fileio.path(cache_dir) / 'text' / cache_key(source, data, kind)
  if not (entry / 'meta.json').exists():
    start = time.monotonic()
    logging.info('preparing %s in %s (once per corpus and settings)', source.source, entry)
    _build(entry, source, data, kind)
    logging.info('prepared %s in %.1f s', source.source, time.monotonic() - start)
  return _open(entry)
