"""The TrainState, and the NNX split/merge the training code goes through.

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
from flax.core import FrozenDict

from jaxssl.parallel import sharding


class TrainState(struct.PyTreeNode):
  """Everything a run needs to continue exactly; the arrays are saved as one pytree.

  Attributes:
    step: int32 scalar, optimizer steps taken.
    params: pure dict of float32 parameter arrays.
    opt_state: the optax state for ``params``.
    extra: method-specific state (EMA targets, BatchNorm statistics, ...); {} if none.
    graphdef: static (not a pytree leaf, not checkpointed): the model's ``nnx.GraphDef``,
      or a ``FrozenDict`` of them for several networks (GAN, BYOL).
    tx: static: the ``optax.GradientTransformation``, or a ``FrozenDict`` of them for several
      networks (then each is applied by the step itself; ``apply_gradients`` takes one).
  """
  step: jax.Array
  params: Any
  opt_state: Any
  extra: Any = struct.field(default_factory=dict)
  graphdef: Any = struct.field(pytree_node=False, default=None)
  tx: Any = struct.field(pytree_node=False, default=None)

  def apply_gradients(self, grads) -> TrainState:
    """One update of ``tx``; increments ``step``."""
    updates, opt_state = self.tx.update(grads, self.opt_state, self.params)
    return self.replace(step=self.step + 1, params=optax.apply_updates(self.params, updates),
                        opt_state=opt_state)


def create(params, tx, *, graphdef, extra=None) -> TrainState:
  """A fresh TrainState at step 0 (``tx`` one transformation of all ``params``)."""
  return TrainState(step=jnp.zeros((), jnp.int32), params=params, opt_state=tx.init(params),
                    extra={} if extra is None else extra, graphdef=graphdef, tx=tx)


def frozen(**parts) -> FrozenDict:
  """The hashable mapping a state holds several graphdefs or optimizers in (jit hashes the
  static fields of its arguments)."""
  return FrozenDict(parts)


def split_model(model: nnx.Module) -> tuple[nnx.GraphDef, dict]:
  """(graphdef, params): the static structure and a pure dict of ``nnx.Param`` arrays.

  Raises:
    ValueError: the module holds state other than parameters (an ``nnx.Rngs``, BatchNorm
      statistics), which would be silently dropped; split BatchNorm models with
      ``split_model_with_stats`` and pass RNG keys per call.
  """
  graphdef, params, rest = nnx.split(model, nnx.Param, ...)
  if jax.tree.leaves(rest):
    raise ValueError('model holds state other than parameters (BatchNorm statistics go '
                     'through split_model_with_stats; RNG state is passed per call): '
                     f'{jax.tree.structure(rest)}')
  return graphdef, nnx.to_pure_dict(params)


def split_model_with_stats(model: nnx.Module) -> tuple[nnx.GraphDef, dict, dict]:
  """(graphdef, params, batch_stats): ``split_model`` for models with BatchNorm; the
  statistics live in ``TrainState.extra`` and the step (not optax) updates them.

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


def shardings(state: TrainState) -> TrainState:
  """The NamedSharding of every array of ``state`` (a state on the mesh), same structure."""
  return jax.tree.map(lambda x: x.sharding, state)


def jit_init(init: Callable[[jax.Array], TrainState], mesh, rng: jax.Array) -> TrainState:
  """Runs ``init(rng) -> TrainState`` jitted straight onto the mesh: parameters, moments and
  ``extra`` FSDP-sharded as ``parallel.sharding.tree_shardings`` decides (replicated when
  ``mesh.fsdp == 1``), so no state is ever whole on one device."""
  out = sharding.tree_shardings(jax.eval_shape(init, rng), mesh)
  return jax.jit(init, out_shardings=out)(rng)


def init_on_mesh(make_model: Callable[[nnx.Rngs], nnx.Module], tx: optax.GradientTransformation,
                 mesh, rng: jax.Array, *, with_stats: bool = False) -> TrainState:
  """A fresh TrainState of one model and optimizer, built directly on the mesh.

  Args:
    make_model: ``rngs -> nnx.Module``: parameters only, or with BatchNorm statistics (kept
      in ``state.extra['batch_stats']``) when ``with_stats``.
    tx: the optimizer.
    mesh: ``jax.sharding.Mesh`` with the ``parallel.mesh`` axes.
    rng: the parameter-init key.
  """
  split = split_model_with_stats if with_stats else split_model
  graphdef = split(nnx.eval_shape(lambda: make_model(nnx.Rngs(0))))[0]

  def init(key):
    parts = split(make_model(nnx.Rngs(params=key)))
    return create(parts[1], tx, graphdef=graphdef,
                  extra={'batch_stats': parts[2]} if with_stats else None)

  return jit_init(init, mesh, rng)
