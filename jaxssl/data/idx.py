"""Reading IDX files, the format MNIST, Fashion-MNIST and KMNIST ship in.

IDX: magic ``00 00 <dtype code> <ndim>``, ``ndim`` big-endian uint32 dimensions, then the
array in C order, big-endian. Gzip is detected from the magic bytes ``1f 8b``, not the name.
"""

import dataclasses
import gzip
import os
import re
import zlib
from collections.abc import Iterator, Sequence

import numpy as np

from jaxssl import fileio
from jaxssl.data import sources


# IDX dtype codes; multi-byte types are big-endian.
DTYPES = {
    0x08: np.dtype('u1'),
    0x09: np.dtype('i1'),
    0x0B: np.dtype('>i2'),
    0x0C: np.dtype('>i4'),
    0x0D: np.dtype('>f4'),
    0x0E: np.dtype('>f8'),
}

TRAIN, TEST = 'train', 'test'


@dataclasses.dataclass(frozen=True)
class IdxHeader:
  """What an IDX header says: ``dtype`` (big-endian if multi-byte), ``shape``, ``size`` in bytes."""

  dtype: np.dtype
  shape: tuple[int, ...]
  size: int


@dataclasses.dataclass(frozen=True)
class IdxPair:
  """An images file, uint8 [N, H, W(, C)], and its labels file, integers [N] (absolute paths).

  ``split`` is ``'train'`` or ``'test'``; ``image_shape`` is (H, W, C), C = 1 for [N, H, W].
  """

  images: str
  labels: str
  split: str
  num_examples: int
  image_shape: tuple[int, int, int]


def _open(path: str | os.PathLike):
  """Opens `path` (local or a URI) for reading bytes, through gzip if it starts with the gzip
  magic."""
  return fileio.open_read(path)


def _read_bytes(path: str | os.PathLike, *, header_only: bool = False) -> bytes:
  """The (decompressed) bytes of `path`: all, or only those of the IDX header.

  Raises:
    ValueError: naming the file, if it is gzipped but damaged or truncated.
  """
  try:
    with _open(path) as f:
      if not header_only:
        return f.read()
      start = f.read(4)
      ndim = start[3] if len(start) == 4 and start[:2] == b'\0\0' else 0
      return start + f.read(4 * ndim)
  except (EOFError, gzip.BadGzipFile, zlib.error) as e:
    raise ValueError(f'{path}: damaged or truncated gzip file ({e}).') from e


def parse_header(data: bytes, path: str | os.PathLike) -> IdxHeader:
  """Parses the IDX header at the start of ``data`` (decompressed bytes; ``path`` for messages).

  Raises:
    ValueError: naming ``path``: the magic number does not start with two zero bytes, the
      dtype code is unknown, or the header is cut short.
  """
  if len(data) < 4:
    raise ValueError(f'{path}: not an IDX file: {len(data)} bytes, shorter than the '
                     '4-byte magic number.')
  if data[:2] != b'\0\0':
    raise ValueError(f'{path}: not an IDX file: bad magic number {data[:4].hex(" ")} (an IDX '
                     'file starts with two zero bytes, a dtype code and the number of '
                     'dimensions).')
  code, ndim = data[2], data[3]
  if code not in DTYPES:
    known = ', '.join(f'0x{c:02X} {d.name}' for c, d in DTYPES.items())
    raise ValueError(f'{path}: unknown IDX dtype code 0x{code:02X} (known: {known}).')
  size = 4 + 4 * ndim
  if len(data) < size:
    raise ValueError(f'{path}: truncated IDX header: {ndim} dimensions need {size} bytes, '
                     f'found {len(data)}.')
  shape = tuple(int(d) for d in np.frombuffer(data, dtype='>u4', count=ndim, offset=4))
  return IdxHeader(dtype=DTYPES[code], shape=shape, size=size)


def read_header(path: str | os.PathLike) -> IdxHeader:
  """Reads only the header of an IDX file (gzipped or plain).

  Raises:
    ValueError: as ``parse_header``, or for a damaged gzip file; each names the file.
  """
  return parse_header(_read_bytes(path, header_only=True), path)


