"""The config fields every training experiment shares: the run's root fields, their smoke
values for tests, and their checks (``optim.*`` comes from ``train.optim.adamw_config``,
``mesh.*`` from ``parallel.mesh.mesh_config``)."""

from __future__ import annotations

import jax
import ml_collections

from jaxssl import config_checks
from jaxssl.parallel import mesh as mesh_lib


def base_config(data: ml_collections.ConfigDict, *, global_batch_size: int,
                num_train_steps: int, log_every_steps: int, eval_every_steps: int,
                checkpoint_every_steps: int,
                num_epochs: int | None = None) -> ml_collections.ConfigDict:
  """The root fields of a training config, its ``data`` block and the mesh (every device
  data-parallel); experiments add ``model``, ``method``, ``optim`` and ``eval``."""
  c = ml_collections.ConfigDict()
  c.seed = 0  # Root of every training random stream (train.rngs) and of the data order.
  c.global_batch_size = global_batch_size  # Examples per optimizer step, all devices.
  if num_epochs is not None:
    c.num_epochs = num_epochs  # Passes over the training examples ...
  c.num_train_steps = num_train_steps  # ... capped at this many optimizer steps.
  c.log_every_steps = log_every_steps  # Train metrics cadence.
  c.eval_every_steps = eval_every_steps  # Evaluation cadence (and always at the end).
  c.checkpoint_every_steps = checkpoint_every_steps  # Orbax saves (and always at the end).
  c.max_checkpoints_to_keep = 3  # Older step folders are deleted.
  c.data = data
  c.mesh = mesh_lib.mesh_config()  # --config.mesh.fsdp=N shards parameters over N devices.
  return c


def smoke(c: ml_collections.ConfigDict, *, global_batch_size: int,
          eval_batch_size: int) -> ml_collections.ConfigDict:
  """``c`` cut to 6 steps (logged every 2, checkpoints at 3 and 6, evaluated at the end) with
  a warmup of at most 2 steps: the tests' runs. Returns ``c``, changed in place."""
  c.global_batch_size = global_batch_size
  c.num_train_steps = 6
  c.log_every_steps = 2
  c.eval_every_steps = 0
  c.checkpoint_every_steps = 3
  c.optim.warmup_steps = min(c.optim.warmup_steps, 2)
  c.eval.global_batch_size = eval_batch_size
  return c


def check_training(config: ml_collections.ConfigDict, num_devices: int,
                   process_count: int | None = None) -> None:
  """The step counts and cadences, ``optim.*``, the mesh, and that ``global_batch_size``
  splits into ``optim.grad_accum_steps`` micro-batches the devices share evenly (and
  ``eval.global_batch_size`` over devices and processes (default: this run's)).

  Raises:
    ValueError: naming the first bad field.
  """
  process_count = jax.process_count() if process_count is None else process_count
  config_checks.positive(config, 'global_batch_size', 'num_train_steps',
                         'eval.global_batch_size', 'optim.grad_accum_steps',
                         'max_checkpoints_to_keep')
  config_checks.non_negative(config, 'log_every_steps', 'eval_every_steps',
                             'checkpoint_every_steps', 'optim.warmup_steps',
                             'optim.weight_decay', 'optim.grad_clip_norm',
                             'optim.skip_nonfinite_updates', 'seed')
  config_checks.in_unit_interval(config, 'optim.b1', 'optim.b2')
  config_checks.positive_float(config, 'optim.learning_rate', 'optim.eps')
  config_checks.one_of(config, 'optim.decay', ('linear', 'cosine', 'constant'))
  if config.optim.warmup_steps > config.num_train_steps:
    raise ValueError(f'optim.warmup_steps={config.optim.warmup_steps} exceeds '
                     f'num_train_steps={config.num_train_steps}')
  mesh_lib.mesh_shape(config.mesh, num_devices)
  micro = config.global_batch_size // config.optim.grad_accum_steps
  if config.global_batch_size % config.optim.grad_accum_steps or micro % num_devices:
    raise ValueError(
        f'global_batch_size={config.global_batch_size} must split into '
        f'optim.grad_accum_steps={config.optim.grad_accum_steps} micro-batches that are each '
        f'a multiple of the {num_devices} devices')
  for field in ('global_batch_size', 'eval.global_batch_size'):
    value = config_checks.get(config, field)
    if value % num_devices or value % process_count:
      raise ValueError(f'{field}={value} must be a multiple of the {num_devices} devices and '
                       f'{process_count} processes')
