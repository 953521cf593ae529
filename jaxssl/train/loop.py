"""The training loop every experiment calls (or forks), top to bottom in ``train``.

The experiment owns the model, the step, the data and the evaluation; the loop owns the
restore, the cadences (log, evaluate, checkpoint), the checks on metrics and the summary.
What it does on faults (SIGTERM, damaged checkpoints, non-finite losses) is told once, in
the README's "Fault tolerance" section.
"""

from __future__ import annotations

import logging
import time
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax
from clu import periodic_actions
from jax.sharding import Mesh

from jaxssl.parallel import mesh as mesh_lib
from jaxssl.parallel import sharding
from jaxssl.train import checkpoint, optim, preemption, writers
from jaxssl.train import state as state_lib
from jaxssl.train import workdir as workdir_lib


def start(config, workdir: str, experiment: str,
          validate: Callable[[Any, int], None]) -> tuple[Mesh, workdir_lib.Run]:
  """The start of every run: the mesh of ``config.mesh``, ``validate(config, num_devices)``
  (so a bad value fails before any data is read or anything compiles), then the workdir
  (``workdir.start``: refuses another experiment's or config's, records this start).

  Returns:
    (mesh, run).
  """
  mesh = mesh_lib.make_mesh(config.mesh)
  validate(config, mesh.devices.size)
  return mesh, workdir_lib.start(workdir, experiment, config)


