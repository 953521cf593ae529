"""Every random stream of a run, named in one place.

Training streams come from the config's ``seed``: ``run_keys(seed)`` gives the parameter-init
key, the train-step key (each step folds in ``state.step``, so a resumed run replays its
randomness) and the key of samples shown during evaluation. The data order is
``np.random.default_rng([seed, epoch])`` (``data.pipeline``).

Evaluation streams come from ``data.split_seed`` instead (``eval_key``), so held-out masks,
noise and latents are the same for every training seed and every device count, and runs with
different seeds are scored on the same draws. The downstream protocol of the image encoders
has its own ``eval.seed`` (the linear probe's validation split, k-means starts, fine-tuning;
``jaxssl.eval.representation``), 0 by default; ``tools.compare`` sets it to the run's seed.
"""

from __future__ import annotations

from typing import NamedTuple

import jax

# Tags folded into the root key of each stream; changing one changes every result.
_INIT, _TRAIN, _SAMPLE = 0, 1, 2
EVAL_TAGS = {
    'fixed': 0x5EED,  # MLM eval masks, autoencoder eval corruption, VAE eval noise
    'prior': 0x5A3E,  # latents drawn from the prior: VAE grid samples, DCGAN eval samples
    'classifier': 0xC1A5,  # seed of the DCGAN's scoring classifier
}


# Tags a train step folds into its key for one purpose (it folds in ``state.step`` too).
STEP_TAGS = {'views': 0xA6}  # SimCLR's and BYOL's augmentations


class RunKeys(NamedTuple):
  """The training streams of one run (typed PRNG keys)."""
  init: jax.Array  # parameter initialisation
  train: jax.Array  # the train step's root: dropout, masks, views, noise, latents
  sample: jax.Array  # samples written at evaluation (the causal LM's continuations)


def run_keys(seed: int) -> RunKeys:
  """The training keys of ``config.seed``."""
  root = jax.random.key(seed)
  return RunKeys(*(jax.random.fold_in(root, tag) for tag in (_INIT, _TRAIN, _SAMPLE)))


def eval_key(split_seed: int, purpose: str) -> jax.Array:
  """The evaluation key of ``purpose`` (one of ``EVAL_TAGS``) from ``data.split_seed``.

  Raises:
    KeyError: an unknown purpose.
  """
  return jax.random.fold_in(jax.random.key(split_seed), EVAL_TAGS[purpose])


def step_key(rng_train: jax.Array, purpose: str) -> jax.Array:
  """The key of ``purpose`` (one of ``STEP_TAGS``) inside the train step.

  Raises:
    KeyError: an unknown purpose.
  """
  return jax.random.fold_in(rng_train, STEP_TAGS[purpose])
