"""Frozen-encoder features: the ``embed_fn`` contract, NNX encoders, batched extraction.

An encoder is a pure ``embed_fn(variables, images [B, H, W, C] float32) -> [B, D]``, only
called inside ``jax.jit`` with ``variables`` only read, so frozen by construction. For an NNX
module, ``split_encoder`` and ``nnx_embed_fn`` give one (see ``NnxEmbedFn``). Images may be
uint8 (scaled to [0, 1]) or float (as float32). The input checks here are shared by the
evaluators of ``jaxssl.eval``.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Mapping

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from jax.sharding import Mesh

from jaxssl.parallel import sharding
from jaxssl.train import state as state_lib

EmbedFn = Callable[[Any, jax.Array], jax.Array]

# ----------------------------------------------------------------------------- checks


def _check_features(x, name: str) -> np.ndarray:
  """float32 [N, D] with N, D >= 1 and every value finite, or a ValueError naming ``name``."""
  x = np.asarray(x)
  if x.dtype.kind not in 'biuf':
    raise ValueError(f'{name} must hold numbers, got dtype {x.dtype}')
  if x.ndim != 2 or x.shape[0] == 0 or x.shape[1] == 0:
    raise ValueError(f'{name} {x.shape} must be a non-empty [N, D] array')
  x = x.astype(np.float32)
  if not np.all(np.isfinite(x)):
    row = int(np.argmax(~np.all(np.isfinite(x), axis=1)))
    raise ValueError(f'{name} holds NaN or inf (first in row {row})')
  return x


def _check_labels(y, n: int, name: str, num_classes: int | None = None) -> np.ndarray:
  """int32 [n] (in [0, num_classes) when given), or a ValueError naming ``name``."""
  y = np.asarray(y)
  if y.ndim != 1 or y.dtype.kind not in 'iub':
    raise ValueError(f'{name} {y.shape} ({y.dtype}) must be a 1-D integer array')
  if len(y) != n:
    raise ValueError(f'{name} has {len(y)} labels but the features have {n} rows')
  if num_classes is not None and len(y) and (y.min() < 0 or y.max() >= num_classes):
    raise ValueError(f'{name} must lie in [0, num_classes={num_classes}), got '
                     f'[{y.min()}, {y.max()}]')
  return y.astype(np.int32)


def _check_same_width(a: np.ndarray, b: np.ndarray, name_a: str, name_b: str) -> None:
  if a.shape[1] != b.shape[1]:
    raise ValueError(f'{name_a} {a.shape} and {name_b} {b.shape} have different widths D')


def _as_float_images(images: np.ndarray, name: str = 'images') -> np.ndarray:
  """uint8 -> float32 in [0, 1]; float -> float32 unchanged."""
  images = np.asarray(images)
  if images.dtype == np.uint8:
    return images.astype(np.float32) / 255.0
  if images.dtype.kind == 'f':
    return images.astype(np.float32)
  raise ValueError(f'{name} must be uint8 or float, got {images.dtype}')


def _check_images(images, name: str = 'images') -> np.ndarray:
  images = np.asarray(images)
  if images.ndim != 4 or images.shape[0] == 0:
    raise ValueError(f'{name} {images.shape} must be a non-empty [N, H, W, C] array')
  if images.dtype != np.uint8 and images.dtype.kind != 'f':
    raise ValueError(f'{name} must be uint8 or float, got {images.dtype}')
  return images


def _l2_normalize(x):
  """Rows scaled to unit L2 norm (a zero row stays zero); works on NumPy and jax arrays."""
  xp = jnp if isinstance(x, jax.Array) else np
  norm = xp.sqrt(xp.sum(x * x, axis=-1, keepdims=True))
  return x / xp.maximum(norm, 1e-12)


# ----------------------------------------------------------------------------- encoders


def _features_of(out):
  """Features [B, D] as they are, or the first of jaxssl's (features, intermediates) pair."""
  if isinstance(out, tuple) and len(out) == 2 and isinstance(out[1], dict):
    return out[0]
  return out


def _default_method(module: nnx.Module, images: jax.Array, train: bool) -> jax.Array:
  """``module(images)`` (the BatchNorm mode is already set on the module)."""
  del train
  return _features_of(module(images))


@dataclasses.dataclass(frozen=True)
class _MethodByName:
  """``getattr(module, name)(images)``, as a method of `NnxEmbedFn`."""
  name: str

  def __call__(self, module: nnx.Module, images: jax.Array, train: bool) -> jax.Array:
    del train
    return _features_of(getattr(module, self.name)(images))


