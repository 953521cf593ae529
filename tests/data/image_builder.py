"""A TFDS image dataset of scikit-learn's digits, for the tests of named-dataset reading.

``jaxssl_test_digits``: the 1,797 digits as PNG-encoded ``Image`` features (decoded on read,
as TFDS's MNIST and CIFAR-10 are), uint8 [8, 8, 1] with values round(v * 255 / 16), and
``ClassLabel`` labels, one ``train`` split in source order. Not part of jaxssl.
"""

import numpy as np
import tensorflow_datasets as tfds

from tests.data import text_builder

NAME = 'jaxssl_test_digits'


def digits() -> tuple[np.ndarray, np.ndarray]:
  """(uint8 [1797, 8, 8, 1] images, int64 [1797] labels) scaled as the module says."""
  from sklearn import datasets
  loaded = datasets.load_digits()
  return (np.round(loaded.images * (255.0 / 16.0)).astype(np.uint8)[..., None],
          loaded.target.astype(np.int64))


class JaxsslTestDigits(tfds.core.GeneratorBasedBuilder,
                       skip_registration=text_builder.is_registered(NAME)):
  """scikit-learn's digits as a named TFDS image dataset (see module docstring)."""

  name = NAME
  VERSION = tfds.core.Version('1.0.0')

  def _info(self):
    return tfds.core.DatasetInfo(
        builder=self, disable_shuffling=True,
        features=tfds.features.FeaturesDict({
            'image': tfds.features.Image(shape=(8, 8, 1)),
            'label': tfds.features.ClassLabel(num_classes=10)}))

  def _split_generators(self, dl_manager):
    del dl_manager
    return {'train': self._generate_examples()}

  def _generate_examples(self):
    images, labels = digits()
    for i, (image, label) in enumerate(zip(images, labels)):
      yield i, {'image': image, 'label': int(label)}


def prepare(data_dir: str, file_format: str = 'array_record') -> str:
  """Prepares the dataset under ``data_dir``; returns its ``data.name``."""
  JaxsslTestDigits(data_dir=data_dir).download_and_prepare(
      file_format=file_format,
      download_config=tfds.download.DownloadConfig(try_download_gcs=False))
  return NAME
