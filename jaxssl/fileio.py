"""Every path a user gives (workdir, data and cache dirs, data files), local or a cloud URI
(``gs://bucket/...``), through one abstraction: ``etils.epath``, which Orbax and TFDS use.

Cloud paths go through fsspec's gcsfs, never TensorFlow's gfile: gfile ignores
``STORAGE_EMULATOR_HOST`` (it always calls www.googleapis.com), so nothing could test it, and
the GPU image has no TensorFlow. ``configure_storage`` (run on import) sets that up, and
derives from ``STORAGE_EMULATOR_HOST`` what Orbax's tensorstore and gcsfs need to reach an
emulator; the README's "Data and workdirs in a bucket" says how to run on a bucket.
"""

from __future__ import annotations

import gzip
import os
import socket
import urllib.parse
import uuid

import fsspec
from etils import epath
from etils.epath import gpath

# Set where unset, so an explicit value wins.
ALWAYS = {
    # etils sends gs:// to TensorFlow's gfile when TensorFlow is installed; gcsfs instead.
    'EPATH_USE_TF': 'false',
}


def emulator_url(environ=os.environ) -> str | None:
  """``STORAGE_EMULATOR_HOST`` as a URL (``host:port`` gets ``http://``), as gcsfs reads it;
  None when unset (or gcsfs's 'default')."""
  host = environ.get('STORAGE_EMULATOR_HOST', '')
  if host in ('', 'default'):
    return None
  return host if '://' in host else f'http://{host}'


def derived_environment(environ=os.environ) -> dict[str, str]:
  """The variables ``configure_storage`` sets where unset, given ``environ``.

  With an emulator (``STORAGE_EMULATOR_HOST``), besides ``ALWAYS``:
    TENSORSTORE_GCS_HTTP_URL: tensorstore (Orbax's array I/O) ignores STORAGE_EMULATOR_HOST.
    GOOGLE_AUTH_TOKEN_FOR_TESTING: a fixed token, so tensorstore looks for no credentials
      (its search ends at the GCE metadata server, off this machine).
    GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT=false: gcsfs would ask Google's Storage Control API
      (not the emulator) for each bucket's layout.
  """
  env = dict(ALWAYS)
  url = emulator_url(environ)
  if url:
    env.update(TENSORSTORE_GCS_HTTP_URL=url, GOOGLE_AUTH_TOKEN_FOR_TESTING='emulator',
               GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT='false')
  return env


def configure_storage() -> None:
  """Sets ``derived_environment()`` where unset and, with an emulator, gcsfs's
  ``token='anon'`` (else google-auth probes the GCE metadata server for credentials).

  Runs when this module is imported; call it again after setting STORAGE_EMULATOR_HOST in a
  running process, before its first cloud path is opened (gcsfs, tensorstore and fsspec read
  these once).
  """
  for name, value in derived_environment().items():
    os.environ.setdefault(name, value)
  # etils caches its TensorFlow check on the first path it touches (TFDS touches one when
  # imported): forget it, or gs:// would stay with gfile, which goes to Google, not the emulator.
  getattr(gpath._is_tf_installed, 'cache_clear', lambda: None)()  # pylint: disable=protected-access
  if emulator_url():
    fsspec.config.conf.setdefault('gcs', {}).setdefault('token', 'anon')


configure_storage()


def is_cloud(path: str | os.PathLike) -> bool:
  """True for a URI (``gs://bucket/x``), False for a local path."""
  return '://' in os.fspath(path)


def path(p: str | os.PathLike) -> epath.Path:
  """``p`` as an ``epath.Path``: a cloud URI as given, a local path made absolute (``~``
  expanded). Never ``os.path.abspath`` a URI: it turns ``gs://b/x`` into ``$PWD/gs:/b/x``."""
  p = os.fspath(p)
  if is_cloud(p):
    return epath.Path(p)
  return epath.Path(os.path.abspath(os.path.expanduser(p)))


