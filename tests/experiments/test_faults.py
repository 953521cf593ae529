"""The loop's fault handling, on the autoencoder's and the MLM's smoke runs (6 steps,
checkpoints at 3 and 6): a damaged latest checkpoint, every checkpoint damaged, a crash
inside a checkpoint save, and a non-finite loss.

Each case starts from a copy of the session's finished smoke run (or a fresh workdir), so
the reference results come from an uninterrupted run of the same config.
"""

import logging
import os
import shutil
import signal

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
import pytest

from experiments import autoencoder, mlm_pretrain
from jaxssl.parallel import sharding
from jaxssl.train import checkpoint, preemption
from jaxssl.train import state as state_lib
from tests.experiments.helpers import (SimulatedFault, evals, jit_train_step_sending_sigterm,
                                      save_killed_at, smoke)

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
  with pytest.raises(SimulatedFault):
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
  config = smoke(autoencoder, cache_dir)
  config.optim.grad_clip_norm = 0.5  # the error's remedy names the run's clipping
  with pytest.raises(FloatingPointError, match=r'non-finite train/loss=nan at step 5; .*'
                     r'\(lower optim.learning_rate or optim.grad_clip_norm, now 0.5\)'):
    autoencoder.train_and_evaluate(config, workdir)
  assert sorted(os.listdir(os.path.join(workdir, 'checkpoints'))) == ['3']
  assert not os.path.exists(os.path.join(workdir, 'summary.json'))


def test_sigterm_in_the_last_step_checkpoints_it_and_skips_the_evaluation(smoke_run, cache_dir,
                                                                          tmp_path,
                                                                          monkeypatch):
  _, reference = smoke_run(autoencoder)
  jit_train_step = sharding.jit_train_step
  monkeypatch.setattr(sharding, 'jit_train_step', jit_train_step_sending_sigterm(5))  # step 6
  workdir = str(tmp_path / 'w')
  with pytest.raises(preemption.Preempted, match='at step 6'):
    autoencoder.train_and_evaluate(smoke(autoencoder, cache_dir), workdir)
  assert not os.path.exists(os.path.join(workdir, 'summary.json'))  # no evaluation yet
  monkeypatch.setattr(sharding, 'jit_train_step', jit_train_step)
  resumed = autoencoder.train_and_evaluate(smoke(autoencoder, cache_dir), workdir)
  assert resumed['restored_from_step'] == 6
  assert evals(resumed) == evals(reference)


def test_sigterm_during_the_final_save_is_acted_on_once_it_is_complete(smoke_run, cache_dir,
                                                                       tmp_path, monkeypatch):
  # The signal arrives after the last step's preemption check (inside its checkpoint save):
  # the run stops with Preempted once that save is complete, instead of carrying on.
  _, reference = smoke_run(autoencoder)
  save = checkpoint.save

  def save_then_sigterm(manager, step, state, meta):
    save(manager, step, state, meta)
    if step == 6:
      os.kill(os.getpid(), signal.SIGTERM)
  monkeypatch.setattr(checkpoint, 'save', save_then_sigterm)
  workdir = str(tmp_path / 'w')
  with pytest.raises(preemption.Preempted, match='at step 6'):
    autoencoder.train_and_evaluate(smoke(autoencoder, cache_dir), workdir)
  assert not os.path.exists(os.path.join(workdir, 'summary.json'))
  monkeypatch.setattr(checkpoint, 'save', save)
  resumed = autoencoder.train_and_evaluate(smoke(autoencoder, cache_dir), workdir)
  assert resumed['restored_from_step'] == 6  # the save was complete
  assert evals(resumed) == evals(reference)


def _poison_steps(monkeypatch, state_steps, *, loss=True):
  """Steps whose ``state.step`` going in is in ``state_steps`` get NaN gradients (inside the
  jitted step) and, with ``loss``, a NaN loss: what a bad batch or an overflow does."""
  apply_gradients = state_lib.TrainState.apply_gradients
  jit_train_step = sharding.jit_train_step
  bad = jnp.asarray(sorted(state_steps))

  def apply_poisoned(state, grads):
    nan_here = jnp.isin(state.step, bad)
    return apply_gradients(state, jax.tree.map(lambda g: jnp.where(nan_here, jnp.nan, g),
                                               grads))

  def jit_poisoned(*args, **kwargs):
    step_fn = jit_train_step(*args, **kwargs)

    def run(state, batch, rng):
      poison = loss and int(state.step) in state_steps  # read before the step donates it
      new_state, metrics = step_fn(state, batch, rng)
      return new_state, dict(metrics, loss=metrics['loss'] * jnp.nan) if poison else metrics
    return run

  monkeypatch.setattr(state_lib.TrainState, 'apply_gradients', apply_poisoned)
  monkeypatch.setattr(sharding, 'jit_train_step', jit_poisoned)


