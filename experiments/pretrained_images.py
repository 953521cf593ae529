"""What a transfer run takes from an image learner's workdir (not an experiment itself).

The image twin of ``experiments.pretrained``: ``image_classify`` restores the network of an
``autoencoder``, ``vae``, ``simclr`` or ``byol`` run's newest checkpoint through a read-only
manager (the other workdir is never written, even while its run still trains), onto a
shape-only target built from that run's config: its training data is never read (its files
may be gone, or far larger than the checkpoint).
"""

from __future__ import annotations

import dataclasses
import json

import jax
import ml_collections

import experiments
from jaxssl import fileio
from jaxssl.data import image_cache, sources
from jaxssl.parallel import sharding
from jaxssl.train import checkpoint, rngs


@dataclasses.dataclass(frozen=True)
class Learner:
  """A learner's newest checkpoint, as far as a transfer run needs it.

  Attributes:
    workdir: where it is; experiment: one of ``experiments.LEARNERS``; config: its config.
    image_shape: (H, W, C) its encoder takes; step: the checkpoint's step;
    data_sha256: the data it was trained on.
  """
  workdir: str
  experiment: str
  config: ml_collections.ConfigDict
  image_shape: tuple[int, int, int]
  step: int
  data_sha256: str


def _input_shape(workdir: str, meta: dict, field: str) -> tuple[int, int, int]:
  """(H, W, C) of the learner's images, without reading them: ``data/image_shape`` of its
  ``summary.json`` (written at the end of every run), else, for a run still going, the
  ``meta.json`` of its data's image-cache entry (found from the source's metadata).

  Raises:
    FileNotFoundError: neither can be read.
  """
  try:
    summary = json.loads((fileio.path(workdir) / 'summary.json').read_text())
  except (OSError, ValueError):
    summary = {}
  if (summary.get('experiment') == meta['experiment'] and 'data/image_shape' in summary
      and summary.get('data/sha256') == meta.get('data_sha256')):
    return tuple(int(d) for d in summary['data/image_shape'])
  data = ml_collections.ConfigDict(meta['config']['data'])
  try:
    key = image_cache.cache_key(image_cache.open_source(data), data)
    entry = fileio.path(sources.cache_dir(data)) / 'images' / key / 'meta.json'
    return tuple(int(d) for d in json.loads(entry.read_text())['image_shape'])
  except (OSError, ValueError, KeyError) as e:
    raise FileNotFoundError(
        f'{field}={workdir}: the input shape of its encoder is unknown: the run has no '
        f'summary.json yet and its data\'s image cache cannot be read ({e})') from e


def open_workdir(workdir: str, field: str) -> tuple[Learner, object]:
  """Reads the newest checkpoint's meta of a learner's workdir, through a read-only manager.

  Args:
    workdir: the workdir; field: the config field that named it (for the errors).

  Returns:
    (Learner, manager): the manager stays open for ``restore``; close it.

  Raises:
    FileNotFoundError: no checkpoint (naming ``field``, the path and what it holds), or an
      unknown input shape.
    ValueError: a workdir of another experiment, naming it.
  """
  step, meta, manager = checkpoint.open_other_run(workdir, field, experiments.LEARNERS,
                                                  'image representation learners')
  try:
    shape = _input_shape(workdir, meta, field)
  except BaseException:
    manager.close()
    raise
  return Learner(workdir, meta['experiment'], ml_collections.ConfigDict(meta['config']), shape,
                 step, meta.get('data_sha256', '')), manager


def fresh_state(learner: Learner, mesh, rng):
  """The learner's TrainState as its own ``create_train_state`` builds it from ``rng``; of
  its data that needs only the image shape and, for the optimizer's schedule, a run length
  (its own ``num_train_steps``)."""
  module = experiments.module_of(learner.experiment, experiments.LEARNERS)
  shapes = {'image_shape': learner.image_shape,
            'num_train_steps': learner.config.num_train_steps}
  return module.create_train_state(learner.config, shapes, mesh, rng)


def restore(learner: Learner, manager, mesh):
  """The learner's TrainState from its newest readable checkpoint, on ``mesh``, restored onto
  a shape-only target (``jax.eval_shape`` of ``fresh_state``: nothing is initialised).

  Raises:
    checkpoint.NoReadableCheckpoint: no checkpoint reads back onto that target.
  """
  abstract = jax.eval_shape(lambda: fresh_state(learner, mesh,
                                                rngs.run_keys(learner.config.seed).init))
  target = jax.tree.map(lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s),
                        abstract, sharding.tree_shardings(abstract, mesh))
  restored, _, _ = checkpoint.restore_latest(manager, target)
  if restored is None:
    raise checkpoint.NoReadableCheckpoint(f'{learner.workdir}: no checkpoint to restore')
  return restored
