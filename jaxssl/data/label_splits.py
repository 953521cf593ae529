"""Train / validation / test splits and label-fraction subsets of a labelled set.

Every choice is a function of ``data.split_seed`` and a sha256 key per example (not the
training seed), by the held-out rule of the pretraining corpora
(``sources.smallest_fraction`` over the keys): a held-out part is the examples with the
smallest keys. The label-fraction subset of a class is a prefix of that class's examples in
key order, so subsets are stratified (each class keeps ``ceil(fraction * n_c)``, at least one)
and nested (the 1% subset lies inside the 10% one), as in the semi-supervised protocol of
SimCLR (Chen et al. 2020, arXiv:2002.05709, Sec. 4.2: class-balanced 1% and 10% subsets).

Texts are keyed by their content (``keys``: a text's split does not depend on file order);
images by their position in the prepared split (``index_keys``: no pixel is read, so keying
an ImageNet-sized set costs O(N) hashes of integers; the order is the cache's, fixed by the
source). The ``*_by_keys`` functions take either.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence

import numpy as np

from jaxssl.data import sources


def keys(texts: Sequence[str], split_seed: int, purpose: str) -> np.ndarray:
  """S32 [N]: sha256(f'{split_seed}\\0{purpose}\\0' + text) of each text (UTF-8).

  ``purpose`` ('test', 'validation', 'labels') makes the choices independent of each other.
  """
  prefix = f'{split_seed}\0{purpose}\0'.encode('utf-8')
  return np.array([hashlib.sha256(prefix + t.encode('utf-8')).digest() for t in texts], 'S32')


def index_keys(num: int, split_seed: int, purpose: str) -> np.ndarray:
  """S32 [num]: sha256(f'{split_seed}\\0{purpose}\\0' + i as 8 big-endian bytes) of each
  position i; ``purpose`` as in ``keys``."""
  prefix = f'{split_seed}\0{purpose}\0'.encode('utf-8')
  return np.array([hashlib.sha256(prefix + i.to_bytes(8, 'big')).digest()
                   for i in range(num)], 'S32')


def first_occurrences(texts: Sequence[str]) -> np.ndarray:
  """int64 [K]: positions of the first occurrence of each distinct text, in order."""
  seen, keep = set(), []
  for i, t in enumerate(texts):
    if t not in seen:
      seen.add(t)
      keep.append(i)
  return np.asarray(keep, np.int64)


def held_out(texts: Sequence[str], fraction: float, split_seed: int,
             purpose: str) -> np.ndarray:
  """bool [N]: True at the ``ceil(fraction * N)`` texts with the smallest ``purpose`` keys.

  Raises:
    ValueError: ``fraction`` not in (0, 1).
  """
  return held_out_by_keys(keys(texts, split_seed, purpose), fraction)


def held_out_by_keys(example_keys: np.ndarray, fraction: float) -> np.ndarray:
  """bool [N]: True at the ``ceil(fraction * N)`` smallest of ``example_keys`` (S32 [N]).

  Raises:
    ValueError: ``fraction`` not in (0, 1).
  """
  if not 0.0 < fraction < 1.0:
    raise ValueError(f'a held-out fraction must be in (0, 1), got {fraction}.')
  mask = np.zeros(len(example_keys), bool)
  mask[sources.smallest_fraction(example_keys, fraction)] = True
  return mask


def label_subset(texts: Sequence[str], labels: np.ndarray, fraction: float,
                 split_seed: int) -> np.ndarray:
  """int64 [M], sorted: positions of the stratified, nested ``fraction`` of the examples.

  For each class c with n_c examples, its ``ceil(fraction * n_c)`` examples of smallest
  'labels' key (so at least one per class present). fraction 1 keeps everything.

  Raises:
    ValueError: ``fraction`` not in (0, 1].
  """
  if not 0.0 < fraction <= 1.0:
    raise ValueError(f'data.label_fraction must be in (0, 1], got {fraction}.')
  if fraction == 1.0:
    return np.arange(len(labels), dtype=np.int64)
  return label_subset_by_keys(keys(texts, split_seed, 'labels'), labels, fraction)


def label_subset_by_keys(example_keys: np.ndarray, labels: np.ndarray,
                         fraction: float) -> np.ndarray:
  """``label_subset`` with given 'labels'-purpose keys (S32 [N]), e.g. ``index_keys``.

  Raises:
    ValueError: ``fraction`` not in (0, 1], or keys and labels of different lengths.
  """
  if not 0.0 < fraction <= 1.0:
    raise ValueError(f'data.label_fraction must be in (0, 1], got {fraction}.')
  labels = np.asarray(labels)
  if len(example_keys) != len(labels):
    raise ValueError(f'{len(example_keys)} keys for {len(labels)} labels')
  if fraction == 1.0:
    return np.arange(len(labels), dtype=np.int64)
  chosen = []
  for c in np.unique(labels):
    members = np.flatnonzero(labels == c)
    order = np.argsort(example_keys[members], kind='stable')
    chosen.append(members[order[:math.ceil(fraction * len(members))]])
  return np.sort(np.concatenate(chosen)).astype(np.int64)
