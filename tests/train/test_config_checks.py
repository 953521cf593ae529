"""The dotted-field helpers of config_checks, and config comparison as JSON stores it."""

import ml_collections
import pytest
from ml_collections import config_dict

from experiments import mlm_pretrain
from jaxssl.train import config_checks


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


def test_configs_compare_as_json_stores_them():
  saved = config_checks.as_json(_config().to_dict())
  assert saved['model']['widths'] == [4, 8]
  assert config_checks.as_json({'x': (1,)}) == {'x': [1]}
  assert config_checks.as_json({'path': type}) == {'path': str(type)}  # not JSON: its str
  current = _config()
  current.num_train_steps = 10  # resumable: ignored
  current.model.widths = (4, 16)
  assert config_checks.config_differences(saved, current.to_dict()) == ['model.widths']


def test_switching_remat_resumes_but_a_model_size_does_not():
  saved = mlm_pretrain.get_config().to_dict()
  current = mlm_pretrain.get_config()
  current.model.remat = not saved['model']['remat']  # memory for recomputation, same values
  assert config_checks.config_differences(saved, current.to_dict()) == []
  current.model.preset = 'small'
  assert config_checks.config_differences(saved, current.to_dict()) == ['model.preset']
