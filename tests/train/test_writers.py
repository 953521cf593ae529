"""Image grids: tile layout and channels, worked by hand."""

import numpy as np

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
