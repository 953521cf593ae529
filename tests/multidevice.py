"""What the 8-simulated-device tests share: their marks and meshes over the first n devices.

Run them in their own process:
  XLA_FLAGS=--xla_force_host_platform_device_count=8 pytest -m multidevice
"""

import jax
import ml_collections
import pytest

from jaxssl.parallel import mesh as mesh_lib

MARKS = [
    pytest.mark.multidevice,
    pytest.mark.skipif(jax.device_count() < 8, reason='needs 8 devices: set XLA_FLAGS='
                       '--xla_force_host_platform_device_count=8'),
]


def mesh(n: int, fsdp: int = 1):
  """A (data, fsdp) mesh over the first ``n`` devices, ``fsdp`` of them sharding parameters."""
  return mesh_lib.make_mesh(ml_collections.ConfigDict({'data': -1, 'fsdp': fsdp}),
                            devices=jax.devices()[:n])
