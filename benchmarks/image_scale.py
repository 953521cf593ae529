r"""SimCLR on synthetic 32x32x3 image sets of two sizes: preparation, start-up, memory, feed rate.

  python benchmarks/image_scale.py                            # 100 MB and 2,000 MB sets
  python benchmarks/image_scale.py --sizes_mb=20 --steps=6    # a quick look, about 2 minutes

For each size it generates (once, kept under ``--root``) a deterministic labelled image set as
plain IDX files (CIFAR-shaped: uint8 32x32x3, 10 classes, a 2,000-image ``t10k`` pair), then
prints, each step in its own process:

* prepare: the one-time ``image_cache.prepare`` (decode, hash, write uint8 rows): seconds,
  MB/s, peak RSS;
* train: ``experiments.simclr`` (default config, ``--steps`` steps, evaluation on 512 images)
  on the prepared set: seconds from process start to the first train step, peak RSS of the
  process, the step's rate in images/s, and the input pipeline's rate
  (``pipeline.train_batch`` reading its rows from disk) in images/s and as a multiple of the
  step's.

The in-memory budget is a few batches plus the evaluation samples (``data.max_eval_examples``
images of train and of test): the 2,000 MB set is many times that, and the old loader held it
whole. Goal (issue 18): peak training RSS at 2,000 MB within 15% of the 100 MB figure. Figures
compare runs on this machine only; the sizes run one after another.
"""

from __future__ import annotations

import os
import struct
import time

import numpy as np

import common  # benchmarks/common.py: run these files as scripts

_SHAPE = (32, 32, 3)
_CHUNK = 4096
_NUM_TEST = 2000


def _images(seed: int, start: int, n: int) -> tuple[np.ndarray, np.ndarray]:
  """(uint8 [n, 32, 32, 3], uint8 [n] labels) of chunk ``start``: a class colour, smooth
  random structure (8x8 noise upsampled) and pixel noise, so every image is distinct."""
  rng = np.random.default_rng([seed, start])
  labels = rng.integers(0, 10, n).astype(np.uint8)
  colours = np.random.default_rng(seed).uniform(40, 215, (10, 1, 1, 3))
  coarse = rng.normal(0, 40, (n, 8, 8, 3)).repeat(4, axis=1).repeat(4, axis=2)
  fine = rng.normal(0, 10, (n, *_SHAPE))
  return np.clip(colours[labels] + coarse + fine, 0, 255).astype(np.uint8), labels


def _write_idx(path: str, arrays, shape) -> None:
  with open(path, 'wb') as f:
    f.write(struct.pack('>BBBB', 0, 0, 0x08, len(shape)) + struct.pack(f'>{len(shape)}I', *shape))
    for array in arrays:
      f.write(array.tobytes())


def generate(folder: str, size_mb: int) -> None:
  """Writes the train and t10k IDX pairs of about ``size_mb`` MB to ``folder`` (once)."""
  done = os.path.join(folder, 'COMPLETE')
  if os.path.exists(done):
    return
  os.makedirs(folder, exist_ok=True)
  num_train = size_mb * 1_000_000 // int(np.prod(_SHAPE))
  for prefix, seed, n in (('train', 0, num_train), ('t10k', 1, _NUM_TEST)):
    starts = range(0, n, _CHUNK)
    labels = []

    def chunks():
      for start in starts:
        images, chunk_labels = _images(seed, start, min(_CHUNK, n - start))
        labels.append(chunk_labels)
        yield images
    _write_idx(os.path.join(folder, f'{prefix}-images-idx4-ubyte'), chunks(), (n, *_SHAPE))
    _write_idx(os.path.join(folder, f'{prefix}-labels-idx1-ubyte'), labels, (n,))
  with open(done, 'w') as f:
    f.write(str(num_train))


def _config(folder: str, cache: str, steps: int):
  from experiments import simclr  # pylint: disable=import-outside-toplevel
  config = simclr.get_config()
  config.data.files = os.path.join(folder, '*-ubyte')
  config.data.cache_dir = cache
  config.data.max_eval_examples = 512  # the evaluation is not what this measures
  config.num_train_steps = steps
  config.optim.warmup_steps = min(config.optim.warmup_steps, steps)
  config.eval_every_steps = steps
  config.checkpoint_every_steps = steps
  config.eval.kmeans_n_init = 1
  return config


def child_prepare(folder: str, cache: str) -> dict:
  import logging  # pylint: disable=import-outside-toplevel
  logging.basicConfig(level=logging.INFO, format='  %(message)s')
  from jaxssl.data import image_cache  # pylint: disable=import-outside-toplevel
  data = _config(folder, cache, 1).data
  start = time.perf_counter()
  got = image_cache.prepare(data, cache_dir=cache)
  return {'seconds': time.perf_counter() - start, 'peak_rss_mb': common.peak_rss_mb(),
          'meta': got.meta}


def child_train(folder: str, cache: str, workdir: str, steps: int, spawned: float) -> dict:
  from experiments import simclr  # pylint: disable=import-outside-toplevel
  config = _config(folder, cache, steps)
  calls, rows, step_s = common.train_with_timed_batches(simclr.train_and_evaluate, config,
                                                        workdir)
  peak = common.peak_rss_mb()
  batch_s = common.batch_read_seconds(rows, config, num_batches=100, first_step=1_000)
  b = config.global_batch_size
  return {'start_to_first_step_s': calls[0] - spawned, 'peak_rss_mb': peak,
          'step_images_per_s': b / step_s, 'pipeline_images_per_s': b / batch_s,
          'global_batch_size': b}


def describe(size: int, prep: dict, train: dict) -> str:
  num_train = prep['meta']['splits']['train']['num_examples']
  return (f'{size} MB ({num_train:,} train images): prepare {prep["seconds"]:.1f} s = '
          f'{size / prep["seconds"]:.0f} MB/s (peak RSS {prep["peak_rss_mb"]:.0f} MB) | '
          f'start to first step {train["start_to_first_step_s"]:.1f} s | peak RSS '
          f'{train["peak_rss_mb"]:.0f} MB | step {train["step_images_per_s"]:,.0f} images/s '
          f'(batch {train["global_batch_size"]}), pipeline '
          f'{train["pipeline_images_per_s"]:,.0f} images/s = '
          f'{train["pipeline_images_per_s"] / train["step_images_per_s"]:.0f}x')


if __name__ == '__main__':
  common.scale_main(__file__, doc=__doc__, root='/tmp/jaxssl-image-scale', steps=12,
                    what='images', generate=generate, child_prepare=child_prepare,
                    child_train=child_train, describe=describe)
