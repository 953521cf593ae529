"""k-means experiment: summary metrics against sklearn.metrics, IDX input, config errors."""

import gzip
import json
import os
import struct

import numpy as np
import orbax.checkpoint as ocp
import pytest
from flax import nnx
from sklearn import datasets
from sklearn import metrics as sk_metrics
from sklearn import preprocessing

from experiments import autoencoder, mlm_pretrain
from experiments import kmeans as kmeans_experiment
from jaxssl.data import images
from jaxssl.models import conv_ae
from jaxssl.train import state as state_lib
from tests.experiments.helpers import evals, smoke

KEYS = {'eval/inertia', 'eval/homogeneity', 'eval/completeness', 'eval/v_measure', 'eval/ari',
        'eval/ami', 'eval/silhouette'}


def test_summary_metrics_equal_sklearn_recomputed_from_saved_labels(smoke_run):
  workdir, summary = smoke_run(kmeans_experiment)
  with open(os.path.join(workdir, 'summary.json'), encoding='utf-8') as f:
    assert json.load(f) == json.loads(json.dumps(summary))
  e = evals(summary)
  assert set(e) == KEYS
  saved = np.load(os.path.join(workdir, 'clusters.npz'))
  labels, centers, targets = saved['labels'], saved['cluster_centers'], saved['targets']
  # The features, rebuilt independently: scikit-learn's digits, standardised.
  digits = datasets.load_digits()
  x = preprocessing.StandardScaler().fit_transform(digits.data)
  np.testing.assert_array_equal(targets, digits.target)
  assert labels.shape == (1797,) and centers.shape == (10, 64)
  assert summary['data/num_examples'] == 1797 and summary['data/num_features'] == 64
  # Labels are the nearest saved centre (as predict), and the inertia is their distances.
  sq = ((x[:, None] - centers[None].astype(np.float64)) ** 2).sum(-1)  # [N, K]
  np.testing.assert_array_equal(labels, sq.argmin(1))
  np.testing.assert_allclose(e['eval/inertia'], sq.min(1).sum(), rtol=1e-5)
  h, c, v = sk_metrics.homogeneity_completeness_v_measure(targets, labels)
  np.testing.assert_allclose([e['eval/homogeneity'], e['eval/completeness'],
                              e['eval/v_measure']], [h, c, v], rtol=1e-12)
  np.testing.assert_allclose(e['eval/ari'], sk_metrics.adjusted_rand_score(targets, labels),
                             rtol=1e-12)
  np.testing.assert_allclose(e['eval/ami'],
                             sk_metrics.adjusted_mutual_info_score(targets, labels), rtol=1e-12)
  config = summary['config']
  silhouette = sk_metrics.silhouette_score(
      x, labels, sample_size=config['eval']['silhouette_samples'], random_state=config['seed'])
  np.testing.assert_allclose(e['eval/silhouette'], silhouette, rtol=1e-4)
  # Clusters of the standardised digits follow the classes well above chance (ARI 0).
  assert e['eval/ari'] > 0.3 and e['eval/v_measure'] > 0.5
  assert os.path.exists(os.path.join(workdir, 'config.json'))


def _idx(code, shape, values: bytes) -> bytes:
  return struct.pack('>BBBB', 0, 0, code, len(shape)) + struct.pack(
      f'>{len(shape)}I', *shape) + values


def test_idx_files_clustered_with_every_split(cache_dir, tmp_path):
  # Three classes of 4x4 images: class c lights pixels [5c, 5c + 5) at 200-255, the rest at
  # 0-40. Well separated, so K = 3 recovers the classes exactly (ARI = AMI = 1).
  rng = np.random.default_rng(0)
  folder = tmp_path / 'idx'
  folder.mkdir()
  for split, n in (('train', 60), ('t10k', 30)):
    labels = np.arange(n) % 3
    images = rng.integers(0, 40, (n, 4, 4)).astype(np.uint8)
    for i, c in enumerate(labels):
      images[i].reshape(-1)[5 * c:5 * c + 5] = rng.integers(200, 255, 5)
    (folder / f'{split}-images-idx3-ubyte.gz').write_bytes(
        gzip.compress(_idx(0x08, images.shape, images.tobytes())))
    (folder / f'{split}-labels-idx1-ubyte.gz').write_bytes(
        gzip.compress(_idx(0x08, labels.shape, labels.astype(np.uint8).tobytes())))
  config = smoke(kmeans_experiment, cache_dir, **{'data.files': str(folder / '*-ubyte.gz'),
                                                  'method.n_clusters': 3})
  summary = kmeans_experiment.train_and_evaluate(config, str(tmp_path / 'run'))
  assert summary['data/num_examples'] == 90 and summary['data/num_features'] == 16
  assert summary['eval/ari'] == pytest.approx(1.0)
  assert summary['eval/ami'] == pytest.approx(1.0)
  assert summary['data/source'].startswith('files:')


