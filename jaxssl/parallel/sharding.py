"""Shardings of batches and parameters over the ('data', 'fsdp') mesh."""

from __future__ import annotations

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

BATCH_AXES = ('data', 'fsdp')  # the leading (batch) axis is split over both mesh axes


def replicated(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P())


def batch_sharding(mesh: Mesh) -> NamedSharding:
  """Leading axis split over every device; the rest replicated."""
  return NamedSharding(mesh, P(BATCH_AXES))


def check_batch_size(global_batch_size: int, mesh: Mesh, field: str = 'global_batch_size',
                     process_count: int | None = None) -> None:
  """ValueError (naming ``field``) unless the batch divides over all devices and processes."""
  n = mesh.devices.size
  processes = jax.process_count() if process_count is None else process_count
  if global_batch_size < 1 or global_batch_size % n or global_batch_size % processes:
    raise ValueError(f'{field}={global_batch_size} must be a positive multiple of the {n} '
                     f'devices ({processes} processes)')


def _param_spec(shape: tuple[int, ...], fsdp: int) -> P:
  """Shard the largest axis divisible by the fsdp size; replicate small or odd leaves."""
  if fsdp == 1 or not shape:
    return P()
  axes = sorted(range(len(shape)), key=lambda a: -shape[a])
  for a in axes:
    if shape[a] % fsdp == 0 and shape[a] >= fsdp:
      spec = [None] * len(shape)
      spec[a] = 'fsdp'
      return P(*spec)
  return P()


def tree_shardings(tree, mesh: Mesh):
  """NamedShardings for a pytree of (abstract) arrays: FSDP-sharded when mesh has fsdp > 1.

  Scalars and leaves with no axis divisible by the fsdp size are replicated.
  """
  fsdp = mesh.shape['fsdp']
  return jax.tree.map(lambda x: NamedSharding(mesh, _param_spec(np.shape(x), fsdp)), tree)


def mesh_of(tree) -> Mesh:
  """The mesh ``tree``'s arrays live on; ValueError if none has a NamedSharding."""
  for leaf in jax.tree.leaves(tree):
    if isinstance(getattr(leaf, 'sharding', None), NamedSharding):
      return leaf.sharding.mesh
  raise ValueError('no array of the tree is placed on a mesh')


def put_batch(batch: dict[str, np.ndarray], mesh: Mesh) -> dict[str, jax.Array]:
  """Global sharded arrays from this process's rows (``global_batch / process_count`` each)."""
  sharding = batch_sharding(mesh)
  return {k: jax.make_array_from_process_local_data(sharding, v) for k, v in batch.items()}


def jit_train_step(step_fn, state_shardings, mesh: Mesh):
  """``jax.jit`` of ``step_fn(state, batch, rng) -> (state, metrics)`` over the mesh.

  State in and out on its shardings (donated), batch split over ``BATCH_AXES``, rng and metrics
  replicated.
  """
  return jax.jit(step_fn, in_shardings=(state_shardings, batch_sharding(mesh), replicated(mesh)),
                 out_shardings=(state_shardings, replicated(mesh)), donate_argnums=(0,))


def jit_eval_step(eval_fn, param_shardings, mesh: Mesh):
  """``jax.jit`` of ``eval_fn(params, batch) -> sums`` with the batch split over the mesh."""
  return jax.jit(eval_fn, in_shardings=(param_shardings, batch_sharding(mesh)),
                 out_shardings=replicated(mesh))
