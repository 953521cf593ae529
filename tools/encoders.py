"""The image encoders of finished (or fresh) runs, for downstream evaluation and clustering.

Every representation learner here (``autoencoder``, ``vae``, ``simclr``, ``byol``) exposes
``embed_fn(graphdefs, config)``, the frozen encoder as a pure function of its variables (see
``jaxssl.eval.features``), and ``encoder_variables(state)``, the variables it reads.
`load` rebuilds one from a workdir's newest checkpoint and the config saved with it; `fresh`
gives the same encoder at its random initialisation (the baseline). Used by
``tools.compare`` and by ``experiments.kmeans --config.features_from=WORKDIR``.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import ml_collections

import experiments
from experiments import pretrained_images
from jaxssl.data import images
from jaxssl.eval import features as features_lib
from jaxssl.parallel import mesh as mesh_lib
from jaxssl.train import rngs


class Encoder(NamedTuple):
  """A frozen image encoder and where it came from.

  Attributes:
    experiment: the learner's name (one of ``experiments.LEARNERS``).
    config: the run's config.
    embed_fn: ``(variables, images float32 [B, H, W, C]) -> features float32 [B, D]``.
    variables: what ``embed_fn`` reads.
    step: the checkpoint's step (0 for `fresh`).
    image_shape: (H, W, C) of the images it takes.
  """
  experiment: str
  config: ml_collections.ConfigDict
  embed_fn: features_lib.NnxEmbedFn
  variables: Any
  step: int
  image_shape: tuple[int, int, int]


def learner(experiment: str):
  """The experiment module of an image representation learner.

  Raises:
    ValueError: ``experiment`` is not one of ``experiments.LEARNERS``.
  """
  if experiment not in experiments.LEARNERS:
    raise ValueError(f'{experiment!r} is not an image representation learner '
                     f'(one of {", ".join(experiments.LEARNERS)})')
  return experiments.module_of(experiment)


def _encoder(learner_: pretrained_images.Learner, state, step: int) -> Encoder:
  module = learner(learner_.experiment)
  return Encoder(learner_.experiment, learner_.config,
                 module.embed_fn(state.graphdef, learner_.config),
                 module.encoder_variables(state), step, learner_.image_shape)


def fresh(experiment: str, config: ml_collections.ConfigDict,
          image_shape: tuple[int, int, int], mesh=None) -> Encoder:
  """The learner's encoder at its random initialisation (from ``config.seed``), for images
  of ``image_shape`` (H, W, C); its data is not read."""
  mesh = mesh or mesh_lib.make_mesh(config.mesh)
  learner(experiment)  # a ValueError for a non-learner before anything is built
  source = pretrained_images.Learner('', experiment, config, tuple(image_shape), 0, '')
  state = pretrained_images.fresh_state(source, mesh, rngs.run_keys(config.seed).init)
  return _encoder(source, state, 0)


def load(workdir: str, mesh=None, field: str = 'workdir') -> Encoder:
  """The encoder of ``workdir``'s newest readable checkpoint, restored read-only onto a
  shape-only target (``experiments.pretrained_images``): the run's data is not read.

  Raises:
    FileNotFoundError: ``workdir`` has no checkpoint (naming ``field``).
    ValueError: it was written by an experiment that is not a representation learner.
    checkpoint.NoReadableCheckpoint: checkpoints exist but none reads back.
  """
  source, manager = pretrained_images.open_workdir(workdir, field)
  try:
    mesh = mesh or mesh_lib.make_mesh(source.config.mesh)
    state = pretrained_images.restore(source, manager, mesh)
  finally:
    manager.close()
  return _encoder(source, state, source.step)


def image_data(encoder: Encoder) -> images.ImageData:
  """The labelled images the encoder was trained on (its ``config.data``), both splits.

  Returns:
    ``jaxssl.data.images.ImageData``: ``train`` and ``test`` as ``{'image': uint8
    [N, H, W, C], 'label': int32 [N]}``, ``num_classes``, ``source`` and ``info``.

  Raises:
    ValueError, FileNotFoundError: the data cannot be read any more (see
      ``images.load_images``).
  """
  return images.load_images(encoder.config.data)
