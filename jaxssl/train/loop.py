"""The flat training loop every experiment calls (or forks).

It owns the cadences (log, eval, checkpoint), the host-side metric bookkeeping and the
checks; the experiment owns the model, the step and the data. The loop never syncs with the
device between log points: per-step metrics stay device arrays until they are written.
"""

from __future__ import annotations

import dataclasses
import logging
import signal
import threading
import time
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax
from clu import metric_writers, periodic_actions

from jaxssl.data import pipeline
from jaxssl.parallel import sharding
from jaxssl.train import checkpoint, writers


class SimulatedFault(RuntimeError):
  """Raised by the loop's ``fail_at_step`` hook (tests of interruption and resume)."""


class Preempted(Exception):
  """SIGTERM (preemption) arrived: a checkpoint of ``step`` was saved and the run stopped.

  Running the same command again resumes from that checkpoint.
  """

  def __init__(self, step: int):
    super().__init__(f'preempted (SIGTERM) at step {step}: its checkpoint is saved; run '
                     'the same command again to resume')
    self.step = step


class _Preemption:
  """Notices SIGTERM while installed (``with``): one process flags it locally; several
  processes use JAX's preemption sync point, so all of them stop at the same step. A flagged
  SIGTERM that nobody acted on (the block ended without an exception) is sent again on exit,
  to the handler that was there before (the command line's, or the default), unless
  ``hand_on`` is False (an error is already on its way out and will end the run)."""

  def __init__(self, manager, hand_on: bool = True):
    self.manager, self.requested, self.hand_on = manager, False, hand_on
    self._multi = jax.process_count() > 1
    self._installed, self._previous = False, None

  def __enter__(self):
    if not self._multi and threading.current_thread() is threading.main_thread():
      self._previous = signal.signal(signal.SIGTERM, self._handle)
      self._installed = True
    return self

  def _handle(self, signum, frame):  # only sets a flag: logging here could re-enter a log call
    del signum, frame
    self.requested = True

  def __exit__(self, exc_type, *exc):
    if self._installed:  # None: the previous handler was not set from Python
      signal.signal(signal.SIGTERM, signal.SIG_DFL if self._previous is None else self._previous)
      if self.requested and exc_type is None and self.hand_on:
        signal.raise_signal(signal.SIGTERM)

  def due(self, step: int) -> bool:
    """True when the run should checkpoint ``step`` and stop (call it at every step)."""
    if self._multi:
      return self.manager.reached_preemption(step)
    if self.requested:
      logging.warning('SIGTERM received: checkpointing step %d, then stopping', step)
    return self.requested


@dataclasses.dataclass
class Cadence:
  """How often the loop does its periodic work, in optimizer steps (0 = only at the end)."""
  num_train_steps: int
  log_every_steps: int
  eval_every_steps: int
  checkpoint_every_steps: int

  def due(self, every: int, step: int) -> bool:
    return step == self.num_train_steps or (every > 0 and step % every == 0)


