"""The image stand-ins of benchmarks/image_standins.py: deterministic IDX files jaxssl reads."""

import numpy as np
import pytest

from benchmarks import image_standins
from jaxssl.data import images


@pytest.mark.parametrize('name, shape', [('strokes28', (28, 28, 1)), ('natural32', (32, 32, 3))])
def test_standin_is_deterministic_and_read_as_idx(name, shape, tmp_path):
  first = image_standins.write_standin(name, str(tmp_path / 'a'), num_train=120, num_test=30)
  again = image_standins.write_standin(name, str(tmp_path / 'b'), num_train=120, num_test=30)
  other = image_standins.write_standin(name, str(tmp_path / 'c'), num_train=120, num_test=30,
                                       seed=1)
  assert first['files'] == again['files'] and first['files'] != other['files']
  data = images.data_config()
  data.files, data.cache_dir = str(tmp_path / 'a' / '*'), str(tmp_path / 'cache')
  got = images.load_images(data)
  assert got.info['data/image_shape'] == list(shape) and got.num_classes == 10
  assert len(got.train['label']) == 120 and len(got.test['label']) == 30
  assert np.bincount(got.train['label']).tolist() == [12] * 10  # balanced classes
  train = np.asarray(got.train['image'])
  if name == 'strokes28':  # MNIST-like: mostly exactly black, strokes near white
    assert 0.7 < (train == 0).mean() < 0.9 and train.max() >= 229
  else:  # natural colour: few exact zeros, all three channels used
    assert (train == 0).mean() < 0.1 and (train.std(axis=(0, 1, 2)) > 30).all()
