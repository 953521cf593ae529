r"""Every image representation learner, measured with one downstream protocol over seeds.

  python -m tools.compare --workdir=/tmp/compare
  python -m tools.compare --workdir=/tmp/compare --config.seeds=0,1,2,3,4 \
      --config.methods=simclr,byol --config.max_train_steps=1500

For each method in ``methods`` (autoencoder, vae, simclr, byol) and each seed, the
experiment's default config with that seed (its run length capped at ``max_train_steps``)
trains in ``WORKDIR/<method>/steps_<num_train_steps>/seed_<seed>``, or is reused if that
run already finished: its ``summary.json`` records its config, so it is neither trained nor
evaluated again (an interrupted one resumes; another ``max_train_steps`` trains new runs
beside the old ones). Its frozen encoder (``tools.encoders``) and the same encoder
at its random initialisation are then measured by ``jaxssl.eval.representation`` with the
``eval`` block below (the same for every method): linear-probe accuracy, weighted-kNN
accuracy and the adjusted Rand index of k-means on the test features. Raw pixels (the
flattened image as its own feature) are the other baseline.

Writes ``WORKDIR/results.md`` (method x metric, mean +- std over seeds with ddof=1, the
table printed at the end), ``WORKDIR/results.csv`` (the same numbers) and
``WORKDIR/results.json`` (every metric of every run, and a SHA-256 of each run's
``summary.json`` as it was when the run was measured); ``summary.json`` holds the means. The
same command again reads these back and measures nothing, as long as every run is still
finished and its ``summary.json`` unchanged: a run retrained in place (same config, new
training, so a new summary) makes the comparison measure again (as does deleting
``WORKDIR/summary.json``).
Not part of CI: the default took 44.5 minutes on 2 CPU cores (README has the table).

With ``--config.transfer.label_fractions='(0.01,0.1,1.0)'`` (off by default) each trained
encoder is also moved to ``transfer.data`` (the digits unless set) by
``experiments.image_classify`` in ``transfer.mode`` (finetune or probe), once per fraction,
in ``WORKDIR/transfer/<run folder>/<its summary's sha256[:12]>/<mode>_<fraction>`` (a run
retrained in place gets new transfer runs); column ``transfer_<fraction>`` is its test
accuracy. The random-init rows are the same architecture trained from scratch on the same
labels (``mode=scratch``), the raw-pixel row logistic regression on the resized pixels.
"""

from __future__ import annotations

import hashlib
import json
import time

import jax
import ml_collections
from absl import logging

import experiments
from experiments import image_classify
from jaxssl import config_checks, fileio
from jaxssl.data import image_tasks, images
from jaxssl.eval import representation
from jaxssl.train import cli, writers
from jaxssl.train import workdir as workdir_lib
from tools import encoders, tables

EXPERIMENT = 'compare'
METRICS = ('linear_probe_accuracy', 'knn_accuracy', 'kmeans_ari')
RAW_PIXELS = 'raw pixels'
TRANSFER_MODES = ('finetune', 'probe')  # the random-init rows are trained from scratch


def get_config() -> ml_collections.ConfigDict:
  """Three seeds of the four learners on the digits, each run capped at 1,000 steps."""
  c = ml_collections.ConfigDict()
  c.seeds = (0, 1, 2)  # One training run (and one evaluation seed) per seed.
  c.methods = experiments.LEARNERS  # Which learners to train and measure.
  c.max_train_steps = 1000  # Cap on each run's num_train_steps (SimCLR/BYOL: their default).
  c.smoke = False  # Start from each learner's smoke_config (tiny models; for tests).
  c.data = images.data_config()  # The data of every run (and of the raw-pixel baseline).
  c.eval = representation.digits_eval_config()  # The protocol; eval.seed is set to the run's.
  c.transfer = ml_collections.ConfigDict()
  # Label fractions of transfer.data each encoder is moved to by experiments.image_classify,
  # e.g. (0.01, 0.1, 1.0): a column transfer_<fraction> each; () is off.
  c.transfer.label_fractions = ()
  c.transfer.mode = 'finetune'  # finetune | probe.
  c.transfer.data = image_tasks.data_config()  # The target images (the digits by default).
  return c