@dataclasses.dataclass(frozen=True, eq=False)
class NnxEmbedFn:
  """``embed_fn`` of an NNX module: ``(variables, images [B, H, W, C]) -> features [B, D]``.

  Build it with ``nnx_embed_fn``; ``variables`` is ``{'params', 'batch_stats'}`` from
  ``split_encoder`` (``batch_stats`` may be absent or empty). Each call merges a private copy
  with BatchNorm on running averages and Dropout off and returns only the features, so the
  caller's statistics never change and a row's features ignore the other rows of its batch.

  Attributes:
    graphdef: the module's static structure.
    method: ``(module, images float32 [B, H, W, C], train: bool) -> features [B, D]``;
      ``train`` is True only in ``finetune.fine_tune`` and matters only for modules with an
      explicit flag (the BatchNorm mode is already set on the module).
  """
  graphdef: nnx.GraphDef
  method: Callable[[nnx.Module, jax.Array, bool], jax.Array] = _default_method

  def module(self, variables: Mapping[str, Any], *, train: bool) -> nnx.Module:
    """A fresh module: BatchNorm on batch statistics (``train``) or running averages; no Dropout."""
    stats = variables.get('batch_stats') or None
    model = state_lib.merge_model(self.graphdef, variables['params'], stats)
    model.set_attributes(use_running_average=not train, deterministic=True,
                         raise_if_not_found=False)
    return model

  def apply(self, variables: Mapping[str, Any], images: jax.Array, *, train: bool
            ) -> tuple[jax.Array, dict]:
    """(features [B, D], BatchNorm statistics after the call: updated only when ``train``)."""
    model = self.module(variables, train=train)
    features = self.method(model, images, train)
    if features.ndim != 2 or features.shape[0] != images.shape[0]:
      raise ValueError(f'the encoder method returned {features.shape} for images '
                       f'{images.shape}; it must return features [B, D]')
    return features, state_lib.batch_stats(model)

  def __call__(self, variables: Mapping[str, Any], images: jax.Array) -> jax.Array:
    return self.apply(variables, images, train=False)[0]


def nnx_embed_fn(graphdef: nnx.GraphDef, method: str | Callable | None = None) -> NnxEmbedFn:
  """The frozen-encoder ``embed_fn`` of an NNX module (see ``NnxEmbedFn``).

  Args:
    graphdef: from ``split_encoder`` (or ``state.split_model_with_stats``).
    method: None calls ``module(images)``; a string ``getattr(module, method)(images)`` (both
      keep the features of a (features, intermediates) pair); a callable is
      ``(module, images, train) -> features [B, D]``, e.g. ``lambda m, x, train: m(x)[1]``.
  """
  if method is None:
    return NnxEmbedFn(graphdef)
  if isinstance(method, str):
    return NnxEmbedFn(graphdef, _MethodByName(method))
  return NnxEmbedFn(graphdef, method)


def split_encoder(model: nnx.Module) -> tuple[nnx.GraphDef, dict]:
  """(graphdef, variables ``{'params', 'batch_stats'}``) of an NNX encoder, pure dicts.

  Raises:
    ValueError: the module holds other state (e.g. ``nnx.Rngs``); see
      ``state.split_model_with_stats``.
  """
  graphdef, params, stats = state_lib.split_model_with_stats(model)
  return graphdef, {'params': params, 'batch_stats': stats}


# ----------------------------------------------------------------------------- features


def _jitted(fn: Callable, mesh: Mesh | None):
  """``jax.jit(fn)``, over the mesh: images batch-split, variables left where they are."""
  if mesh is None:
    return jax.jit(fn)
  return jax.jit(fn, in_shardings=(None, sharding.batch_sharding(mesh)),
                 out_shardings=sharding.replicated(mesh))


def extract_features(embed_fn: EmbedFn, variables: Any, images: np.ndarray, *,
                     batch_size: int, mesh: Mesh | None = None) -> np.ndarray:
  """The frozen encoder's features of every image: float32 [N, D] NumPy, in fixed-size batches.

  Every call gets exactly ``batch_size`` images (the last batch zero-padded, padding dropped),
  so one compilation serves any N. Use an eval-mode ``embed_fn`` (e.g. ``nnx_embed_fn``), or
  BatchNorm mixes the padding into the real rows.

  Args:
    embed_fn: ``(variables, images float32 [B, H, W, C]) -> features [B, D]``, pure.
    images: uint8 [N, H, W, C] (scaled to [0, 1]) or float [N, H, W, C] (as is).
    batch_size: B, images per call; a multiple of the mesh's device count when given.
    mesh: optional; batches are split over ``sharding.BATCH_AXES`` and ``variables`` used as
      placed (e.g. FSDP-sharded). In a multi-process run every process passes all ``images``.

  Raises:
    ValueError: images not a non-empty uint8/float [N, H, W, C] array, batch_size < 1 or
      not divisible over the mesh, or ``embed_fn`` returning something other than [B, D].
  """
  images = _check_images(images)
  if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
    raise ValueError(f'batch_size={batch_size!r} must be an integer >= 1')
  if mesh is not None:
    sharding.check_batch_size(batch_size, mesh, 'batch_size', process_count=1)
  apply = _jitted(embed_fn, mesh)
  out = []
  for start in range(0, len(images), batch_size):
    chunk = _as_float_images(images[start:start + batch_size])
    n = len(chunk)
    if n < batch_size:
      chunk = np.concatenate([chunk, np.zeros((batch_size - n,) + chunk.shape[1:], np.float32)])
    features = apply(variables, chunk)
    if features.ndim != 2 or features.shape[0] != batch_size:
      raise ValueError(f'embed_fn returned {features.shape} for a batch {chunk.shape}; it '
                       'must return features [B, D]')
    out.append(np.asarray(jax.device_get(features), np.float32)[:n])
  return np.concatenate(out)