def read_idx(path: str | os.PathLike) -> np.ndarray:
  """Reads an IDX file, gzipped or plain.

  Returns:
    The array, shaped as the header says, in native byte order: uint8, int8, int16,
    int32, float32 or float64 by the header's dtype code.

  Raises:
    ValueError: naming the file: bad magic number, unknown dtype code, data shorter than the
      shape needs (bytes expected and found), trailing bytes, or a damaged gzip file.
  """
  data = _read_bytes(path)
  header = parse_header(data, path)
  expected = int(np.prod(header.shape, dtype=np.int64)) * header.dtype.itemsize
  found = len(data) - header.size
  described = f'shape {list(header.shape)} of {header.dtype.name}'
  if found < expected:
    raise ValueError(f'{path}: truncated IDX data: {described} needs {expected} bytes after '
                     f'the {header.size}-byte header, found {found}.')
  if found > expected:
    raise ValueError(f'{path}: {found - expected} trailing bytes after the IDX data '
                     f'({described} needs {expected} bytes, found {found}).')
  array = np.frombuffer(data, dtype=header.dtype, offset=header.size).reshape(header.shape)
  return array.astype(header.dtype.newbyteorder('='))


def iter_chunks(path: str | os.PathLike, rows: int) -> Iterator[np.ndarray]:
  """Streams an IDX file (gzipped or plain, local or a URI) ``rows`` examples at a time.

  Yields arrays [k <= rows, *shape[1:]] in native byte order; memory is one chunk, not the
  file. Raises ValueError naming the file as ``read_idx`` does (truncated data, trailing
  bytes, a damaged gzip stream), when the stream reaches the problem.
  """
  try:
    with _open(path) as f:
      start = f.read(4)
      ndim = start[3] if len(start) == 4 and start[:2] == b'\0\0' else 0
      header = parse_header(start + f.read(4 * ndim), path)
      row_shape = header.shape[1:]
      row_bytes = int(np.prod(row_shape, dtype=np.int64)) * header.dtype.itemsize
      left = header.shape[0] if header.shape else 0
      while left:
        k = min(rows, left)
        data = f.read(k * row_bytes)
        if len(data) < k * row_bytes:
          raise ValueError(f'{path}: truncated IDX data: shape {list(header.shape)} of '
                           f'{header.dtype.name} ends after {header.shape[0] - left} full rows.')
        chunk = np.frombuffer(data, header.dtype).reshape((k, *row_shape))
        yield chunk.astype(header.dtype.newbyteorder('='))
        left -= k
      if f.read(1):
        raise ValueError(f'{path}: trailing bytes after the IDX data (shape '
                         f'{list(header.shape)} of {header.dtype.name}).')
  except (EOFError, gzip.BadGzipFile, zlib.error) as e:
    raise ValueError(f'{path}: damaged or truncated gzip file ({e}).') from e


# Pairing images with labels.

_ROLE_WORDS = re.compile(r'images?|imgs|labels?')


def _name(path: str) -> str:
  """The lowercase file name without a ``.gz`` suffix."""
  name = os.path.basename(path).lower()
  return name[:-3] if name.endswith('.gz') else name


def _named_role(path: str) -> str | None:
  """'images' or 'labels' if the file name says so, else None."""
  words = set(_ROLE_WORDS.findall(_name(path)))
  if words & {'labels', 'label'}:
    return 'labels'
  if words & {'images', 'image', 'imgs'}:
    return 'images'
  return None


def _pair_key(path: str) -> str:
  """The name with the role word and idx rank blanked: ``train-*-idx?-ubyte`` for both files."""
  return re.sub(r'idx\d', 'idx?', _ROLE_WORDS.sub('*', _name(path)))


def _named_split(path: str) -> str | None:
  """'train' or 'test' if the file name says so (``t10k`` is MNIST's test), else None."""
  words = set(re.findall(r'[a-z0-9]+', _name(path)))
  if 'train' in words or 'training' in words:
    return TRAIN
  if words & {'test', 't10k', 'testing'}:
    return TEST
  return None


def _role(path: str, header: IdxHeader) -> str:
  """'images' (ndim 3 or 4, uint8) or 'labels' (ndim 1, integer), checked against the name.

  Raises:
    ValueError: naming the file: another rank or dtype, or a name that says the other role.
  """
  shape = list(header.shape)
  if len(shape) in (3, 4):
    role = 'images'
    if header.dtype != np.uint8:
      raise ValueError(f'{path}: images of shape {shape} must be uint8 (IDX code 0x08), '
                       f'found {header.dtype.name}.')
  elif len(shape) == 1:
    role = 'labels'
    if header.dtype.kind not in 'iu':
      raise ValueError(f'{path}: labels must be integers, found {header.dtype.name}.')
  else:
    raise ValueError(f'{path}: an IDX array of shape {shape} is neither images [N, H, W] or '
                     '[N, H, W, C] nor labels [N].')
  named = _named_role(path)
  if named is not None and named != role:
    what = f'images of shape {shape}' if role == 'images' else f'1-D labels of shape {shape}'
    raise ValueError(f'{path} is named as {named} but holds {what}; check data.files.')
  return role


