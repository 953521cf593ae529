"""Linear probe: multinomial logistic regression on standardised frozen features.

The linear evaluation protocol of Zhang et al. 2016 (arXiv:1603.08511) and of SimCLR (Chen
et al. 2020, arXiv:2002.05709, sec. 4), by scikit-learn's lbfgs.
"""

from __future__ import annotations

import math
import numbers
from typing import Sequence

import numpy as np
from sklearn import linear_model

from jaxssl.eval import features as features_lib


def _check_c_grid(c, name: str = 'C') -> tuple[float, ...]:
  grid = tuple(c) if isinstance(c, (tuple, list)) else (c,)
  if not grid or not all(isinstance(v, numbers.Real) and not isinstance(v, bool)
                         and 0 < v < math.inf for v in grid):
    raise ValueError(f'{name}={c!r} must be a number > 0 or a non-empty sequence of them')
  return tuple(float(v) for v in grid)


def _standardise(train: np.ndarray, *others: np.ndarray) -> list[np.ndarray]:
  """float64 copies scaled by the train rows' mean and population std (std 1 where constant)."""
  train = train.astype(np.float64)
  mean, std = train.mean(axis=0), train.std(axis=0)
  std = np.where(std > 0, std, 1.0)
  return [(x.astype(np.float64) - mean) / std for x in (train,) + others]


def _stratified_holdout(labels: np.ndarray, fraction: float, seed: int) -> np.ndarray:
  """bool [N]: round(fraction * n_c) random rows of each class c, leaving >= 1 in train."""
  rng = np.random.default_rng(seed)
  held = np.zeros(len(labels), bool)
  for c in np.unique(labels):
    rows = np.flatnonzero(labels == c)
    take = min(int(round(fraction * len(rows))), len(rows) - 1)
    held[rng.permutation(rows)[:take]] = True
  return held


def _fit_logistic(x: np.ndarray, y: np.ndarray, c: float, max_iter: int):
  return linear_model.LogisticRegression(C=c, solver='lbfgs', max_iter=max_iter).fit(x, y)


def linear_probe(train_features: np.ndarray, train_labels: np.ndarray,
                 test_features: np.ndarray, test_labels: np.ndarray, *,
                 C: float | Sequence[float] = (0.01, 0.1, 1.0, 10.0),
                 val_fraction: float = 0.2, max_iter: int = 1000,
                 seed: int = 0) -> dict[str, float]:
  """Accuracy of a multinomial logistic regression on frozen, standardised features.

  Features are standardised by the whole train split's mean and population std (held-out rows
  included; no labels are used). One ``C``: sklearn
  ``LogisticRegression(C, solver='lbfgs', max_iter)`` on all of train. Several: each fitted
  on train minus a stratified ``val_fraction`` (from ``seed``); the best held-out accuracy wins
  (ties: the smaller C), refitted on all of train. The default grid costs five lbfgs fits.

  Args:
    train_features, test_features: float [N, D] and [M, D].
    train_labels, test_labels: int [N] (at least two classes) and [M].

  Returns:
    {'linear_probe_accuracy': fraction of test rows right, in [0, 1], 'linear_probe_C': C used}.

  Raises:
    ValueError: features not non-empty [N, D] / [M, D] of one D, NaN or inf, label counts that
      do not match, non-integer labels, one train class only, a C not > 0, or val_fraction not
      in (0, 1).
  """
  train_x = features_lib._check_features(train_features, 'train_features')
  test_x = features_lib._check_features(test_features, 'test_features')
  features_lib._check_same_width(train_x, test_x, 'train_features', 'test_features')
  train_y = features_lib._check_labels(train_labels, len(train_x), 'train_labels')
  test_y = features_lib._check_labels(test_labels, len(test_x), 'test_labels')
  if len(np.unique(train_y)) < 2:
    raise ValueError(f'train_labels hold one class only ({train_y[0]}): a probe needs two')
  grid = _check_c_grid(C)
  if not 0 < val_fraction < 1:
    raise ValueError(f'val_fraction={val_fraction!r} must be in (0, 1)')
  if isinstance(max_iter, bool) or not isinstance(max_iter, int) or max_iter < 1:
    raise ValueError(f'max_iter={max_iter!r} must be an integer >= 1')
  train_x, test_x = _standardise(train_x, test_x)
  best_c = grid[0]
  if len(grid) > 1:
    held = _stratified_holdout(train_y, val_fraction, seed)
    if held.any() and len(np.unique(train_y[~held])) >= 2:
      scores = [_fit_logistic(train_x[~held], train_y[~held], c, max_iter)
                .score(train_x[held], train_y[held]) for c in grid]
      best = max(scores)
      best_c = min(c for c, s in zip(grid, scores) if s == best)
    else:  # too few rows to hold any out: the middle of the grid
      best_c = sorted(grid)[len(grid) // 2]
  model = _fit_logistic(train_x, train_y, best_c, max_iter)
  accuracy = float(np.mean(model.predict(test_x) == test_y))
  return {'linear_probe_accuracy': accuracy, 'linear_probe_C': best_c}

