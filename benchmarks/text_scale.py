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

import argparse
import json
import os
import resource
import subprocess
import sys
import time

import numpy as np

_FILE_MB = 64
_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


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


def _peak_rss_mb() -> float:
  return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def child_prepare(corpus: str, cache: str) -> dict:
  import logging  # pylint: disable=import-outside-toplevel
  logging.basicConfig(level=logging.INFO, format='  %(message)s')
  from jaxssl.data import packing, token_cache  # pylint: disable=import-outside-toplevel
  data = _config(corpus, cache, 1).data
  start = time.perf_counter()
  got = token_cache.prepare(data, kind=packing.MLM, cache_dir=cache)
  return {'seconds': time.perf_counter() - start, 'peak_rss_mb': _peak_rss_mb(),
          'meta': got.meta}


def child_train(corpus: str, cache: str, workdir: str, steps: int, spawned: float) -> dict:
  from experiments import mlm_pretrain  # pylint: disable=import-outside-toplevel
  from jaxssl.data import pipeline  # pylint: disable=import-outside-toplevel
  config = _config(corpus, cache, steps)
  calls = []
  getter = pipeline.batch_getter

  def timed_getter(rows, mesh, cfg):
    get_batch = getter(rows, mesh, cfg)
    timed_getter.rows = rows

    def get(step):
      calls.append(time.time())
      return get_batch(step)
    return get

  pipeline.batch_getter = timed_getter
  mlm_pretrain.train_and_evaluate(config, workdir)
  peak = _peak_rss_mb()
  # The loop asks for batch s+1 after the step s-1 is done: in steady state the calls are
  # one step time apart.
  step_s = (calls[-1] - calls[2]) / (len(calls) - 3)
  rows, b = timed_getter.rows, config.global_batch_size
  n, start = 200, time.perf_counter()
  for step in range(10_000, 10_000 + n):
    pipeline.train_batch(rows, step, seed=config.seed, global_batch_size=b)
  batch_s = (time.perf_counter() - start) / n
  tokens = b * config.data.seq_len
  return {'start_to_first_step_s': calls[0] - spawned, 'peak_rss_mb': peak,
          'step_tokens_per_s': tokens / step_s, 'pipeline_tokens_per_s': tokens / batch_s}


def _run_child(*args) -> dict:
  out = subprocess.run([sys.executable, __file__, *args], cwd=_ROOT, check=True,
                       stdout=subprocess.PIPE, text=True).stdout
  return json.loads(out.strip().split('\n')[-1])


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--sizes_mb', default='100,2000')
  parser.add_argument('--steps', type=int, default=20)
  parser.add_argument('--root', default='/tmp/jaxssl-text-scale')
  parser.add_argument('--child', nargs='+', help=argparse.SUPPRESS)
  args = parser.parse_args()
  if args.child:
    what, *rest = args.child
    result = (child_prepare(*rest) if what == 'prepare' else
              child_train(*rest[:3], int(rest[3]), float(rest[4])))
    print(json.dumps(result))
    return
  rows = []
  for size in [int(s) for s in args.sizes_mb.split(',')]:
    corpus = os.path.join(args.root, f'corpus-{size}mb')
    cache = os.path.join(args.root, f'cache-{size}mb')
    start = time.perf_counter()
    generate(corpus, size)
    print(f'{size} MB corpus ready ({time.perf_counter() - start:.0f} s)', flush=True)
    prep = _run_child('--child', 'prepare', corpus, cache)
    workdir = os.path.join(args.root, f'run-{size}mb-{time.time_ns()}')
    train = _run_child('--child', 'train', corpus, cache, workdir, str(args.steps),
                       str(time.time()))
    meta = prep['meta']
    rows.append((size, prep, train, meta))
    print(f'{size} MB: prepare {prep["seconds"]:.0f} s = {size / prep["seconds"]:.2f} MB/s '
          f'(peak RSS {prep["peak_rss_mb"]:.0f} MB; {meta["num_train_tokens"]:,} training '
          f'tokens in {meta["num_train_rows"]:,} rows; tokenizer sample '
          f'{meta["num_tokenizer_chars"]:,} chars) | start to first step '
          f'{train["start_to_first_step_s"]:.1f} s | peak RSS {train["peak_rss_mb"]:.0f} MB | '
          f'step {train["step_tokens_per_s"]:,.0f} tokens/s, pipeline '
          f'{train["pipeline_tokens_per_s"]:,.0f} tokens/s = '
          f'{train["pipeline_tokens_per_s"] / train["step_tokens_per_s"]:.0f}x', flush=True)
  if len(rows) > 1:
    small, large = rows[0], rows[-1]
    print(f'peak training RSS {large[0]} MB / {small[0]} MB = '
          f'{large[2]["peak_rss_mb"] / small[2]["peak_rss_mb"]:.3f} (goal <= 1.15)')


if __name__ == '__main__':
  main()
