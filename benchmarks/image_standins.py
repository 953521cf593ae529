r"""Deterministic stand-ins for MNIST and CIFAR-10, generated offline and written as IDX files.

  python -m benchmarks.image_standins --name=strokes28 --out=/tmp/strokes28
  python -m benchmarks.image_standins --name=natural32 --out=/tmp/natural32 --seed=1
  python -m experiments.simclr --workdir=/tmp/simclr_s28 --config.data.files='/tmp/strokes28/*'

* ``strokes28``: uint8 [N, 28, 28] (IDX rank 3), 10 classes. Hand-drawn skeletons of the
  digits 0-9 (one or two variants each) in a 0.6 x 1 glyph box, per image a smooth random
  warp, slant, rotation, width, height and position, then rendered as anti-aliased white
  strokes of random width and edge softness on an exactly-black background: like MNIST,
  most pixels are 0 and a digit's box is about 20 px high.
* ``natural32``: uint8 [N, 32, 32, 3] (IDX rank 4), 10 classes. Random crops of the two
  photographs scikit-learn bundles (``china.jpg``, ``flower.jpg``, 427 x 640); class k is
  the k % 5-th of five 128-px-wide vertical strips of photo k // 5. Each crop (side
  log-uniform in 40-120 px, aspect 0.8-1.25, wholly inside its strip) is resized to 32 x 32
  with Pillow's antialiasing, flipped left-right half the time, and colour-jittered
  (brightness, contrast, saturation, per-channel gain, Gaussian noise).

Files in ``--out``: ``train-images-idx{3,4}-ubyte``, ``train-labels-idx1-ubyte``,
``t10k-images-idx{3,4}-ubyte``, ``t10k-labels-idx1-ubyte`` (labels uint8 [N]), the names
``jaxssl.data.idx.find_idx_pairs`` pairs. Examples are made in chunks of ``CHUNK`` with a
generator seeded by (seed, split, chunk), so the bytes depend only on the seed and sizes
(and on Pillow's JPEG decoder and resampler for natural32), and host memory stays bounded
by one chunk whatever N. Labels are balanced within each chunk.
"""

from __future__ import annotations

import argparse
import hashlib
import math
import time
from collections.abc import Callable

import numpy as np
from PIL import Image

from jaxssl import fileio

CHUNK = 1000  # Examples per generator stream; changing it changes the bytes.
NUM_CLASSES = 10
SPLITS = (('train', 0), ('t10k', 1))  # IDX file prefix, stream id.


# ----------------------------------------------------------------------------- strokes28

def _arc(cx, cy, rx, ry, a0, a1, n):
  """Points [n + 1, 2] on an ellipse arc from angle a0 to a1 (degrees; y points down)."""
  a = np.deg2rad(np.linspace(a0, a1, n + 1))
  return np.stack([cx + rx * np.cos(a), cy + ry * np.sin(a)], axis=1)


def _line(*points):
  return np.asarray(points, dtype=np.float64)


