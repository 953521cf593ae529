"""SimCLR and BYOL experiments: one step recomputed by hand from the same views, BYOL's
target update, the downstream metrics recomputed from the saved encoder, config errors."""

import os

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
import pytest

from experiments import byol, simclr
from jaxssl.data import augment
from jaxssl.eval import features as features_lib
from jaxssl.eval import representation
from jaxssl.train import rngs
from jaxssl.train import state as state_lib
from tests.experiments.helpers import build_step, smoke


def _setup(module, cache_dir, tmp_path):
  config = smoke(module, cache_dir)
  step, state, data = build_step(module, config, str(tmp_path))
  batch = {k: jnp.asarray(v[:16]) for k, v in data['train'].items()}
  return config, step, state, batch


def _nt_xent_numpy(z1, z2, tau):
  """SimCLR eq. 1 by loops: anchors are all 2N projections, denominators skip the anchor."""
  z = np.concatenate([z1, z2]).astype(np.float64)
  z /= np.linalg.norm(z, axis=1, keepdims=True)
  n = len(z1)
  losses = []
  for i in range(2 * n):
    j = (i + n) % (2 * n)
    others = [np.exp(z[i] @ z[k] / tau) for k in range(2 * n) if k != i]
    losses.append(-np.log(np.exp(z[i] @ z[j] / tau) / np.sum(others)))
  return np.mean(losses)


def test_simclr_step_is_nt_xent_of_the_views(cache_dir, tmp_path):
  config, step, state, batch = _setup(simclr, cache_dir, tmp_path)
  rng = jax.random.key(3)
  new, metrics = step(state, batch, rng)
  v1, v2 = augment.two_views(rngs.step_key(rng, 'views'),
                             batch['image'].astype(jnp.float32) / 255.0, state.step,
                             config.method.augment)
  net = state_lib.merge_model(state.graphdef, state.params, state.extra['batch_stats'])
  z = np.asarray(net(jnp.concatenate([v1, v2]), train=True)['projection'])
  np.testing.assert_allclose(float(metrics['loss']),
                             _nt_xent_numpy(z[:16], z[16:], config.method.temperature),
                             rtol=1e-5)
  # BatchNorm statistics came from that same train-mode pass.
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7),
               new.extra['batch_stats'], state_lib.batch_stats(net))  # jit vs eager rounding
  assert int(new.step) == 1 and float(metrics['grad_norm']) > 0
  assert 0.0 <= float(metrics['contrastive_accuracy']) <= 1.0


def test_byol_target_is_the_ema_of_the_online_network_and_gets_no_gradient(cache_dir,
                                                                           tmp_path):
  config, step, state, batch = _setup(byol, cache_dir, tmp_path)
  assert sorted(state.extra['target']['params']) == ['encoder', 'projector']
  assert 'bias' not in state.params['projector']['out']  # the predictor's BatchNorm cancels it
  jax.tree.map(np.testing.assert_array_equal, state.extra['target']['params'],
               {k: state.params[k] for k in byol.TARGET_PARTS})  # starts as a copy
  new, metrics = step(state, batch, jax.random.key(3))
  tau0 = config.method.tau0
  np.testing.assert_allclose(float(metrics['tau']), tau0, rtol=1e-7)  # step 0: tau0
  # target <- tau0 * target + (1 - tau0) * updated online = the updated online moved back
  # towards the initial weights by the fraction tau0.
  expected = jax.tree.map(lambda t, o: tau0 * t + (1 - tau0) * o,
                          state.extra['target']['params'],
                          {k: new.params[k] for k in byol.TARGET_PARTS})
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7),
               new.extra['target']['params'], expected)
  # A second step from a state whose target differs from the online network: the target's
  # new weights still follow the EMA formula exactly (no gradient ever reached them).
  newer, metrics = step(new, batch, jax.random.key(4))
  tau1 = float(metrics['tau'])
  assert tau0 < tau1 < 1
  expected = jax.tree.map(lambda t, o: tau1 * t + (1 - tau1) * o, new.extra['target']['params'],
                          {k: newer.params[k] for k in byol.TARGET_PARTS})
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7),
               newer.extra['target']['params'], expected)
  assert 0.0 <= float(metrics['loss']) <= 8.0


