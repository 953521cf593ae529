"""The dotted-field helpers and validators of config_checks."""

import ml_collections
import pytest
from ml_collections import config_dict

from jaxssl import config_checks


def _config():
  c = ml_collections.ConfigDict()
  c.seed = 0
  c.optim = ml_collections.ConfigDict({'learning_rate': 1e-3, 'b1': 0.9})
  c.model = ml_collections.ConfigDict({'widths': (4, 8)})
  c.data = ml_collections.ConfigDict({'files': config_dict.placeholder(str),
                                      'inner': {'max_examples': config_dict.placeholder(int)}})
  return c


def test_flatten_gives_every_leaf_by_dotted_field_in_the_dicts_order():
  assert config_checks.flatten(_config().to_dict()) == {
      'seed': 0, 'optim.learning_rate': 1e-3, 'optim.b1': 0.9, 'model.widths': (4, 8),
      'data.files': None, 'data.inner.max_examples': None}
  assert list(config_checks.flatten({'b': 1, 'a': {'z': 2, 'y': 3}})) == ['b', 'a.z', 'a.y']
  assert not config_checks.flatten({'empty': {}})


def test_get_and_set_a_dotted_field():
  c = _config()
  assert config_checks.get(c, 'optim.learning_rate') == 1e-3
  config_checks.set_field(c, 'optim.learning_rate', 3e-4)
  config_checks.set_field(c, 'seed', 7)
  config_checks.set_field(c, 'data.inner.max_examples', 100)
  assert (c.optim.learning_rate, c.seed, c.data.inner.max_examples) == (3e-4, 7, 100)
  with pytest.raises(KeyError):
    config_checks.get(c, 'optim.learnig_rate')
  c.lock()
  with pytest.raises(KeyError, match="cannot be added since the config is locked"):
    config_checks.set_field(c, 'optim.momentum', 0.9)


def test_field_type_is_the_declared_type_also_of_a_placeholder():
  c = _config()
  assert config_checks.field_type(c, 'optim.learning_rate') is float
  assert config_checks.field_type(c, 'model.widths') is tuple
  assert config_checks.field_type(c, 'data.files') is str  # its value is None
  assert config_checks.field_type(c, 'data.inner.max_examples') is int
  assert config_checks.field_type(c, 'seed') is int
  assert config_checks.field_type(c, 'optim') is ml_collections.ConfigDict


@pytest.mark.parametrize('value, ok', [((4, 8), True), ((4,), True), ((), False), ((4, 0), False),
                                       ((4, 2.0), False), ((True,), False), (8, False)])
def test_positive_sizes(value, ok):
  c = ml_collections.ConfigDict({'model': {'widths': value}})
  if ok:
    config_checks.positive_sizes(c, 'model.widths')
  else:
    with pytest.raises(ValueError, match=r'model.widths=.* must be positive sizes'):
      config_checks.positive_sizes(c, 'model.widths')


def test_positive_sizes_of_a_given_length():
  c = ml_collections.ConfigDict({'head': (16, 8), 'deep': (16, 8, 4)})
  config_checks.positive_sizes(c, 'head', length=2)
  with pytest.raises(ValueError, match=r'deep=\(16, 8, 4\) must be 2 positive sizes'):
    config_checks.positive_sizes(c, 'head', 'deep', length=2)


def test_whole_batch_objectives_refuse_micro_batches():
  c = ml_collections.ConfigDict({'optim': {'grad_accum_steps': 1}})
  config_checks.whole_batch_steps(c, 'BatchNorm normalises over the batch')
  c.optim.grad_accum_steps = 2
  with pytest.raises(ValueError, match='optim.grad_accum_steps=2 must be 1: BatchNorm '
                     'normalises over the batch, so micro-batches'):
    config_checks.whole_batch_steps(c, 'BatchNorm normalises over the batch')
