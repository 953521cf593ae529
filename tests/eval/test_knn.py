"""Tests of jaxssl.eval.knn against a NumPy brute-force weighted kNN and hand-worked votes."""

import numpy as np
import pytest

from jaxssl.eval import knn


def knn_reference(train, labels, test, k, temperature, num_classes):
  """Brute-force weighted kNN (Wu et al. 2018) in float64. Returns (predictions, ok): ok
  marks queries whose answer is not decided by rounding (a clear k-th/(k+1)-th neighbour gap
  and a clear winning class)."""
  train = train / np.linalg.norm(train, axis=1, keepdims=True)
  test = test / np.linalg.norm(test, axis=1, keepdims=True)
  k = min(k, len(train))
  predictions, ok = [], []
  for s in test.astype(np.float64) @ train.astype(np.float64).T:
    order = np.argsort(-s, kind='stable')
    scores = np.full(num_classes, -np.inf)
    for i in order[:k]:
      scores[labels[i]] = np.logaddexp(scores[labels[i]], s[i] / temperature)  # log sum exp
    best = np.sort(scores)[::-1]
    gap_rank = k == len(train) or s[order[k - 1]] - s[order[k]] > 1e-5
    gap_class = num_classes == 1 or best[0] - best[1] > 1e-4
    predictions.append(int(np.argmax(scores)))
    ok.append(gap_rank and gap_class)
  return np.array(predictions), np.array(ok)


def test_knn_matches_numpy_reference():
  rng = np.random.default_rng(1)
  train = rng.normal(size=(150, 8)).astype(np.float32)
  labels = rng.integers(1, 5, 150).astype(np.int32)  # classes 0 and 5 get no votes
  test = rng.normal(size=(70, 8)).astype(np.float32)
  for k in (1, 7, 40, 150, 1000):
    for temperature in (0.05, 0.1, 1.0):
      got = knn.knn_classify(train, labels, test, k=k, temperature=temperature,
                             num_classes=6, chunk_size=32)  # 70 = 2 x 32 + 6 padded
      want, ok = knn_reference(train, labels, test, k, temperature, 6)
      assert ok.mean() > 0.9, (k, temperature)
      np.testing.assert_array_equal(got[ok], want[ok], err_msg=f'k={k} T={temperature}')
      assert set(np.unique(got)) <= {1, 2, 3, 4}


def test_knn_weighted_vote_hand_worked():
  # Query e1. Two class-0 rows at cosine 0.5, one class-1 row at cosine 0.9, one far row.
  train = np.array([[0.5, np.sqrt(0.75)], [0.5, -np.sqrt(0.75)],
                    [0.9, np.sqrt(0.19)], [-1.0, 0.0]], np.float32)
  labels = np.array([0, 0, 1, 2])
  query = np.array([[2.0, 0.0]], np.float32)  # norm 2: normalised away
  # T = 0.1: class 0 weighs 2 e^5 = 296.8, class 1 e^9 = 8103.1 -> 1 (not the majority).
  assert knn.knn_classify(train, labels, query, k=3, temperature=0.1, num_classes=3)[0] == 1
  # T = 1: 2 e^0.5 = 3.30 > e^0.9 = 2.46 -> 0.
  assert knn.knn_classify(train, labels, query, k=3, temperature=1.0, num_classes=3)[0] == 0
  # k = 1: the nearest row alone.
  assert knn.knn_classify(train, labels, query, k=1, temperature=1.0, num_classes=3)[0] == 1
  # k = 200 > N = 4: every row votes; class 2 adds e^-1 to nothing -> still 0 at T = 1.
  assert knn.knn_classify(train, labels, query, k=200, temperature=1.0, num_classes=3)[0] == 0
  acc = knn.knn_accuracy(train, labels, query, np.array([0]), k=200, temperature=1.0,
                         num_classes=3)
  assert acc == {'knn_accuracy': 1.0}


def test_knn_unvoted_classes_are_never_predicted():
  # Every neighbour of the query is class 2 (the highest index) at cosine -1: exp(-1 / T)
  # underflows to 0 in float32 for T = 0.001, so a vote table initialised with zeros would
  # tie all classes at 0 and argmax would pick the unvoted class 0.
  train = np.array([[1.0, 0.0], [1.0, 0.01]], np.float32)
  query = np.array([[-1.0, 0.0]], np.float32)
  got = knn.knn_classify(train, np.array([2, 2]), query, k=2, temperature=1e-3, num_classes=3)
  assert got[0] == 2
  # Class 0 has no row; class 1 (cosine 0.5) and class 3 (cosine -0.9) vote; class 3's
  # weight relative to class 1's, exp(-1.4 / 0.001), is 0 in float32 but it still beats the
  # unvoted classes 0 and 2.
  train = np.array([[0.5, np.sqrt(0.75)], [-0.9, np.sqrt(0.19)]], np.float32)
  labels = np.array([1, 3])
  query = np.array([[1.0, 0.0]], np.float32)
  assert knn.knn_classify(train, labels, query, k=2, temperature=1e-3, num_classes=4)[0] == 1
  # Only class 0 voted and it is the only candidate even when its weights underflow.
  got = knn.knn_classify(train[:1], np.array([0]), -query, k=5, temperature=1e-3,
                         num_classes=4)
  assert got[0] == 0


def test_knn_k_larger_than_train_set_uses_every_row():
  rng = np.random.default_rng(2)
  train, labels = rng.normal(size=(5, 3)), rng.integers(0, 3, 5)
  test = rng.normal(size=(9, 3))
  got = knn.knn_classify(train, labels, test, k=200, temperature=0.5, num_classes=3)
  np.testing.assert_array_equal(
      got, knn.knn_classify(train, labels, test, k=5, temperature=0.5, num_classes=3))
  want, ok = knn_reference(train, labels, test, 200, 0.5, 3)
  np.testing.assert_array_equal(got[ok], want[ok])


@pytest.mark.parametrize('kwargs, match', [
    (dict(k=0), 'k=0'), (dict(temperature=0.0), 'temperature'), (dict(num_classes=2), 'lie in'),
    (dict(train_labels=np.zeros(3, np.int32)), 'has 3 labels'),
    (dict(test_features=np.ones((2, 5))), 'different widths'),
    (dict(train_features=np.full((4, 3), np.nan)), 'NaN'),
    (dict(chunk_size=0), 'chunk_size'),
])
def test_knn_bad_inputs(kwargs, match):
  args = dict(train_features=np.ones((4, 3)), train_labels=np.array([0, 1, 2, 1]),
              test_features=np.ones((2, 3)), k=2, temperature=0.1, num_classes=3)
  args.update(kwargs)
  with pytest.raises(ValueError, match=match):
    knn.knn_classify(**args)
