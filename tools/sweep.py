r"""A grid of one experiment's config values over seeds, and its table of mean +- std.

  python -m tools.sweep --experiment=mlm_pretrain --workdir=runs/lr --seeds=0,1,2 \
      --set='optim.learning_rate=1e-3,3e-4' --set=num_train_steps=200
  python -m tools.sweep --experiment=autoencoder --workdir=runs/ae --base=smoke \
      --set='model.widths=(4,8),(8,16)' --set=method.noise_std=0,0.3 --print_commands

``--set=FIELD=V1,V2,...`` (repeatable) gives a dotted field of the experiment's config (any
field but ``seed``) several values: a grid axis; with one value it is a fixed override of
every run. Values are parsed as the field's type: int, float (``1e-3``), bool (``true`` /
``false``), str (no commas), or tuple, written in parentheses with its elements separated by
commas: ``model.widths=(8,16)`` is one value, ``model.widths=(8,16),(16,32)`` two (commas
inside parentheses do not separate values). ``--base=smoke`` starts from the experiment's
``smoke_config()`` instead of ``get_config()``. A misspelt field, a value of the wrong type,
bad seeds or a config value the experiment rejects end in one ``error:`` line before any run
trains.

Every setting (one value of each axis, in ``--set`` order) trains with each seed of
``--seeds`` in ``WORKDIR/<setting>/seed_<seed>``, one run after the other in this process,
through the experiment's own ``train_and_evaluate``. The setting's folder name lists its
axis values, ``<field>=<value>`` joined by commas (tuples as ``8-16``; other characters
outside ``[A-Za-z0-9._+-]`` become ``_``; ``base`` without axes), e.g.
``optim.learning_rate=0.001,model.widths=8-16``. A run whose ``summary.json`` records
exactly this run's config is finished and only read (``jaxssl.train.summary``); any other
run is started, and resumes from its checkpoints if it has some (an interrupted run, or a
longer ``num_train_steps``). So the same command again trains nothing, and deleting a run's
folder re-runs that run; an unreadable ``summary.json`` is an error naming it.
A run that fails (a bad value, missing data, divergence) stops the sweep with one ``error:``
line naming its folder; the finished runs stay. With ``--keep_going`` the other runs still
train, the tables count each setting's finished seeds (``seeds``) and give the failures and
their reasons in a ``failed`` column, and the sweep then exits 1 naming every failed run.

Writes ``WORKDIR/results.md`` and ``WORKDIR/results.csv``: one row per setting, its axis
values, the number of seeds, and for each numeric ``eval/*`` metric of the runs' summaries
(and ``test/*``, ``data/train_examples`` where runs report them: ``run_metrics``) its mean
and sample std (ddof=1) over seeds (empty where a run lacks it; a setting with
one finished seed has no std: ``0.1234 +- -`` in Markdown, an empty CSV cell).
``WORKDIR/summary.json`` (experiment ``sweep``) holds the means as
``eval/<setting>/<metric>`` (``test/<setting>/<metric>``) and the sweep's config.
``--plot=FIELD`` (a numeric axis) also writes ``WORKDIR/curves.png``: ``--plot_metrics``
against that field, a line per value of the other axes (the label-efficiency curve of
``experiments.text_classify`` and ``image_classify``, README); with ``--plot_by_count`` the
horizontal axis is the number of labelled examples (``data/train_examples``) instead.
``--select=FIELD:METRIC`` chooses a hyperparameter on validation: ``WORKDIR/selected.md`` /
``.csv`` keep, for each combination of the other axes, the FIELD value with the highest mean
``eval/METRIC`` over seeds, and report its ``test/*`` metrics (a test metric is never
selected on); the plot then shows those rows.

``--print_commands`` prints one ``python -m experiments.<experiment> --workdir=...
--config.<field>=<value> ...`` line per run (the seed, the base config's differences from
``get_config()``, then the ``--set`` fields) and exits without training: for a cluster
scheduler or TPU VMs. The same sweep command afterwards reads their summaries and writes the
tables. Config values are then only type-checked (the experiment's checks need the target's
device count).
"""

from __future__ import annotations