@pytest.mark.parametrize('module', [simclr, byol], ids=lambda m: m.EXPERIMENT)
def test_downstream_metrics_recomputed_from_the_saved_encoder(module, smoke_run, cache_dir):
  workdir, summary = smoke_run(module)
  config = smoke(module, cache_dir)
  _, fresh, data = build_step(module, config, workdir)
  online = fresh.graphdef['online'] if module is byol else fresh.graphdef
  saved = ocp.StandardCheckpointer().restore(os.path.join(workdir, 'checkpoints', '6', 'state'))
  variables = {'params': saved['params'], 'batch_stats': saved['extra']['batch_stats']}
  images = {k: data[k] for k in ('train', 'test', 'num_classes')}
  embed = features_lib.nnx_embed_fn(online, lambda m, x, train: m(x, train=False)['features'])
  trained = representation.evaluate_representation(embed, variables, images, config.eval)
  random = representation.evaluate_representation(embed, simclr.encoder_variables(fresh),
                                                  images, config.eval)
  for name in ('linear_probe_accuracy', 'knn_accuracy', 'kmeans_ari'):
    assert summary[f'eval/{name}'] == pytest.approx(trained[name], abs=1e-12)
    assert summary[f'eval/random_encoder_{name}'] == pytest.approx(random[name], abs=1e-12)
  assert 0 <= summary['eval/knn_accuracy'] <= 1


BAD = [
    ('method.temperature', 0.0, 'method.temperature'),
    ('method.temperature', float('inf'), r'method.temperature=inf must be a finite number > 0'),
    ('method.augment.crop_scale', (0.0, 1.0), 'method.augment.crop_scale'),
    ('method.augment.jitter_prob', 1.5, 'method.augment.jitter_prob'),
    ('method.augment.brightness', float('inf'), 'method.augment.brightness'),
    ('model.widths', (8, 0), 'model.widths'),
    ('model.projector_dims', (16,), 'model.projector_dims'),
    ('optim.grad_accum_steps', 2, 'optim.grad_accum_steps'),
    ('eval.knn_k', 0, 'eval.knn_k'),
    ('global_batch_size', 0, 'global_batch_size'),
    ('optim.learning_rate', -1.0, 'optim.learning_rate'),
    ('mesh.data', 3, 'mesh'),
]


@pytest.mark.parametrize('field,value,message', BAD, ids=[b[0] for b in BAD])
def test_bad_simclr_config_values_are_named(field, value, message, tmp_path):
  config = smoke(simclr, str(tmp_path / 'cache'), **{field: value})
  with pytest.raises(ValueError, match=message):
    simclr.train_and_evaluate(config, str(tmp_path / 'w'))
  assert not os.path.exists(tmp_path / 'cache')  # refused before any data was read


@pytest.mark.parametrize('field,value', [
    ('method.tau0', 1.5), ('method.tau0', 1.0), ('model.predictor_dims', (0, 8)),
    ('model.widths', (8, 0)), ('model.projector_dims', (16,)), ('global_batch_size', 0),
    ('num_epochs', 0), ('optim.learning_rate', -1.0), ('eval.knn_k', 0),
    ('method.augment.jitter_prob', 1.5), ('mesh.data', 3)])
def test_bad_byol_config_values_are_named(field, value, tmp_path):
  config = smoke(byol, str(tmp_path / 'cache'), **{field: value})
  with pytest.raises(ValueError, match=field):
    byol.train_and_evaluate(config, str(tmp_path / 'w'))



def test_more_clusters_than_test_images_refused_before_training(cache_dir, tmp_path,
                                                                 monkeypatch):
  config = smoke(simclr, cache_dir, **{'eval.kmeans_n_clusters': 100_000})
  monkeypatch.setattr(simclr, 'create_train_state', None)  # must not be reached
  with pytest.raises(ValueError, match=r'eval.kmeans_n_clusters=100000 exceeds the \d+ test'):
    simclr.train_and_evaluate(config, str(tmp_path / 'w'))
