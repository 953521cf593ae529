"""Fixed-width rows of integers in one flat file, written once and read by index.

The on-disk form of packed token rows (as nanoGPT's ``train.bin`` and levanter's token cache
keep tokens outside host memory): row i is bytes [i * width * itemsize, (i + 1) * ...), so any
row is one ranged read, local or in a bucket (``etils.epath``), and a process reads only the
rows it feeds. Values are stored in the smallest dtype that holds them and read as int32.
"""

from __future__ import annotations

import os
import threading
import uuid

import numpy as np
from etils import epath

from jaxssl import fileio


def storage_dtype(max_value: int) -> np.dtype:
  """uint16 if every value fits in [0, 65535], else int32 (vocabularies beyond 64k ids)."""
  return np.dtype(np.uint16) if max_value <= np.iinfo(np.uint16).max else np.dtype(np.int32)


class RowWriter:
  """Appends int [n, width] rows to ``path``; ``close`` makes the file appear whole.

  Locally the rows go to a unique temporary name renamed into place; in a bucket the object
  appears only when its upload completes. Either way a reader never sees a partial file.
  """

  def __init__(self, path: epath.PathLike, *, width: int, dtype: np.dtype):
    self.path, self.width, self.dtype = epath.Path(path), width, np.dtype(dtype)
    self.num_rows = 0
    self._target = self.path
    if not fileio.is_cloud(self.path):
      self._target = self.path.parent / f'.{self.path.name}.{uuid.uuid4().hex}.tmp'
    self.path.parent.mkdir(parents=True, exist_ok=True)
    self._file = self._target.open('wb')

  def write(self, rows: np.ndarray) -> None:
    """Appends int [n, width] rows (values must fit ``dtype``; ValueError otherwise)."""
    rows = np.asarray(rows)
    if rows.ndim != 2 or rows.shape[1] != self.width:
      raise ValueError(f'{self.path}: rows of width {self.width} expected, got {rows.shape}.')
    if rows.size and (rows.min() < 0 or rows.max() > np.iinfo(self.dtype).max):
      raise ValueError(f'{self.path}: values outside {self.dtype}.')
    self._file.write(rows.astype(self.dtype).tobytes())
    self.num_rows += rows.shape[0]

  def close(self) -> None:
    self._file.close()
    if self._target != self.path:
      self._target.replace(self.path)

  def abort(self) -> None:
    """Closes and removes a partial local file (a bucket upload never completes)."""
    self._file.close()
    if self._target != self.path:
      self._target.unlink(missing_ok=True)


class RowFile:
  """Read-only [num_rows, *row_shape] view of a file made by ``RowWriter`` (int32 by default).

  ``rows[indices]`` reads just those rows (contiguous runs coalesced into one read);
  ``len``, ``shape``, ``ndim`` and ``dtype`` behave as for the NumPy array it stands for.
  ``row_shape`` (default ``(width,)``) reshapes each row, e.g. (H, W, C) for images;
  ``read_dtype`` is the dtype rows are returned in (uint8 for images). Safe to read from
  several threads.

  Raises (at construction):
    FileNotFoundError: the file is missing. ValueError: its size is not num_rows rows.
  """

  def __init__(self, path: epath.PathLike, *, width: int, dtype: np.dtype, num_rows: int,
               read_dtype: np.dtype = np.int32, row_shape: tuple[int, ...] | None = None):
    self.path, self.width, self._stored = epath.Path(path), width, np.dtype(dtype)
    self.num_rows, self.dtype = num_rows, np.dtype(read_dtype)
    self.row_shape = tuple(row_shape or (width,))
    if int(np.prod(self.row_shape)) != width:
      raise ValueError(f'row_shape {self.row_shape} does not hold {width} values.')
    self._row_bytes = width * self._stored.itemsize
    if not self.path.exists():
      raise FileNotFoundError(f'{self.path}: no such row file.')
    size = self.path.stat().length
    if size != num_rows * self._row_bytes:
      raise ValueError(f'{self.path}: {size} bytes, expected {num_rows} rows of '
                       f'{self._row_bytes} bytes; the file is damaged (delete it to rebuild).')
    self._local = not fileio.is_cloud(self.path)
    self._lock = threading.Lock()
    self._file = None

  shape = property(lambda self: (self.num_rows, *self.row_shape))
  ndim = property(lambda self: 1 + len(self.row_shape))

  def __len__(self) -> int:
    return self.num_rows

  def _read(self, offset: int, size: int) -> bytes:
    with self._lock:
      if self._file is None:
        self._file = self.path.open('rb')
      if self._local:
        return os.pread(self._file.fileno(), size, offset)
      self._file.seek(offset)
      return self._file.read(size)

  def __getitem__(self, key) -> np.ndarray:
    """Rows as NumPy indexing would give them: ``rows[indices]`` for int [k] indices (any
    order, repeats allowed) is [k, *row_shape]; ints, slices and ``rows[i, j]`` work too.

    Raises:
      IndexError: an index outside [0, num_rows).
    """
    rest = ()
    if isinstance(key, tuple):
      key, rest = key[0], key[1:]
    if isinstance(key, slice):
      key = np.arange(*key.indices(self.num_rows))
    scalar = np.ndim(key) == 0
    rows = self._rows(np.asarray(key, np.int64).reshape(-1))
    rows = rows[0] if scalar else rows
    return rows[((slice(None),) if not scalar else ()) + rest] if rest else rows

  def _rows(self, indices: np.ndarray) -> np.ndarray:
    """[k, *row_shape] rows at int64 [k] ``indices``, in ``dtype``."""
    if indices.size and (indices.min() < 0 or indices.max() >= self.num_rows):
      raise IndexError(f'{self.path}: row indices must be in [0, {self.num_rows}).')
    wanted, where = np.unique(indices, return_inverse=True)
    # Runs of consecutive rows: one read each.
    breaks = np.flatnonzero(np.diff(wanted) != 1) + 1
    parts = []
    for run in np.split(wanted, breaks) if wanted.size else []:
      data = self._read(int(run[0]) * self._row_bytes, run.size * self._row_bytes)
      parts.append(np.frombuffer(data, self._stored).reshape(run.size, self.width))
    rows = np.concatenate(parts) if parts else np.zeros((0, self.width), self._stored)
    return rows[where].astype(self.dtype).reshape((-1, *self.row_shape))

  def read_all(self) -> np.ndarray:
    """Every row, [num_rows, *row_shape] (for small files: held-out rows)."""
    return self._rows(np.arange(self.num_rows))


class Selection:
  """The rows ``rows[index[i]]``, i < len(index), read lazily: a split kept out of memory.

  ``rows`` is a ``RowFile`` or an array; ``index`` int [n] picks and orders its rows. Indexing
  a ``Selection`` (ints, slices, int arrays) reads only the rows asked for; ``np.asarray``
  reads them all.
  """

  def __init__(self, rows, index: np.ndarray):
    self.rows, self.index = rows, np.asarray(index, np.int64)

  shape = property(lambda self: (len(self.index), *self.rows.shape[1:]))
  ndim = property(lambda self: self.rows.ndim)
  dtype = property(lambda self: self.rows.dtype)

  def __len__(self) -> int:
    return len(self.index)

  def __getitem__(self, key) -> np.ndarray:
    if isinstance(key, tuple):  # rows[i, j]: the row's own axes index the read rows
      return self.rows[(self.index[key[0]],) + key[1:]]
    return self.rows[self.index[key]]

  def __array__(self, dtype=None, copy=None) -> np.ndarray:
    del copy  # a fresh array either way
    rows = self.rows[self.index]
    return rows if dtype is None else rows.astype(dtype)