def _flush(pending: list[tuple[int, dict]], writer, *, elapsed_s: float,
           tokens_per_step: int, examples_per_step: int, max_skipped: int = 0,
           streak: int = 0, grad_clip_norm: float = 0.0) -> tuple[dict[str, float], int]:
  """Moves pending per-step metrics to the host, checks them and writes their means.

  A step with a non-finite metric raises FloatingPointError, unless it is one of at most
  ``max_skipped`` such steps in a row (``optim.skip_nonfinite_updates``: the optimizer
  dropped its update); those are left out of the means and counted in ``skipped_steps``.
  ``streak`` is the run of non-finite steps that ended the previous flush;
  ``grad_clip_norm`` (the run's ``optim.grad_clip_norm``) words the error's remedy.

  Returns:
    (the written means, the run of non-finite steps at the end of this flush).
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
  summary = {name: float(np.mean([m[name] for m in finite])) for name in values[0]} if finite \
      else {}
  if 'learning_rate' in summary:
    summary['learning_rate'] = float(finite[-1]['learning_rate'])
  if max_skipped:
    summary['skipped_steps'] = float(skipped)
  summary['steps_per_sec'] = len(steps) / elapsed_s
  if tokens_per_step:
    summary['tokens_per_sec'] = len(steps) * tokens_per_step / elapsed_s
  if examples_per_step:
    summary['examples_per_sec'] = len(steps) * examples_per_step / elapsed_s
  writer.write_scalars(steps[-1], {f'train/{k}': v for k, v in summary.items()})
  return summary, streak


def skipped_in_a_row(state) -> int:
  """Non-finite updates that ``optax.apply_if_finite`` (``optim.skip_nonfinite_updates``) has
  dropped in a row up to ``state``: the largest ``notfinite_count`` in it (several
  optimizers: the DCGAN's two), 0 without that wrapper. A resumed run continues this count,
  so it stops where the uninterrupted run would."""
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


def run(state, *, train_step: Callable, get_batch: Callable[[int], Any], rng: jax.Array,
        cadence: Cadence, writer: metric_writers.MetricWriter, manager,
        meta: dict, eval_fn: Callable[[Any, int], dict[str, float]] | None = None,
        tokens_per_step: int = 0, examples_per_step: int = 0, max_skipped_steps: int = 0,
        grad_clip_norm: float = 0.0, fail_at_step: int | None = None):
  """Trains from ``state.step`` to ``cadence.num_train_steps``.

  Args:
    state: a TrainState (fresh or restored), already on the mesh.
    train_step: jitted ``(state, batch, rng) -> (state, metrics)``; metrics are scalars.
    get_batch: ``step -> batch`` of global arrays on the mesh (a pure function of the step).
      The batch of step s + 1 is fetched right after step s is dispatched, before any
      logging or checkpoint wait, so its host work and transfer overlap step s's compute
      (JAX dispatches asynchronously) at every step, sync points included.
    rng: the run's root key; the step derives its per-step keys from it and ``state.step``.
    cadence: log/eval/checkpoint periods.
    writer: CLU writer; train metrics go out as ``train/<name>``.
    manager: Orbax CheckpointManager (see ``checkpoint.make_manager``).
    meta: JSON-able dict saved with each checkpoint.
    eval_fn: ``(state, step) -> {name: value}``; written as ``eval/<name>``.
    tokens_per_step: tokens per global batch, for ``train/tokens_per_sec`` (0: not written).
    examples_per_step: examples (images) per global batch, for ``train/examples_per_sec``.
    max_skipped_steps: non-finite steps in a row that are tolerated because the optimizer
      drops their updates (``optim.skip_nonfinite_updates``; 0: none).
    grad_clip_norm: the run's ``optim.grad_clip_norm``, for the divergence error's remedy.
    fail_at_step: test hook: raise ``SimulatedFault`` right after this step's work.

  Returns:
    (state, last_eval): the final state and the metrics of the last evaluation (or {}).

  Raises:
    FloatingPointError: a non-finite train metric (beyond ``max_skipped_steps`` in a row),
      naming the step. Metrics are checked at every log point and before every checkpoint,
      so no checkpoint holds a diverged state.
    Preempted: SIGTERM arrived; the step being dispatched when it arrived was finished and
      checkpointed (the save is complete when this is raised), its evaluation skipped. JAX
      runs ahead of the device, so that step can be a few past the one computing; a SIGTERM
      during an evaluation is seen when the evaluation ends. One arriving during the last
      step's evaluation or save (one process) raises this once that save is complete; a
      rerun restores the final step and evaluates it.
  """
  with _Preemption(manager) as preemption:
    first = int(jax.device_get(state.step))
    report = periodic_actions.ReportProgress(num_train_steps=cadence.num_train_steps,
                                             writer=writer, every_secs=30)
    pending, last_eval, streak = [], {}, skipped_in_a_row(state) if max_skipped_steps else 0
    t_log = time.perf_counter()
    batch = get_batch(first) if first < cadence.num_train_steps else None
    for step in range(first, cadence.num_train_steps):
      state, metrics = train_step(state, batch, rng)
      done = step + 1
      if done < cadence.num_train_steps:  # prefetch: built while the step computes
        batch = get_batch(done)
      pending.append((done, metrics))
      report(done)
      preempted = preemption.due(done)
      checkpoint_due = preempted or cadence.due(cadence.checkpoint_every_steps, done)
      if pending and (cadence.due(cadence.log_every_steps, done) or checkpoint_due):
        now = time.perf_counter()
        _, streak = _flush(pending, writer, elapsed_s=now - t_log,
                           tokens_per_step=tokens_per_step, examples_per_step=examples_per_step,
                           max_skipped=max_skipped_steps, streak=streak,
                           grad_clip_norm=grad_clip_norm)
        pending, t_log = [], now
      if eval_fn is not None and cadence.due(cadence.eval_every_steps, done) and not preempted:
        with report.timed('eval'):
          last_eval = eval_fn(state, done)
        writer.write_scalars(done, {f'eval/{k}': v for k, v in last_eval.items()})
        t_log = time.perf_counter()
      if checkpoint_due:
        if max_skipped_steps and not _all_finite(state):  # metrics missed a bad update
          raise FloatingPointError(f'the train state is non-finite at step {done} although '
                                   'its metrics were finite; not checkpointed')
        checkpoint.save(manager, done, state, meta)
      if preempted:
        writer.flush()
        manager.wait_until_finished()
        raise Preempted(done)
      if fail_at_step is not None and done == fail_at_step:
        raise SimulatedFault(f'simulated fault after step {done}')
    writer.flush()
    manager.wait_until_finished()
    if preemption.requested:  # arrived during the last step's evaluation or save
      logging.warning('SIGTERM received after the last step: its checkpoint is saved')
      raise Preempted(cadence.num_train_steps)
    logging.info('training finished at step %d', cadence.num_train_steps)
    return state, last_eval


def sum_over_split(eval_fn: Callable, params, rows: dict, mesh, *,
                   global_batch_size: int) -> dict[str, float]:
  """Adds up ``eval_fn``'s sums over every row of a held-out split (each row once).

  Args:
    eval_fn: jitted ``(params, batch) -> {name: f32 scalar sum}``; ``batch`` has the keys of
      ``rows`` plus ``weights`` [b] (0.0 for the padding rows of the last batch) and
      ``index`` [b] (see ``data.pipeline.eval_batches``).
    params: the parameters, on the mesh.
    rows: the split's arrays with a shared leading dimension N.
    mesh: the mesh the batches are placed on.
    global_batch_size: rows per eval batch over all processes.

  Returns:
    {name: float} totals over the split.
  """
  totals = None
  for batch in pipeline.eval_batches(rows, global_batch_size=global_batch_size,
                                     process_index=jax.process_index(),
                                     process_count=jax.process_count()):
    sums = eval_fn(params, sharding.put_batch(batch, mesh))
    totals = sums if totals is None else jax.tree.map(lambda a, b: a + b, totals, sums)
  return jax.tree.map(float, jax.device_get(totals))


def per_example_over_split(eval_fn: Callable, params, rows: dict, mesh, *,
                           global_batch_size: int) -> dict[str, np.ndarray]:
  """Gathers ``eval_fn``'s per-row values over every real row of a held-out split, in order.

  The per-example counterpart of `sum_over_split`, for metrics the host must see row by row
  (an AUROC, or a mean that a test recomputes).

  Args:
    eval_fn: jitted ``(params, batch) -> {name: [b] array}``, one value per row of the batch
      (keys of ``rows`` plus ``weights`` and ``index``, see ``data.pipeline.eval_batches``),
      including ``weights`` [b] passed through, so padding rows can be dropped.
    params: the parameters, on the mesh.
    rows: the split's arrays with a shared leading dimension N.
    mesh: the mesh the batches are placed on.
    global_batch_size: rows per eval batch over all processes.

  Returns:
    {name: numpy [N]}: the real rows only (``weights`` removed), in the split's order.
  """
  per_row = {}
  for batch in pipeline.eval_batches(rows, global_batch_size=global_batch_size,
                                     process_index=jax.process_index(),
                                     process_count=jax.process_count()):
    out = jax.device_get(eval_fn(params, sharding.put_batch(batch, mesh)))
    for name, value in out.items():
      per_row.setdefault(name, []).append(np.asarray(value))
  per_row = {name: np.concatenate(values) for name, values in per_row.items()}
  real = per_row.pop('weights') > 0
  return {name: values[real] for name, values in per_row.items()}


def steps_for_epochs(config, num_examples: int, *, unit: str = 'examples') -> int:
  """The length of a run counted in epochs with a step cap, checked against the warmup.

  min(``num_epochs`` * (num_examples // ``global_batch_size``), ``num_train_steps``): the
  last partial batch of an epoch is not a step, and ``num_train_steps`` caps large datasets.

  Args:
    config: with ``num_epochs``, ``num_train_steps``, ``global_batch_size`` and
      ``optim.warmup_steps``.
    num_examples: training examples available.
    unit: what the examples are, for the error message ('images').

  Returns:
    The number of optimizer steps, >= max(1, optim.warmup_steps).

  Raises:
    ValueError: the data gives no step, or fewer steps than the warmup.
  """
  steps = min(config.num_train_steps,
              config.num_epochs * (num_examples // config.global_batch_size))
  if steps < 1 or config.optim.warmup_steps > steps:
    raise ValueError(f'{num_examples} training {unit} give {steps} steps of '
                     f'global_batch_size={config.global_batch_size}, fewer than '
                     f'optim.warmup_steps={config.optim.warmup_steps} or none at all')
  return steps


def batch_getter(rows: dict, mesh, *, seed: int, global_batch_size: int) -> Callable:
  """``step -> batch`` on the mesh: this process's slice of ``pipeline.train_batch``."""
  def get_batch(step):
    return sharding.put_batch(pipeline.train_batch(
        rows, step, seed=seed, global_batch_size=global_batch_size,
        process_index=jax.process_index(), process_count=jax.process_count()), mesh)
  return get_batch


def run_and_close(state, *, config, num_train_steps: int, train_step: Callable,
                  get_batch: Callable[[int], Any], writer, manager, meta: dict,
                  eval_fn: Callable[[Any, int], dict[str, float]],
                  tokens_per_step: int = 0, examples_per_step: int = 0,
                  fail_at_step: int | None = None):
  """``run`` with the cadences and root key of ``config``, then an evaluation if the run was
  already finished (a re-run of a complete workdir), always closing ``manager`` and
  ``writer`` (pending checkpoint writes are finished first, also on errors).

  Args:
    config: the experiment config (``seed``, ``log_every_steps``, ``eval_every_steps``,
      ``checkpoint_every_steps``); the step's root key is ``fold_in(key(seed), 1)``.
    num_train_steps: the run's length in steps.
    Others: as for ``run``.

  Returns:
    (state, last_eval).
  """
  cadence = Cadence(num_train_steps, config.log_every_steps, config.eval_every_steps,
                    config.checkpoint_every_steps)
  failed = True
  try:
    state, last_eval = run(
        state, train_step=train_step, get_batch=get_batch,
        rng=jax.random.fold_in(jax.random.key(config.seed), 1), cadence=cadence,
        writer=writer, manager=manager, meta=meta, eval_fn=eval_fn,
        tokens_per_step=tokens_per_step, examples_per_step=examples_per_step,
        max_skipped_steps=config.optim.get('skip_nonfinite_updates', 0),
        grad_clip_norm=config.optim.get('grad_clip_norm', 0.0), fail_at_step=fail_at_step)
    if not last_eval:  # resumed at the final step: evaluate what was restored
      last_eval = eval_fn(state, int(jax.device_get(state.step)))
    failed = False
  finally:
    # A SIGTERM waits for the checkpoint saves; an error on its way out keeps its own line.
    with _Preemption(manager, hand_on=not failed):
      manager.wait_until_finished()
      manager.close()
    writer.close()
  return state, last_eval


def run_and_summarize(state, *, experiment: str, workdir: str, config, info: dict,
                      restored_from_step: int | None, start_time: float,
                      extra_meta: dict | None = None, **run_kwargs) -> dict:
  """The end of every ``train_and_evaluate``: ``run_and_close``, then ``summary.json``.

  Every checkpoint's JSON meta holds the experiment name, the resolved config and the data's
  sha256 (``info['data/sha256']``), which ``checkpoint.open_workdir``/``check_data`` compare
  on resume, plus ``extra_meta``.

  Args:
    experiment: the experiment's name.
    workdir: the run's output folder.
    config: the experiment config (see ``run_and_close``).
    info: data facts for the summary; must hold ``data/sha256``.
    restored_from_step: the step the run resumed from, or None.
    start_time: ``time.time()`` when the run started; the summary's ``wall_time_s`` is
      measured from it (seconds).
    extra_meta: more JSON-serialisable entries for the checkpoints' meta.
    **run_kwargs: ``num_train_steps``, ``train_step``, ``get_batch``, ``writer``,
      ``manager``, ``eval_fn`` and optional arguments of ``run_and_close``.

  Returns:
    The summary dict (see ``writers.write_summary``).
  """
  meta = {'experiment': experiment, 'config': config.to_dict(),
          'data_sha256': info['data/sha256'], **(extra_meta or {})}
  state, last_eval = run_and_close(state, config=config, meta=meta, **run_kwargs)
  return writers.write_summary(workdir, experiment=experiment, config=config, state=state,
                               last_eval=last_eval, info=info,
                               restored_from_step=restored_from_step,
                               wall_time_s=time.time() - start_time)
