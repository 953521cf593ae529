"""The TrainState, and the only place that calls Flax NNX's split/merge.

Models are ``nnx.Module``s; at the jit boundary they are a static ``GraphDef`` plus a pure
dict of parameter arrays (flax's functional "03_train_state" pattern), so the step, Orbax and
optax only ever see plain pytrees.
"""

from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp
import optax
from flax import nnx
from flax import struct

from jaxssl.parallel import sharding


class TrainState(struct.PyTreeNode):
  """Everything a run needs to continue exactly: saved and restored as one pytree.

  Attributes:
    step: int32 scalar, optimizer steps taken.
    params: pure dict of float32 parameter arrays.
    opt_state: the optax state for ``params``.
    extra: method-specific state (EMA targets, BatchNorm statistics, ...), a pytree; {} if
      none.
  """
  step: jax.Array
  params: Any
  opt_state: Any
  extra: Any = struct.field(default_factory=dict)


def split_model(model: nnx.Module) -> tuple[nnx.GraphDef, dict]:
  """(graphdef, params): the static structure and a pure dict of ``nnx.Param`` arrays.

  Raises:
    ValueError: the module holds state other than parameters (e.g. an ``nnx.Rngs`` or
      BatchNorm statistics), which would be silently dropped; keep RNG state out of modules
      and pass keys per call, and split models with BatchNorm by ``split_model_with_stats``.
  """
  graphdef, params, rest = nnx.split(model, nnx.Param, ...)
  if jax.tree.leaves(rest):
    raise ValueError('model holds state other than parameters (BatchNorm statistics go '
                     'through split_model_with_stats; RNG state is passed per call): '
                     f'{jax.tree.structure(rest)}')
  return graphdef, nnx.to_pure_dict(params)


def split_model_with_stats(model: nnx.Module) -> tuple[nnx.GraphDef, dict, dict]:
  """(graphdef, params, batch_stats): like ``split_model`` for models with BatchNorm.

  ``batch_stats`` is the pure dict of the ``nnx.BatchStat`` arrays (running means and
  variances); it lives in ``TrainState.extra`` and is updated by the step, not by optax.

  Raises:
    ValueError: the module holds state other than parameters and batch statistics.
  """
  graphdef, params, stats, rest = nnx.split(model, nnx.Param, nnx.BatchStat, ...)
  if jax.tree.leaves(rest):
    raise ValueError(f'model holds state other than parameters and batch statistics: '
                     f'{jax.tree.structure(rest)}')
  return graphdef, nnx.to_pure_dict(params), nnx.to_pure_dict(stats)


def merge_model(graphdef: nnx.GraphDef, params: dict, batch_stats: dict | None = None
                ) -> nnx.Module:
  """Rebuilds the module from ``split_model``'s (or ``split_model_with_stats``'s) outputs
  (cheap inside jit)."""
  if batch_stats is None:
    return nnx.merge(graphdef, params)
  return nnx.merge(graphdef, params, batch_stats)


def batch_stats(model: nnx.Module) -> dict:
  """The module's current BatchNorm statistics as a pure dict (after a train-mode call)."""
  return nnx.to_pure_dict(nnx.state(model, nnx.BatchStat))


def create(params, tx: optax.GradientTransformation, extra=None) -> TrainState:
  """A fresh TrainState at step 0."""
  return TrainState(step=jnp.zeros((), jnp.int32), params=params, opt_state=tx.init(params),
                    extra={} if extra is None else extra)


def apply_gradients(state: TrainState, grads, tx: optax.GradientTransformation) -> TrainState:
  """One optimizer update; increments ``step``."""
  updates, opt_state = tx.update(grads, state.opt_state, state.params)
  return state.replace(step=state.step + 1, params=optax.apply_updates(state.params, updates),
                       opt_state=opt_state)


def jit_init(init: Callable[[jax.Array], TrainState], mesh, rng: jax.Array):
  """Runs ``init(rng) -> TrainState`` jitted straight onto the mesh's shardings.

  Returns:
    (state, shardings): parameters, optimizer moments and ``extra`` FSDP-sharded as
    ``parallel.sharding.tree_shardings`` decides (replicated when ``mesh.fsdp == 1``).
  """
  shardings = sharding.tree_shardings(jax.eval_shape(init, rng), mesh)
  return jax.jit(init, out_shardings=shardings)(rng), shardings


def init_on_mesh(make_model: Callable[[nnx.Rngs], nnx.Module], tx: optax.GradientTransformation,
                 mesh, rng: jax.Array, *, batch_stats: bool = False):
  """Builds a fresh TrainState directly on the mesh (never whole on one device).

  Args:
    make_model: ``rngs -> nnx.Module``: parameters only (see ``split_model``), or with
      BatchNorm statistics when ``batch_stats`` (see ``split_model_with_stats``).
    tx: the optimizer.
    mesh: ``jax.sharding.Mesh`` with the ``parallel.mesh`` axes.
    rng: parameter-init key.
    batch_stats: keep the model's ``nnx.BatchStat`` variables in
      ``state.extra['batch_stats']``.

  Returns:
    (graphdef, state, shardings): the model structure, the state, and the state's
    NamedShardings (see ``jit_init``).
  """
  split = split_model_with_stats if batch_stats else split_model
  graphdef = split(nnx.eval_shape(lambda: make_model(nnx.Rngs(0))))[0]

  def init(key):
    parts = split(make_model(nnx.Rngs(params=key)))
    return create(parts[1], tx, extra={'batch_stats': parts[2]} if batch_stats else None)

  return (graphdef,) + jit_init(init, mesh, rng)