def _params(workdir, step):
  state = ocp.StandardCheckpointer().restore(
      os.path.join(workdir, 'checkpoints', str(step), 'state'))
  return jax.tree.leaves(state['params'])


def test_skip_nonfinite_updates_drops_the_bad_step_and_finishes(cache_dir, tmp_path,
                                                                 monkeypatch, caplog):
  _poison_steps(monkeypatch, {5})  # the last step (6)
  workdir = str(tmp_path / 'w')
  with caplog.at_level(logging.WARNING):
    summary = autoencoder.train_and_evaluate(
        smoke(autoencoder, cache_dir, checkpoint_every_steps=1,
              **{'optim.skip_nonfinite_updates': 1}), workdir)
  assert summary['step'] == 6 and all(np.isfinite(v) for v in evals(summary).values())
  assert any('non-finite train/loss at step 6: its update was skipped' in r.getMessage()
             for r in caplog.records)
  for before, after in zip(_params(workdir, 5), _params(workdir, 6)):  # the update dropped
    np.testing.assert_array_equal(before, after)
  assert any(np.any(a != b) for a, b in zip(_params(workdir, 4), _params(workdir, 5)))


def test_more_nonfinite_steps_in_a_row_than_allowed_stop_the_run(cache_dir, tmp_path,
                                                                  monkeypatch):
  _poison_steps(monkeypatch, {3, 4})  # steps 4 and 5: two in a row, one allowed
  workdir = str(tmp_path / 'w')
  with pytest.raises(FloatingPointError, match=r'train/loss=nan at step 5 \(2 steps in a row, '
                     r'more than optim.skip_nonfinite_updates=1\)'):
    autoencoder.train_and_evaluate(
        smoke(autoencoder, cache_dir, checkpoint_every_steps=1,
              **{'optim.skip_nonfinite_updates': 1}), workdir)
  assert sorted(os.listdir(os.path.join(workdir, 'checkpoints'))) == ['2', '3', '4']
  for before, after in zip(_params(workdir, 3), _params(workdir, 4)):  # step 4 was skipped
    np.testing.assert_array_equal(before, after)
  assert not os.path.exists(os.path.join(workdir, 'summary.json'))


def test_a_resumed_run_continues_the_count_of_dropped_updates(cache_dir, tmp_path, monkeypatch):
  # Steps 3, 4, 5 non-finite, 2 allowed in a row: the run stops at step 5 keeping 2-4. Run
  # again, it resumes from 4, where optax's count of dropped updates is already 2: step 5 is
  # the third in a row again, so it stops there too, saving nothing (counting from 0 would
  # let optax apply step 5's NaN update and checkpoint it).
  _poison_steps(monkeypatch, {2, 3, 4})
  workdir = str(tmp_path / 'w')
  config = smoke(autoencoder, cache_dir, checkpoint_every_steps=1,
                 **{'optim.skip_nonfinite_updates': 2})
  for _ in range(2):
    with pytest.raises(FloatingPointError, match=r'at step 5 \(3 steps in a row'):
      autoencoder.train_and_evaluate(config, workdir)
    assert sorted(os.listdir(os.path.join(workdir, 'checkpoints'))) == ['2', '3', '4']
  for step in (2, 3, 4):
    assert all(np.all(np.isfinite(p)) for p in _params(workdir, step))


def test_a_non_finite_state_behind_finite_metrics_is_never_checkpointed(cache_dir, tmp_path,
                                                                        monkeypatch):
  # Gradients non-finite at steps 3, 4, 5 but every logged metric finite (the gradient norm
  # is measured before the poison): optax drops 2 updates, then applies the third. The check
  # of the state before each save stops the run at step 5 instead of saving NaN weights.
  _poison_steps(monkeypatch, {2, 3, 4}, loss=False)
  workdir = str(tmp_path / 'w')
  with pytest.raises(FloatingPointError, match='non-finite at step 5 although its metrics'):
    autoencoder.train_and_evaluate(
        smoke(autoencoder, cache_dir, checkpoint_every_steps=1,
              **{'optim.skip_nonfinite_updates': 2}), workdir)
  assert sorted(os.listdir(os.path.join(workdir, 'checkpoints'))) == ['2', '3', '4']


def test_a_shorter_run_over_a_longer_ones_checkpoints_is_refused(smoke_run, cache_dir, tmp_path):
  # num_train_steps may grow on resume, but a shorter run would report the longer one's
  # results as its own (a sweep with --set=num_train_steps=3 over 6-step folders did).
  workdir, _ = _copy(smoke_run, autoencoder, tmp_path)
  before = _listing(os.path.join(workdir, 'checkpoints'))
  with pytest.raises(ValueError, match='holds a checkpoint of step 6, past num_train_steps=3'):
    autoencoder.train_and_evaluate(smoke(autoencoder, cache_dir, num_train_steps=3), workdir)
  assert _listing(os.path.join(workdir, 'checkpoints')) == before
