"""Helpers shared by the experiment tests."""

import collections
import contextlib
import os
import re
import signal

import jax

from experiments import sweep
from jaxssl.parallel import sharding
from jaxssl.train import checkpoint, config_checks, loop


def smoke(module, cache_dir, **overrides):
  """``module.smoke_config()`` reading data from ``cache_dir``, with dotted-field overrides."""
  c = module.smoke_config()
  c.data.cache_dir = cache_dir
  for field, value in overrides.items():
    config_checks.set_field(c, field, value)
  return c


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
    raise loop.SimulatedFault(f'killed inside the step-{step} save')
  return dying_save


def batch_getter_sending_sigterm(at_step: int):
  """A ``loop.batch_getter`` that sends SIGTERM to this process while the batch of step
  index ``at_step`` is fetched: the loop prefetches it right after dispatching the step
  ending at ``at_step``, so that is the step the run stops after."""
  batch_getter = loop.batch_getter

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