def train(run, state, train_step: Callable, get_batch: Callable[[int], Any],
          evaluate: Callable[[Any, int], dict], *, rng: jax.Array, info: dict,
          num_train_steps: int | None = None, tokens_per_step: int = 0,
          extra_meta: dict | None = None, select: str | None = None,
          test: Callable[[Any], dict] | None = None) -> dict:
  """Restores the workdir's newest checkpoint, trains to ``num_train_steps``, evaluates and
  writes ``summary.json``.

  Args:
    run: ``train.workdir.start``'s record of this run (workdir, config, experiment).
    state: a fresh TrainState on the mesh (replaced by the newest readable checkpoint).
    train_step: ``(state, batch, rng) -> (state, metrics)``, not yet jitted; the metrics are
      f32 scalars, written as ``train/<name>`` (means over each log window).
    get_batch: ``step -> batch`` of global arrays on the mesh, a pure function of the step.
    evaluate: ``(state, step) -> {name: result}``: a float is a metric (``eval/<name>`` in
      TensorBoard and the summary), a uint8 [H, W, C] array a picture (TensorBoard and
      ``WORKDIR/images/<name>_<step>.png``, enlarged ``config.eval.png_scale`` times), a
      string a text (TensorBoard).
    rng: the train key (``train.rngs``); the step folds ``state.step`` into it.
    info: the data's facts for the summary, including ``data/sha256``.
    num_train_steps: the run's length; default ``config.num_train_steps``.
    tokens_per_step: B * L for ``train/tokens_per_sec`` (``train/examples_per_sec`` counts
      ``config.global_batch_size``).
    extra_meta: more JSON entries saved with every checkpoint.
    select: an ``evaluate`` metric to maximise (validation accuracy, say): after each
      evaluation that beats every earlier one, a copy of ``state.params`` goes to
      ``state.extra['best']`` (``best_state``), so checkpoints carry it and a resumed run
      selects exactly as an uninterrupted one; ties keep the earlier step. The summary's
      ``eval/*`` are then the selected step's (kept in each checkpoint's meta), not the last.
    test: ``params -> {name: float}``, run once after training on the selected parameters
      (the last ones without ``select``), written as ``test/<name>`` at the final step and in
      the summary, with ``test/selected_step``.

  Returns:
    The summary (``writers.write_summary``).

  Raises:
    ValueError: the workdir's checkpoints were trained on other data (``info['data/sha256']``)
      or are past ``num_train_steps``.
    FloatingPointError: a non-finite train metric (beyond ``optim.skip_nonfinite_updates`` in
      a row), naming the step; no checkpoint holds a diverged state.
    preemption.Preempted: SIGTERM arrived; the step in flight was finished and checkpointed.
    checkpoint.NoReadableCheckpoint: checkpoints exist but none reads back.
  """
  run.check_data(info)
  if select is not None and 'best' not in state.extra:
    raise ValueError("train(select=...) needs state.extra['best'] (loop.best_state)")
  config = run.config
  total = num_train_steps or config.num_train_steps
  max_skipped = config.optim.get('skip_nonfinite_updates', 0)
  meta = dict(experiment=run.experiment, config=config.to_dict(),
              data_sha256=info['data/sha256'], **(extra_meta or {}))
  step_fn = sharding.jit_train_step(train_step, state_lib.shardings(state),
                                    sharding.mesh_of(state))
  schedule = optim.make_schedule(config.optim, total)
  manager, state, restored, restored_meta = checkpoint.restore_or_keep(
      run.workdir, state, max_to_keep=config.max_checkpoints_to_keep)
  # The metrics of the step selected so far (``select``): what the summary reports as eval/*.
  selected_eval = (restored_meta or {}).get('selected_eval', {})
  writer = writers.create_writer(run.workdir)
  due = lambda every, step: step == total or (every > 0 and step % every == 0)
  failed = True
  try:
    with preemption.SigtermWatch(manager) as sigterm:
      first = int(jax.device_get(state.step))
      if first > total:  # a shorter run than the one checkpointed: its results would be these
        raise ValueError(f'{run.workdir} holds a checkpoint of step {first}, past '
                         f'num_train_steps={total}: use another --workdir or at least {first} '
                         'steps')
      report = periodic_actions.ReportProgress(num_train_steps=total, writer=writer,
                                               every_secs=30)
      pending, last_eval, evaluated, previous = [], {}, False, None
      streak = skipped_in_a_row(state) if max_skipped else 0
      t_log = time.perf_counter()
      batch = get_batch(first) if first < total else None
      for step in range(first, total):
        state, metrics = step_fn(state, batch, rng)
        done = step + 1
        if done < total:  # prefetch: the next batch is built while this step computes
          batch = get_batch(done)
        # The host runs at most one step ahead of the device: SIGTERM waits for two steps at
        # most, and no more than two batches are queued.
        jax.block_until_ready(previous)
        previous = metrics
        pending.append((done, metrics))
        report(done)
        preempted = sigterm.due(done)
        checkpoint_due = preempted or due(config.checkpoint_every_steps, done)
        if due(config.log_every_steps, done) or checkpoint_due:
          now = time.perf_counter()
          streak = write_train_metrics(
              pending, writer, elapsed_s=now - t_log, learning_rate=schedule(done - 1),
              units_per_step=dict(examples=config.global_batch_size, tokens=tokens_per_step),
              max_skipped=max_skipped, streak=streak,
              grad_clip_norm=config.optim.get('grad_clip_norm', 0.0))
          pending, t_log = [], now
        if due(config.eval_every_steps, done) and not preempted:
          with report.timed('eval'):
            last_eval = write_evaluation(evaluate(state, done), writer, run, done)
          state, selected_eval = _keep_best(state, last_eval, select, done, selected_eval)
          evaluated = True
          t_log = time.perf_counter()
        if checkpoint_due:
          if max_skipped and not _all_finite(state):  # the metrics missed a bad update
            raise FloatingPointError(f'the train state is non-finite at step {done} although '
                                     'its metrics were finite; not checkpointed')
          checkpoint.save(manager, done, state,
                          dict(meta, selected_eval=selected_eval) if select else meta)
          writer.flush()  # with each checkpoint, the metrics so far reach the workdir (bucket)
        if preempted:
          writer.flush()
          manager.wait_until_finished()
          raise preemption.Preempted(done)
      writer.flush()
      manager.wait_until_finished()
      if sigterm.requested:  # arrived during the last step's evaluation or save
        logging.warning('SIGTERM received after the last step: its checkpoint is saved')
        raise preemption.Preempted(total)
      logging.info('training finished at step %d', total)
    if not evaluated:  # resumed at the final step: evaluate what was restored
      last_eval = write_evaluation(evaluate(state, first), writer, run, first)
      state, selected_eval = _keep_best(state, last_eval, select, first, selected_eval)
    last_test = {}
    if test is not None:
      last_test = _run_test(test, state, select, writer, step=max(first, total))
    failed = False
  finally:
    # A SIGTERM waits for the checkpoint saves; an error on its way out keeps its own line.
    with preemption.SigtermWatch(manager, hand_on=not failed):
      manager.wait_until_finished()
      manager.close()
    writer.close()
  return writers.write_summary(run.workdir, experiment=run.experiment, config=config,
                               state=state, last_eval=selected_eval or last_eval,
                               last_test=last_test,
                               info=dict(info, num_train_steps=total),
                               restored_from_step=restored,
                               wall_time_s=time.time() - run.start_time)


