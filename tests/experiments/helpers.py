"""Helpers shared by the experiment tests."""

import collections
import contextlib
import functools
import os
import re
import signal

import jax
import jax.numpy as jnp
import numpy as np
import optax
import orbax.checkpoint as ocp
import pytest
from flax import traverse_util

import experiments
from jaxssl import config_checks
from jaxssl.data import pipeline
from jaxssl.parallel import mesh as mesh_lib
from jaxssl.parallel import sharding
from jaxssl.train import checkpoint, rngs
from tools import sweep


class SimulatedFault(RuntimeError):
  """A crash injected by a test (``fail_after``, ``save_killed_at``)."""


def smoke(module, cache_dir, **overrides):
  """``module.smoke_config()`` reading data from ``cache_dir``, with dotted-field overrides."""
  c = module.smoke_config()
  c.data.cache_dir = cache_dir
  for field, value in overrides.items():
    config_checks.set_field(c, field, value)
  return c


def build_step(module, config, workdir: str):
  """(jitted train step, fresh state, data) of ``module`` through the experiment protocol
  (``experiments/__init__.py``), on a mesh of every device, the init key of ``config.seed``."""
  data = module.prepare_data(config, workdir)
  state = module.create_train_state(config, data, mesh_lib.make_mesh(config.mesh),
                                    rngs.run_keys(config.seed).init)
  step = jax.jit(functools.partial(module.train_step, config=config,
                                   **experiments.step_constants(module, config, data)))
  return step, state, data


def gradient_step(step, state, batch):
  """(gradients, metrics) of one ``step`` from ``state`` with its optimizer replaced by plain
  SGD (rate 1) that records the gradient it applies, after checking that the step moved every
  parameter array. Comparing these gradients is exact where comparing Adam's first update
  is not: it is about lr * sign(g), which blows a rounding difference of a tiny g up."""
  sgd = optax.GradientTransformation(
      lambda params: {'grads': jax.tree.map(jnp.zeros_like, params)},
      lambda grads, opt_state, params=None: (jax.tree.map(jnp.negative, grads),
                                             {'grads': grads}))
  state = state.replace(tx=sgd, opt_state=sgd.init(state.params))
  before = jax.tree.map(np.asarray, state.params)
  new, metrics = step(state, batch, jax.random.key(0))
  assert all(not np.array_equal(a, b) for a, b in zip(jax.tree.leaves(new.params),
                                                       jax.tree.leaves(before)))
  return jax.tree.map(np.asarray, new.opt_state['grads']), metrics


def assert_close_to_scale(got, want):
  """Equal to rtol 1e-5 of each array's largest entry: summed in another order, an entry that
  is a near-cancelling sum differs in its last bits relative to the large ones, not itself."""
  np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5 * np.abs(want).max())


def evals(summary):
  return {k: v for k, v in summary.items() if k.startswith('eval/')}


def command_flags(module, config):
  """The ``--config.*`` flags that turn ``module.get_config()`` into ``config``."""
  return sweep.override_flags(module.get_config(), config)


def save_killed_at(at_step: int):
  """A ``checkpoint.save`` that, at ``at_step``, leaves what a process killed while writing
  leaves (a partial ``<step>.orbax-checkpoint-tmp-*`` folder) and raises SimulatedFault."""
  save = checkpoint.save

  def dying_save(manager, step, state, meta):
    if step != at_step:
      return save(manager, step, state, meta)
    partial = os.path.join(str(manager.directory), f'{step}.orbax-checkpoint-tmp-1234', 'state')
    os.makedirs(partial)
    with open(os.path.join(partial, 'manifest.ocdbt'), 'wb') as f:
      f.write(b'\x00' * 7)
    raise SimulatedFault(f'killed inside the step-{step} save')
  return dying_save


