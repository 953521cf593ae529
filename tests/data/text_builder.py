"""A tiny TFDS text dataset for the tests of named-dataset reading (not part of jaxssl).

Config ``paragraphs``: 20 examples 'Paragraph i of a small named dataset.'; ``greek``: alpha,
beta, gamma, delta. Prepared offline with ``prepare(config, data_dir, file_format)``.
"""

import tensorflow_datasets as tfds

NAME = 'jaxssl_test_text'


def is_registered(name: str) -> bool:
  """True if TFDS already registered builder ``name`` (a test module imported twice)."""
  try:
    tfds.builder_cls(name)
  except tfds.core.registered.DatasetNotFoundError:
    return False
  return True

TEXTS = {
    'paragraphs': [f'Paragraph {i} of a small named dataset.' for i in range(20)],
    'greek': ['alpha', 'beta', 'gamma', 'delta'],
}


class JaxsslTestText(tfds.core.GeneratorBasedBuilder, skip_registration=is_registered(NAME)):
  """Fixed texts in stored order (see module docstring)."""

  name = NAME
  VERSION = tfds.core.Version('1.0.0')
  BUILDER_CONFIGS = [tfds.core.BuilderConfig(name=n) for n in TEXTS]

  def _info(self):
    return tfds.core.DatasetInfo(builder=self, disable_shuffling=True,
                                 features=tfds.features.FeaturesDict({'text': tfds.features.Text()}))

  def _split_generators(self, dl_manager):
    del dl_manager
    return {'train': self._generate_examples(TEXTS[self.builder_config.name])}

  def _generate_examples(self, texts):
    for i, t in enumerate(texts):
      yield i, {'text': t}


def prepare(config: str, data_dir: str, file_format: str = 'array_record') -> str:
  """Prepares config ``config`` under ``data_dir``; returns its ``data.name``."""
  JaxsslTestText(config=config, data_dir=data_dir).download_and_prepare(
      file_format=file_format,
      download_config=tfds.download.DownloadConfig(try_download_gcs=False))
  return f'{NAME}/{config}'
