"""What the text and image loaders share about where data comes from.

The cache dir of local sources, ``data.files`` globs, named TFDS datasets read from disk only
(an unprepared one fails at once, saying how to prepare it, since offline ``tfds.load``
retries for minutes).
"""

import glob
import hashlib
import json
import math
import os
from collections.abc import Iterator, Sequence

import ml_collections
import numpy as np
import tensorflow_datasets as tfds
from etils import epath

from jaxssl import fileio

_READ_CHUNK = 1024  # examples per ArrayRecord read


def cache_dir(data: ml_collections.ConfigDict) -> str:
  """``data.cache_dir``, else ``$JAXSSL_CACHE_DIR``, else ``~/.cache/jaxssl`` (or a ``gs://`` URI)."""
  path = data.get('cache_dir') or os.environ.get('JAXSSL_CACHE_DIR') or '~/.cache/jaxssl'
  return os.fspath(fileio.path(path))


def settings_key(settings: dict) -> str:
  """The name of a cache entry: the first 20 hex digits of the sha256 of ``settings`` (JSON
  values) as key-sorted JSON. Raises TypeError for a value JSON cannot write."""
  return hashlib.sha256(json.dumps(settings, sort_keys=True).encode('utf-8')).hexdigest()[:20]


def patterns(files: str) -> list[str]:
  """The comma-separated globs of ``data.files``."""
  return [p.strip() for p in files.split(',') if p.strip()]


def files_source(files: str) -> str:
  """``'files:<abs glob>[,...]'``: the ``source`` string of a ``data.files`` source."""
  return 'files:' + ','.join(os.fspath(fileio.path(p)) for p in patterns(files))


def _glob(pattern: str) -> list[str]:
  """Files matching one glob: local (``glob``, ``**`` recursive) or a URI (``etils.epath``)."""
  if not fileio.is_cloud(pattern):
    # Local only (the branch's guard): glob.glob gives '**' recursion and '~' as users expect.
    matches = glob.glob(os.path.expanduser(pattern), recursive=True)
    return [os.path.abspath(m) for m in matches if os.path.isfile(m)]
  parts = pattern.split('/')
  first = next((i for i, part in enumerate(parts) if any(c in part for c in '*?[')), len(parts))
  root, rest = epath.Path('/'.join(parts[:first])), '/'.join(parts[first:])
  if not rest:
    return [pattern] if root.is_file() else []
  return [os.fspath(p) for p in root.glob(rest) if p.is_file()]


def glob_files(files: str) -> list[str]:
  """Expands the comma-separated globs of ``data.files`` (``~``, ``**``, ``gs://``) to sorted
  absolute files.

  Raises:
    FileNotFoundError: naming ``data.files`` and the pattern, if a glob matches no file.
    ValueError: if ``data.files`` holds no pattern.
  """
  globs = patterns(files)
  if not globs:
    raise ValueError(f'data.files={files!r} holds no glob pattern.')
  paths = set()
  for pattern in globs:
    matches = _glob(pattern)
    if not matches and fileio.path(pattern).is_dir():
      raise FileNotFoundError(f'data.files: {pattern!r} is a folder; give the files in it, '
                              f"e.g. '{fileio.join(pattern, '*.txt')}'.")
    if not matches:
      raise FileNotFoundError(f'data.files: no file matches {pattern!r}.')
    paths.update(matches)
  return sorted(paths)


def smallest_fraction(keys: np.ndarray, fraction: float) -> np.ndarray:
  """int64 [ceil(fraction * n)]: positions of the smallest of n ``keys`` (ties in index order).

  The held-out rule of text and images: with keys sha256(split seed, content), the held-out
  examples depend on the seed and the content alone, not on order or training seed.
  """
  return np.argsort(keys, kind='stable')[:math.ceil(fraction * len(keys))]