def batch_getter_sending_sigterm(at_step: int):
  """A ``pipeline.batch_getter`` that sends SIGTERM to this process while the batch of step
  index ``at_step`` is fetched: the loop prefetches it right after dispatching the step
  ending at ``at_step``, so that is the step the run stops after."""
  batch_getter = pipeline.batch_getter

  def preempting_batch_getter(*args, **kwargs):
    get_batch = batch_getter(*args, **kwargs)

    def get(step):
      if step == at_step:
        os.kill(os.getpid(), signal.SIGTERM)
      return get_batch(step)
    return get
  return preempting_batch_getter


def jit_train_step_sending_sigterm(at_step: int):
  """A ``sharding.jit_train_step`` whose step sends SIGTERM to this process right after the
  step with ``state.step == at_step`` going in (the step ending at ``at_step + 1``) is
  dispatched: the signal arrives while that step computes."""
  jit_train_step = sharding.jit_train_step

  def wrapped(*args, **kwargs):
    step_fn = jit_train_step(*args, **kwargs)

    def run(state, batch, rng):
      now = int(state.step) == at_step  # read before the step donates the state's buffers
      out = step_fn(state, batch, rng)
      if now:
        os.kill(os.getpid(), signal.SIGTERM)
      return out
    return run
  return wrapped

def _jit_train_step_failing_after(at_step: int):
  jit_train_step = sharding.jit_train_step

  def wrapped(*args, **kwargs):
    step_fn = jit_train_step(*args, **kwargs)

    def run(state, batch, rng):
      if int(state.step) == at_step:
        raise SimulatedFault(f'simulated fault after step {at_step}')
      return step_fn(state, batch, rng)
    return run
  return wrapped


def fail_after(at_step: int, module, config, workdir: str) -> None:
  """Runs ``module.train_and_evaluate(config, workdir)`` with a crash right after step
  ``at_step``'s work (its checkpoint included): the loop's next call of the train step raises
  ``SimulatedFault``, which this expects."""
  with pytest.MonkeyPatch.context() as patch:
    patch.setattr(sharding, 'jit_train_step', _jit_train_step_failing_after(at_step))
    with pytest.raises(SimulatedFault):
      module.train_and_evaluate(config, workdir)


# JAX reports every trace and XLA compilation through jax.monitoring, naming the function.
_COMPILE_EVENTS = {'/jax/core/compile/jaxpr_trace_duration': 'trace',
                   '/jax/core/compile/backend_compile_duration': 'compile'}
TRAIN_STEP = re.compile(r'\btrain_step\b')  # 'jit(train_step)'; not 'eval_step', 'init'


@contextlib.contextmanager
def counting(name=TRAIN_STEP):
  """Yields a Counter of 'trace' and 'compile' events of jitted functions matching ``name``
  while the block runs (a recompilation adds one to each)."""
  counts = collections.Counter()

  def listen(event, duration_secs, **kwargs):
    del duration_secs
    if event in _COMPILE_EVENTS and name.search(str(kwargs.get('fun_name', ''))):
      counts[_COMPILE_EVENTS[event]] += 1

  jax.monitoring.register_event_duration_secs_listener(listen)
  try:
    yield counts
  finally:
    jax.monitoring.unregister_event_duration_listener(listen)


def flat(tree) -> dict:
  """{'a/0/b': array}: the checkpoint's string keys ('0') and the model's int keys (0) alike."""
  return {'/'.join(str(k) for k in path): np.asarray(v)
          for path, v in traverse_util.flatten_dict(jax.device_get(tree)).items()}


def assert_same_tree(a, b) -> None:
  """The same leaf paths (by ``flat``) holding bit-identical arrays."""
  a, b = flat(a), flat(b)
  assert sorted(a) == sorted(b)
  for key, value in a.items():
    np.testing.assert_array_equal(value, b[key], err_msg=key)


def saved_state(workdir: str, step: int) -> dict:
  """A checkpoint's state as Orbax reads it, without the experiments' restore."""
  return ocp.StandardCheckpointer().restore(os.path.join(workdir, 'checkpoints', str(step),
                                                         'state'))
