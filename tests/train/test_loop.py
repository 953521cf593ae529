"""The loop's metric check (a non-finite step stops the run with an error that names the
step and a remedy fitting the run's optimizer settings; finite ones are averaged and rated)
and how far the host runs ahead of the device."""

import os
import signal
import time

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest

from jaxssl.parallel import mesh as mesh_lib
from jaxssl.parallel import sharding
from jaxssl.train import checkpoint, loop, optim, preemption, workdir
from jaxssl.train import state as state_lib


class _Recorder:
  def __init__(self):
    self.written = []

  def write_scalars(self, step, scalars):
    self.written.append((step, scalars))


@pytest.mark.parametrize('grad_clip_norm, remedy', [
    (0.0, 'lower optim.learning_rate or enable optim.grad_clip_norm)'),
    (1.0, 'lower optim.learning_rate or optim.grad_clip_norm, now 1)'),
    (0.25, 'lower optim.learning_rate or optim.grad_clip_norm, now 0.25)'),
])
def test_non_finite_metrics_name_the_step_and_a_remedy_for_the_clipping_setting(
    grad_clip_norm, remedy):
  pending = [(7, {'loss': np.float32(2.0)}), (8, {'loss': np.float32(np.inf)})]
  with pytest.raises(FloatingPointError) as e:
    loop.write_train_metrics(pending, _Recorder(), elapsed_s=1.0, learning_rate=0.1,
                             units_per_step={}, grad_clip_norm=grad_clip_norm)
  assert str(e.value) == ('non-finite train/loss=inf at step 8; no checkpoint holds a '
                          f'non-finite state ({remedy}')


def test_finite_metrics_are_averaged_and_rated():
  pending = [(1, {'loss': np.float32(2.0)}), (2, {'loss': np.float32(4.0)})]
  writer = _Recorder()
  streak = loop.write_train_metrics(pending, writer, elapsed_s=0.5, learning_rate=np.float32(0.5),
                                    units_per_step={'tokens': 100})
  assert streak == 0
  assert writer.written == [(2, {'train/loss': 3.0, 'train/learning_rate': 0.5,
                                 'train/steps_per_sec': 4.0, 'train/tokens_per_sec': 400.0})]


def test_skipped_non_finite_steps_are_left_out_and_counted():
  pending = [(1, {'loss': np.float32(2.0)}), (2, {'loss': np.float32(np.nan)}),
             (3, {'loss': np.float32(4.0)})]
  writer = _Recorder()
  streak = loop.write_train_metrics(pending, writer, elapsed_s=1.0, learning_rate=0.0,
                                    units_per_step={}, max_skipped=1)
  assert streak == 0
  assert writer.written[0][1]['train/loss'] == 3.0
  assert writer.written[0][1]['train/skipped_steps'] == 1.0


def _toy_run(tmp_path, num_train_steps, log_every_steps):
  """A Run, a 2-parameter TrainState on a one-device mesh, and a step whose device work (a
  chain of matmuls) takes about 0.15 s while its dispatch returns at once.

  Returns:
    (run, state, train_step, get_batch, seconds one step takes on the device).
  """
  config = ml_collections.ConfigDict({
      'seed': 0, 'global_batch_size': 1, 'num_train_steps': num_train_steps,
      'log_every_steps': log_every_steps,
      'eval_every_steps': 0, 'checkpoint_every_steps': 0, 'max_checkpoints_to_keep': 3,
      'optim': optim.adamw_config(learning_rate=0.1, warmup_steps=0)})
  mesh = mesh_lib.make_mesh(mesh_lib.mesh_config(), devices=jax.devices()[:1])
  sgd = optax.sgd(0.1)
  state = state_lib.jit_init(lambda _: state_lib.create({'w': jnp.zeros(2)}, sgd, graphdef=None),
                             mesh, jax.random.key(0))

  def work(m, n):  # [1, 256, 256] -> f32 scalar, n matmuls on the device
    x = jax.lax.fori_loop(0, n, lambda _, x: jnp.tanh(x @ x) / 16.0, m[0])
    return jnp.mean(x)

  timed = jax.jit(work, static_argnums=1)
  m = jnp.ones((1, 256, 256)) / 256.0
  timed(m, 4).block_until_ready()
  t = time.perf_counter()
  timed(m, 4).block_until_ready()
  n = max(4, int(4 * 0.15 / (time.perf_counter() - t)))  # about 0.15 s a step
  timed(m, n).block_until_ready()
  t = time.perf_counter()
  timed(m, n).block_until_ready()
  step_seconds = time.perf_counter() - t

  def train_step(state, batch, rng):
    del rng
    loss = work(batch['m'], n)
    return state.apply_gradients({'w': jnp.ones(2) * loss}), {'loss': loss}

  get_batch = lambda step: sharding.put_batch({'m': np.ones((1, 256, 256), np.float32) / 256},
                                              mesh)
  run = workdir.Run(str(tmp_path), 'toy', config, {}, time.time())
  return run, state, train_step, get_batch, step_seconds


def test_sigterm_is_acted_on_within_a_few_steps_however_long_the_log_interval(tmp_path,
                                                                           monkeypatch):
  # The host dispatches asynchronously; unbounded, it would queue every step up to the next
  # log point (here the end), and a SIGTERM would wait for all of them: at batch 30 the host
  # would be 29 steps ahead of the device. Bounded, it is at most 2 ahead.
  run, state, train_step, get_batch, _ = _toy_run(tmp_path, 40, 1000)
  seen = {}

  def get_batch_sending_sigterm(step):
    seen[step] = time.monotonic()
    if step == 30:
      os.kill(os.getpid(), signal.SIGTERM)
    return get_batch(step)

  save = checkpoint.save

  def timed_save(*args, **kwargs):
    seen['save'] = time.monotonic()  # after the step's metrics reached the host
    return save(*args, **kwargs)

  monkeypatch.setattr(checkpoint, 'save', timed_save)
  with pytest.raises(preemption.Preempted) as e:
    loop.train(run, state, train_step, get_batch_sending_sigterm, lambda *_: {},
               rng=jax.random.key(0), info={'data/sha256': 'toy'})
  assert e.value.step == 30  # the step being dispatched when the signal came
  per_step = (seen['save'] - seen[1]) / 29  # from the first step's dispatch (compiled) on
  assert (seen['save'] - seen[30]) / per_step < 4, (seen['save'] - seen[30], per_step)
  assert sorted(os.listdir(tmp_path / 'checkpoints')) == ['30']
