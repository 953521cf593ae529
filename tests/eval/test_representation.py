"""Tests of jaxssl.eval.representation against independent references: a NumPy brute-force
weighted kNN, hand-worked votes, scikit-learn's LogisticRegression pipeline and
sklearn.metrics; and that every measurement leaves a BatchNorm encoder's variables
bit-identical."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from jax.sharding import Mesh
from sklearn import datasets
from sklearn import linear_model
from sklearn import metrics as sk_metrics
from sklearn import pipeline
from sklearn import preprocessing

from jaxssl.cluster import kmeans
from jaxssl.eval import representation as rep


# ----------------------------------------------------------------------------- helpers

class BNEncoder(nnx.Module):
  """Two stride-2 convolutions with BatchNorm, global average pooling, a dense layer."""

  def __init__(self, *, rngs: nnx.Rngs):
    self.conv1 = nnx.Conv(1, 8, (3, 3), strides=(2, 2), rngs=rngs)
    self.norm1 = nnx.BatchNorm(8, momentum=0.5, rngs=rngs)
    self.conv2 = nnx.Conv(8, 16, (3, 3), strides=(2, 2), rngs=rngs)
    self.norm2 = nnx.BatchNorm(16, momentum=0.5, rngs=rngs)
    self.dense = nnx.Linear(16, 12, rngs=rngs)

  def __call__(self, x):
    h = jax.nn.relu(self.norm1(self.conv1(x)))
    h = jax.nn.relu(self.norm2(self.conv2(h)))  # [B, 2, 2, 16]
    return self.dense(h.mean(axis=(1, 2))), {'pooled': h}  # [B, 12], jaxssl convention


@pytest.fixture(scope='module')
def digits():
  """scikit-learn's 8x8 digits as uint8 [N, 8, 8, 1], split 1400 / 397 by a fixed order."""
  d = datasets.load_digits()
  images = np.round(d.images * (255 / 16)).astype(np.uint8)[..., None]
  order = np.random.default_rng(0).permutation(len(images))
  images, labels = images[order], d.target[order].astype(np.int32)
  return {'train': {'image': images[:1400], 'label': labels[:1400]},
          'test': {'image': images[1400:], 'label': labels[1400:]}, 'num_classes': 10}


@pytest.fixture(scope='module')
def bn_encoder():
  """(module in eval mode, graphdef, variables) of a BNEncoder with random parameters and
  random running statistics (not the initial 0/1). Drawn by NumPy into the abstract module:
  eager Flax initialisation compiles every initialiser (~6 s here)."""
  rng = np.random.default_rng(0)

  def draw(path, leaf):
    name = jax.tree_util.keystr(path)
    if "'var'" in name or "'scale'" in name:
      return jnp.asarray(rng.uniform(0.5, 2.0, leaf.shape), jnp.float32)
    fan_in = int(np.prod(leaf.shape[:-1])) if len(leaf.shape) > 1 else 100
    return jnp.asarray(rng.normal(0, fan_in ** -0.5, leaf.shape), jnp.float32)

  graphdef, shapes = rep.split_encoder(nnx.eval_shape(lambda: BNEncoder(rngs=nnx.Rngs(0))))
  drawn = jax.tree_util.tree_map_with_path(draw, shapes)
  model = nnx.merge(graphdef, drawn['params'], drawn['batch_stats'])
  model.eval()
  graphdef, variables = rep.split_encoder(model)
  return model, graphdef, variables


def snapshot(tree):
  return [np.array(leaf, copy=True) for leaf in jax.tree.leaves(tree)]


def assert_unchanged(before, tree):
  after = jax.tree.leaves(tree)
  assert len(before) == len(after)
  for b, a in zip(before, after):
    np.testing.assert_array_equal(b, np.asarray(a))


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


def blobs(n, d, num_classes, *, spread, seed):
  rng = np.random.default_rng(seed)
  centres = rng.normal(size=(num_classes, d)) * 3
  labels = rng.integers(0, num_classes, n).astype(np.int32)
  return (centres[labels] + spread * rng.normal(size=(n, d))).astype(np.float32), labels


# ----------------------------------------------------------------------------- kNN

