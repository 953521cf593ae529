"""Image grids: tile layout and channels, worked by hand; event files and pictures in a
bucket (the GCS emulator)."""

import io
import os

import numpy as np
import PIL.Image
import tensorflow as tf

from jaxssl import fileio
from jaxssl.train import writers


def test_grid_layout_and_two_channel_images_shown_as_their_mean():
  # Two 1x1 images with channels (0.2, 0.6) and (1.0, 0.0): means 0.4 and 0.5, i.e. bytes
  # round(0.4 * 255) = 102 and round(0.5 * 255) = 128 (127.5 rounds to even: 128). One row of
  # two tiles with 1-pixel white (255) gaps: a 3 x 5 picture with one channel.
  images = np.array([[[[0.2, 0.6]]], [[[1.0, 0.0]]]], np.float32)
  grid = writers.image_grid(images, columns=8)
  expected = np.full((3, 5, 1), 255, np.uint8)
  expected[1, 1, 0], expected[1, 3, 0] = 102, 128
  np.testing.assert_array_equal(grid, expected)
  rgb = writers.image_grid(np.zeros((3, 2, 2, 3), np.float32), columns=2)
  assert rgb.shape == (2 * 3 + 1, 2 * 3 + 1, 3) and rgb[1, 1, 0] == 0 and rgb[4, 4, 2] == 255


def test_metrics_and_pictures_reach_a_bucket(gcs, gcs_emulator, tmp_path):
  prefix = gcs.removeprefix(f'gs://{gcs_emulator.bucket}/')
  writer = writers.create_writer(gcs)
  writer.write_scalars(1, {'train/loss': 0.5})
  writer.flush()  # the loop flushes with each checkpoint: the events so far go up
  (events,) = gcs_emulator.object_names(prefix)
  assert os.path.basename(events).startswith('events.out.tfevents.')
  grid = writers.image_grid(np.linspace(0, 1, 2 * 4 * 4).reshape(2, 4, 4, 1))
  writers.write_image_grids(writer, gcs, 3, {'eval/recon': grid}, scale=2)
  writer.write_scalars(3, {'eval/mse': 0.25})
  writer.close()
  assert gcs_emulator.object_names(prefix) == sorted([events, f'{prefix}/images/eval_recon_3.png'])
  local = tmp_path / 'events'
  local.write_bytes(fileio.path(f'gs://{gcs_emulator.bucket}/{events}').read_bytes())
  tags = {v.tag for e in tf.compat.v1.train.summary_iterator(str(local)) for v in e.summary.value}
  assert {'train/loss', 'eval/recon', 'eval/mse'} <= tags  # written after the first upload too
  png = PIL.Image.open(io.BytesIO(fileio.path(f'{gcs}/images/eval_recon_3.png').read_bytes()))
  np.testing.assert_array_equal(np.asarray(png), np.repeat(np.repeat(grid, 2, 0), 2, 1)[..., 0])
