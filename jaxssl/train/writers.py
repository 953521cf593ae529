"""CLU metric writers and the run's JSON outputs and pictures, in a folder or a bucket."""

from __future__ import annotations

import io
import json
import os
import shutil
import tempfile

import jax
import numpy as np
import PIL.Image
from clu import metric_writers

from jaxssl import fileio


def create_writer(workdir: str) -> metric_writers.MetricWriter:
  """TensorBoard event files in ``workdir`` plus console logging (process 0 only).

  For a bucket the event files are written in a local folder and uploaded on each
  ``flush()`` and at ``close()`` (the loop flushes with every checkpoint): TensorFlow writes
  them, and its gfile cannot reach a storage emulator (``jaxssl.fileio``).
  """
  if jax.process_index() > 0 or not fileio.is_cloud(workdir):
    return metric_writers.create_default_writer(workdir, just_logging=jax.process_index() > 0)
  return UploadingWriter(workdir)


class UploadingWriter(metric_writers.AsyncMultiWriter):
  """clu's default writers (console, TensorBoard) with the event files in a local folder that
  ``flush()`` and ``close()`` upload to ``dest``.

  Each upload is one object (atomic for readers); a file goes up again when it has grown.
  Event file names hold the host and process id, so a resumed run adds files.
  """

  def __init__(self, dest: str):
    self._dest = fileio.path(dest)
    self._local = tempfile.mkdtemp(prefix='jaxssl-events-')
    self._uploaded: dict[str, int] = {}
    super().__init__([metric_writers.LoggingWriter(),
                      metric_writers.SummaryWriter(self._local)])

  def flush(self):
    super().flush()
    self._upload()

  def close(self):
    super().close()
    try:
      self._upload()
    finally:
      shutil.rmtree(self._local, ignore_errors=True)

  def _upload(self):
    # self._local is this process's temporary staging folder, always local: os calls are right.
    for folder, _, names in os.walk(self._local):  # the local staging folder, not a user path
      for name in names:
        local = os.path.join(folder, name)
        relative = os.path.relpath(local, self._local)
        size = os.path.getsize(local)
        if self._uploaded.get(relative) != size:
          with open(local, 'rb') as f:
            fileio.write_atomic(self._dest / relative, f.read())
          self._uploaded[relative] = size


def write_json(path: str | os.PathLike, obj: dict | list) -> None:
  """Writes ``obj`` as indented, key-sorted JSON atomically (``fileio.write_atomic``); only process 0
  writes."""
  if jax.process_index() == 0:
    fileio.write_atomic(path, json.dumps(obj, indent=2, sort_keys=True, default=str) + '\n')


def write_summary(workdir: str, *, experiment: str, config, state, last_eval: dict,
                  info: dict, restored_from_step: int | None, wall_time_s: float,
                  last_test: dict | None = None) -> dict:
  """Writes and returns ``WORKDIR/summary.json``: ``eval/<name>`` metrics, ``test/<name>``
  metrics (when the run has a test), the data facts, step, seed, restored_from_step,
  wall_time_s (seconds), experiment and the resolved config."""
  summary = {f'eval/{k}': v for k, v in last_eval.items()}
  summary.update({f'test/{k}': v for k, v in (last_test or {}).items()})
  summary.update(info)
  summary.update(step=int(jax.device_get(state.step)), seed=config.seed,
                 restored_from_step=restored_from_step, wall_time_s=wall_time_s,
                 experiment=experiment, config=config.to_dict())
  write_json(fileio.path(workdir) / 'summary.json', summary)
  return summary


def image_grid(images: np.ndarray, *, columns: int = 8, pad: int = 1) -> np.ndarray:
  """Tiles images into one picture, row-major, with ``pad`` white pixels between tiles.

  Args:
    images: float [N, H, W, C] in [0, 1] (values outside are clipped); C other than 1 or 3
      (e.g. 2 or 4 channels of an IDX file) is shown as the mean over channels.
    columns: tiles per row (fewer when N is smaller).

  Returns:
    uint8 [rows * (H + pad) + pad, columns * (W + pad) + pad, C'], C' = C if C is 1 or 3,
    else 1.

  Raises:
    ValueError: not a 4-D batch or no images.
  """
  images = np.asarray(images, np.float32)
  if images.ndim != 4 or not images.shape[0]:
    raise ValueError(f'image_grid takes a non-empty [N, H, W, C] batch, got {images.shape}')
  if images.shape[-1] not in (1, 3):  # PNG would read 2 channels as grey + alpha
    images = images.mean(axis=-1, keepdims=True)
  n, h, w, c = images.shape
  columns = min(columns, n)
  rows = -(-n // columns)
  grid = np.ones((rows * (h + pad) + pad, columns * (w + pad) + pad, c), np.float32)
  for i, image in enumerate(np.clip(images, 0.0, 1.0)):
    r, col = divmod(i, columns)
    grid[pad + r * (h + pad):pad + r * (h + pad) + h,
         pad + col * (w + pad):pad + col * (w + pad) + w] = image
  return np.round(grid * 255).astype(np.uint8)


def write_image_grids(writer: metric_writers.MetricWriter, workdir: str, step: int,
                      grids: dict[str, np.ndarray], *, scale: int = 1) -> None:
  """Writes uint8 [H, W, C] pictures to TensorBoard and as ``WORKDIR/images/<name>_<step>.png``.

  ``scale`` enlarges the PNGs by pixel repetition (8x8 digits are unreadable at 1:1); '/' in
  a name becomes '_' in the file name. Only process 0 writes files.
  """
  writer.write_images(step, {name: grid[None] for name, grid in grids.items()})
  if jax.process_index() != 0:
    return
  folder = fileio.path(workdir) / 'images'
  for name, grid in grids.items():
    big = np.repeat(np.repeat(grid, scale, axis=0), scale, axis=1)
    png = io.BytesIO()
    PIL.Image.fromarray(big[..., 0] if big.shape[-1] == 1 else big).save(png, format='PNG')
    fileio.write_atomic(folder / f'{name.replace("/", "_")}_{step}.png', png.getvalue())
