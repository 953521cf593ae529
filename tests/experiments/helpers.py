"""Helpers shared by the experiment tests."""

from experiments import sweep


def smoke(module, cache_dir, **overrides):
  """``module.smoke_config()`` reading data from ``cache_dir``, with dotted-field overrides."""
  c = module.smoke_config()
  c.data.cache_dir = cache_dir
  for k, v in overrides.items():
    target = c
    *parents, last = k.split('.')
    for p in parents:
      target = target[p]
    target[last] = v
  return c


def evals(summary):
  return {k: v for k, v in summary.items() if k.startswith('eval/')}


def command_flags(module, config):
  """The ``--config.*`` flags that turn ``module.get_config()`` into ``config``."""
  return sweep.override_flags(module.get_config(), config)