import copy
import difflib
import hashlib
import itertools
import re
import shlex
import sys
import time
from typing import Any, NamedTuple, Sequence

import jax
import ml_collections
from absl import app, flags, logging

import experiments
from jaxssl import config_checks, fileio
from jaxssl.train import cli, preemption, writers
from jaxssl.train import workdir as workdir_lib
from tools import plots, tables

EXPERIMENT = 'sweep'
EXPERIMENTS = experiments.EXPERIMENTS  # the experiments a sweep can run
BASES = ('default', 'smoke')
RUN_ERRORS = cli.RUN_ERRORS  # what a run reports as one error line
MAX_FOLDER_CHARS = 120


class Grid(NamedTuple):
  """Parsed ``--set`` flags: ``fixed`` {field: value} for every run, ``axes`` {field: values}
  whose product gives the settings; both in ``--set`` order."""
  fixed: dict[str, Any]
  axes: dict[str, tuple]


class Run(NamedTuple):
  """One training run: its setting's folder name and {axis field: value}, seed, resolved
  config and workdir (``WORKDIR/<folder>/seed_<seed>``)."""
  folder: str
  setting: dict[str, Any]
  seed: int
  config: ml_collections.ConfigDict
  workdir: str


# ----------------------------------------------------------------------------- parsing

def module_of(experiment: str):
  """The experiment's module; ValueError naming ``--experiment`` for an unknown one."""
  try:
    return experiments.module_of(experiment)
  except ValueError as e:
    raise ValueError(f'--experiment={e}') from e


def parse_seeds(text: str) -> tuple[int, ...]:
  """``'0,1,2'`` -> (0, 1, 2); '' -> () (``plan`` checks the values).

  Raises:
    ValueError: an item that is not an integer.
  """
  items = [s.strip() for s in text.split(',')] if text.strip() else []
  for s in items:
    if not re.fullmatch(r'[+-]?\d+', s):
      raise ValueError(f'--seeds={text}: {s!r} is not an integer')
  return tuple(int(s) for s in items)


SCALARS = (bool, int, float, str)  # the field types --set parses, and tuples of them
# Not ml_collections' own ``--config.FIELD`` parsers (private, ``config_flags``): they read
# '8' and '8,16' as tuples (here commas separate grid values), '(1,10)' for a float tuple
# as ints, '(8,x)' as the one-string tuple ('(8,x)',), and '1' as True.


def _scalar(kind: type, text: str, field: str):
  """``text`` as a ``kind`` (one of ``SCALARS``) value of ``field``."""
  if kind is bool:
    if text.lower() not in ('true', 'false'):
      raise ValueError(f'--set {field}: {text!r} is not a bool (true or false)')
    return text.lower() == 'true'
  try:
    return kind(text)
  except ValueError:
    article = 'an' if kind is int else 'a'
    raise ValueError(f'--set {field}: {text!r} is not {article} {kind.__name__}') from None


def _tuple(current: tuple, text: str, field: str) -> tuple:
  """``'(8,16)'`` -> (8, 16), elements parsed as those of ``current`` (as str if it is
  empty or mixed)."""
  kinds = {type(x) for x in current}
  kind = kinds.pop() if len(kinds) == 1 and kinds <= set(SCALARS) else str
  if not (text.startswith('(') and text.endswith(')')) or '(' in text[1:-1]:
    raise ValueError(f'--set {field}: {text!r} is not a tuple of {kind.__name__}: write each '
                     f'tuple in parentheses, e.g. {field}=(8,16), or {field}=(8,16),(16,32) '
                     'for two values')
  items = [s.strip() for s in text[1:-1].split(',')]
  if items[-1] == '':
    items.pop()  # '()' and a trailing comma as in '(8,)'
  if '' in items:
    raise ValueError(f'--set {field}: {text!r} has an empty element')
  return tuple(_scalar(kind, s, field) for s in items)