# Each digit: variants, each a list of polylines in a glyph box x in [0, 0.6], y in [0, 1].
_GLYPHS = {
    0: [[_arc(0.3, 0.5, 0.27, 0.48, -90, 270, 16)],
        [_arc(0.3, 0.5, 0.22, 0.48, -110, 280, 16)]],
    1: [[_line((0.32, 0.0), (0.28, 1.0))],
        [_line((0.12, 0.2), (0.32, 0.0), (0.28, 1.0))],
        [_line((0.12, 0.2), (0.32, 0.0), (0.28, 1.0)), _line((0.1, 1.0), (0.48, 1.0))]],
    2: [[np.concatenate([_arc(0.3, 0.27, 0.26, 0.25, 200, 390, 10),
                         _line((0.03, 1.0), (0.6, 1.0))])],
        [_line((0.05, 0.12), (0.3, 0.0), (0.55, 0.15), (0.55, 0.3), (0.03, 1.0), (0.6, 0.95))]],
    3: [[np.concatenate([_arc(0.3, 0.26, 0.25, 0.24, 200, 450, 10),
                         _arc(0.3, 0.74, 0.28, 0.26, 270, 520, 10)])],
        [np.concatenate([_line((0.05, 0.0), (0.55, 0.0), (0.25, 0.42)),
                         _arc(0.3, 0.72, 0.28, 0.28, 250, 520, 10)])]],
    4: [[_line((0.45, 1.0), (0.45, 0.0), (0.0, 0.68), (0.6, 0.68))],
        [_line((0.08, 0.0), (0.04, 0.6), (0.6, 0.6)), _line((0.46, 0.25), (0.46, 1.0))]],
    5: [[np.concatenate([_line((0.56, 0.0), (0.12, 0.0)),
                         _arc(0.3, 0.7, 0.27, 0.29, 225, 520, 10)])],
        [np.concatenate([_line((0.58, 0.02), (0.1, 0.0), (0.06, 0.5)),
                         _arc(0.3, 0.72, 0.27, 0.27, 210, 500, 10)])]],
    6: [[np.concatenate([_arc(0.6, 0.62, 0.55, 0.6, 240, 180, 5),
                         _arc(0.3, 0.72, 0.25, 0.27, 180, 540, 12)])],
        [np.concatenate([_line((0.5, 0.0), (0.06, 0.7)),
                         _arc(0.3, 0.74, 0.24, 0.25, 180, 530, 12)])]],
    7: [[_line((0.0, 0.0), (0.6, 0.0), (0.2, 1.0))],
        [_line((0.0, 0.0), (0.6, 0.0), (0.2, 1.0)), _line((0.15, 0.5), (0.5, 0.5))],
        [np.concatenate([_line((0.0, 0.05)), _arc(-0.5, 0.0, 1.1, 1.0, 0, 65, 6)])]],
    8: [[_arc(0.3, 0.25, 0.22, 0.24, 90, 450, 12), _arc(0.3, 0.73, 0.27, 0.26, -90, 270, 12)],
        [_arc(0.36, 0.24, 0.2, 0.24, 90, 450, 12), _arc(0.26, 0.72, 0.26, 0.28, -90, 270, 12)]],
    9: [[_arc(0.3, 0.28, 0.26, 0.27, 0, 360, 12), _line((0.56, 0.3), (0.48, 1.0))],
        [np.concatenate([_arc(0.3, 0.28, 0.26, 0.27, 0, 360, 12),
                         _arc(-0.2, 0.3, 0.76, 0.7, 0, 75, 5)])]],
}


def _segments(polylines) -> np.ndarray:
  """Segments [S, 2 (start, end), 2 (x, y)] of the polylines, centred on the glyph box."""
  segs = [np.stack([p[:-1], p[1:]], axis=1) for p in polylines]
  return (np.concatenate(segs) - np.array([0.3, 0.5])).astype(np.float32)


SEGMENTS = {d: [_segments(v) for v in variants] for d, variants in _GLYPHS.items()}
_PIXELS = np.stack(np.meshgrid(np.arange(28), np.arange(28)), -1).reshape(-1, 2).astype(
    np.float32)  # [784, 2] pixel (x, y)


def _warp_points(rng: np.random.Generator, q: np.ndarray) -> np.ndarray:
  """Per-image random warp of glyph points q [n, P, 2] into 28 x 28 pixel coordinates.

  A smooth displacement (three random sinusoidal modes, ~0.035 glyph heights each), then
  width scale, slant, rotation, height 15-22 px and a shift of up to 2 px from the centre.
  """
  n = len(q)
  for _ in range(3):
    omega = rng.normal(0.0, 4.0, (n, 1, 2))
    phase = rng.uniform(0, 2 * np.pi, (n, 1, 1))
    amp = rng.normal(0.0, 0.035, (n, 1, 2))
    q = q + amp * np.sin((q * omega).sum(-1, keepdims=True) + phase)
  height = rng.uniform(15.0, 22.0, n)
  x_scale = rng.uniform(0.75, 1.3, n)
  slant = rng.uniform(-0.35, 0.35, n)
  theta = np.deg2rad(rng.uniform(-15.0, 15.0, n))
  x = q[..., 0] * x_scale[:, None] - slant[:, None] * q[..., 1]  # slant: top leans right
  y = q[..., 1]
  cos, sin = np.cos(theta)[:, None], np.sin(theta)[:, None]
  xr, yr = cos * x - sin * y, sin * x + cos * y
  shift = 13.5 + rng.uniform(-2.0, 2.0, (n, 2))
  return np.stack([xr * height[:, None] + shift[:, None, 0],
                   yr * height[:, None] + shift[:, None, 1]], -1)  # [n, P, 2]


def _render(segs: np.ndarray, half_width: np.ndarray, soft: np.ndarray) -> np.ndarray:
  """Anti-aliased strokes: float32 [n, 784] in [0, 1] from segments [n, S, 2, 2] (pixels).

  Intensity is 1 within ``half_width`` [n] of the nearest segment, falling linearly to 0
  over ``soft`` [n] pixels (the blur), so pixels farther away are exactly 0.
  """
  ax, ay = segs[:, None, :, 0, 0], segs[:, None, :, 0, 1]  # [n, 1, S]
  dx, dy = segs[:, None, :, 1, 0] - ax, segs[:, None, :, 1, 1] - ay
  px, py = _PIXELS[None, :, None, 0] - ax, _PIXELS[None, :, None, 1] - ay  # [n, 784, S]
  t = np.clip((px * dx + py * dy) / np.maximum(dx * dx + dy * dy, 1e-6), 0.0, 1.0)
  dist = np.sqrt(((px - t * dx) ** 2 + (py - t * dy) ** 2).min(-1))  # [n, 784]
  edge = (half_width + soft / 2)[:, None]
  return np.clip((edge - dist) / soft[:, None], 0.0, 1.0)