def best_state(params) -> dict:
  """The initial ``state.extra['best']`` of a run that selects (``train(select=...)``):
  ``params`` (a copy of the parameters' structure), ``value`` (f32, -inf) and ``step``
  (int32, 0: nothing selected yet)."""
  return {'params': jax.tree.map(jnp.copy, params), 'value': jnp.full((), -jnp.inf),
          'step': jnp.zeros((), jnp.int32)}


def _best_entry(params, value, at) -> dict:
  # One module-level function, so each new best reuses its trace instead of a new lambda's.
  return {'params': jax.tree.map(jnp.copy, params), 'value': value, 'step': at}


def _keep_best(state, metrics: dict, select: str | None, step: int, selected: dict):
  """(state, selected): when ``metrics[select]`` beats the best so far, ``state`` with
  ``extra['best']`` replaced by its params at ``step`` and ``metrics`` (as floats) as the
  selected step's; else both unchanged."""
  if select is None:
    return state, selected
  if select not in metrics:
    raise KeyError(f'select={select!r} is not one of the evaluation metrics {sorted(metrics)}')
  best = state.extra['best']
  # Compared in the stored dtype (float32): a float64 tie stored rounded down would otherwise
  # beat itself at a later step.
  value = np.asarray(metrics[select], best['value'].dtype)
  if not value > jax.device_get(best['value']):
    return state, selected
  logging.info('step %d: best %s so far (%.6g)', step, select, metrics[select])
  # Under jit every leaf is a new buffer on the best's shardings: the step donates
  # state.params, so the kept copy must not alias it (and host scalars enter replicated).
  keep = jax.jit(_best_entry, out_shardings=jax.tree.map(lambda x: x.sharding, best))
  kept = keep(state.params, value, np.asarray(step, best['step'].dtype))
  return (state.replace(extra={**state.extra, 'best': kept}),
          {name: float(v) for name, v in metrics.items()})


def _run_test(test: Callable, state, select: str | None, writer, *, step: int) -> dict:
  """Runs ``test`` once on the selected (or last) parameters; writes ``test/*``."""
  params, selected = state.params, step
  if select is not None and int(jax.device_get(state.extra['best']['step'])) > 0:
    params = state.extra['best']['params']
    selected = int(jax.device_get(state.extra['best']['step']))
  results = dict(test(params), selected_step=float(selected))
  writer.write_scalars(step, {f'test/{k}': v for k, v in results.items()})
  writer.flush()
  return results


def write_evaluation(results: dict, writer, run, step: int) -> dict[str, float]:
  """Writes ``evaluate``'s results by kind (see ``train``) and returns the metrics."""
  results = {k: np.asarray(v) if isinstance(v, jax.Array) and v.ndim else v
             for k, v in results.items()}
  metrics = {k: v for k, v in results.items() if not isinstance(v, (str, np.ndarray))}
  writer.write_scalars(step, {f'eval/{k}': v for k, v in metrics.items()})
  texts = {k: v for k, v in results.items() if isinstance(v, str)}
  if texts:
    writer.write_texts(step, texts)
  pictures = {k: v for k, v in results.items() if isinstance(v, np.ndarray)}
  if pictures:
    writers.write_image_grids(writer, run.workdir, step, pictures,
                              scale=run.config.get('eval', {}).get('png_scale', 1))
  return metrics


