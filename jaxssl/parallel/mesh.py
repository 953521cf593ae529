"""Device mesh construction.

Axes ``data`` (batch split, parameters replicated) and ``fsdp`` (batch split and parameters
sharded, ZeRO-3 style); the same code on 1 CPU, simulated devices, a GPU or a TPU pod slice.
"""

from __future__ import annotations

import os

import jax
import ml_collections
import numpy as np
from jax.sharding import Mesh

AXES = ('data', 'fsdp')


def mesh_shape(mesh: ml_collections.ConfigDict, num_devices: int) -> tuple[int, int]:
  """(data, fsdp) sizes; ``mesh.data = -1`` takes every device not used by fsdp.

  Raises:
    ValueError: sizes that are not positive or do not multiply to the device count.
  """
  fsdp = mesh.fsdp
  if fsdp < 1 or num_devices % fsdp:
    raise ValueError(f'mesh.fsdp={fsdp} must be >= 1 and divide the {num_devices} devices')
  data = num_devices // fsdp if mesh.data == -1 else mesh.data
  if data < 1 or data * fsdp != num_devices:
    raise ValueError(f'mesh.data={mesh.data} x mesh.fsdp={fsdp} must equal the '
                     f'{num_devices} devices (use mesh.data=-1 for all)')
  return data, fsdp


def make_mesh(mesh: ml_collections.ConfigDict, devices=None) -> Mesh:
  """Builds the ('data', 'fsdp') Mesh over ``devices`` (default: all global devices).

  Not ``jax.make_mesh``, which defaults to Explicit axes: shardings stay plain GSPMD.
  """
  devices = np.asarray(jax.devices() if devices is None else devices)
  shape = mesh_shape(mesh, devices.size)
  return Mesh(devices.reshape(shape), AXES)


def initialize_distributed() -> None:
  """``jax.distributed.initialize`` for multi-process runs (TPU pod slices, SLURM, or env vars).

  The variables are JAX_COORDINATOR_ADDRESS / JAX_NUM_PROCESSES / JAX_PROCESS_ID;
  ``JAX_INITIALIZATION_TIMEOUT`` (seconds; JAX's default 300) bounds the wait for all processes:
  a process whose peers never start fails then instead of hanging.

  Raises:
    ValueError: one of those variables is not a whole number in range (names it).
  """
  kwargs = {}
  if 'JAX_NUM_PROCESSES' in os.environ:
    kwargs.update(num_processes=_env_int('JAX_NUM_PROCESSES', minimum=1),
                  process_id=_env_int('JAX_PROCESS_ID', minimum=0))
  if os.environ.get('JAX_INITIALIZATION_TIMEOUT'):
    kwargs['initialization_timeout'] = _env_int('JAX_INITIALIZATION_TIMEOUT', minimum=1)
  jax.distributed.initialize(**kwargs)


def _env_int(name: str, *, minimum: int) -> int:
  """The environment variable ``name`` as an int >= ``minimum``; ValueError naming it."""
  value = os.environ.get(name, '')
  try:
    number = int(value)
  except ValueError:
    number = None
  if number is None or number < minimum:
    raise ValueError(f'environment variable {name}={value!r} must be an integer >= {minimum}')
  return number


def mesh_config(*, data: int = -1, fsdp: int = 1) -> ml_collections.ConfigDict:
  """``config.mesh``: data-parallel size (-1 = devices not used by fsdp) and fsdp size."""
  return ml_collections.ConfigDict({'data': data, 'fsdp': fsdp})
