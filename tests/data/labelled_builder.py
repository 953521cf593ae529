"""A tiny labelled TFDS text dataset for the tests of text_tasks (not part of jaxssl).

Features ``sentence`` (Text) and ``label`` (ClassLabel 'neg', 'pos'): train has 30 examples
'<neg|pos> sentence i', test 10 and validation 6 alike with other i; test labels are -1
(hidden, as in GLUE) in config ``hidden``, given in config ``labelled``. Prepared offline
with ``prepare(config, data_dir)``.
"""

import tensorflow_datasets as tfds

from tests.data.text_builder import is_registered

NAME = 'jaxssl_test_labelled'
CLASSES = ('neg', 'pos')


def split_examples(split: str, hidden: bool) -> list[tuple[str, int]]:
  """(sentence, label) of a split in stored order; label -1 for a hidden test split."""
  first, count = {'train': (0, 30), 'test': (100, 10), 'validation': (200, 6)}[split]
  out = [(f'{CLASSES[i % 2]} sentence {i}', i % 2) for i in range(first, first + count)]
  return [(t, -1) for t, _ in out] if hidden and split == 'test' else out


class JaxsslTestLabelled(tfds.core.GeneratorBasedBuilder,
                         skip_registration=is_registered(NAME)):
  """Fixed labelled sentences (see module docstring)."""

  name = NAME
  VERSION = tfds.core.Version('1.0.0')
  BUILDER_CONFIGS = [tfds.core.BuilderConfig(name=n) for n in ('labelled', 'hidden')]

  def _info(self):
    return tfds.core.DatasetInfo(builder=self, disable_shuffling=True,
                                 features=tfds.features.FeaturesDict({
                                     'sentence': tfds.features.Text(),
                                     'label': tfds.features.ClassLabel(names=CLASSES)}))

  def _split_generators(self, dl_manager):
    del dl_manager
    hidden = self.builder_config.name == 'hidden'
    return {s: self._generate_examples(split_examples(s, hidden))
            for s in ('train', 'test', 'validation')}

  def _generate_examples(self, examples):
    for i, (sentence, label) in enumerate(examples):
      yield i, {'sentence': sentence, 'label': label}


def prepare(config: str, data_dir: str) -> str:
  """Prepares config ``config`` under ``data_dir`` (ArrayRecord); returns its ``data.name``."""
  JaxsslTestLabelled(config=config, data_dir=data_dir).download_and_prepare(
      file_format='array_record',
      download_config=tfds.download.DownloadConfig(try_download_gcs=False))
  return f'{NAME}/{config}'