def _pair(images: str, labels: str, headers: dict[str, IdxHeader]) -> tuple[str, str]:
  """Checks that the two files have the same number of examples; ValueError names both."""
  n_images, n_labels = headers[images].shape[0], headers[labels].shape[0]
  if n_images != n_labels:
    raise ValueError(f'{images} holds {n_images} images but {labels} holds {n_labels} '
                     'labels: they are not a pair (mislabelled or mismatched files?).')
  return images, labels


def _pair_by_count(images: list[str], labels: list[str], headers) -> list[tuple[str, str]]:
  """Pairs leftover files whose example counts match one to one; ValueError lists the rest."""
  if len(images) == 1 and len(labels) == 1:
    return [_pair(images[0], labels[0], headers)]
  count = {p: headers[p].shape[0] for p in images + labels}
  pairs = []
  for image_path in images:
    matches = [p for p in labels if count[p] == count[image_path]]
    same_count = [p for p in images if count[p] == count[image_path]]
    if len(matches) == 1 and len(same_count) == 1:
      pairs.append((image_path, matches[0]))
  paired = {p for pair in pairs for p in pair}
  unpaired = [p for p in images + labels if p not in paired]
  if unpaired:
    described = ', '.join(f'{p} ({list(headers[p].shape)})' for p in unpaired)
    raise ValueError(
        f'data.files: cannot pair images with labels: {described}. Name them like '
        'train-images-idx3-ubyte / train-labels-idx1-ubyte, or give one pair per split.')
  return pairs


def find_idx_pairs(files: str | Sequence[str]) -> list[IdxPair]:
  """Pairs the IDX images and labels files that ``files`` matches, one pair per split.

  Roles come from the headers (images uint8 [N, H, W(, C)], labels integer [N]). Files pair by
  name (``train-images-idx3-ubyte`` with ``train-labels-idx1-ubyte``; ``.gz`` ignored), the
  rest by example count. One pair is ``train`` whatever its name; with several, each name must
  say ``train`` or ``test``/``t10k``, and one must be ``train``.

  Args:
    files: comma-separated globs (``data.files``), or a sequence of paths.

  Returns:
    The pairs, train before test, each split's in sorted path order.

  Raises:
    FileNotFoundError: a glob matches no file.
    ValueError: naming the file(s): an unreadable header; a file neither images nor labels, or
      named as the other role; a pair with different counts; files that cannot be paired;
      several pairs not naming their split, or no train pair; images of different shapes.
  """
  if isinstance(files, str):
    paths = sources.glob_files(files)
  else:
    paths = sorted({os.path.abspath(p) for p in files})
  headers = {p: read_header(p) for p in paths}
  roles = {p: _role(p, headers[p]) for p in paths}
  images = [p for p in paths if roles[p] == 'images']
  labels = [p for p in paths if roles[p] == 'labels']
  if not images or not labels:
    missing = 'images [N, H, W(, C)]' if not images else 'labels [N]'
    raise ValueError(f'data.files: no IDX {missing} file among {paths}.')

  pairs = []
  groups = {}
  for p in paths:
    groups.setdefault(_pair_key(p), []).append(p)
  for group in groups.values():
    group_images = [p for p in group if roles[p] == 'images']
    group_labels = [p for p in group if roles[p] == 'labels']
    if len(group_images) == 1 and len(group_labels) == 1:
      pairs.append(_pair(group_images[0], group_labels[0], headers))
  paired = {p for pair in pairs for p in pair}
  pairs += _pair_by_count([p for p in images if p not in paired],
                          [p for p in labels if p not in paired], headers)

  result = []
  for image_path, label_path in sorted(pairs):
    if len(pairs) == 1:
      split = TRAIN
    else:
      split = _named_split(image_path) or _named_split(label_path)
      if split is None:
        raise ValueError(f'data.files: {len(pairs)} pairs of files, but the name of '
                         f'{image_path} says neither train nor test (t10k).')
    shape = headers[image_path].shape
    result.append(IdxPair(images=image_path, labels=label_path, split=split,
                          num_examples=shape[0],
                          image_shape=(*shape[1:], 1) if len(shape) == 3 else shape[1:]))
  if not any(pair.split == TRAIN for pair in result):
    raise ValueError(f'data.files: no training pair among {[p.images for p in result]} '
                     '(a name with "train").')
  shapes = {pair.image_shape for pair in result}
  if len(shapes) > 1:
    described = ', '.join(f'{p.images}: {list(p.image_shape)}' for p in result)
    raise ValueError(f'data.files: images of different shapes [H, W, C]: {described}.')
  return sorted(result, key=lambda pair: (pair.split != TRAIN, pair.images))