def join(p: str | os.PathLike, *parts: str) -> str:
  """``p`` joined with ``parts``, as a string in the form given (a relative path stays
  relative, a URI keeps its ``gs://``)."""
  return os.fspath(epath.Path(p).joinpath(*parts))


def check_reachable(p: str | os.PathLike, *, timeout_s: float = 5.0) -> None:
  """For a cloud ``p`` with an emulator, fails at once if the emulator does not accept a
  connection (gcsfs would retry for about 30 s, tensorstore for minutes).

  Raises:
    ConnectionError: naming ``p`` and the emulator.
  """
  url = emulator_url()
  if not is_cloud(p) or not url:
    return
  parts = urllib.parse.urlsplit(url)
  port = parts.port or (443 if parts.scheme == 'https' else 80)
  try:
    socket.create_connection((parts.hostname, port), timeout=timeout_s).close()
  except OSError as e:
    raise ConnectionError(f'{os.fspath(p)}: the storage emulator at {url} '
                          f'(STORAGE_EMULATOR_HOST) does not answer: {e}') from e


def write_atomic(p: str | os.PathLike, data: str | bytes) -> None:
  """Writes ``data`` (str as UTF-8, or bytes) to ``p`` atomically, creating the folder.

  A reader sees the old file or the new one. Locally the data go to a uniquely named
  temporary file beside ``p`` (so concurrent writers never share one), renamed over ``p``.
  In a bucket, where a rename is a copy, they go up as one object: an upload is atomic.

  Raises:
    OSError: the folder or file cannot be written (a local temporary file is removed).
  """
  target = path(p)
  data = data.encode('utf-8') if isinstance(data, str) else data
  target.parent.mkdir(parents=True, exist_ok=True)  # a no-op in a bucket
  if is_cloud(target):
    target.write_bytes(data)
    return
  tmp = target.parent / f'.{target.name}.{uuid.uuid4().hex}.tmp'
  try:
    tmp.write_bytes(data)
    tmp.replace(target)
  except BaseException:
    if tmp.exists():
      tmp.unlink()
    raise


GZIP_MAGIC = b'\x1f\x8b'


def open_read(p: str | os.PathLike):
  """``p`` (local or a URI) open for reading bytes, through gzip when it starts with the gzip
  magic ``1f 8b`` (the content decides, not the name). Close it when done (a ``with``)."""
  f = path(p).open('rb')
  if f.read(2) == GZIP_MAGIC:
    f.seek(0)
    # closing the GzipFile leaves fileobj open, so the outer file closes with it
    return _GzipOwningFile(f)
  f.seek(0)
  return f


class _GzipOwningFile(gzip.GzipFile):
  """A GzipFile that also closes the file it reads."""

  def __init__(self, f):
    super().__init__(fileobj=f, mode='rb')
    self._owned = f

  def close(self):
    try:
      super().close()
    finally:
      self._owned.close()


def read_text(p: str | os.PathLike) -> str:
  """The UTF-8 text of ``p`` (FileNotFoundError if there is none)."""
  return path(p).read_text(encoding='utf-8')


def move_tree(src: str | os.PathLike, dest: str | os.PathLike) -> None:
  """Moves the folder ``src`` to ``dest`` (which must not exist). Locally a rename; in a
  bucket each object is copied, then ``src`` deleted (not atomic: an interrupted move leaves
  both partial, and repeating it moves the rest)."""
  src, dest = path(src), path(dest)
  if not is_cloud(src):
    dest.parent.mkdir(parents=True, exist_ok=True)
    src.rename(dest)
    return
  for file in _files(src):
    (dest / file.relative_to(src)).write_bytes(file.read_bytes())
  src.rmtree()


def _files(folder: epath.Path):
  """Every file below ``folder``, recursively."""
  for child in folder.iterdir():
    if child.is_dir():
      yield from _files(child)
    else:
      yield child
