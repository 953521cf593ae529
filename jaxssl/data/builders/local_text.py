"""``local_text``: a TFDS dataset of documents from local text, prepared offline.

The source is the embedded Python reference text (``pydoc``) or UTF-8 files. Each source is
cleaned and cut by ``jaxssl.data.text``; the one split, ``train``, holds ``{'text': str}`` per
document in source order (files sorted by path), as ArrayRecord. Configs are named after the
source bytes and cleaning parameters (``make_config``) and built by ``offline.prepare``.
"""

import dataclasses
import hashlib
import os
from collections.abc import Sequence

import tensorflow_datasets as tfds

from jaxssl.data import sources as sources_lib
from jaxssl.data import text
from jaxssl.data.builders import offline

NAME = 'local_text'
PYDOC = 'pydoc'


@dataclasses.dataclass(eq=False)
class LocalTextConfig(tfds.core.BuilderConfig):
  """Which local text to prepare, and how. Build it with ``make_config``.

  Attributes:
    paths: absolute paths of the UTF-8 source files in sorted order; empty for ``pydoc``.
    max_chars: the longest document, in characters (passed to ``split_documents``).
    source_sha256: hex ``content_sha256`` of the raw source bytes; checked again when the
      dataset is generated, so a file edited in between fails loudly.
  """

  paths: tuple[str, ...] = ()
  max_chars: int = 2000
  source_sha256: str = ''


class LocalText(tfds.core.GeneratorBasedBuilder, skip_registration=offline.is_registered(NAME)):
  """Documents cut from local text; see the module docstring."""

  name = NAME
  VERSION = tfds.core.Version('1.0.0')
  RELEASE_NOTES = {'1.0.0': 'Cleaned documents cut at blank lines.'}

  def _info(self) -> tfds.core.DatasetInfo:
    return tfds.core.DatasetInfo(
        builder=self,
        description='Documents cut from local text (see jaxssl.data.text).',
        features=tfds.features.FeaturesDict({'text': tfds.features.Text()}),
        # Keep source order: TFDS would otherwise shuffle examples by key hash.
        disable_shuffling=True,
    )

  def _split_generators(self, dl_manager):
    del dl_manager  # Nothing is downloaded.
    config = self.builder_config
    if not isinstance(config, LocalTextConfig):
      raise ValueError(
          f'{NAME} needs a LocalTextConfig from local_text.make_config, got {config!r}.'
      )
    return {'train': self._generate_examples(config)}

  def _generate_examples(self, config: LocalTextConfig):
    sources = read_sources(config.paths)
    found = content_sha256([data for _, data in sources])
    if found != config.source_sha256:
      raise RuntimeError(
          f'The source of {NAME}/{config.name} changed while it was being prepared '
          f'(sha256 {found}, expected {config.source_sha256}); run again.'
      )
    index = 0
    for label, data in sources:
      cleaned = text.clean_text(decode_utf8(data, label))
      for document in text.split_documents(cleaned, max_chars=config.max_chars):
        yield index, {'text': document}
        index += 1


def read_sources(paths: Sequence[str]) -> list[tuple[str, bytes]]:
  """``(label, raw bytes)`` per file in the order given (label = path); ``pydoc`` if none.

  Raises:
    FileNotFoundError: if a file does not exist.
  """
  if not paths:
    return [(PYDOC, text.pydoc_text().encode('utf-8'))]
  sources = []
  for path in paths:
    with open(path, 'rb') as f:
      sources.append((path, f.read()))
  return sources


def decode_utf8(data: bytes, label: str) -> str:
  """Decodes UTF-8, dropping a leading byte-order mark; ValueError names the file and offset."""
  try:
    return data.decode('utf-8-sig')
  except UnicodeDecodeError as e:
    raise ValueError(
        f'{label} is not valid UTF-8 (byte {e.start}: {e.reason}); '
        'convert it, e.g. with iconv -t UTF-8.'
    ) from e


# Hex sha256 of several byte strings, each framed by its 8-byte length.
content_sha256 = offline.content_sha256


def make_config(paths: Sequence[str], *, max_chars: int) -> LocalTextConfig:
  """The config for some local text, named after its content and cleaning parameters.

  Name: ``pydoc_<h>`` or ``files_<h>``, ``<h>`` the first 16 hex digits of the sha256 of the
  source hash, ``max_chars`` and ``text.CLEANING_VERSION``. ``paths`` (UTF-8 files, any order:
  made absolute and sorted; empty for ``pydoc``) are read here to hash them, and again in
  ``prepare``.

  Raises:
    FileNotFoundError: if a file does not exist.
    ValueError: a file is not valid UTF-8 (naming it), the sources hold no text after
      cleaning (naming them), or ``max_chars < 1``.
  """
  if max_chars < 1:
    raise ValueError(f'max_chars must be >= 1, got {max_chars}.')
  paths = tuple(sorted(os.path.abspath(p) for p in paths))
  sources = read_sources(paths)
  if not any(text.clean_text(decode_utf8(data, label)).strip() for label, data in sources):
    labels = ', '.join(label for label, _ in sources[:3]) + (' ...' if len(sources) > 3 else '')
    raise ValueError(f'{labels}: no text (empty, or only whitespace and markup rules).')
  source_sha256 = content_sha256([data for _, data in sources])
  key = f'{source_sha256}|max_chars={max_chars}|cleaning={text.CLEANING_VERSION}'
  name_hash = hashlib.sha256(key.encode('utf-8')).hexdigest()[:16]
  return LocalTextConfig(
      name=f'{"files" if paths else PYDOC}_{name_hash}',
      description=f'{len(sources)} source(s), max_chars={max_chars}',
      paths=paths,
      max_chars=max_chars,
      source_sha256=source_sha256,
  )


def prepare(config: LocalTextConfig, *, data_dir: str | os.PathLike) -> LocalText:
  """Prepares ``config`` under ``data_dir`` once, offline (``offline.prepare``).

  The dataset goes to ``<data_dir>/local_text/<config.name>/1.0.0``; read the builder with
  ``read_documents`` or ``as_data_source``.
  """
  return offline.prepare(LocalText, config, data_dir=data_dir)


def read_documents(builder: tfds.core.DatasetBuilder) -> list[str]:
  """The documents of the ``train`` split of a prepared ``local_text`` builder, in source order."""
  return [ex['text'].decode('utf-8') for ex in sources_lib.iter_examples(builder, 'train')]
