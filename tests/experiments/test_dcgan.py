"""DCGAN experiment: each update touches only its own network; the sample-quality metrics
recomputed from the saved generator; config errors."""

import os
import warnings

import jax
import ml_collections
import numpy as np
import orbax.checkpoint as ocp
import PIL.Image
import pytest
import scipy.linalg

from experiments import dcgan
from jaxssl.models import gan
from jaxssl.train import state as state_lib
from tests.experiments.helpers import build_step, evals, smoke


@pytest.fixture(scope='module')
def setup(cache_dir, tmp_path_factory):
  config = smoke(dcgan, cache_dir)
  step, state, data = build_step(dcgan, config, str(tmp_path_factory.mktemp('dcgan_step')))
  real = gan.to_model_range(data['train']['image'][:16])
  z = jax.random.normal(jax.random.key(5), (16, config.model.latent_dim))
  return config, data, step, state, real, z


def _parts(state, name):
  return state.params[name], state.opt_state[name], state.extra['batch_stats'][name]


def _same(a, b):
  return all(np.array_equal(x, y) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


def test_discriminator_step_leaves_the_generator_bit_identical(setup):
  _, _, _, state, real, z = setup
  step = jax.jit(lambda s: dcgan.discriminator_step(s, real, z))
  new, metrics = step(state)
  assert _same(_parts(new, 'generator'), _parts(state, 'generator'))
  assert not _same(new.params['discriminator'], state.params['discriminator'])
  assert not _same(new.extra['batch_stats']['discriminator'],
                   state.extra['batch_stats']['discriminator'])
  assert int(new.step) == int(state.step)
  assert 0 < float(metrics['d_real']) < 1 and 0 < float(metrics['d_fake']) < 1


def test_generator_step_leaves_the_discriminator_bit_identical(setup):
  _, _, _, state, _, z = setup
  step = jax.jit(lambda s: dcgan.generator_step(s, z))
  new, metrics = step(state)
  assert _same(_parts(new, 'discriminator'), _parts(state, 'discriminator'))
  assert not _same(new.params['generator'], state.params['generator'])
  assert not _same(new.extra['batch_stats']['generator'],
                   state.extra['batch_stats']['generator'])
  assert np.isfinite(float(metrics['g_loss']))


def test_train_step_is_one_update_of_each_network(setup):
  _, data, step, state, _, _ = setup
  batch = {k: v[:16] for k, v in data['train'].items()}
  new, metrics = step(state, batch, jax.random.key(0))
  assert int(new.step) == 1
  assert {'d_loss', 'g_loss', 'd_real', 'd_fake', 'd_grad_norm', 'g_grad_norm'} == set(metrics)
  for name in dcgan.NETWORKS:  # Adam's count: one update each
    assert int(jax.tree.leaves(new.opt_state[name][0])[0]) == 1


def _sqrtm_fd(a, b):
  """Fréchet distance via scipy's matrix square root (independent of jaxssl's eigh form)."""
  m1, m2 = a.mean(0), b.mean(0)
  c1, c2 = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
  with warnings.catch_warnings():  # the smoke classifier has dead ReLU features: singular
    warnings.simplefilter('ignore', scipy.linalg.LinAlgWarning)  # c1 @ c2, still exact here
    root = scipy.linalg.sqrtm(c1 @ c2).real
  return np.sum((m1 - m2) ** 2) + np.trace(c1 + c2 - 2 * root)


def test_sample_metrics_recomputed_from_the_saved_generator(smoke_run, cache_dir, setup):
  workdir, summary = smoke_run(dcgan)
  config, data, _, state, *_ = setup
  e = evals(summary)
  assert set(e) == {'eval/fd_classifier', 'eval/fd_classifier_untrained',
                    'eval/fd_classifier_train_images', 'eval/classes_covered',
                    'eval/class_entropy', 'eval/classifier_accuracy'}
  saved = ocp.StandardCheckpointer().restore(os.path.join(workdir, 'checkpoints', '6', 'state'))
  g = state_lib.merge_model(state.graphdef['generator'], saved['params']['generator'],
                            saved['extra']['batch_stats']['generator'])
  x = np.asarray(g(dcgan.eval_latents(config), train=False))  # [128, 8, 8, 1] in [-1, 1]
  samples = np.round((x + 1) * 127.5).astype(np.uint8)
  mtime = os.path.getmtime(os.path.join(workdir, 'fd_classifier', 'classifier.msgpack'))
  reference = dcgan.fit_classifier(data, workdir, config)  # loads the cached classifier
  assert os.path.getmtime(os.path.join(workdir, 'fd_classifier', 'classifier.msgpack')) == mtime
  logits, features = reference['classify'](samples)
  np.testing.assert_allclose(e['eval/fd_classifier'],
                             _sqrtm_fd(features, reference['test_features']), rtol=1e-5)
  counts = np.bincount(np.argmax(logits, -1), minlength=10) / len(samples)
  assert e['eval/classes_covered'] == np.sum(counts >= 0.01)
  p = counts[counts > 0]
  np.testing.assert_allclose(e['eval/class_entropy'], -np.sum(p * np.log(p)), rtol=1e-6)
  test_logits, _ = reference['classify'](data['test']['image'])
  assert e['eval/classifier_accuracy'] == np.mean(np.argmax(test_logits, -1)
                                                  == data['test']['label'])
  # 16 samples as a 4x4 grid of 8x8 tiles with 1-pixel gaps, 4x enlarged.
  png = PIL.Image.open(os.path.join(workdir, 'images', 'samples_6.png'))
  assert png.size == (4 * (4 * 9 + 1),) * 2


@pytest.mark.parametrize('field, value, message', [
    ('optim.grad_accum_steps', 2, 'optim.grad_accum_steps=2 must be 1'),
    ('method.discriminator_lr_scale', 0.0, 'method.discriminator_lr_scale'),
    ('eval.min_class_fraction', 1.5, 'eval.min_class_fraction'),
    ('eval.num_samples', 1, 'eval.num_samples=1'),
    ('eval.grid_samples', 129, 'eval.grid_samples=129 must be <= eval.num_samples=128'),
    ('model.generator_widths', (), 'model.generator_widths'),
    ('classifier.num_steps', 0, 'classifier.num_steps'),
    ('optim.learning_rate', -1.0, 'optim.learning_rate'),
    ('mesh.data', 3, 'mesh'),
    ('data.test_fraction', 0.0, 'data.test_fraction'),
])
def test_bad_config_values_are_named(field, value, message, tmp_path):
  config = smoke(dcgan, str(tmp_path / 'cache'))
  parent, name = field.split('.')
  with config.unlocked() if isinstance(config, ml_collections.FrozenConfigDict) else _null():
    config[parent][name] = value
  with pytest.raises(ValueError, match=message):
    dcgan.train_and_evaluate(config, str(tmp_path / 'w'))
  assert not os.path.exists(tmp_path / 'cache')  # refused before reading any data


class _null:
  def __enter__(self):
    return self

  def __exit__(self, *_):
    return False
