"""Tests of jaxssl.eval.finetune: it learns the digits and leaves the caller's BatchNorm
encoder variables bit-identical."""

import jax
import numpy as np
import pytest

from jaxssl.eval import features as features_lib
from jaxssl.eval import finetune
from tests.eval import helpers


def test_fine_tune_learns_digits_and_leaves_caller_variables(digits, bn_encoder):
  _, graphdef, variables = bn_encoder
  before = helpers.snapshot(variables)
  embed = features_lib.nnx_embed_fn(graphdef)
  got = finetune.fine_tune(embed, variables, digits['train']['image'], digits['train']['label'],
                           digits['test']['image'], digits['test']['label'], num_classes=10,
                           num_steps=150, batch_size=64, learning_rate=3e-3, seed=0)
  assert set(got) == {'fine_tune_accuracy', 'fine_tune_train_loss'}
  assert got['fine_tune_accuracy'] > 0.6, got  # chance: 0.1
  helpers.assert_unchanged(before, variables)
  for leaf in jax.tree.leaves(variables):  # not donated away
    np.asarray(leaf)
  args = (embed, variables, digits['train']['image'], digits['train']['label'],
          digits['test']['image'], digits['test']['label'])
  with pytest.raises(ValueError, match='NnxEmbedFn'):
    finetune.fine_tune(lambda v, x: x.reshape(len(x), -1), *args[1:], num_classes=10)
  with pytest.raises(ValueError, match='num_classes=1'):
    finetune.fine_tune(*args, num_classes=1)
  with pytest.raises(ValueError, match=r'lie in \[0, num_classes=5\)'):
    finetune.fine_tune(*args, num_classes=5)
  with pytest.raises(ValueError, match='test_labels has 3'):
    finetune.fine_tune(*args[:5], args[5][:3], num_classes=10)
  with pytest.raises(ValueError, match='learning_rate'):
    finetune.fine_tune(*args, num_classes=10, learning_rate=0.0)
