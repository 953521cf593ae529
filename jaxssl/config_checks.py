"""Config field access and validators: each check raises ValueError naming the dotted field.

Experiments call these before loading data or compiling anything, so a bad value costs
milliseconds and the message says which ``--config.<field>`` to fix. A leaf module: data
loaders, models and the training code all use it.
"""

from __future__ import annotations

import json
import math
from typing import Iterable

import ml_collections


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


def positive_sizes(config, *fields: str, length: int | None = None) -> None:
  """Each field is a non-empty sequence of integers >= 1 (layer widths), of ``length`` items
  when given (e.g. 2 for a head's (hidden, out))."""
  for field in fields:
    sizes = get(config, field)
    ok = (isinstance(sizes, (tuple, list)) and sizes and (length is None or len(sizes) == length)
          and all(isinstance(s, int) and not isinstance(s, bool) and s >= 1 for s in sizes))
    if not ok:
      what = f'{length} positive sizes' if length else 'positive sizes'
      raise ValueError(f'{field}={sizes!r} must be {what}')


def whole_batch_steps(config, why: str) -> None:
  """``optim.grad_accum_steps`` is 1: the objective couples the examples of a batch
  (BatchNorm, in-batch negatives), so micro-batches would change it; ``why`` says how."""
  if config.optim.grad_accum_steps != 1:
    raise ValueError(f'optim.grad_accum_steps={config.optim.grad_accum_steps} must be 1: '
                     f'{why}, so micro-batches would change the objective')