def _methods(config) -> tuple[str, ...]:
  """``config.methods`` as names; ``--config.methods=simclr,byol`` arrives as one string."""
  names = [config.methods] if isinstance(config.methods, str) else list(config.methods)
  return tuple(n.strip() for name in names for n in name.split(',') if n.strip())


def validate_config(config: ml_collections.ConfigDict) -> None:
  """Raises ValueError naming the first bad field."""
  if not config.seeds or any(not isinstance(s, int) or s < 0 for s in config.seeds):
    raise ValueError(f'seeds={config.seeds} must be one or more integers >= 0')
  if len(config.seeds) < 2:
    raise ValueError(f'seeds={config.seeds}: a standard deviation needs at least 2 seeds')
  if not _methods(config):
    raise ValueError('methods is empty')
  for method in _methods(config):
    encoders.learner(method)
  if not isinstance(config.max_train_steps, int) or config.max_train_steps < 1:
    raise ValueError(f'max_train_steps={config.max_train_steps} must be an integer >= 1')
  images.check_config(config)
  representation.check_config(config.eval)
  fractions = tuple(config.transfer.label_fractions)
  if fractions:
    config_checks.one_of(config, 'transfer.mode', TRANSFER_MODES)
    if any(isinstance(f, bool) or not 0 < f <= 1 for f in fractions):
      raise ValueError(f'transfer.label_fractions={fractions}: each must be in (0, 1]')
    try:
      image_classify.validate_config(transfer_config(config, 'unset', 0, config.transfer.mode,
                                                     fractions[0]), jax.device_count())
    except ValueError as e:
      raise ValueError(f'transfer: {e}') from e


def metric_names(config) -> tuple[str, ...]:
  """The table's columns: ``METRICS``, then ``transfer_<fraction>`` for each fraction."""
  return METRICS + tuple(f'transfer_{f:g}' for f in config.transfer.label_fractions)


def transfer_config(config, run_dir: str, seed: int, mode: str, fraction: float):
  """``image_classify``'s default (or smoke) config moving ``run_dir``'s encoder."""
  c = image_classify.smoke_config() if config.smoke else image_classify.get_config()
  c.pretrained_workdir = run_dir
  c.seed = seed
  c.mode = mode
  c.data = ml_collections.ConfigDict(config.transfer.data.to_dict())
  c.data.label_fraction = float(fraction)
  return c


def _transfer(config, run_dir: str, seed: int, fingerprint: str, workdir: str):
  """({transfer_<f>: test accuracy} of the encoder, of its architecture from scratch, and of
  the raw-pixel baseline); finished transfer runs are only read."""
  trained, scratch, pixels = {}, {}, {}
  for fraction in config.transfer.label_fractions:
    column = f'transfer_{fraction:g}'
    for mode, out in ((config.transfer.mode, trained), ('scratch', scratch)):
      c = transfer_config(config, run_dir, seed, mode, fraction)
      where = fileio.join(workdir, 'transfer', _relative(run_dir, workdir), fingerprint[:12],
                          f'{mode}_{fraction:g}')
      summary = workdir_lib.finished_summary(where, image_classify.EXPERIMENT, c)
      if summary is None:
        summary = image_classify.train_and_evaluate(c, where)
      out[column] = summary['test/accuracy']
      if 'test/pixel_lr_accuracy' in summary:
        pixels[column] = summary['test/pixel_lr_accuracy']
  return trained, scratch, pixels


