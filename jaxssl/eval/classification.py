"""Scores of a classifier's test predictions, and the baselines a transfer run is read against.

``scores`` (accuracy, and scikit-learn's macro F1 over every class) is what ``text_classify``
and ``image_classify`` report; the baselines are fitted on the same labelled subset as the
model: the majority class, and multinomial logistic regression on given features (raw pixels for
images) with C chosen on validation accuracy.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from sklearn import linear_model, metrics, preprocessing


def scores(pred: np.ndarray, labels: np.ndarray, num_classes: int) -> dict[str, float]:
  """accuracy and macro_f1 of int [N] predictions against int [N] labels in [0, num_classes)
  (macro F1: the unweighted mean of per-class F1 over all classes, a class never predicted
  nor present counting 0; scikit-learn's ``f1_score``)."""
  return {'accuracy': float(np.mean(pred == labels)),
          'macro_f1': float(metrics.f1_score(labels, pred, labels=np.arange(num_classes),
                                             average='macro', zero_division=0))}


def majority(train_labels: np.ndarray, test_labels: np.ndarray,
             num_classes: int) -> dict[str, float]:
  """``majority_accuracy`` / ``majority_macro_f1`` of always predicting the most frequent
  training class (the smallest on ties)."""
  most = np.bincount(train_labels, minlength=num_classes).argmax()
  out = scores(np.full(len(test_labels), most), test_labels, num_classes)
  return {f'majority_{k}': v for k, v in out.items()}


def logistic_regression(name: str, train: tuple[np.ndarray, np.ndarray],
                        validation: tuple[np.ndarray, np.ndarray],
                        test: tuple[np.ndarray, np.ndarray], *, num_classes: int,
                        c_grid: Sequence[float], max_iter: int = 1000) -> dict[str, float]:
  """Multinomial logistic regression (lbfgs) on features standardised by the training rows,
  one fit per C of ``c_grid``; the first C with the best validation accuracy is tested.

  Args:
    name: the metrics' prefix, e.g. 'pixel_lr'.
    train, validation, test: (features float [N, D], labels int [N]) each.

  Returns:
    ``<name>_accuracy``, ``<name>_macro_f1`` (test), ``<name>_c`` and
    ``<name>_validation_accuracy``; {} when the training labels hold one class (nothing to
    fit).
  """
  x, y = train
  if len(np.unique(y)) < 2:
    return {}
  scaler = preprocessing.StandardScaler().fit(x)
  fits = []
  for c in c_grid:
    model = linear_model.LogisticRegression(C=c, max_iter=max_iter).fit(scaler.transform(x), y)
    accuracy = np.mean(model.predict(scaler.transform(validation[0])) == validation[1])
    fits.append((accuracy, -len(fits), c, model))
  accuracy, _, c, model = max(fits, key=lambda f: f[:2])
  out = scores(model.predict(scaler.transform(test[0])), test[1], num_classes)
  return {f'{name}_accuracy': out['accuracy'], f'{name}_macro_f1': out['macro_f1'],
          f'{name}_c': float(c), f'{name}_validation_accuracy': float(accuracy)}
