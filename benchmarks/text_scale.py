r"""The masked-LM job on synthetic corpora of two sizes: preparation, start-up, memory, feed rate.

  python benchmarks/text_scale.py                          # 100 MB and 2,000 MB corpora
  python benchmarks/text_scale.py --sizes_mb=20 --steps=8  # a quick look, about 2 minutes

For each size it generates (once, kept under ``--root``) a deterministic corpus of unique
pseudo-English documents in 64 MB files, then prints, each step in its own process:

* prepare: the one-time ``token_cache.prepare`` of the MLM default (scan, tokenizer on a
  bounded sample, tokenize and pack): seconds, MB/s of raw text, peak RSS;
* train: ``experiments.mlm_pretrain`` (default config, ``--steps`` steps) on the prepared
  corpus: seconds from process start to the first train step, peak RSS of the process, the
  step's rate in tokens/s, and the input pipeline's rate (``pipeline.train_batch`` reading its
  rows from disk) in tokens/s and as a multiple of the step's.

The goals (issue 18): peak training RSS at 2 GB within 15% of the 100 MB figure, start to
first step under 60 s at both sizes, pipeline >= 5x the step. Ratios compare runs on this
machine only; the sizes are run one after another, so load from elsewhere shows up in both.
"""

from __future__ import annotations

import os
import time

import numpy as np

import common  # benchmarks/common.py: run these files as scripts

_FILE_MB = 64


def _words(rng, count):
  """``count`` distinct pseudo-words of 1-4 syllables."""
  syllables = [c + v for c in 'bcdfghjklmnprstvwz' for v in ('a', 'e', 'i', 'o', 'u', 'ai', 'ou')]
  words = set()
  while len(words) < count:
    n = rng.integers(1, 5)
    words.add(''.join(rng.choice(syllables, size=n)))
  return sorted(words)


def generate(folder: str, size_mb: int) -> None:
  """Writes ``size_mb`` MB of documents (Zipf words, 40-400 per document) to ``folder``."""
  done = os.path.join(folder, 'COMPLETE')
  if os.path.exists(done):
    return
  os.makedirs(folder, exist_ok=True)
  rng = np.random.default_rng(0)
  vocab = np.array(_words(rng, 30_000))
  weights = 1.0 / np.arange(1, vocab.size + 1) ** 1.1
  weights /= weights.sum()
  document = 0
  for index in range(-(-size_mb // _FILE_MB)):
    target = min(_FILE_MB, size_mb - index * _FILE_MB) * 1_000_000
    parts, size = [], 0
    while size < target:
      lengths = rng.integers(40, 400, size=1000)
      words = vocab[rng.choice(vocab.size, size=lengths.sum(), p=weights)]
      for chunk in np.split(words, np.cumsum(lengths)[:-1]):
        # The record number makes every document unique.
        doc = f'Record {document}: ' + ' '.join(chunk) + '.\n\n'
        document += 1
        parts.append(doc)
        size += len(doc)
    with open(os.path.join(folder, f'part-{index:05d}.txt'), 'w', encoding='utf-8') as f:
      f.write(''.join(parts))
  with open(done, 'w') as f:
    f.write(str(document))


def _config(corpus: str, cache: str, steps: int):
  from experiments import mlm_pretrain  # pylint: disable=import-outside-toplevel
  config = mlm_pretrain.get_config()
  config.data.files = os.path.join(corpus, '*.txt')
  config.data.cache_dir = cache
  config.num_train_steps = steps
  config.optim.warmup_steps = min(config.optim.warmup_steps, steps)
  config.eval_every_steps = steps
  config.checkpoint_every_steps = steps
  config.data.max_eval_rows = 64  # the evaluation is not what this measures
  return config


def child_prepare(corpus: str, cache: str) -> dict:
  import logging  # pylint: disable=import-outside-toplevel
  logging.basicConfig(level=logging.INFO, format='  %(message)s')
  from jaxssl.data import packing, token_cache  # pylint: disable=import-outside-toplevel
  data = _config(corpus, cache, 1).data
  start = time.perf_counter()
  got = token_cache.prepare(data, kind=packing.MLM, cache_dir=cache)
  return {'seconds': time.perf_counter() - start, 'peak_rss_mb': common.peak_rss_mb(),
          'meta': got.meta}


def child_train(corpus: str, cache: str, workdir: str, steps: int, spawned: float) -> dict:
  from experiments import mlm_pretrain  # pylint: disable=import-outside-toplevel
  config = _config(corpus, cache, steps)
  calls, rows, step_s = common.train_with_timed_batches(mlm_pretrain.train_and_evaluate,
                                                        config, workdir)
  peak = common.peak_rss_mb()
  batch_s = common.batch_read_seconds(rows, config, num_batches=200, first_step=10_000)
  tokens = config.global_batch_size * config.data.seq_len
  return {'start_to_first_step_s': calls[0] - spawned, 'peak_rss_mb': peak,
          'step_tokens_per_s': tokens / step_s, 'pipeline_tokens_per_s': tokens / batch_s}


def describe(size: int, prep: dict, train: dict) -> str:
  meta = prep['meta']
  return (f'{size} MB: prepare {prep["seconds"]:.0f} s = {size / prep["seconds"]:.2f} MB/s '
          f'(peak RSS {prep["peak_rss_mb"]:.0f} MB; {meta["num_train_tokens"]:,} training '
          f'tokens in {meta["num_train_rows"]:,} rows; tokenizer sample '
          f'{meta["num_tokenizer_chars"]:,} chars) | start to first step '
          f'{train["start_to_first_step_s"]:.1f} s | peak RSS {train["peak_rss_mb"]:.0f} MB | '
          f'step {train["step_tokens_per_s"]:,.0f} tokens/s, pipeline '
          f'{train["pipeline_tokens_per_s"]:,.0f} tokens/s = '
          f'{train["pipeline_tokens_per_s"] / train["step_tokens_per_s"]:.0f}x')


if __name__ == '__main__':
  common.scale_main(__file__, doc=__doc__, root='/tmp/jaxssl-text-scale', steps=20,
                    what='corpus', generate=generate, child_prepare=child_prepare,
                    child_train=child_train, describe=describe)