def parse_value(config: ml_collections.ConfigDict, field: str, text: str,
                experiment: str = 'the experiment') -> Any:
  """One ``--set`` value, as the type of the config field it replaces.

  Args:
    config: the base config (its fields' types decide).
    field: a dotted field, e.g. 'optim.learning_rate'.
    text: 'true'/'false' for bool, '1e-3' for float, '(8,16)' for a tuple.
    experiment: named in the errors.

  Returns:
    The value (an int given to a float field becomes a float).

  Raises:
    ValueError: no such field, a group of fields, or a value that is not of the field's type.
  """
  known = config_checks.flatten(config.to_dict())
  if field not in known:
    if any(f.startswith(f'{field}.') for f in known):
      raise ValueError(f'--set {field}: a group of fields, not a value; set one of its fields')
    close = difflib.get_close_matches(field, list(known), n=1)
    hint = f'; did you mean {close[0]}?' if close else ''
    raise ValueError(f"--set {field}: no such field in {experiment}'s config{hint}")
  kind = config_checks.field_type(config, field)  # a placeholder's value is None
  if kind is tuple:
    return _tuple(known[field], text, field)
  if kind not in SCALARS:
    raise ValueError(f'--set {field}: fields of type {kind.__name__} cannot be set here')
  return _scalar(kind, text, field)


def _split_values(text: str, field: str) -> list[str]:
  """'a,(1,2),b' -> ['a', '(1,2)', 'b']: commas inside parentheses do not split."""
  values, depth, start = [], 0, 0
  for i, ch in enumerate(text + ','):
    depth += {'(': 1, ')': -1}.get(ch, 0)
    if depth < 0:
      break
    if ch == ',' and depth == 0:
      values.append(text[start:i].strip())
      start = i + 1
  if depth:
    raise ValueError(f'--set {field}={text}: unbalanced parentheses')
  if '' in values:
    raise ValueError(f'--set {field}={text}: empty value')
  return values


def parse_sets(config: ml_collections.ConfigDict, sets: Sequence[str],
               experiment: str = 'the experiment') -> Grid:
  """The ``--set`` flags as fixed overrides and grid axes.

  Args:
    config: the base config.
    sets: 'FIELD=VALUE' or 'FIELD=V1,V2,...' strings (see the module docstring).
    experiment: named in the errors.

  Returns:
    The Grid.

  Raises:
    ValueError: no '=', an empty value, ``seed`` (set by --seeds), a field given twice, a
      value listed twice, or as ``parse_value``.
  """
  fixed, axes = {}, {}
  for item in sets:
    field, eq, text = (s.strip() for s in item.partition('='))
    if not eq or not field:
      raise ValueError(f'--set={item}: expected FIELD=VALUE or FIELD=VALUE1,VALUE2,...')
    if field == 'seed':
      raise ValueError('--set seed: the seed is set by --seeds')
    if field in fixed or field in axes:
      raise ValueError(f'--set {field} is given twice: list its values in one --set')
    values = tuple(parse_value(config, field, v, experiment) for v in _split_values(text, field))
    if len(set(values)) < len(values):
      raise ValueError(f'--set {field}={text} lists a value twice')
    if len(values) == 1:
      fixed[field] = values[0]
    else:
      axes[field] = values
  return Grid(fixed, axes)


# ----------------------------------------------------------------------------- runs

def flag_value(value: Any) -> str:
  """``value`` as ``--config.FIELD=`` reads it back: repr for floats and tuples, 'true'/
  'false', str as is. Also the table's label of a grid value."""
  if isinstance(value, bool):
    return str(value).lower()
  return repr(value) if isinstance(value, (float, tuple)) else str(value)


def folder_name(setting: dict[str, Any]) -> str:
  """A setting's folder: ``<field>=<value>`` joined by ',' ('base' for none), e.g.
  'optim.learning_rate=0.001,model.widths=8-16'; characters outside [A-Za-z0-9._+-] of a
  value become '_', and a name over ``MAX_FOLDER_CHARS`` is cut and ends with a hash of it."""
  def text(v):
    if isinstance(v, tuple):
      return '-'.join(text(x) for x in v) if v else 'empty'
    return re.sub(r'[^A-Za-z0-9._+-]', '_', flag_value(v))

  name = ','.join(f'{field}={text(v)}' for field, v in setting.items()) or 'base'
  if len(name) > MAX_FOLDER_CHARS:
    digest = hashlib.sha256(name.encode()).hexdigest()[:12]
    name = f'{name[:MAX_FOLDER_CHARS - 13]}-{digest}'
  return name


