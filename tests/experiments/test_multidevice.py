"""8 simulated CPU devices against 1: the same step, loss and parameters.

Run in its own process (``.ci/run`` does):
  XLA_FLAGS=--xla_force_host_platform_device_count=8 pytest -m multidevice
"""

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import NamedSharding, PartitionSpec as P

import experiments
from benchmarks import image_standins
from experiments import (autoencoder, byol, clm_pretrain, dcgan, image_classify, mlm_pretrain,
                         simclr, text_classify, vae)
from jaxssl.losses import lm
from jaxssl.parallel import sharding
from jaxssl.train import rngs
from jaxssl.train import state as state_lib
from tests import multidevice
from tests.experiments import test_text_classify

EXPERIMENTS = [mlm_pretrain, clm_pretrain, autoencoder, vae, dcgan, simclr, byol]

pytestmark = multidevice.MARKS


def test_loss_is_normalised_by_the_global_masked_count():
  # 8 rows, one per device, holding 0, 1, 2, ..., 7 masked positions. V = 2, uniform logits
  # except row r's first slot puts logit ln 3 on the label: -ln(3/4) there, ln 2 elsewhere.
  p = 8
  weights = (np.arange(p)[None, :] < np.arange(8)[:, None]).astype(np.float32)  # [8, P]
  logits = np.zeros((8, p, 2), np.float32)
  logits[:, 0, 0] = math.log(3.0)
  labels = np.zeros((8, p), np.int32)
  count = weights.sum()  # 28
  expected = ((count - 7) * math.log(2) - 7 * math.log(0.75)) / count
  mesh = multidevice.mesh(8)
  shard = NamedSharding(mesh, P(sharding.BATCH_AXES))
  args = [jax.device_put(x, shard) for x in (logits, labels, weights)]
  total, n = jax.jit(lm.masked_lm_loss)(*args)
  assert float(n) == 28.0
  np.testing.assert_allclose(float(total / n), expected, rtol=1e-6)
  # A mean of per-device means would be different (devices weigh equally, not tokens).
  per_device = [lm.masked_lm_loss(*(jnp.asarray(x[i:i + 1]) for x in (logits, labels, weights)))
                for i in range(1, 8)]
  assert abs(np.mean([t / c for t, c in per_device]) - expected) > 1e-3


@pytest.mark.parametrize('module', EXPERIMENTS, ids=lambda m: m.EXPERIMENT)
@pytest.mark.parametrize('fsdp', [1, 2])
def test_eight_device_step_matches_one_device(tmp_path, module, fsdp):
  config = module.smoke_config()
  config.data.cache_dir = str(tmp_path / 'cache')
  data = module.prepare_data(config, str(tmp_path))
  train_step = functools.partial(module.train_step, config=config,
                                 **experiments.step_constants(module, config, data))
  batch_np = {k: v[:config.global_batch_size] for k, v in data['train'].items()}
  results = []
  for n, f in ((1, 1), (8, fsdp)):
    config.mesh.fsdp = f
    mesh = multidevice.mesh(n, f)
    state = module.create_train_state(config, data, mesh, rngs.run_keys(config.seed).init)
    step = sharding.jit_train_step(train_step, state_lib.shardings(state), mesh)
    state, metrics = step(state, sharding.put_batch(batch_np, mesh), jax.random.key(3))
    state, metrics = step(state, sharding.put_batch(batch_np, mesh), jax.random.key(3))
    results.append(jax.device_get((state.params, metrics)))
  (p1, m1), (p8, m8) = results
  assert m8.keys() == m1.keys()
  for name in m1:  # losses (the DCGAN's two), and exact counts such as num_masked
    np.testing.assert_allclose(m8[name], m1[name], rtol=1e-5, err_msg=name)
  jax.tree.map(functools.partial(np.testing.assert_allclose, atol=1e-5, rtol=1e-5), p8, p1)


@pytest.mark.parametrize('module', EXPERIMENTS, ids=lambda m: m.EXPERIMENT)
def test_whole_run_on_eight_devices_with_sharded_parameters(tmp_path, module):
  # Training, the whole-split evaluation (and the causal LM's samples) on a (4, 2) mesh.
  config = module.smoke_config()
  config.data.cache_dir = str(tmp_path / 'cache')
  config.mesh.fsdp = 2
  config.global_batch_size = 16
  summary = module.train_and_evaluate(config, str(tmp_path / 'w'))
  assert summary['step'] == config.num_train_steps
  evals = {k: v for k, v in summary.items() if k.startswith('eval/')}
  assert evals and all(np.isfinite(v) for v in evals.values())
  if module is clm_pretrain:  # every held-out target scored once, whatever the mesh
    assert evals['eval/num_tokens'] == (summary['data/num_eval_tokens']
                                        + summary['data/num_eval_documents'])


