"""NT-Xent and SimCLR views on 2 and 8 simulated devices against 1: the same numbers.

Run in its own process:
  XLA_FLAGS=--xla_force_host_platform_device_count=8 pytest -m multidevice \
      tests/losses/test_contrastive_multidevice.py
"""

import jax
import ml_collections
import numpy as np
import pytest
from jax.sharding import NamedSharding, PartitionSpec as P

from jaxssl.data import augment
from jaxssl.losses import contrastive
from jaxssl.parallel import mesh as mesh_lib
from jaxssl.parallel import sharding

pytestmark = [
    pytest.mark.multidevice,
    pytest.mark.skipif(jax.device_count() < 8, reason='needs 8 devices: set XLA_FLAGS='
                       '--xla_force_host_platform_device_count=8'),
]


def _batch_sharding(n):
  mesh = mesh_lib.make_mesh(ml_collections.ConfigDict({'data': -1, 'fsdp': 1}),
                            devices=jax.devices()[:n])
  return NamedSharding(mesh, P(sharding.BATCH_AXES)), NamedSharding(mesh, P())


def _loss_and_accuracy(z1, z2):
  sim = contrastive.similarity(z1, z2)
  return (contrastive.nt_xent(z1, z2, temperature=0.1),
          contrastive.contrastive_accuracy(sim).mean())


@pytest.mark.parametrize('n', [2, 8])
def test_nt_xent_uses_the_global_batch(n):
  rng = np.random.default_rng(0)
  z1, z2 = rng.standard_normal((2, 16, 8)).astype(np.float32)
  z2 = z1 + 0.8 * z2  # correlated views: accuracy strictly between 0 and 1
  single = jax.jit(_loss_and_accuracy)(z1, z2)
  batch, replicated = _batch_sharding(n)
  args = [jax.device_put(z, batch) for z in (z1, z2)]
  assert len(args[0].sharding.device_set) == n
  sharded = jax.jit(_loss_and_accuracy, out_shardings=replicated)(*args)
  np.testing.assert_allclose(sharded[0], single[0], rtol=1e-6)
  np.testing.assert_allclose(sharded[1], single[1], rtol=1e-6)
  assert 0 < float(single[1]) < 1
  # Negatives from each device's slice only would give another (smaller) loss.
  per_device = np.mean([contrastive.nt_xent(z1[i::n], z2[i::n], temperature=0.1)
                        for i in range(n)])
  assert abs(per_device - float(single[0])) > 1e-2


@pytest.mark.parametrize('n', [2, 8])
def test_two_views_do_not_depend_on_the_device_count(n):
  config = augment.simclr_augment_config(blur_prob=0.5, noise_std=0.05)
  images = jax.random.uniform(jax.random.key(0), (8, 8, 8, 3))

  def views(rng, x, step):
    return augment.two_views(rng, x, step, config)

  single = jax.jit(views)(jax.random.key(1), images, 3)
  batch, replicated = _batch_sharding(n)
  sharded = jax.jit(views, in_shardings=(replicated, batch, replicated),
                    out_shardings=(batch, batch))(jax.random.key(1),
                                                  jax.device_put(images, batch), 3)
  assert len(sharded[0].sharding.device_set) == n
  for s, o in zip(sharded, single):
    np.testing.assert_array_equal(s, o)
