"""Preparing a local TFDS builder once, offline, safely from several processes.

Used by ``local_images``, which names configs after ``content_sha256`` of
the source (an edited source gets a new directory; a stale one is never served).
"""

import contextlib
import fcntl
import hashlib
import os
from collections.abc import Iterator, Sequence

import tensorflow_datasets as tfds


def is_registered(name: str) -> bool:
  """True if TFDS already registered builder ``name``; builders pass it as ``skip_registration``."""
  try:
    tfds.builder_cls(name)
  except tfds.core.registered.DatasetNotFoundError:
    return False
  return True


def content_sha256(contents: Sequence[bytes]) -> str:
  """Hex sha256 of several byte strings, each framed by its 8-byte length.

  The framing makes moving bytes from one part to the next change the hash.
  """
  digest = hashlib.sha256()
  for data in contents:
    digest.update(len(data).to_bytes(8, 'big'))
    digest.update(data)
  return digest.hexdigest()


@contextlib.contextmanager
def file_lock(path: str) -> Iterator[None]:
  """Holds an exclusive advisory lock on `path` (released if the process dies)."""
  os.makedirs(os.path.dirname(path), exist_ok=True)
  with open(path, 'a') as f:
    fcntl.flock(f, fcntl.LOCK_EX)
    try:
      yield
    finally:
      fcntl.flock(f, fcntl.LOCK_UN)


def _remove_incomplete(builder: tfds.core.DatasetBuilder) -> None:
  """Deletes TFDS's ``incomplete.*_<version>`` folders of a killed preparation (hold the lock)."""
  for path in builder.data_path.parent.glob(f'incomplete.*_{builder.version}'):
    path.rmtree(missing_ok=True)


def prepare(builder_cls: type[tfds.core.GeneratorBasedBuilder], config: tfds.core.BuilderConfig,
            *, data_dir: str | os.PathLike) -> tfds.core.GeneratorBasedBuilder:
  """Prepares ``config`` of ``builder_cls`` under ``data_dir`` once, with no network.

  Safe from several processes at once: the first prepares while the others wait on
  ``<data_dir>/.locks/<name>-<config>.lock``; TFDS writes to a temporary folder renamed into
  place when complete. The dataset goes to ``<data_dir>/<builder name>/<config.name>/<version>``
  as ArrayRecord; read the returned builder with ``as_data_source``.
  """
  data_dir = os.fspath(data_dir)
  lock = os.path.join(data_dir, '.locks', f'{builder_cls.name}-{config.name}.lock')
  with file_lock(lock):
    builder = builder_cls(config=config, data_dir=data_dir)
    if not builder.is_prepared():
      _remove_incomplete(builder)
      builder.download_and_prepare(
          file_format='array_record',
          download_config=tfds.download.DownloadConfig(try_download_gcs=False),
      )
  return builder