@pytest.fixture(scope='module')
def classify_config(tmp_path_factory):
  """text_classify's smoke config on a 3-topic CSV task, from an MLM smoke run on 8 devices."""
  root = tmp_path_factory.mktemp('classify')
  lm_config = mlm_pretrain.smoke_config()
  lm_config.data.cache_dir = str(root / 'cache')
  mlm_pretrain.train_and_evaluate(lm_config, str(root / 'mlm'))
  config = text_classify.smoke_config()
  config.pretrained_workdir = str(root / 'mlm')
  config.data.files = test_text_classify._write_task(str(root))
  config.eval.tfidf_c = (1.0,)
  return config


@pytest.mark.parametrize('fsdp', [1, 2])
def test_text_classify_eight_device_step_matches_one_device(classify_config, fsdp):
  _classifier_step_matches(text_classify, classify_config.copy_and_resolve_references(),
                           fsdp)


def test_text_classify_whole_run_on_eight_devices_with_sharded_parameters(classify_config,
                                                                          tmp_path):
  config = classify_config.copy_and_resolve_references()
  config.mesh.fsdp = 2
  summary = text_classify.train_and_evaluate(config, str(tmp_path / 'w'))
  assert summary['step'] == config.num_train_steps
  assert 0 <= summary['test/accuracy'] <= 1 and summary['test/selected_step'] >= 3


@pytest.fixture(scope='module')
def image_config(tmp_path_factory):
  """image_classify's smoke config: a SimCLR smoke run (8x8x1 digits, 8 devices) moved to
  32x32x3 IDX images."""
  root = tmp_path_factory.mktemp('image_classify')
  learner = simclr.smoke_config()
  learner.data.cache_dir = str(root / 'cache')
  simclr.train_and_evaluate(learner, str(root / 'simclr'))
  image_standins.write_standin('natural32', str(root / 'natural32'), num_train=120, num_test=30)
  config = image_classify.smoke_config()
  config.pretrained_workdir = str(root / 'simclr')
  config.data.files = str(root / 'natural32' / '*')
  config.data.cache_dir = str(root / 'cache')
  config.eval.global_batch_size = 32
  return config


@pytest.mark.parametrize('mode', ['finetune', 'probe'])
@pytest.mark.parametrize('fsdp', [1, 2])
def test_image_classify_eight_device_step_matches_one_device(image_config, mode, fsdp):
  # Fine-tuning normalises BatchNorm over the global batch: the same on 1 and 8 devices.
  config = image_config.copy_and_resolve_references()
  config.mode = mode
  _classifier_step_matches(image_classify, config, fsdp)


def _classifier_step_matches(module, config, fsdp: int) -> None:
  """Two train steps of ``module`` (text_ or image_classify) on one batch: the parameters
  and metrics on 8 devices (``fsdp`` of them sharding the parameters) match 1 device's."""
  data = module.prepare_data(config, None)
  train_step = functools.partial(module.train_step, config=config)
  batch_np = {k: v[:config.global_batch_size] for k, v in data['train'].items()}
  results = []
  try:
    for n, f in ((1, 1), (8, fsdp)):
      config.mesh.fsdp = f
      mesh = multidevice.mesh(n, f)
      state = module.create_train_state(config, data, mesh, rngs.run_keys(config.seed).init)
      step = sharding.jit_train_step(train_step, state_lib.shardings(state), mesh)
      for _ in range(2):
        state, metrics = step(state, sharding.put_batch(batch_np, mesh), jax.random.key(3))
      results.append(jax.device_get((state.params, metrics)))
  finally:
    data['manager'].close()
  (p1, m1), (p8, m8) = results
  for name in m1:
    np.testing.assert_allclose(m8[name], m1[name], rtol=1e-5, err_msg=name)
  jax.tree.map(functools.partial(np.testing.assert_allclose, atol=1e-5, rtol=1e-5), p8, p1)


def test_image_classify_whole_run_on_eight_devices_with_sharded_parameters(image_config,
                                                                           tmp_path):
  config = image_config.copy_and_resolve_references()
  config.mesh.fsdp = 2
  summary = image_classify.train_and_evaluate(config, str(tmp_path / 'w'))
  assert summary['step'] == config.num_train_steps
  assert 0 <= summary['test/accuracy'] <= 1 and summary['test/selected_step'] >= 3
