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
from jaxssl import fileio
from jaxssl.data import images
from jaxssl.eval import features as features_lib
from jaxssl.parallel import mesh as mesh_lib
from jaxssl.train import checkpoint, rngs


class Encoder(NamedTuple):
  """A frozen image encoder and where it came from.

  Attributes:
    experiment: the learner's name (one of ``experiments.LEARNERS``).
    config: the run's config.
    embed_fn: ``(variables, images float32 [B, H, W, C]) -> features float32 [B, D]``.
    variables: what ``embed_fn`` reads.
    step: the checkpoint's step (0 for `fresh`).
  """
  experiment: str
  config: ml_collections.ConfigDict
  embed_fn: features_lib.NnxEmbedFn
  variables: Any
  step: int


def learner(experiment: str):
  """The experiment module of an image representation learner.

  Raises:
    ValueError: ``experiment`` is not one of ``experiments.LEARNERS``.
  """
  if experiment not in experiments.LEARNERS:
    raise ValueError(f'{experiment!r} is not an image representation learner '
                     f'(one of {", ".join(experiments.LEARNERS)})')
  return experiments.module_of(experiment)


def _build(experiment: str, config: ml_collections.ConfigDict, mesh):
  module = learner(experiment)
  data = module.prepare_data(config, None)
  state = module.create_train_state(config, data, mesh, rngs.run_keys(config.seed).init)
  return module, state


def fresh(experiment: str, config: ml_collections.ConfigDict, mesh=None) -> Encoder:
  """The learner's encoder at its random initialisation (from ``config.seed``)."""
  mesh = mesh or mesh_lib.make_mesh(config.mesh)
  module, state = _build(experiment, config, mesh)
  return Encoder(experiment, config, module.embed_fn(state.graphdef, config),
                 module.encoder_variables(state), 0)


def load(workdir: str, mesh=None) -> Encoder:
  """The encoder of ``workdir``'s newest readable checkpoint.

  Raises:
    FileNotFoundError: ``workdir`` has no checkpoint.
    ValueError: it was written by an experiment that is not a representation learner.
    checkpoint.NoReadableCheckpoint: checkpoints exist but none reads back.
  """
  if not (fileio.path(workdir) / 'checkpoints').is_dir():
    raise FileNotFoundError(f'{workdir} holds no checkpoints of a trained run')
  manager = checkpoint.make_manager(workdir)
  try:
    _, meta = checkpoint.latest_meta(manager)
  finally:
    manager.close()
  if meta is None:
    raise FileNotFoundError(f'{workdir} holds no readable checkpoint of a trained run')
  config = ml_collections.ConfigDict(meta['config'])
  mesh = mesh or mesh_lib.make_mesh(config.mesh)
  module, state = _build(meta['experiment'], config, mesh)
  manager, state, step = checkpoint.restore_or_keep(workdir, state)
  manager.close()
  return Encoder(meta['experiment'], config, module.embed_fn(state.graphdef, config),
                 module.encoder_variables(state), step)


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
