"""What a later run takes from a language model's workdir (not an experiment itself).

``text_classify`` restores the Transformer of an ``mlm_pretrain`` or ``clm_pretrain`` run;
``mlm_pretrain --config.init_from=W`` continues one (task-adaptive pretraining). Both read
the newest readable checkpoint and ``tokenizer.model`` through a read-only manager, so the
other run's workdir is never written, even while that run is still going.
"""

from __future__ import annotations

import dataclasses

import ml_collections

import experiments
from jaxssl import fileio
from jaxssl.data import tokenizer as tokenizer_lib
from jaxssl.train import checkpoint, rngs

LANGUAGE_MODELS = ('mlm_pretrain', 'clm_pretrain')


@dataclasses.dataclass(frozen=True)
class Pretrained:
  """A language-model workdir's newest checkpoint, as far as a later run needs it.

  Attributes:
    workdir: where it is.
    experiment: 'mlm_pretrain' or 'clm_pretrain'.
    config: its run config.
    tokenizer: its ``tokenizer.model``.
    model_config: the ``TransformerConfig`` of its model.
    step: the checkpoint's step.
    data_sha256: the data hash that checkpoint was trained on.
  """
  workdir: str
  experiment: str
  config: ml_collections.ConfigDict
  tokenizer: tokenizer_lib.Tokenizer
  model_config: object
  step: int
  data_sha256: str


def open_workdir(workdir: str, field: str,
                 among: tuple[str, ...] = LANGUAGE_MODELS) -> tuple[Pretrained, object]:
  """Reads the newest checkpoint's meta and the tokenizer of a language-model workdir.

  Args:
    workdir: the workdir; field: the config field that named it (for the errors).
    among: the experiments accepted.

  Returns:
    (Pretrained, manager): the read-only manager stays open for ``restore_params``; close it.

  Raises:
    FileNotFoundError: no checkpoint or no tokenizer.model, naming ``field`` and the workdir.
    ValueError: the workdir belongs to another experiment
      (``train.checkpoint.open_other_run``).
  """
  step, meta, manager = checkpoint.open_other_run(workdir, field, among, 'language models')
  model_path = fileio.path(workdir) / 'tokenizer.model'
  if not model_path.exists():
    manager.close()
    raise FileNotFoundError(f'{field}={workdir}: no tokenizer.model.')
  config = ml_collections.ConfigDict(meta['config'])
  tok = tokenizer_lib.Tokenizer(model_path)
  module = experiments.module_of(meta['experiment'], among)
  return Pretrained(workdir, meta['experiment'], config, tok,
                    module.model_config(config, tok.vocab_size), step,
                    meta.get('data_sha256', '')), manager


def restore_params(pretrained: Pretrained, manager, mesh) -> dict:
  """Its model's parameters from the newest readable checkpoint, on ``mesh`` (the state is
  rebuilt from its own config, so its optimizer settings need not match the caller's)."""
  module = experiments.module_of(pretrained.experiment, LANGUAGE_MODELS)
  state = module.create_train_state(pretrained.config, {'tokenizer': pretrained.tokenizer},
                                    mesh, rngs.run_keys(pretrained.config.seed).init)
  restored, _, _ = checkpoint.restore_latest(manager, checkpoint.abstract_like(state))
  return restored.params