def plan(experiment: str, workdir: str, *, seeds: Sequence[int], sets: Sequence[str] = (),
         base: str = 'default') -> list[Run]:
  """Every run of the sweep, settings in grid order (the first axis slowest), seeds inner.

  Args:
    experiment: one of ``EXPERIMENTS``.
    workdir: the sweep's root folder (nothing is written here).
    seeds: integers >= 0; each run's ``seed``.
    sets: the ``--set`` strings.
    base: 'default' (``get_config()``) or 'smoke' (``smoke_config()``).

  Returns:
    One Run per (setting, seed).

  Raises:
    ValueError: an unknown experiment or base, bad seeds, a bad ``--set``, or two settings
      that give the same folder name.
  """
  module = module_of(experiment)
  if base not in BASES:
    raise ValueError(f'--base={base!r} is not one of {", ".join(BASES)}')
  if not seeds:
    raise ValueError('no seeds, so the sweep has no runs: give integers >= 0, e.g. '
                     '--seeds=0,1,2')
  for i, s in enumerate(seeds):
    if not isinstance(s, int) or isinstance(s, bool) or s < 0:
      raise ValueError(f'--seeds: {s!r} is not an integer >= 0')
    if s in seeds[:i]:
      raise ValueError(f'--seeds: {s} is listed twice')
  config = module.smoke_config() if base == 'smoke' else module.get_config()
  grid = parse_sets(config, sets, experiment)
  runs, folders = [], {}
  for values in itertools.product(*grid.axes.values()):
    setting = dict(zip(grid.axes, values))
    folder = folder_name(setting)
    if folder in folders:
      raise ValueError(f'settings {folders[folder]} and {setting} share the folder {folder}')
    folders[folder] = setting
    for seed in seeds:
      c = copy.deepcopy(config)
      for field, value in [*grid.fixed.items(), *setting.items(), ('seed', seed)]:
        config_checks.set_field(c, field, value)
      runs.append(Run(folder, setting, seed, c, fileio.join(workdir, folder, f'seed_{seed}')))
  return runs


def override_flags(default: ml_collections.ConfigDict, config: ml_collections.ConfigDict, *,
                   first: Sequence[str] = (), last: Sequence[str] = ()) -> list[str]:
  """``--config.FIELD=VALUE`` flags that turn ``default`` into ``config``.

  Args:
    default: the experiment's ``get_config()``.
    config: the config to reproduce (same fields).
    first, last: fields given first / last in this order, whether they differ or not; every
      other differing field comes between them, sorted.

  Returns:
    The flags (unquoted), values written by ``flag_value``.
  """
  base = config_checks.flatten(default.to_dict())
  values = config_checks.flatten(config.to_dict())
  middle = sorted(f for f, v in values.items()
                  if v != base.get(f) and f not in (*first, *last))
  return [f'--config.{f}={flag_value(values[f])}' for f in (*first, *middle, *last)]


def command_lines(experiment: str, runs: Sequence[Run], sets: Sequence[str] = ()) -> list[str]:
  """One shell command per run that trains it as ``python -m experiments.<experiment>``.

  Each line sets ``--config.seed``, then every field where the run's config differs from the
  experiment's ``get_config()`` (sorted) other than the ``--set`` fields, then the ``--set``
  fields in their order; arguments are quoted for a POSIX shell.
  """
  default = module_of(experiment).get_config()
  set_fields = [s.partition('=')[0].strip() for s in sets]
  lines = []
  for run in runs:
    args = [f'--workdir={run.workdir}'] + override_flags(default, run.config, first=['seed'],
                                                         last=set_fields)
    lines.append(' '.join(['python', '-m', f'experiments.{experiment}',
                           *map(shlex.quote, args)]))
  return lines


def sweep_config(experiment: str, seeds: Sequence[int], sets: Sequence[str],
                 base: str) -> ml_collections.ConfigDict:
  """The sweep's own config (``WORKDIR/config.json`` and ``summary.json``)."""
  c = ml_collections.ConfigDict()
  c.experiment = experiment  # The experiment module every run trains.
  c.base = base  # default: its get_config(); smoke: its smoke_config().
  c.seeds = tuple(seeds)  # One run per seed and setting.
  c.sets = tuple(sets)  # The --set strings, as given.
  return c