def write_train_metrics(pending: list[tuple[int, dict]], writer, *, elapsed_s: float,
                        learning_rate, units_per_step: dict[str, int], max_skipped: int = 0,
                        streak: int = 0, grad_clip_norm: float = 0.0) -> int:
  """Moves pending per-step metrics to the host, checks them and writes their means.

  A step with a non-finite metric raises FloatingPointError, unless it is one of at most
  ``max_skipped`` such steps in a row (``optim.skip_nonfinite_updates``: the optimizer
  dropped its update); those are left out of the means and counted in ``skipped_steps``.

  Args:
    pending: (step, metrics) since the last write.
    elapsed_s: seconds those steps took, for ``steps_per_sec`` and ``<unit>_per_sec``.
    learning_rate: the rate of the last pending step (from the schedule, on the host).
    streak: the non-finite steps in a row that ended the previous write.
    grad_clip_norm: the run's ``optim.grad_clip_norm``, for the error's remedy.

  Returns:
    The non-finite steps in a row at the end of ``pending``.
  """
  steps = [s for s, _ in pending]
  values = jax.device_get([m for _, m in pending])
  finite, skipped = [], 0
  for step, m in zip(steps, values):
    bad = [(name, v) for name, v in m.items() if not np.all(np.isfinite(v))]
    streak = streak + 1 if bad else 0
    if bad and streak > max_skipped:
      name, v = bad[0]
      raise FloatingPointError(
          f'non-finite train/{name}={v} at step {step}'
          + (f' ({streak} steps in a row, more than optim.skip_nonfinite_updates='
             f'{max_skipped})' if max_skipped else '')
          + f'; no checkpoint holds a non-finite state ({_divergence_remedy(grad_clip_norm)})')
    if bad:
      skipped += 1
      logging.warning('non-finite train/%s at step %d: its update was skipped', bad[0][0], step)
    else:
      finite.append(m)
  means = {name: float(np.mean([m[name] for m in finite])) for name in values[0]} if finite \
      else {}
  means['learning_rate'] = float(learning_rate)
  if max_skipped:
    means['skipped_steps'] = float(skipped)
  means['steps_per_sec'] = len(steps) / elapsed_s
  for unit, count in units_per_step.items():
    if count:
      means[f'{unit}_per_sec'] = len(steps) * count / elapsed_s
  writer.write_scalars(steps[-1], {f'train/{k}': v for k, v in means.items()})
  return streak


def skipped_in_a_row(state) -> int:
  """Non-finite updates ``optax.apply_if_finite`` has dropped in a row up to ``state`` (the
  largest ``notfinite_count``; 0 without that wrapper), so a resumed run stops where the
  uninterrupted one would."""
  is_skip_state = lambda x: isinstance(x, optax.ApplyIfFiniteState)
  counts = [int(jax.device_get(x.notfinite_count))
            for x in jax.tree.leaves(state, is_leaf=is_skip_state) if is_skip_state(x)]
  return max(counts, default=0)


@jax.jit
def _all_finite(tree) -> jax.Array:
  """bool scalar: every floating-point leaf of ``tree`` is free of NaN and inf."""
  leaves = [x for x in jax.tree.leaves(tree) if jnp.issubdtype(x.dtype, jnp.floating)]
  return jnp.all(jnp.stack([jnp.all(jnp.isfinite(x)) for x in leaves] or [jnp.bool_(True)]))


def _divergence_remedy(grad_clip_norm: float) -> str:
  """What to change after a diverged run, given its ``optim.grad_clip_norm``."""
  if grad_clip_norm > 0:
    return f'lower optim.learning_rate or optim.grad_clip_norm, now {grad_clip_norm:g}'
  return 'lower optim.learning_rate or enable optim.grad_clip_norm'
