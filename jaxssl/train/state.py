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
    ValueError: the module holds state other than parameters (e.g. an ``nnx.Rngs``), which
      would be silently dropped; keep RNG state out of modules and pass keys per call.
  """
  graphdef, params, rest = nnx.split(model, nnx.Param, ...)
  if jax.tree.leaves(rest):
    raise ValueError(f'model holds non-parameter state: {jax.tree.structure(rest)}')
  return graphdef, nnx.to_pure_dict(params)


def merge_model(graphdef: nnx.GraphDef, params: dict) -> nnx.Module:
  """Rebuilds the module from ``split_model``'s outputs (cheap inside jit)."""
  return nnx.merge(graphdef, params)


def create(params, tx: optax.GradientTransformation, extra=None) -> TrainState:
  """A fresh TrainState at step 0."""
  return TrainState(step=jnp.zeros((), jnp.int32), params=params, opt_state=tx.init(params),
                    extra={} if extra is None else extra)


def apply_gradients(state: TrainState, grads, tx: optax.GradientTransformation) -> TrainState:
  """One optimizer update; increments ``step``."""
  updates, opt_state = tx.update(grads, state.opt_state, state.params)
  return state.replace(step=state.step + 1, params=optax.apply_updates(state.params, updates),
                       opt_state=opt_state)


def init_on_mesh(make_model: Callable[[nnx.Rngs], nnx.Module], tx: optax.GradientTransformation,
                 mesh, rng: jax.Array):
  """Builds a fresh TrainState directly on the mesh (never whole on one device).

  Args:
    make_model: ``rngs -> nnx.Module`` (parameters only; see ``split_model``).
    tx: the optimizer.
    mesh: ``jax.sharding.Mesh`` with the ``parallel.mesh`` axes.
    rng: parameter-init key.

  Returns:
    (graphdef, state, shardings): the model structure, the state, and the state's
    NamedShardings (parameters and optimizer moments FSDP-sharded, see
    ``parallel.sharding.tree_shardings``).
  """
  graphdef, _ = split_model(nnx.eval_shape(lambda: make_model(nnx.Rngs(0))))

  def init(key):
    return create(split_model(make_model(nnx.Rngs(params=key)))[1], tx)

  shardings = sharding.tree_shardings(jax.eval_shape(init, rng), mesh)
  return graphdef, jax.jit(init, out_shardings=shardings)(rng), shardings
