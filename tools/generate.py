r"""Text from a trained causal LM: ``python -m tools.generate --workdir=... --prompt=...``.

Restores the latest checkpoint of an ``experiments.clm_pretrain`` workdir (its config and
tokenizer come from the workdir) and continues the prompt with the key/value-cached decoder
of ``jaxssl.generation.decode`` (one jit-compiled ``jax.lax`` loop). Only the generated text
goes to stdout, one sample per line; logs go to stderr.

  python -m tools.generate --workdir=/tmp/clm --prompt="The list" --top_p=0.9
  python -m tools.generate --workdir=/tmp/clm --prompt="The list" --temperature=0  # greedy
"""

from __future__ import annotations

import sys

import jax
import ml_collections
from absl import app, flags, logging

from experiments import clm_pretrain
from jaxssl import fileio
from jaxssl.data import tokenizer as tokenizer_lib
from jaxssl.generation import decode
from jaxssl.parallel import mesh as mesh_lib
from jaxssl.train import checkpoint, rngs

def load_model(workdir: str):
  """(graphdef, params, tokenizer, step) of the newest readable checkpoint of ``workdir``.

  Raises:
    ValueError: no checkpoint, or a workdir of another experiment.
  """
  if not (fileio.path(workdir) / 'checkpoints').is_dir():
    raise ValueError(f'{workdir} has no checkpoints/: train it with experiments.clm_pretrain')
  manager = checkpoint.make_manager(workdir, enable_async=False)
  try:
    _, meta = checkpoint.latest_meta(manager)
  finally:
    manager.close()
  if meta is None or meta.get('experiment') != clm_pretrain.EXPERIMENT:
    raise ValueError(f'{workdir} holds no readable {clm_pretrain.EXPERIMENT} checkpoint (found '
                     f'{"none" if meta is None else repr(meta.get("experiment"))})')
  config = ml_collections.ConfigDict(meta['config'])
  tokenizer = tokenizer_lib.Tokenizer(fileio.join(workdir, 'tokenizer.model'))
  mesh = mesh_lib.make_mesh(mesh_lib.mesh_config())
  state = clm_pretrain.create_train_state(config, {'tokenizer': tokenizer}, mesh,
                                          rngs.run_keys(config.seed).init)
  manager, state, step, _ = checkpoint.restore_or_keep(workdir, state)
  manager.close()
  return state.graphdef, state.params, tokenizer, step


def main():
  """Defines the flags (here, so importing this module defines none) and runs."""
  workdir = flags.DEFINE_string('workdir', None, 'A clm_pretrain workdir.', required=True)
  prompt = flags.DEFINE_string('prompt', '', 'Text to continue ("" = a document start).')
  max_new_tokens = flags.DEFINE_integer('max_new_tokens', 64, 'Tokens per sample.')
  num_samples = flags.DEFINE_integer('num_samples', 1, 'Samples (one line each).')
  temperature = flags.DEFINE_float('temperature', 0.8, 'Softmax temperature; 0 = greedy.')
  top_k = flags.DEFINE_integer('top_k', 0, 'Keep the k most likely tokens; 0 = all.')
  top_p = flags.DEFINE_float('top_p', 0.95, 'Nucleus probability mass; 1 = all.')
  seed = flags.DEFINE_integer('seed', 0, 'Sampling seed: the same seed gives the same text.')

  def run(argv):
    if len(argv) > 1:
      raise app.UsageError(f'unexpected arguments: {argv[1:]}')
    for flag, value in (('--num_samples', num_samples.value),
                        ('--max_new_tokens', max_new_tokens.value)):
      if value < 1:
        sys.exit(f'error: {flag}={value} must be >= 1')
    try:
      graphdef, params, tokenizer, step = load_model(workdir.value)
      logging.info('restored step %d of %s', step, workdir.value)
      texts = decode.generate_text(
          graphdef, params, tokenizer, prompt.value, bos_id=clm_pretrain.BOS_ID,
          eos_id=clm_pretrain.EOS_ID, num_samples=num_samples.value,
          max_new_tokens=max_new_tokens.value, rng=jax.random.key(seed.value),
          temperature=temperature.value, top_k=top_k.value, top_p=top_p.value)
    except (ValueError, FileNotFoundError, checkpoint.NoReadableCheckpoint) as e:
      sys.exit(f'error: {e}')
    for text in texts:
      print(text.replace('\n', ' '))

  app.run(run)


if __name__ == '__main__':
  main()
