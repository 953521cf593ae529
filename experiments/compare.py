r"""Every image representation learner, measured with one downstream protocol over seeds.

  python -m experiments.compare --workdir=/tmp/compare
  python -m experiments.compare --workdir=/tmp/compare --config.seeds=0,1,2,3,4 \
      --config.methods=simclr,byol --config.max_train_steps=1500

For each method in ``methods`` (autoencoder, vae, simclr, byol) and each seed, the
experiment's default config with that seed (its run length capped at ``max_train_steps``)
trains in ``WORKDIR/<method>/steps_<num_train_steps>/seed_<seed>``, or is reused if that
run already finished (an interrupted one resumes; another ``max_train_steps`` trains new
runs beside the old ones). Its frozen encoder (``experiments.encoders``) and the same encoder
at its random initialisation are then measured by ``jaxssl.eval.representation`` with the
``eval`` block below (the same for every method): linear-probe accuracy, weighted-kNN
accuracy and the adjusted Rand index of k-means on the test features. Raw pixels (the
flattened image as its own feature) are the other baseline.

Writes ``WORKDIR/results.md`` (method x metric, mean +- std over seeds with ddof=1, the
table printed at the end), ``WORKDIR/results.csv`` (the same numbers) and
``WORKDIR/results.json`` (every metric of every run); ``summary.json`` holds the means.
Not part of CI: the default took 44.5 minutes on 2 CPU cores (README has the table).
"""

from __future__ import annotations

import json
import os
import time

import ml_collections

from experiments import encoders, simclr, tables
from jaxssl.data import images
from jaxssl.eval import representation
from jaxssl.train import checkpoint, cli, writers

EXPERIMENT = 'compare'
METRICS = ('linear_probe_accuracy', 'knn_accuracy', 'kmeans_ari')
RAW_PIXELS = 'raw pixels'


def get_config() -> ml_collections.ConfigDict:
  """Three seeds of the four learners on the digits, each run capped at 1,000 steps."""
  c = ml_collections.ConfigDict()
  c.seeds = (0, 1, 2)  # One training run (and one evaluation seed) per seed.
  c.methods = encoders.LEARNERS  # Which learners to train and measure.
  c.max_train_steps = 1000  # Cap on each run's num_train_steps (SimCLR/BYOL: their default).
  c.smoke = False  # Start from each learner's smoke_config (tiny models; for tests).
  c.data = images.data_config()  # The data of every run (and of the raw-pixel baseline).
  c.eval = simclr.representation_config()  # The protocol; eval.seed is set to the run's.
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
    encoders.module_of(method)
  if not isinstance(config.max_train_steps, int) or config.max_train_steps < 1:
    raise ValueError(f'max_train_steps={config.max_train_steps} must be an integer >= 1')
  images.check_config(config)
  representation.check_config(config.eval)


def run_config(method: str, seed: int, config: ml_collections.ConfigDict):
  """The learner's default (or smoke) config for one comparison run."""
  module = encoders.module_of(method)
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


def measure_runs(config: ml_collections.ConfigDict, workdir: str) -> dict[str, list[dict]]:
  """{row name: [metrics of each seed]}: raw pixels, then each method and its random init."""
  data = images.load_images(config.data)
  representation.check_fits(config.eval, len(data.test['label']))
  rows = {RAW_PIXELS: [_measure(_raw_pixels, {}, data, config.eval, s) for s in config.seeds]}
  for method in _methods(config):
    module = encoders.module_of(method)
    trained, random = [], []
    for seed in config.seeds:
      run = run_config(method, seed, config)
      run_dir = os.path.join(workdir, method, f'steps_{run.num_train_steps}', f'seed_{seed}')
      try:
        module.train_and_evaluate(run, run_dir)
      except ValueError as e:
        raise ValueError(f'{method} run in {run_dir}: {e}') from e
      encoder = encoders.load(run_dir)
      trained.append(_measure(encoder.embed_fn, encoder.variables, data, config.eval, seed))
      fresh = encoders.fresh(method, encoder.config)
      random.append(_measure(fresh.embed_fn, fresh.variables, data, config.eval, seed))
    rows[method] = trained
    rows[f'{method} (random init)'] = random
  return rows


def table(rows: dict[str, list[dict]]) -> list[dict]:
  """Means and standard deviations over seeds (``tables.summarize``).

  Args:
    rows: {row name: [one {metric: value} dict per seed]}, metrics as in ``METRICS``
      (accuracies and ARI, unitless in [0, 1] or [-0.5, 1]).

  Returns:
    One dict per row, in order: ``method`` (the row name), ``seeds`` (count), and for each
    metric ``<metric>_mean`` and ``<metric>_std`` (sample std, ddof=1; NaN for one seed).
  """
  return tables.summarize([({'method': name}, runs) for name, runs in rows.items()], METRICS)


def markdown(summary_rows: list[dict]) -> str:
  """The ``table`` rows as a GitHub Markdown table: one line per row, each metric as
  ``mean +- std`` to 4 decimals, ending with a newline."""
  return tables.markdown(summary_rows, ('method',), METRICS)


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict:
  """Runs (or reuses) every training run and writes the tables.

  Returns:
    The summary written to ``WORKDIR/summary.json``: ``eval/<row>/<metric>`` means.

  Raises:
    ValueError: a bad config field, a workdir of another experiment, or as the experiments
      it runs (naming the run's folder).
  """
  t_start = time.time()
  validate_config(config)
  checkpoint.open_workdir(workdir, experiment=EXPERIMENT, config=config)
  rows = measure_runs(config, workdir)
  summary_rows = table(rows)
  text = tables.write_results(workdir, summary_rows, ('method',), METRICS)
  writers.write_json(os.path.join(workdir, 'results.json'),
                     {'seeds': list(config.seeds), 'runs': rows})
  print(text)
  summary = {f'eval/{r["method"]}/{m}': r[f'{m}_mean'] for r in summary_rows for m in METRICS}
  summary.update(experiment=EXPERIMENT, config=json.loads(json.dumps(config.to_dict())),
                 wall_time_s=time.time() - t_start)
  writers.write_json(os.path.join(workdir, 'summary.json'), summary)
  return summary


if __name__ == '__main__':
  cli.run(get_config, train_and_evaluate)