@pytest.mark.parametrize('field, value, match', [
    ('method.n_clusters', 0, 'method.n_clusters=0 must be an integer >= 1'),
    ('method.n_init', 0, 'method.n_init=0 must be an integer >= 1'),
    ('method.max_iter', 0, 'method.max_iter=0 must be an integer >= 1'),
    ('method.tol', -1.0, 'method.tol=-1.0 must be >= 0'),
    ('method.init', 'kmeans', "method.init='kmeans' must be one of"),
    ('method.algorithm', 'elkan', "method.algorithm='elkan' must be one of"),
    ('eval.silhouette_samples', 1, 'eval.silhouette_samples=1 must be >= 2'),
    ('data.standardize', 'yes', "data.standardize='yes' must be True or False"),
    ('seed', -1, 'seed=-1 must be >= 0'),
    ('mesh.data', 3, 'mesh'),
    ('method.n_clusters', 2.5, 'method.n_clusters=2.5 must be an integer >= 1'),
])
def test_bad_config_values_raise_before_anything_runs(field, value, match, tmp_path):
  config = kmeans_experiment.smoke_config()
  target = config
  *parents, last = field.split('.')
  for p in parents:
    target = target[p]
  with config.ignore_type():
    target[last] = value
  with pytest.raises(ValueError, match=match):
    kmeans_experiment.train_and_evaluate(config, str(tmp_path / 'w'))
  assert not os.path.exists(tmp_path / 'w')  # failed before the workdir was made


def test_more_clusters_than_images_is_named(cache_dir, tmp_path):
  config = smoke(kmeans_experiment, cache_dir, **{'method.n_clusters': 1798})
  with pytest.raises(ValueError, match='method.n_clusters=1798 exceeds the 1797 images'):
    kmeans_experiment.train_and_evaluate(config, str(tmp_path / 'w'))


def test_features_from_a_trained_autoencoder(smoke_run, cache_dir, tmp_path, monkeypatch):
  ae_dir, _ = smoke_run(autoencoder)

  def must_not_run(*args, **kwargs):
    raise AssertionError("the encoder is restored onto a shape-only target, not the learner's data")

  monkeypatch.setattr(autoencoder, 'prepare_data', must_not_run)
  summary = kmeans_experiment.train_and_evaluate(
      smoke(kmeans_experiment, cache_dir, features_from=ae_dir), str(tmp_path / 'k'))
  assert summary['data/features_from'] == 'autoencoder'
  assert summary['data/features_from_step'] == 6
  # The features rebuilt without tools.encoders: the saved parameters in the model's
  # own encode, on the autoencoder's train and test images, standardised.
  ae_config = smoke(autoencoder, cache_dir)
  data = images.load_images(ae_config.data)
  params = ocp.StandardCheckpointer().restore(
      os.path.join(ae_dir, 'checkpoints', '6', 'state'))['params']
  graphdef, _ = state_lib.split_model(conv_ae.Autoencoder(
      data.train['image'].shape[1:], ae_config.model.latent_dim, tuple(ae_config.model.widths),
      activation=ae_config.model.activation, rngs=nnx.Rngs(0)))
  model = state_lib.merge_model(graphdef, params)
  pixels = np.concatenate([data.train['image'], data.test['image']]).astype(np.float32) / 255
  x = preprocessing.StandardScaler().fit_transform(np.asarray(model.encode(pixels), np.float64))
  saved = np.load(os.path.join(str(tmp_path / 'k'), 'clusters.npz'))
  assert x.shape == (summary['data/num_examples'], ae_config.model.latent_dim)
  # The saved centres are a fixed point of Lloyd's algorithm on these features: labels are
  # their nearest centres and the inertia their squared distances.
  sq = ((x[:, None] - saved['cluster_centers'][None].astype(np.float64)) ** 2).sum(-1)
  np.testing.assert_array_equal(saved['labels'], sq.argmin(1))
  np.testing.assert_allclose(summary['eval/inertia'], sq.min(1).sum(), rtol=1e-4)
  np.testing.assert_array_equal(saved['targets'],
                                np.concatenate([data.train['label'], data.test['label']]))


def test_features_from_a_workdir_without_an_encoder_is_named(smoke_run, cache_dir, tmp_path):
  with pytest.raises(FileNotFoundError, match='config.features_from=.* holds no checkpoints'):
    kmeans_experiment.train_and_evaluate(
        smoke(kmeans_experiment, cache_dir, features_from=str(tmp_path / 'none')),
        str(tmp_path / 'a'))
  mlm_dir, _ = smoke_run(mlm_pretrain)
  with pytest.raises(ValueError, match="features_from=.* holds a 'mlm_pretrain' run; image "
                                       'representation learners'):
    kmeans_experiment.train_and_evaluate(
        smoke(kmeans_experiment, cache_dir, features_from=mlm_dir), str(tmp_path / 'b'))
