"""Each experiment's jitted train step is traced and compiled once for a whole run.

A step whose inputs change type from one call to the next (a batch of another shape, a
weakly-typed Python scalar, a restored state whose dtypes differ from the step's output)
makes ``jax.jit`` trace and compile again, silently: the run is right but slow. JAX reports
every trace and every XLA compilation through ``jax.monitoring`` with the function's name
(events ``/jax/core/compile/jaxpr_trace_duration`` and
``/jax/core/compile/backend_compile_duration``, keyword ``fun_name``, e.g.
``jit(train_step)``, emitted for calls made outside any trace); ``helpers.counting`` counts
those naming ``train_step``. The session's smoke run of each experiment (6 steps crossing
the log and checkpoint cadences, conftest's ``smoke_run``) is counted as it runs, so these
tests train nothing more; test_common counts the resumed run after an interruption.
"""

import jax
import jax.numpy as jnp
import pytest

from experiments import autoencoder, byol, clm_pretrain, dcgan, mlm_pretrain, simclr, vae
from tests.experiments.helpers import counting

EXPERIMENTS = [mlm_pretrain, clm_pretrain, autoencoder, vae, dcgan, simclr, byol]


def test_the_counter_sees_a_recompilation():
  def train_step(x):
    return x * 2

  step = jax.jit(train_step)
  with counting() as counts:
    step(jnp.ones(2))
    step(jnp.ones(2))  # same shape: cached
  assert counts == {'trace': 1, 'compile': 1}
  with counting() as counts:
    step(jnp.ones(3))  # another shape: traced and compiled again
    jax.jit(lambda x: x + 1)(jnp.ones(2))  # another function: not counted
  assert counts == {'trace': 1, 'compile': 1}


@pytest.mark.parametrize('module', EXPERIMENTS, ids=lambda m: m.EXPERIMENT)
def test_train_step_compiles_once_over_a_run(module, smoke_run):
  _, summary = smoke_run(module)
  assert summary['step'] == 6
  counts = smoke_run.train_step_compilations[module]
  assert counts == {'trace': 1, 'compile': 1}, f'train_step over steps 1-6: {dict(counts)}'