def test_knn_matches_numpy_reference():
  rng = np.random.default_rng(1)
  train = rng.normal(size=(150, 8)).astype(np.float32)
  labels = rng.integers(1, 5, 150).astype(np.int32)  # classes 0 and 5 get no votes
  test = rng.normal(size=(70, 8)).astype(np.float32)
  for k in (1, 7, 40, 150, 1000):
    for temperature in (0.05, 0.1, 1.0):
      got = rep.knn_classify(train, labels, test, k=k, temperature=temperature,
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
  assert rep.knn_classify(train, labels, query, k=3, temperature=0.1, num_classes=3)[0] == 1
  # T = 1: 2 e^0.5 = 3.30 > e^0.9 = 2.46 -> 0.
  assert rep.knn_classify(train, labels, query, k=3, temperature=1.0, num_classes=3)[0] == 0
  # k = 1: the nearest row alone.
  assert rep.knn_classify(train, labels, query, k=1, temperature=1.0, num_classes=3)[0] == 1
  # k = 200 > N = 4: every row votes; class 2 adds e^-1 to nothing -> still 0 at T = 1.
  assert rep.knn_classify(train, labels, query, k=200, temperature=1.0, num_classes=3)[0] == 0
  acc = rep.knn_accuracy(train, labels, query, np.array([0]), k=200, temperature=1.0,
                         num_classes=3)
  assert acc == {'knn_accuracy': 1.0}


def test_knn_unvoted_classes_are_never_predicted():
  # Every neighbour of the query is class 2 (the highest index) at cosine -1: exp(-1 / T)
  # underflows to 0 in float32 for T = 0.001, so a vote table initialised with zeros would
  # tie all classes at 0 and argmax would pick the unvoted class 0.
  train = np.array([[1.0, 0.0], [1.0, 0.01]], np.float32)
  query = np.array([[-1.0, 0.0]], np.float32)
  got = rep.knn_classify(train, np.array([2, 2]), query, k=2, temperature=1e-3, num_classes=3)
  assert got[0] == 2
  # Class 0 has no row; class 1 (cosine 0.5) and class 3 (cosine -0.9) vote; class 3's
  # weight relative to class 1's, exp(-1.4 / 0.001), is 0 in float32 but it still beats the
  # unvoted classes 0 and 2.
  train = np.array([[0.5, np.sqrt(0.75)], [-0.9, np.sqrt(0.19)]], np.float32)
  labels = np.array([1, 3])
  query = np.array([[1.0, 0.0]], np.float32)
  assert rep.knn_classify(train, labels, query, k=2, temperature=1e-3, num_classes=4)[0] == 1
  # Only class 0 voted and it is the only candidate even when its weights underflow.
  got = rep.knn_classify(train[:1], np.array([0]), -query, k=5, temperature=1e-3,
                         num_classes=4)
  assert got[0] == 0


def test_knn_k_larger_than_train_set_uses_every_row():
  rng = np.random.default_rng(2)
  train, labels = rng.normal(size=(5, 3)), rng.integers(0, 3, 5)
  test = rng.normal(size=(9, 3))
  got = rep.knn_classify(train, labels, test, k=200, temperature=0.5, num_classes=3)
  np.testing.assert_array_equal(
      got, rep.knn_classify(train, labels, test, k=5, temperature=0.5, num_classes=3))
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
    rep.knn_classify(**args)


# ----------------------------------------------------------------------------- linear probe

def test_linear_probe_matches_sklearn_pipeline():
  x, y = blobs(400, 6, 4, spread=3.0, seed=3)  # overlapping: accuracy well below 1
  x = x * np.array([1, 10, 0.1, 100, 1, 1], np.float32)  # scales the standardising undoes
  tx, ty, vx, vy = x[:300], y[:300], x[300:], y[300:]
  for c in (0.05, 1.0):
    got = rep.linear_probe(tx, ty, vx, vy, C=c)
    reference = pipeline.make_pipeline(preprocessing.StandardScaler(),
                                       linear_model.LogisticRegression(C=c, max_iter=1000))
    want = reference.fit(tx, ty).score(vx, vy)
    assert got == {'linear_probe_accuracy': want, 'linear_probe_C': c}
    assert 0.4 < want < 0.99
  grid = (0.01, 0.1, 1.0)
  got = rep.linear_probe(tx, ty, vx, vy, C=grid)
  assert got['linear_probe_C'] in grid
  assert got['linear_probe_accuracy'] == rep.linear_probe(
      tx, ty, vx, vy, C=got['linear_probe_C'])['linear_probe_accuracy']


def test_linear_probe_separable_data_is_perfect():
  x, y = blobs(200, 5, 3, spread=0.05, seed=4)
  got = rep.linear_probe(x[:150], y[:150], x[150:], y[150:], C=1.0)
  assert got['linear_probe_accuracy'] == 1.0


@pytest.mark.parametrize('change, match', [
    (dict(train_labels=np.zeros(9, np.int32)), 'has 9 labels'),
    (dict(test_labels=np.zeros(3, np.int32)), 'test_labels has 3'),
    (dict(train_features=np.where(np.eye(10, 4) > 0, np.nan, 1.0)), 'train_features holds NaN'),
    (dict(test_features=np.full((5, 4), np.inf)), 'test_features holds NaN or inf'),
    (dict(train_labels=np.ones(10, np.int32)), 'one class'),
    (dict(test_features=np.ones((5, 3))), 'different widths'),
    (dict(C=0.0), 'C=0.0'),
    (dict(C=()), 'C=()'),
    (dict(train_labels=np.linspace(0, 1, 10)), 'integer'),
])
def test_linear_probe_bad_inputs(change, match):
  rng = np.random.default_rng(5)
  args = dict(train_features=rng.normal(size=(10, 4)), train_labels=np.arange(10) % 2,
              test_features=rng.normal(size=(5, 4)), test_labels=np.arange(5) % 2)
  args.update(change)
  with pytest.raises(ValueError, match=match):
    rep.linear_probe(**args)


# ----------------------------------------------------------------------------- clustering

def test_cluster_features_matches_sklearn_metrics():
  # The shapes of the end-to-end test's k-means (397 x 12, K = 10, one run): one compilation.
  x, y = blobs(397, 12, 10, spread=4.0, seed=6)
  got = rep.cluster_features(x, y, n_clusters=10, seed=3, n_init=1)
  unit = x / np.linalg.norm(x, axis=1, keepdims=True)
  labels = kmeans.KMeans(n_clusters=10, n_init=1, seed=3).fit(unit).labels_
  assert got == {'kmeans_ari': sk_metrics.adjusted_rand_score(y, labels),
                 'kmeans_nmi': sk_metrics.normalized_mutual_info_score(y, labels)}
  assert 0.1 < got['kmeans_ari'] < 1.0
  separated, y2 = blobs(397, 12, 10, spread=0.01, seed=7)
  got = rep.cluster_features(separated, y2, n_clusters=10, seed=0, n_init=1)
  assert got['kmeans_ari'] == pytest.approx(1.0) and got['kmeans_nmi'] == pytest.approx(1.0)
  with pytest.raises(ValueError, match='n_clusters'):
    rep.cluster_features(x, y, n_clusters=0)
  with pytest.raises(ValueError, match='labels has 3'):
    rep.cluster_features(x, y[:3], n_clusters=2)


# ----------------------------------------------------------------------------- encoder

def test_extract_features_is_frozen_eval_mode_and_compiles_once(digits, bn_encoder):
  model, graphdef, variables = bn_encoder
  before = snapshot(variables)
  traces = []

  def method(module, images, train):
    traces.append(train)  # runs once per trace
    return module(images)[0]

  embed = rep.nnx_embed_fn(graphdef, method)
  images = digits['train']['image'][:300]
  features = rep.extract_features(embed, variables, images, batch_size=128)  # 3 batches
  assert features.shape == (300, 12) and features.dtype == np.float32
  assert traces == [False]
  # The reference: the original module, in eval mode, on all images at once.
  want = np.asarray(model(jnp.asarray(images, jnp.float32) / 255)[0])
  np.testing.assert_allclose(features, want, rtol=1e-5, atol=1e-5)
  # Batch composition (and the zero padding) does not matter; one 1-device mesh works too.
  mesh = Mesh(np.array(jax.devices()[:1]).reshape(1, 1), ('data', 'fsdp'))
  other = rep.extract_features(embed, variables, images, batch_size=7, mesh=mesh)
  np.testing.assert_allclose(other, features, rtol=1e-5, atol=1e-5)
  by_name = rep.extract_features(rep.nnx_embed_fn(graphdef, '__call__'), variables,
                                images[:5], batch_size=8)
  np.testing.assert_allclose(by_name, features[:5], rtol=1e-5, atol=1e-5)
  # Probe and kNN on these features; the encoder's params and statistics are untouched.
  test = rep.extract_features(embed, variables, digits['test']['image'], batch_size=128)
  probe = rep.linear_probe(features, digits['train']['label'][:300], test,
                           digits['test']['label'], C=1.0)
  knn = rep.knn_accuracy(features, digits['train']['label'][:300], test,
                         digits['test']['label'], k=20, num_classes=10)
  assert probe['linear_probe_accuracy'] > 0.3 and knn['knn_accuracy'] > 0.3
  assert_unchanged(before, variables)
  with pytest.raises(ValueError, match='batch_size'):
    rep.extract_features(embed, variables, images, batch_size=0)
  with pytest.raises(ValueError, match=r'\[N, H, W, C\]'):
    rep.extract_features(embed, variables, images[:, :, :, 0], batch_size=8)
  with pytest.raises(ValueError, match='uint8 or float'):
    rep.extract_features(embed, variables, images.astype(np.int32), batch_size=8)


def test_fine_tune_learns_digits_and_leaves_caller_variables(digits, bn_encoder):
  _, graphdef, variables = bn_encoder
  before = snapshot(variables)
  embed = rep.nnx_embed_fn(graphdef)
  got = rep.fine_tune(embed, variables, digits['train']['image'], digits['train']['label'],
                      digits['test']['image'], digits['test']['label'], num_classes=10,
                      num_steps=150, batch_size=64, learning_rate=3e-3, seed=0)
  assert set(got) == {'fine_tune_accuracy', 'fine_tune_train_loss'}
  assert got['fine_tune_accuracy'] > 0.6, got  # chance: 0.1
  assert_unchanged(before, variables)
  for leaf in jax.tree.leaves(variables):  # not donated away
    np.asarray(leaf)
  args = (embed, variables, digits['train']['image'], digits['train']['label'],
          digits['test']['image'], digits['test']['label'])
  with pytest.raises(ValueError, match='NnxEmbedFn'):
    rep.fine_tune(lambda v, x: x.reshape(len(x), -1), *args[1:], num_classes=10)
  with pytest.raises(ValueError, match='num_classes=1'):
    rep.fine_tune(*args, num_classes=1)
  with pytest.raises(ValueError, match=r'lie in \[0, num_classes=5\)'):
    rep.fine_tune(*args, num_classes=5)
  with pytest.raises(ValueError, match='test_labels has 3'):
    rep.fine_tune(*args[:5], args[5][:3], num_classes=10)
  with pytest.raises(ValueError, match='learning_rate'):
    rep.fine_tune(*args, num_classes=10, learning_rate=0.0)


def test_evaluate_representation_end_to_end(digits, bn_encoder):
  _, graphdef, variables = bn_encoder
  before = snapshot(variables)
  config = rep.eval_config()
  config.global_batch_size = 128
  config.knn_k = 20
  config.probe_c = (0.1, 1.0)
  config.kmeans_n_init = 1
  config.fine_tune = True
  config.finetune_steps = 20
  got = rep.evaluate_representation(rep.nnx_embed_fn(graphdef), variables, digits, config,
                                    prefix='eval/')
  assert set(got) == {'eval/' + k for k in (
      'feature_dim', 'linear_probe_accuracy', 'linear_probe_C', 'knn_accuracy', 'kmeans_ari',
      'kmeans_nmi', 'fine_tune_accuracy', 'fine_tune_train_loss')}
  assert got['eval/feature_dim'] == 12
  for key in ('linear_probe_accuracy', 'knn_accuracy', 'kmeans_nmi', 'fine_tune_accuracy'):
    assert 0.15 < got['eval/' + key] <= 1.0, (key, got)
  assert_unchanged(before, variables)
  # A plain embed_fn (a random projection of the pixels to 12 features) works without
  # fine-tuning, and not with it.
  def project(v, x):
    return x.reshape(len(x), -1) @ v['w']  # [B, 12]

  w = {'w': np.random.default_rng(0).normal(size=(64, 12)).astype(np.float32)}
  config.fine_tune = False
  projected = rep.evaluate_representation(project, w, digits, config)
  assert projected['knn_accuracy'] > 0.8 and 'fine_tune_accuracy' not in projected
  config.fine_tune = True
  with pytest.raises(ValueError, match='NnxEmbedFn'):
    rep.evaluate_representation(project, w, digits, config)
  config.knn_temperature = 0.0
  with pytest.raises(ValueError, match='eval.knn_temperature'):
    rep.evaluate_representation(rep.nnx_embed_fn(graphdef), variables, digits, config)