def run_config(method: str, seed: int, config: ml_collections.ConfigDict):
  """The learner's default (or smoke) config for one comparison run."""
  module = encoders.learner(method)
  c = module.smoke_config() if config.smoke else module.get_config()
  c.seed = seed
  c.data = ml_collections.ConfigDict(config.data.to_dict())
  c.num_train_steps = min(c.num_train_steps, config.max_train_steps)
  c.optim.warmup_steps = min(c.optim.warmup_steps, c.num_train_steps // 10)
  for field in ('eval_every_steps', 'checkpoint_every_steps'):
    c[field] = min(c[field], c.num_train_steps)
  return c


def _measure(embed_fn, variables, data, eval_config, seed: int) -> dict[str, float]:
  # eval.seed = the run's seed: the trained encoder and its random init of one seed share
  # the probe's validation split and k-means starts; over seeds those vary too.
  c = ml_collections.ConfigDict(eval_config.to_dict())
  c.seed = seed
  out = representation.evaluate_representation(embed_fn, variables, data, c)
  return {k: out[k] for k in METRICS}


def _raw_pixels(variables, x):
  del variables
  return x.reshape(x.shape[0], -1)


def _row_names(config) -> list[str]:
  """The table's rows in order: raw pixels, then each method and its random init."""
  return [RAW_PIXELS, *(n for m in _methods(config) for n in (m, f'{m} (random init)'))]


def _runs(config, workdir: str):
  """(method, seed, run config, run workdir) of every training run, methods outer."""
  for method in _methods(config):
    for seed in config.seeds:
      run = run_config(method, seed, config)
      yield method, seed, run, fileio.join(workdir, method, f'steps_{run.num_train_steps}',
                                           f'seed_{seed}')


def _relative(run_dir: str, workdir: str) -> str:
  """``run_dir`` relative to ``workdir``: ``<method>/steps_<n>/seed_<seed>``."""
  return str(fileio.path(run_dir).relative_to(fileio.path(workdir)))


def _is_finished(method: str, run: ml_collections.ConfigDict, run_dir: str) -> bool:
  experiment = encoders.learner(method).EXPERIMENT
  return workdir_lib.finished_summary(run_dir, experiment, run) is not None


def _summary_fingerprint(run_dir: str) -> str:
  """SHA-256 (hex) of the run's ``summary.json`` bytes: a retrained run writes a new one
  (its metrics and wall time differ), so the fingerprint tells which training was measured.

  Raises:
    OSError: the file cannot be read.
  """
  return hashlib.sha256((fileio.path(run_dir) / 'summary.json').read_bytes()).hexdigest()


def measure_runs(config: ml_collections.ConfigDict,
                 workdir: str) -> tuple[dict[str, list[dict]], dict[str, str]]:
  """Trains (or reuses) and measures every run.

  A run whose ``summary.json`` records its config (``summary.finished_summary``) is not
  trained (nor restored and evaluated) again; any other trains, or resumes.

  Returns:
    {row name: [metrics of each seed]} (raw pixels, then each method and its random init),
    and {run folder relative to ``workdir``: ``_summary_fingerprint``} of the summaries the
    measured checkpoints belong to.
  """
  loaded = images.load_images(config.data)
  representation.check_fits(config.eval, len(loaded.test['label']))
  data = dict(train=images.eval_train_sample(loaded.train, config.data), test=loaded.test,
              num_classes=loaded.num_classes)
  rows = {RAW_PIXELS: [_measure(_raw_pixels, {}, data, config.eval, s) for s in config.seeds]}
  fingerprints = {}
  for method, seed, run, run_dir in _runs(config, workdir):
    trained, random = rows.setdefault(method, []), rows.setdefault(f'{method} (random init)', [])
    try:
      if not _is_finished(method, run, run_dir):
        encoders.learner(method).train_and_evaluate(run, run_dir)
    except ValueError as e:
      raise ValueError(f'{method} run in {run_dir}: {e}') from e
    # Before loading: a summary rewritten in between then fails the check on the next read
    # (measured again), never the other way round.
    fingerprints[_relative(run_dir, workdir)] = _summary_fingerprint(run_dir)
    encoder = encoders.load(run_dir)
    trained.append(_measure(encoder.embed_fn, encoder.variables, data, config.eval, seed))
    fresh = encoders.fresh(method, encoder.config, encoder.image_shape)
    random.append(_measure(fresh.embed_fn, fresh.variables, data, config.eval, seed))
    if config.transfer.label_fractions:
      moved, scratch, pixels = _transfer(config, run_dir, seed,
                                         fingerprints[_relative(run_dir, workdir)], workdir)
      trained[-1].update(moved)
      random[-1].update(scratch)
      pixel_row = rows[RAW_PIXELS][config.seeds.index(seed)]
      pixel_row.update({k: v for k, v in pixels.items() if k not in pixel_row})
  return rows, fingerprints


def finished_rows(config: ml_collections.ConfigDict, workdir: str):
  """(summary, rows) of a finished comparison in ``workdir``, or None.

  Finished: ``WORKDIR/summary.json`` records this config, every run is finished (a deleted
  or changed run makes the comparison measure again), ``results.json`` reads back and each
  run's ``summary.json`` has the fingerprint stored there when it was measured (a run
  retrained in place with the same config, or results.json from before fingerprints, makes
  it measure again).

  Returns:
    The summary dict and {row name: [metrics of each seed]} as ``measure_runs``, or None.

  Raises:
    ValueError: a ``summary.json`` that is not readable (``summary.finished_summary``).
  """
  summary = workdir_lib.finished_summary(workdir, EXPERIMENT, config)
  if summary is None or not all(_is_finished(m, run, d) for m, _, run, d in
                                _runs(config, workdir)):
    return None
  try:
    results = json.loads(fileio.read_text(fileio.path(workdir) / 'results.json'))
    measured = results['run_summaries']
    for _, _, _, run_dir in _runs(config, workdir):
      if measured[_relative(run_dir, workdir)] != _summary_fingerprint(run_dir):
        logging.info('%s changed since it was measured: measuring again', run_dir)
        return None
    return summary, {name: results['runs'][name] for name in _row_names(config)}
  except (OSError, ValueError, KeyError, TypeError):
    return None  # the tables are missing or damaged: measure again


def table(rows: dict[str, list[dict]], metrics: tuple[str, ...] = METRICS) -> list[dict]:
  """Means and standard deviations over seeds (``tables.summarize``).

  Args:
    rows: {row name: [one {metric: value} dict per seed]}, metrics as in ``METRICS``
      (accuracies and ARI, unitless in [0, 1] or [-0.5, 1]) and ``metric_names``.
    metrics: the columns.

  Returns:
    One dict per row, in order: ``method`` (the row name), ``seeds`` (count), and for each
    metric ``<metric>_mean`` and ``<metric>_std`` (sample std, ddof=1; None for one seed).
  """
  return tables.summarize([({'method': name}, runs) for name, runs in rows.items()], metrics)


def markdown(summary_rows: list[dict], metrics: tuple[str, ...] = METRICS) -> str:
  """The ``table`` rows as a GitHub Markdown table: one line per row, each metric as
  ``mean +- std`` to 4 decimals, ending with a newline."""
  return tables.markdown(summary_rows, ('method',), metrics)


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict:
  """Runs (or reuses) every training run, measures the encoders and writes the tables; a
  finished comparison of this config (``finished_rows``) is only read back.

  Returns:
    The summary written to ``WORKDIR/summary.json``: ``eval/<row>/<metric>`` means.

  Raises:
    ValueError: a bad config field, a workdir of another experiment, or as the experiments
      it runs (naming the run's folder).
  """
  t_start = time.time()
  validate_config(config)
  names = metric_names(config)
  finished = finished_rows(config, workdir)
  if finished is not None:
    logging.info('%s holds this comparison, finished: reading its results', workdir)
    summary, rows = finished
    print(tables.write_results(workdir, table(rows, names), ('method',), names))
    return summary
  workdir_lib.start(workdir, EXPERIMENT, config)
  rows, fingerprints = measure_runs(config, workdir)
  summary_rows = table(rows, names)
  text = tables.write_results(workdir, summary_rows, ('method',), names)
  writers.write_json(fileio.path(workdir) / 'results.json',
                     {'seeds': list(config.seeds), 'runs': rows, 'run_summaries': fingerprints})
  print(text)
  summary = {f'eval/{r["method"]}/{m}': r[f'{m}_mean'] for r in summary_rows for m in names}
  summary.update(experiment=EXPERIMENT, config=config_checks.as_json(config.to_dict()),
                 wall_time_s=time.time() - t_start)
  writers.write_json(fileio.path(workdir) / 'summary.json', summary)
  return summary


if __name__ == '__main__':
  cli.run(get_config, train_and_evaluate)