def run_metrics(summary: dict) -> dict[str, float]:
  """A run's numeric metrics for the tables: ``eval/<m>`` as ``<m>``, ``test/<m>`` (the
  once-at-the-end test of experiments that select on validation) as ``test/<m>``, and the
  number of labelled training examples ``data/train_examples`` where a run reports it."""
  out = {}
  for key, value in summary.items():
    if not isinstance(value, (int, float)) or isinstance(value, bool):
      continue
    if key.startswith('eval/'):
      out[key[len('eval/'):]] = value
    elif key.startswith('test/') or key == 'data/train_examples':
      out[key] = value
  return out


def _summary_key(folder: str, metric: str) -> str:
  if metric.startswith(('test/', 'data/')):
    kind, name = metric.split('/', 1)
    return f'{kind}/{folder}/{name}'
  return f'eval/{folder}/{metric}'


def _default_plot_metrics(names: Sequence[str]) -> list[str]:
  tests = [m for m in names if m.startswith('test/') and m != 'test/selected_step']
  return tests[:1] or [m for m in names if not m.startswith('data/')][:1]


def _write_plot(workdir: str, rows: list[dict], axes: Sequence[str], x: str,
                metrics: Sequence[str], by_count: bool = False) -> None:
  missing = [m for m in metrics if f'{m}_mean' not in rows[0]]
  if missing:
    raise ValueError(f'--plot_metrics: no metric {missing[0]!r} in the runs; they report '
                     f'{", ".join(k[:-5] for k in rows[0] if k.endswith("_mean"))}')
  if jax.process_index() == 0:
    plots.write_curves(fileio.path(workdir) / 'curves.png', rows, x=x,
                       series=[a for a in axes if a != x], metrics=metrics,
                       count='data/train_examples', count_as_x=by_count)


def parse_select(text: str) -> tuple[str, str]:
  """``FIELD:METRIC`` -> (field, metric): the axis to choose and the ``eval/`` (validation)
  metric to maximise; ``eval/`` may be left out.

  Raises:
    ValueError: not of that form, or a ``test/`` metric (choosing on test data).
  """
  field, sep, metric = text.partition(':')
  metric = metric[len('eval/'):] if metric.startswith('eval/') else metric
  if not sep or not field or not metric:
    raise ValueError(f'--select={text!r} must be FIELD:METRIC, e.g. '
                     'optim.learning_rate:accuracy')
  if metric.startswith(('test/', 'data/')):
    raise ValueError(f'--select={text!r}: choose on a validation (eval/) metric, never test')
  return field, metric


def select_rows(rows: list[dict], axes: Sequence[str], field: str, metric: str) -> list[dict]:
  """For each combination of the axes other than ``field``, the row whose ``metric`` mean is
  highest (the first on ties; rows without it never win), in first-seen order.

  Raises:
    ValueError: no row reports ``metric``.
  """
  if not any(r.get(f'{metric}_mean') is not None for r in rows):
    raise ValueError(f'--select: no run reports eval/{metric}')
  best = {}
  for row in rows:
    key = tuple(row[a] for a in axes if a != field)
    value = row.get(f'{metric}_mean')
    if value is not None and (key not in best or value > best[key][f'{metric}_mean']):
      best[key] = row
  return list(best.values())


