"""Atomic file writes, shared by every module that writes results, caches or records."""

from __future__ import annotations

import os
import uuid


def write_atomic(path: str | os.PathLike, data: str | bytes) -> None:
  """Writes ``data`` (str as UTF-8, or bytes) to ``path`` atomically, creating the folder.

  A reader sees the old file or the new one: the data go to a uniquely named temporary file
  beside ``path`` (so concurrent writers never share one), renamed over ``path``.

  Raises:
    OSError: the folder or file cannot be written (the temporary file is removed).
  """
  folder, name = os.path.split(os.path.abspath(os.fspath(path)))
  os.makedirs(folder, exist_ok=True)
  tmp = os.path.join(folder, f'.{name}.{uuid.uuid4().hex}.tmp')
  try:
    with open(tmp, 'xb') as f:
      f.write(data.encode('utf-8') if isinstance(data, str) else data)
    os.replace(tmp, path)
  except BaseException:
    if os.path.exists(tmp):
      os.remove(tmp)
    raise
