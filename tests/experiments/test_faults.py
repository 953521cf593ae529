"""The loop's fault handling, on the autoencoder's and the MLM's smoke runs (6 steps,
checkpoints at 3 and 6): a damaged latest checkpoint, every checkpoint damaged, a crash
inside a checkpoint save, and a non-finite loss.

Each case starts from a copy of the session's finished smoke run (or a fresh workdir), so
the reference results come from an uninterrupted run of the same config.
"""

import logging
import os
import shutil

import jax.numpy as jnp
import pytest

from experiments import autoencoder, mlm_pretrain
from jaxssl.parallel import sharding
from jaxssl.train import checkpoint, loop
from tests.experiments.helpers import batch_getter_sending_sigterm, evals, save_killed_at, smoke

MODULES = [autoencoder, mlm_pretrain]


def _copy(smoke_run, module, tmp_path):
  ref_dir, reference = smoke_run(module)
  workdir = str(tmp_path / 'w')
  shutil.copytree(ref_dir, workdir)
  return workdir, reference


def _damage(step_dir):
  """Truncates every file of the checkpoint's state to zero bytes."""
  for root, _, files in os.walk(os.path.join(step_dir, 'state')):
    for name in files:
      open(os.path.join(root, name), 'w').close()


def _listing(step_dir):
  out = {}
  for root, _, files in os.walk(step_dir):
    for name in files:
      path = os.path.join(root, name)
      with open(path, 'rb') as f:
        out[os.path.relpath(path, step_dir)] = f.read()
  return out


@pytest.mark.parametrize('module', MODULES, ids=lambda m: m.EXPERIMENT)
def test_damaged_latest_checkpoint_falls_back_to_the_previous_one(module, smoke_run, cache_dir,
                                                                  tmp_path, caplog):
  workdir, reference = _copy(smoke_run, module, tmp_path)
  _damage(os.path.join(workdir, 'checkpoints', '6'))
  with caplog.at_level(logging.WARNING):
    resumed = module.train_and_evaluate(smoke(module, cache_dir), workdir)
  damaged = os.path.join(workdir, 'checkpoints', '6')
  assert any(damaged in r.getMessage() and 'could not be restored' in r.getMessage()
             for r in caplog.records)
  assert resumed['restored_from_step'] == 3  # steps 4-6 replayed from the good checkpoint
  assert evals(resumed) == evals(reference)
  assert sorted(os.listdir(os.path.join(workdir, 'checkpoints'))) == ['3', '6']
  kept = os.path.join(workdir, 'damaged_checkpoints', '6')  # set aside, not deleted
  assert os.path.isdir(kept) and any(r.getMessage().endswith(kept) for r in caplog.records)


def test_no_readable_checkpoint_is_an_error_naming_them_and_touches_nothing(smoke_run,
                                                                            cache_dir,
                                                                            tmp_path):
  workdir, _ = _copy(smoke_run, autoencoder, tmp_path)
  ckpts = os.path.join(workdir, 'checkpoints')
  for step in ('3', '6'):
    _damage(os.path.join(ckpts, step))
  before = {s: _listing(os.path.join(ckpts, s)) for s in ('3', '6')}
  with pytest.raises(checkpoint.NoReadableCheckpoint) as e:
    autoencoder.train_and_evaluate(smoke(autoencoder, cache_dir), workdir)
  assert os.path.join(ckpts, '3') in str(e.value) and os.path.join(ckpts, '6') in str(e.value)
  assert {s: _listing(os.path.join(ckpts, s)) for s in ('3', '6')} == before  # no overwrite


def test_crash_inside_a_save_resumes_from_the_last_complete_checkpoint(smoke_run, cache_dir,
                                                                       tmp_path,
                                                                       monkeypatch):
  _, reference = smoke_run(autoencoder)
  workdir = str(tmp_path / 'w')
  save = checkpoint.save
  monkeypatch.setattr(checkpoint, 'save', save_killed_at(6))
  with pytest.raises(loop.SimulatedFault):
    autoencoder.train_and_evaluate(smoke(autoencoder, cache_dir), workdir)
  monkeypatch.setattr(checkpoint, 'save', save)
  resumed = autoencoder.train_and_evaluate(smoke(autoencoder, cache_dir), workdir)
  assert resumed['restored_from_step'] == 3
  assert evals(resumed) == evals(reference)
  assert sorted(os.listdir(os.path.join(workdir, 'checkpoints'))) == ['3', '6']


def test_non_finite_loss_stops_naming_the_step_and_keeps_the_last_good_checkpoint(
    cache_dir, tmp_path, monkeypatch):
  jit_train_step = sharding.jit_train_step

  def poisoned(*args, **kwargs):  # the loss of step 5 (state.step 4 going in) becomes NaN
    step_fn = jit_train_step(*args, **kwargs)

    def run(state, batch, rng):
      poison = int(state.step) == 4  # read before the step donates the state's buffers
      new_state, metrics = step_fn(state, batch, rng)
      return new_state, dict(metrics, loss=metrics['loss'] * jnp.nan) if poison else metrics
    return run

  monkeypatch.setattr(sharding, 'jit_train_step', poisoned)
  workdir = str(tmp_path / 'w')
  with pytest.raises(FloatingPointError, match='non-finite train/loss=nan at step 5'):
    autoencoder.train_and_evaluate(smoke(autoencoder, cache_dir), workdir)
  assert sorted(os.listdir(os.path.join(workdir, 'checkpoints'))) == ['3']
  assert not os.path.exists(os.path.join(workdir, 'summary.json'))


def test_sigterm_in_the_last_step_checkpoints_it_and_skips_the_evaluation(smoke_run, cache_dir,
                                                                          tmp_path,
                                                                          monkeypatch):
  _, reference = smoke_run(autoencoder)
  batch_getter = loop.batch_getter
  monkeypatch.setattr(loop, 'batch_getter', batch_getter_sending_sigterm(5))  # the last step
  workdir = str(tmp_path / 'w')
  with pytest.raises(loop.Preempted, match='at step 6'):
    autoencoder.train_and_evaluate(smoke(autoencoder, cache_dir), workdir)
  assert not os.path.exists(os.path.join(workdir, 'summary.json'))  # no evaluation yet
  monkeypatch.setattr(loop, 'batch_getter', batch_getter)
  resumed = autoencoder.train_and_evaluate(smoke(autoencoder, cache_dir), workdir)
  assert resumed['restored_from_step'] == 6
  assert evals(resumed) == evals(reference)
