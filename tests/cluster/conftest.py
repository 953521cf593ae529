"""Fixtures of the jaxssl.cluster tests."""

import pytest
from sklearn import datasets
from sklearn import preprocessing


@pytest.fixture(scope='module')
def digits():
  """scikit-learn's setting: the 1,797 digits standardised, float64 [1797, 64]."""
  return preprocessing.StandardScaler().fit_transform(datasets.load_digits().data)