def run_sweep(experiment: str, workdir: str, *, seeds: Sequence[int], sets: Sequence[str] = (),
              base: str = 'default', keep_going: bool = False, plot: str | None = None,
              plot_metrics: Sequence[str] = (), select: tuple[str, str] | None = None,
              plot_by_count: bool = False) -> dict:
  """Trains (or reads) every run of the sweep, then writes the tables.

  Args:
    experiment, workdir, seeds, sets, base: as ``plan``.
    keep_going: a run that fails with one of ``RUN_ERRORS`` (e.g. FloatingPointError for a
      diverged loss) is recorded and the others still run; the tables then count only the
      finished seeds of each setting and give the failures in a ``failed`` column, and the
      sweep raises at the end. Without it, the first failure stops the sweep (no tables).
    plot: a numeric grid axis (e.g. ``data.label_fraction``): ``WORKDIR/curves.png`` shows
      each of ``plot_metrics`` (default: the first ``test/*`` metric, else the first one)
      against it, mean +- std over seeds, one line per value of the other axes
      (``tools.plots.write_curves``).
    plot_by_count: the plot's horizontal axis is the runs' mean ``data/train_examples`` at
      each value of ``plot`` (the number of labelled examples of a label fraction).
    select: (field, metric) from ``parse_select``: ``WORKDIR/selected.md`` / ``.csv`` keep,
      per combination of the other axes, the value of ``field`` with the best mean
      validation ``metric`` (``select_rows``), with its test metrics; the plot shows those.

  Returns:
    The summary written to ``WORKDIR/summary.json``: ``eval/<setting folder>/<metric>``
    (and ``test/<setting folder>/<metric>``) means over the finished seeds (None where none
    finished), ``num_runs``,
    ``num_runs_trained`` (by this call), ``failed_runs`` ({run workdir: reason}),
    ``wall_time_s``, experiment 'sweep' and the sweep's config.

  Raises:
    ValueError: as ``plan``; a config value the experiment's ``validate_config`` rejects
      (before any run trains); a workdir of another experiment; a run that fails (named by
      its folder), or with ``keep_going`` every failed run, after the tables are written.
  """
  t_start = time.time()
  runs = plan(experiment, workdir, seeds=seeds, sets=sets, base=base)
  if select is not None and select[0] not in runs[0].setting:
    raise ValueError(f'--select={select[0]!r} is not a grid axis of this sweep (axes: '
                     f'{", ".join(runs[0].setting) or "none"})')
  if plot is not None and plot not in runs[0].setting:
    raise ValueError(f'--plot={plot!r} is not a grid axis of this sweep (axes: '
                     f'{", ".join(runs[0].setting) or "none"})')
  module = module_of(experiment)
  for run in runs:
    try:
      module.validate_config(run.config, jax.device_count())
    except ValueError as e:
      raise ValueError(f'{run.workdir}: {e}') from e
  config = sweep_config(experiment, seeds, sets, base)
  workdir_lib.start(workdir, EXPERIMENT, config)
  results, failed, trained = {}, {}, 0  # results: {folder: (setting, [metrics], [failures])}
  for i, run in enumerate(runs):
    _, per_seed, failures = results.setdefault(run.folder, (run.setting, [], []))
    try:
      summary = workdir_lib.finished_summary(run.workdir, module.EXPERIMENT, run.config)
      if summary is None:
        logging.info('run %d/%d: training %s', i + 1, len(runs), run.workdir)
        summary = module.train_and_evaluate(run.config, run.workdir)
        trained += 1
      else:
        logging.info('run %d/%d: %s is finished; reading its summary', i + 1, len(runs),
                     run.workdir)
    except RUN_ERRORS as e:
      if not keep_going:
        raise ValueError(f'{run.workdir}: {e}') from e
      failed[run.workdir] = ' '.join(str(e).split())  # one line
      logging.error('run %d/%d: %s failed: %s', i + 1, len(runs), run.workdir, e)
      failures.append(f'seed {run.seed}: {failed[run.workdir]}')
      continue
    per_seed.append(run_metrics(summary))

  axes = list(runs[0].setting)
  names = sorted({m for _, per_seed, _ in results.values() for r in per_seed for m in r})
  rows = tables.summarize(
      [({a: flag_value(v) for a, v in setting.items()}, per_seed)
       for setting, per_seed, _ in results.values()], names)
  labels = [*axes, 'seeds']
  if failed:  # the seeds column counts the finished runs only
    labels.append('failed')
    for row, (_, _, failures) in zip(rows, results.values()):
      row['failed'] = '; '.join(failures)
  print(tables.write_results(workdir, rows, labels, names))
  plotted = rows
  if select is not None:
    plotted = select_rows(rows, axes, *select)
    print(f'selected {select[0]} by the highest mean validation {select[1]}:')
    print(tables.write_results(workdir, plotted, labels, names, name='selected'))
  if plot and rows:
    _write_plot(workdir, plotted, [a for a in axes if select is None or a != select[0]], plot,
                plot_metrics or _default_plot_metrics(names), plot_by_count)
  out = {_summary_key(folder, m): row[f'{m}_mean']
         for folder, row in zip(results, rows) for m in names}
  out.update(num_runs=len(runs), num_runs_trained=trained, failed_runs=failed,
             experiment=EXPERIMENT, config=config.to_dict(), wall_time_s=time.time() - t_start)
  writers.write_json(fileio.path(workdir) / 'summary.json', out)
  if failed:
    raise ValueError(f'{len(failed)} of {len(runs)} runs failed (the tables in {workdir} hold '
                     'the others): ' + '; '.join(f'{w}: {r}' for w, r in failed.items()))
  return out


