"""One runnable file per experiment: ``python -m experiments.<name> --workdir=W``.

The protocol: the names a generic caller (``tools.sweep``, ``tools.compare``, the benchmarks,
the tests) may use on an experiment module, and nothing else.

Every experiment:
  EXPERIMENT                     its name, stored in checkpoints and summaries.
  get_config()                   the default run (an ml_collections.ConfigDict).
  smoke_config()                 a tiny run of a few steps, for tests.
  validate_config(config, num_devices)
                                 ValueError naming the first bad field, before any data
                                 is read or anything compiles.
  train_and_evaluate(config, workdir) -> summary dict
                                 the whole run; resumes from the workdir's checkpoints.

Every training experiment (all but ``kmeans``) also:
  prepare_data(config, workdir) -> data dict
                                 with 'train' (rows or images), 'info' (the ``data/*``
                                 facts) and, for the image experiments, 'num_train_steps'.
  create_train_state(config, data, mesh, rng) -> TrainState
                                 fresh, on the mesh; carries its graphdef and optimizer.
  train_step(state, batch, rng, *, config, **constants) -> (state, metrics)
                                 pure, not jitted; ``step_constants(config, data)`` gives
                                 the constants (e.g. the MLM's ``word_start``).

Image representation learners (``LEARNERS``) also export ``embed_fn(graphdef, config)``,
the frozen encoder as a pure function of its variables (``jaxssl.eval.features``), and
``encoder_variables(state)``, the variables it reads.

A new experiment is a new file here; add its name to ``EXPERIMENTS`` (and to ``LEARNERS``
for an image representation learner) so that ``tools.sweep`` and ``tools.compare`` find it.
"""

import importlib

EXPERIMENTS = ('mlm_pretrain', 'clm_pretrain', 'autoencoder', 'vae', 'dcgan', 'kmeans', 'simclr',
               'byol', 'text_classify', 'image_classify')
DOWNSTREAM = ('text_classify', 'image_classify')  # they start from another run's workdir
# Those with a train step that start from nothing (benchmarks run these as they are).
TRAINING = tuple(name for name in EXPERIMENTS if name != 'kmeans' and name not in DOWNSTREAM)
LEARNERS = ('autoencoder', 'vae', 'simclr', 'byol')


def module_of(name: str, among: tuple[str, ...] = EXPERIMENTS):
  """The module ``experiments.<name>``.

  Raises:
    ValueError: ``name`` is not one of ``among``.
  """
  if name not in among:
    raise ValueError(f'{name!r} is not one of {", ".join(among)}')
  return importlib.import_module(f'experiments.{name}')


def step_constants(module, config, data) -> dict:
  """The keyword constants ``module.train_step`` takes besides ``config`` ({} for most)."""
  get = getattr(module, 'step_constants', None)
  return get(config, data) if get else {}