def eval_sample(num: int, cap: int, seed: int, stream: int) -> np.ndarray:
  """int64 [min(num, cap)]: every index 0..num-1, or ``cap`` distinct ones drawn by
  ``np.random.default_rng([seed, stream])``, sorted: the same at every evaluation and on
  every device and process count."""
  if num <= cap:
    return np.arange(num)
  return np.sort(np.random.default_rng([seed, stream]).choice(num, cap, replace=False))


# Named TFDS datasets, read from disk only.


def tfds_builder(name: str, data_dir: str | None) -> tfds.core.DatasetBuilder:
  """The builder of a prepared TFDS dataset ``data.name`` (with optional config and version).

  Never downloads; ``data_dir`` None means the TFDS default.

  Raises:
    ValueError: if ``name`` is not a TFDS dataset (or config) known here.
    FileNotFoundError: if it is not prepared in ``data_dir``; the message names the
      ``tfds build`` command that prepares it.
  """
  try:
    builder = tfds.builder(name, data_dir=data_dir)
  except ValueError as e:  # Includes tfds' DatasetNotFoundError.
    first_line = str(e).strip().split('\n')[0]
    raise ValueError(f'data.name={name!r} is not a known TFDS dataset: {first_line}') from e
  if not builder.is_prepared():
    where = data_dir or builder.data_dir_root
    raise FileNotFoundError(
        f'data.name={name!r}: TFDS dataset not prepared in data_dir {where} '
        f'(looked for {builder.data_dir}). Nothing is downloaded here: on a machine with '
        f'network run `tfds build {name} --data_dir={where}` (or `tfds.builder(...)'
        '.download_and_prepare()`), copy the data_dir here, and set data.data_dir.'
    )
  return builder


def check_split(builder: tfds.core.DatasetBuilder, split: str, field: str) -> None:
  """Raises ValueError naming `field` if `split` is not a split of `builder`."""
  try:
    builder.info.splits[split]
  except (KeyError, ValueError) as e:
    raise ValueError(
        f'{field}={split!r} is not a split of {builder.info.full_name}; it has '
        f'{sorted(builder.info.splits)}.'
    ) from e


def uses_array_record(builder: tfds.core.DatasetBuilder) -> bool:
  """True if the prepared files include ArrayRecord (read without TensorFlow)."""
  formats = [builder.info.file_format, *builder.info.alternative_file_formats]
  return tfds.core.FileFormat.ARRAY_RECORD in formats


def iter_examples(builder: tfds.core.DatasetBuilder, split: str, *,
                  limit: int | None = None) -> Iterator[dict]:
  """Yields the decoded examples of ``split`` in stored order, at most ``limit`` (None: all).

  ArrayRecord via ``as_data_source`` (no TensorFlow), TFRecord via ``tf.data``. Values are
  NumPy as TFDS decodes them (text as UTF-8 bytes); check ``split`` with ``check_split`` first.
  """
  if uses_array_record(builder):
    source = builder.as_data_source(split=split)
    size = len(source) if limit is None else min(limit, len(source))
    for start in range(0, size, _READ_CHUNK):
      yield from source.__getitems__(range(start, min(start + _READ_CHUNK, size)))
  else:
    dataset = builder.as_dataset(split=split, shuffle_files=False)
    if limit is not None:
      dataset = dataset.take(limit)
    yield from tfds.as_numpy(dataset)


def tfds_sha256(builder: tfds.core.DatasetBuilder, *, read: Sequence[str | None],
                **caps) -> str:
  """Hex sha256 of a JSON naming what was read of a named dataset.

  The JSON holds the full name (name/config/version), splits and sizes, the splits ``read``
  (None for one not read) and ``**caps`` (e.g. ``max_documents=None``).
  """
  described = {
      'dataset': builder.info.full_name,
      'splits': {k: v.num_examples for k, v in sorted(builder.info.splits.items())},
      'read': list(read),
      **caps,
  }
  return hashlib.sha256(json.dumps(described, sort_keys=True).encode('utf-8')).hexdigest()
