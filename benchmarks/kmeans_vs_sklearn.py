r"""k-means: jaxssl against scikit-learn, side by side in one process, same start, same work.

  python benchmarks/kmeans_vs_sklearn.py            # 200,000 x 64 points, K = 100
  python benchmarks/kmeans_vs_sklearn.py --quick    # 20,000 x 32, K = 20: seconds

Data: synthetic Gaussian blobs (``sklearn.datasets.make_blobs``, ``--centers`` blobs of
standard deviation ``--std`` around centres drawn uniformly in [-10, 10]^D), float32. Both
libraries start from the same ``--k`` centres (rows drawn by a seeded NumPy generator) with
``n_init=1`` and ``tol=0``, so each runs Lloyd iterations until its labels stop changing or
``--iters`` iterations; the table shows the iterations each ran (equal in every run so far)
and the final inertia of each.

Timed: the whole ``fit`` from a NumPy array (input checks, transfers, the iterations, final
labels and inertia), median of ``--repeats`` runs. jaxssl is called once before timing, so
the JIT compilation is excluded (its time is printed apart). scikit-learn runs on float32
(its fastest) and on float64 (its default precision) for reference; the ratios are
scikit-learn float32 time / jaxssl time and jaxssl inertia / scikit-learn float32 inertia.
jaxssl runs twice: ``hamerly`` (its default: Hamerly's bounds skip the distances that
cannot change a label) and ``lloyd`` (every distance every iteration); both give the same
labels. The machine's load average is printed before and after: the 2 cores may be shared.
"""

from __future__ import annotations

import argparse
import os
import time

import jax
import numpy as np
import sklearn
import threadpoolctl
from sklearn.cluster import KMeans as SklearnKMeans
from sklearn.datasets import make_blobs

from jaxssl.cluster import algorithms, kmeans


def _median_time(fn, repeats: int):
  """(median wall seconds of ``fn()`` over ``repeats`` calls, last result)."""
  times, out = [], None
  for _ in range(repeats):
    t = time.perf_counter()
    out = fn()
    times.append(time.perf_counter() - t)
  return float(np.median(times)), out


def make_data(n: int, d: int, centers: int, std: float, seed: int) -> np.ndarray:
  """Gaussian blobs, float32 [n, d]."""
  x, _ = make_blobs(n_samples=n, n_features=d, centers=centers, cluster_std=std,
                    center_box=(-10.0, 10.0), random_state=seed)
  return x.astype(np.float32)


def run(args) -> list[dict]:
  """Fits both libraries from the same start; returns one row per contender."""
  x = make_data(args.n, args.d, args.centers, args.std, args.seed)
  init = x[np.random.default_rng(args.seed).choice(args.n, args.k, replace=False)]
  rows = []
  for dtype in (np.float32, np.float64):
    xd, init_d = x.astype(dtype), init.astype(dtype)
    seconds, model = _median_time(lambda: SklearnKMeans(
        args.k, init=init_d, n_init=1, max_iter=args.iters, tol=0.0,
        algorithm='lloyd').fit(xd), args.repeats)
    rows.append(dict(name=f'sklearn {np.dtype(dtype).name}', seconds=seconds,
                     n_iter=model.n_iter_, inertia=float(model.inertia_)))

  for algorithm in algorithms.ALGORITHMS:
    ours = kmeans.KMeans(args.k, init=init, max_iter=args.iters, tol=0.0, algorithm=algorithm)
    t = time.perf_counter()
    ours.fit(x)  # compiles
    compile_s = time.perf_counter() - t
    seconds, model = _median_time(lambda: ours.fit(x), args.repeats)
    rows.append(dict(name=f'jaxssl float32 {algorithm}', seconds=seconds, n_iter=model.n_iter_,
                     inertia=model.inertia_, first_call_s=compile_s))
  return rows


def main():
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--n', type=int, default=200_000)
  parser.add_argument('--d', type=int, default=64)
  parser.add_argument('--k', type=int, default=100, help='clusters fitted')
  parser.add_argument('--centers', type=int, default=100, help='blobs generated')
  parser.add_argument('--std', type=float, default=4.0, help='blob standard deviation')
  parser.add_argument('--iters', type=int, default=50, help='max_iter of both (tol=0)')
  parser.add_argument('--repeats', type=int, default=3)
  parser.add_argument('--seed', type=int, default=0)
  parser.add_argument('--quick', action='store_true', help='20,000 x 32, K = 20, 1 repeat')
  args = parser.parse_args()
  if args.quick:
    args.n, args.d, args.k, args.centers, args.repeats = 20_000, 32, 20, 20, 1
  threads = threadpoolctl.threadpool_info()
  print(f'load average before (1, 5, 15 min): {os.getloadavg()}')
  print(f'jax {jax.__version__} on {jax.devices()}, scikit-learn {sklearn.__version__}, '
        f'{os.cpu_count()} CPUs; sklearn threads: '
        f'{sorted({(t["internal_api"], t["num_threads"]) for t in threads})}')
  print(f'data: make_blobs synthetic Gaussian blobs, {args.n:,} x {args.d} float32, '
        f'{args.centers} blobs of std {args.std}; K = {args.k}, same initial centres, '
        f'n_init=1, tol=0, max_iter={args.iters}; median of {args.repeats}')
  rows = run(args)
  base = rows[0]
  print(f'\n{"":28} {"fit_s":>8} {"n_iter":>6} {"ms/iter":>8} {"inertia":>14} '
        f'{"sk32_s/this_s":>13} {"inertia/sk32":>12}')
  for r in rows:
    print(f'{r["name"]:28} {r["seconds"]:8.3f} {r["n_iter"]:6d} '
          f'{1e3 * r["seconds"] / r["n_iter"]:8.2f} {r["inertia"]:14.6g} '
          f'{base["seconds"] / r["seconds"]:13.2f} {r["inertia"] / base["inertia"]:12.7f}')
  for r in rows[2:]:
    print(f'{r["name"]} first fit (compilation included, not in the table): '
          f'{r["first_call_s"]:.2f} s')
  print(f'load average after (1, 5, 15 min): {os.getloadavg()}')


if __name__ == '__main__':
  main()