# ----------------------------------------------------------------------------- command line

def main() -> None:
  """``python -m tools.sweep``: flags as in the module docstring; any bad input or a
  failed run (with ``--keep_going``: any failed run, at the end) exits with one line
  ``error: ...`` and status 1; SIGTERM during a run's steps exits as that experiment does (its
  checkpoint saved, status 143), outside them (data preparation, summaries, tables) with
  status 143 and one line too."""
  experiment = flags.DEFINE_string('experiment', None, f'One of {", ".join(EXPERIMENTS)}.',
                                   required=True)
  workdir = flags.DEFINE_string('workdir', None, 'Root folder of the runs and tables.',
                                required=True)
  seeds = flags.DEFINE_string('seeds', '0,1,2', 'Comma-separated seeds (integers >= 0).')
  sets = flags.DEFINE_multi_string('set', [], 'FIELD=VALUE (fixed) or FIELD=V1,V2,... (a '
                                   'grid axis); tuples as (8,16). Repeatable.')
  base = flags.DEFINE_string('base', 'default', 'default: get_config(); smoke: smoke_config().')
  print_commands = flags.DEFINE_bool('print_commands', False, 'Print one command per run '
                                     'and exit without training.')
  keep_going = flags.DEFINE_bool('keep_going', False, 'Record a failed run and go on with '
                                 'the others; exit 1 at the end naming the failed runs.')
  plot = flags.DEFINE_string('plot', None, 'A numeric grid axis: WORKDIR/curves.png of '
                             '--plot_metrics against it.')
  plot_metrics = flags.DEFINE_list('plot_metrics', [], 'Table metrics to plot (e.g. '
                                   'test/accuracy,test/tfidf_accuracy); default: the first '
                                   'test/* one.')
  plot_by_count = flags.DEFINE_bool('plot_by_count', False, 'The plot\'s x axis: the '
                                     'number of labelled examples (data/train_examples) at '
                                     'each --plot value, instead of the value.')
  select = flags.DEFINE_string('select', None, 'FIELD:METRIC: per combination of the other '
                               'axes, keep the FIELD value with the best mean validation '
                               'METRIC (selected.md); the plot shows those.')

  def run_main(argv):
    if len(argv) > 1:
      raise app.UsageError(f'unexpected arguments: {argv[1:]}')
    try:
      run_seeds = parse_seeds(seeds.value)
      if print_commands.value:
        runs = plan(experiment.value, workdir.value, seeds=run_seeds, sets=sets.value,
                    base=base.value)
        print('\n'.join(command_lines(experiment.value, runs, sets.value)))
        return
      preemption.exit_on_sigterm()
      run_sweep(experiment.value, workdir.value, seeds=run_seeds, sets=sets.value,
                base=base.value, keep_going=keep_going.value, plot=plot.value,
                plot_metrics=plot_metrics.value, plot_by_count=plot_by_count.value,
                select=parse_select(select.value) if select.value else None)
    except (ValueError, OSError) as e:  # bad input; a run's failure (RUN_ERRORS) re-raised
      sys.exit(f'error: {e}')
    except preemption.Preempted as e:  # the run in progress saved its checkpoint: rerun resumes
      preemption.exit_preempted(e)

  app.run(run_main, flags_parser=cli.parse_flags)


if __name__ == '__main__':
  main()
