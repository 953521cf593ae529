"""Config validation helpers: each raises ValueError naming the dotted field.

Experiments call these before loading data or compiling anything, so a bad value costs
milliseconds and the message says which ``--config.<field>`` to fix.
"""

from __future__ import annotations

import json
import math
from typing import Iterable

import ml_collections
import orbax.checkpoint as ocp

from jaxssl.parallel import mesh as mesh_lib
from jaxssl.train import checkpoint

# Fields that may differ between a checkpoint and the config resuming it: the run's length
# and cadence, and model.remat (recomputation in the backward pass: same values, less memory).
RESUMABLE_CHANGES = ('num_train_steps', 'log_every_steps', 'eval_every_steps',
                     'checkpoint_every_steps', 'max_checkpoints_to_keep', 'model.remat')


def get(config: ml_collections.ConfigDict, field: str):
  """Value of a dotted field such as 'optim.learning_rate'.

  Raises:
    KeyError: a part of ``field`` is missing (AttributeError or TypeError below a leaf).
  """
  value = config
  for part in field.split('.'):
    value = value[part]
  return value


def set_field(config: ml_collections.ConfigDict, field: str, value) -> None:
  """Sets a dotted field such as 'optim.learning_rate' in place.

  Raises:
    KeyError: a group on the path is missing; as ``ConfigDict.__setitem__`` for a locked
      config (a new field) or a value of another type.
  """
  *groups, name = field.split('.')
  parent = get(config, '.'.join(groups)) if groups else config
  parent[name] = value


def field_type(config: ml_collections.ConfigDict, field: str) -> type:
  """The declared type of a dotted field: that of its value, or of a placeholder's default
  (``config_dict.placeholder(int)`` -> int); ``ConfigDict`` for a group of fields.

  Raises:
    KeyError: as ``get``.
  """
  *groups, name = field.split('.')
  parent = get(config, '.'.join(groups)) if groups else config
  return parent.get_type(name)


def flatten(tree: dict, prefix: str = '') -> dict:
  """{dotted field: value} of every leaf of a nested dict (e.g. ``ConfigDict.to_dict()``),
  in the dict's order: ``{'optim': {'b1': 0.9}}`` -> ``{'optim.b1': 0.9}``. An empty group
  has no leaf, so it does not appear."""
  out = {}
  for k, v in tree.items():
    if isinstance(v, dict):
      out.update(flatten(v, f'{prefix}{k}.'))
    else:
      out[f'{prefix}{k}'] = v
  return out


def as_json(tree: dict) -> dict:
  """``tree`` as it reads back from JSON: tuples become lists, values JSON cannot hold
  become their ``str`` (as ``writers.write_json`` stores them). Compare configs this way
  with what a workdir recorded."""
  return json.loads(json.dumps(tree, default=str))


def _each(config, fields, ok, what):
  for field in fields:
    value = get(config, field)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not ok(value):
      raise ValueError(f'{field}={value!r} must be {what}')


def positive(config, *fields: str) -> None:
  """Each field is an int >= 1."""
  _each(config, fields, lambda v: isinstance(v, int) and v >= 1, 'an integer >= 1')


def non_negative(config, *fields: str) -> None:
  """Each field is a number >= 0."""
  _each(config, fields, lambda v: v >= 0, '>= 0')


def positive_float(config, *fields: str) -> None:
  """Each field is a finite number > 0 (inf and NaN refused)."""
  _each(config, fields, lambda v: 0 < v < math.inf, 'a finite number > 0')


def in_unit_interval(config, *fields: str) -> None:
  """Each field is a number in [0, 1]."""
  _each(config, fields, lambda v: 0 <= v <= 1, 'in [0, 1]')


def in_open_unit_interval(config, *fields: str) -> None:
  """Each field is a number in (0, 1)."""
  _each(config, fields, lambda v: 0 < v < 1, 'in (0, 1)')


def one_of(config, field: str, choices: Iterable[str]) -> None:
  """The field's value is one of ``choices``."""
  choices = sorted(choices)
  if get(config, field) not in choices:
    raise ValueError(f'{field}={get(config, field)!r} must be one of {choices}')


def check_training(config: ml_collections.ConfigDict, num_devices: int,
                   process_count: int = 1) -> None:
  """The fields every experiment on ``train.optim`` and ``train.loop`` shares.

  Checks the step counts and cadences, the optimizer (``optim.*``), the mesh, and that
  ``global_batch_size`` splits into ``optim.grad_accum_steps`` micro-batches that the
  devices share evenly (and ``eval.global_batch_size`` too).

  Raises:
    ValueError: naming the first bad field.
  """
  positive(config, 'global_batch_size', 'num_train_steps', 'eval.global_batch_size',
           'optim.grad_accum_steps', 'max_checkpoints_to_keep')
  non_negative(config, 'log_every_steps', 'eval_every_steps', 'checkpoint_every_steps',
               'optim.warmup_steps', 'optim.weight_decay', 'optim.grad_clip_norm',
               'optim.skip_nonfinite_updates', 'seed')
  in_unit_interval(config, 'optim.b1', 'optim.b2')
  positive_float(config, 'optim.learning_rate', 'optim.eps')
  one_of(config, 'optim.decay', ('linear', 'cosine', 'constant'))
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
    value = get(config, field)
    if value % num_devices or value % process_count:
      raise ValueError(f'{field}={value} must be a multiple of the {num_devices} devices and '
                       f'{process_count} processes')


def config_differences(saved: dict, current: dict) -> list[str]:
  """Dotted fields whose values differ, ignoring ``RESUMABLE_CHANGES``.

  Both sides are compared as JSON would store them (a tuple equals the list it is saved as).
  """
  a, b = flatten(as_json(saved)), flatten(as_json(current))
  return sorted(f for f in set(a) | set(b)
                if f not in RESUMABLE_CHANGES and a.get(f) != b.get(f))


def check_workdir(manager: ocp.CheckpointManager, experiment: str,
                  config: ml_collections.ConfigDict) -> dict | None:
  """Refuses to resume a workdir written by another experiment or an incompatible config.

  Reads the JSON ``meta`` of the newest checkpoint that has one (damaged ones are skipped
  here and reported by the restore).

  Returns:
    That meta dict (the caller may check more of it, e.g. data hashes), or None when the
    workdir has no readable checkpoint.

  Raises:
    ValueError: naming the other experiment, or every differing config field with both
      values.
  """
  _, meta = checkpoint.latest_meta(manager)
  if meta is not None:
    if meta.get('experiment') != experiment:
      raise ValueError(f'workdir {manager.directory} holds checkpoints of experiment '
                       f'{meta.get("experiment")!r}, not {experiment!r}: use another --workdir')
    diffs = config_differences(meta.get('config', {}), config.to_dict())
    if diffs:
      a = flatten(as_json(meta.get('config', {})))
      b = flatten(as_json(config.to_dict()))
      details = ', '.join(f'{f}: {a.get(f)!r} in the checkpoint vs {b.get(f)!r} now'
                          for f in diffs)
      raise ValueError(f'workdir {manager.directory} was trained with another config '
                       f'({details}); use another --workdir or the same values')
  return meta