def strokes28_chunk(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
  """n MNIST-like digits: (images uint8 [n, 28, 28], labels uint8 [n])."""
  labels = rng.permutation(np.arange(n) % NUM_CLASSES).astype(np.uint8)
  variant = rng.integers(0, 12, n)  # 12: divisible by 1, 2, 3 variants
  half_width = rng.uniform(0.85, 1.7, n).astype(np.float32)
  soft = rng.uniform(0.8, 1.6, n).astype(np.float32)
  peak = rng.uniform(0.9, 1.0, n).astype(np.float32)
  images = np.zeros((n, 28 * 28), np.float32)
  for digit in range(NUM_CLASSES):
    variants = SEGMENTS[digit]
    for v, template in enumerate(variants):
      idx = np.flatnonzero((labels == digit) & (variant % len(variants) == v))
      if not idx.size:  # a small chunk may lack a variant
        continue
      points = np.broadcast_to(template.reshape(1, -1, 2), (len(idx), template.size // 2, 2))
      segs = _warp_points(rng, points).reshape(len(idx), -1, 2, 2).astype(np.float32)
      images[idx] = _render(segs, half_width[idx], soft[idx])
  images = np.rint(images * peak[:, None] * 255.0).astype(np.uint8)
  return images.reshape(n, 28, 28), labels


# ----------------------------------------------------------------------------- natural32

STRIPS = 5  # Classes per photo: vertical strips.


def load_photos() -> np.ndarray:
  """scikit-learn's bundled photographs (china, flower): uint8 [2, 427, 640, 3]."""
  from sklearn.datasets import load_sample_images  # noqa: PLC0415 (only natural32 needs it)
  return np.stack(load_sample_images().images)


def natural32_chunk(rng: np.random.Generator, n: int,
                    photos: list[Image.Image]) -> tuple[np.ndarray, np.ndarray]:
  """n CIFAR-like crops: (images uint8 [n, 32, 32, 3], labels uint8 [n]).

  ``photos``: 2 PIL RGB images of equal size; label k = strip k % 5 of photo k // 5.
  """
  labels = rng.permutation(np.arange(n) % NUM_CLASSES).astype(np.uint8)
  width, height = photos[0].size
  strip = width / STRIPS
  side = np.exp(rng.uniform(np.log(40.0), np.log(120.0), n))
  aspect = np.exp(rng.uniform(np.log(0.8), np.log(1.25), n))
  w = np.minimum(side * np.sqrt(aspect), strip)
  h = np.minimum(side / np.sqrt(aspect), height)
  x0 = (labels % STRIPS) * strip + rng.uniform(0, 1, n) * (strip - w)
  y0 = rng.uniform(0, 1, n) * (height - h)
  out = np.empty((n, 32, 32, 3), np.uint8)
  for i in range(n):  # Pillow antialiases when it shrinks a box; numpy would alias.
    box = (x0[i], y0[i], x0[i] + w[i], y0[i] + h[i])
    out[i] = np.asarray(photos[labels[i] // STRIPS].resize((32, 32), Image.BICUBIC, box=box))
  x = out.astype(np.float32) / 255.0
  flip = rng.uniform(size=n) < 0.5
  x[flip] = x[flip, :, ::-1]
  gray = x.mean(-1, keepdims=True)
  x = gray + rng.uniform(0.7, 1.3, (n, 1, 1, 1)) * (x - gray)  # saturation
  mean = x.mean((1, 2, 3), keepdims=True)
  x = mean + rng.uniform(0.75, 1.25, (n, 1, 1, 1)) * (x - mean)  # contrast
  x = x * rng.uniform(0.75, 1.25, (n, 1, 1, 1)) * rng.uniform(0.92, 1.08, (n, 1, 1, 3))
  x = x + rng.normal(0.0, 0.01, x.shape).astype(np.float32)
  return np.rint(np.clip(x, 0.0, 1.0) * 255.0).astype(np.uint8), labels


# ----------------------------------------------------------------------------- files

def idx_header(shape: tuple[int, ...]) -> bytes:
  """IDX header of a uint8 array: magic 00 00 08 <ndim>, then big-endian uint32 dims."""
  return bytes([0, 0, 8, len(shape)]) + np.asarray(shape, '>u4').tobytes()


def write_standin(name: str, out: str, *, num_train: int, num_test: int,
                  seed: int = 0) -> dict:
  """Writes the four IDX files of stand-in ``name`` into ``out`` (made if missing).

  Returns:
    {'num_train', 'num_test', 'zero_fraction', 'mean', 'std' (per channel, 0-255, over
    the train images), 'seconds', 'files': {file name: sha256}}.

  Raises:
    ValueError: unknown name or non-positive sizes.
  """
  if name not in STANDINS:
    raise ValueError(f'--name={name!r}: one of {sorted(STANDINS)}')
  if num_train < 1 or num_test < 1:
    raise ValueError(f'num_train={num_train} and num_test={num_test} must be >= 1')
  start = time.perf_counter()
  make_chunk, image_shape, name_id = STANDINS[name]()
  folder = fileio.path(out)
  folder.mkdir(parents=True, exist_ok=True)
  rank = 1 + len(image_shape)
  channels = image_shape[-1] if len(image_shape) == 3 else 1
  total = np.zeros(channels)
  total_sq = np.zeros(channels)
  zeros = 0
  digests = {}
  for (prefix, split_id), n in zip(SPLITS, (num_train, num_test)):
    images_path = folder / f'{prefix}-images-idx{rank}-ubyte'
    labels_path = folder / f'{prefix}-labels-idx1-ubyte'
    images_hash = hashlib.sha256(idx_header((n, *image_shape)))
    labels_hash = hashlib.sha256(idx_header((n,)))
    with images_path.open('wb') as fi, labels_path.open('wb') as fl:
      fi.write(idx_header((n, *image_shape)))
      fl.write(idx_header((n,)))
      for c in range(math.ceil(n / CHUNK)):
        rng = np.random.default_rng([seed, name_id, split_id, c])
        images, labels = make_chunk(rng, min(CHUNK, n - c * CHUNK))
        fi.write(images.tobytes())
        fl.write(labels.tobytes())
        images_hash.update(images.tobytes())
        labels_hash.update(labels.tobytes())
        if split_id == 0:
          pixels = images.reshape(-1, channels).astype(np.float64)
          total += pixels.sum(0)
          total_sq += (pixels ** 2).sum(0)
          zeros += int((images == 0).sum())
    digests[images_path.name] = images_hash.hexdigest()
    digests[labels_path.name] = labels_hash.hexdigest()
  count = num_train * int(np.prod(image_shape)) // channels
  mean = total / count
  return dict(num_train=num_train, num_test=num_test,
              zero_fraction=zeros / (count * channels), mean=mean.tolist(),
              std=np.sqrt(total_sq / count - mean ** 2).tolist(),
              seconds=time.perf_counter() - start, files=digests)


def _strokes28():
  return strokes28_chunk, (28, 28), 0


def _natural32():
  photos = [Image.fromarray(p) for p in load_photos()]
  return (lambda rng, n: natural32_chunk(rng, n, photos)), (32, 32, 3), 1


# name -> () -> (make_chunk(rng, n) -> (images, labels), image shape, stream id).
STANDINS: dict[str, Callable] = {'strokes28': _strokes28, 'natural32': _natural32}
DEFAULT_SIZES = {'strokes28': (60_000, 10_000), 'natural32': (50_000, 10_000)}


def main(argv=None) -> None:
  parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
  parser.add_argument('--name', required=True, choices=sorted(STANDINS))
  parser.add_argument('--out', required=True, help='folder for the 4 IDX files')
  parser.add_argument('--num_train', type=int, help='default: 60,000 / 50,000')
  parser.add_argument('--num_test', type=int, default=10_000)
  parser.add_argument('--seed', type=int, default=0)
  args = parser.parse_args(argv)
  num_train = DEFAULT_SIZES[args.name][0] if args.num_train is None else args.num_train
  s = write_standin(args.name, args.out, num_train=num_train, num_test=args.num_test,
                    seed=args.seed)
  fmt = lambda v: '/'.join(f'{x:.1f}' for x in v)  # noqa: E731
  digest = hashlib.sha256(''.join(sorted(s['files'].values())).encode()).hexdigest()[:12]
  print(f'{args.name}: {s["num_train"]} train / {s["num_test"]} test -> {args.out}; '
        f'train pixels: {s["zero_fraction"]:.1%} zero, mean {fmt(s["mean"])}, '
        f'std {fmt(s["std"])} (0-255); sha256 {digest}; {s["seconds"]:.1f} s')


if __name__ == '__main__':
  main()
