"""Result tables over seeds: mean and sample standard deviation per row, as Markdown and CSV.

Shared by ``tools.compare`` (one row per method) and ``tools.sweep`` (one row per
setting of a grid). A row starts with its label columns (``method``, or a sweep's grid
fields), then ``seeds``, then ``<metric>_mean`` and ``<metric>_std`` for each metric.
"""

from __future__ import annotations

import csv
import io
from typing import Sequence

import jax
import numpy as np

from jaxssl import fileio


def summarize(groups: Sequence[tuple[dict, list[dict]]], metrics: Sequence[str]) -> list[dict]:
  """Means and standard deviations over seeds.

  Args:
    groups: one ``(labels, runs)`` pair per row, in order: ``labels`` the row's leading
      columns ({column: value}), ``runs`` one {metric: value} dict per seed.
    metrics: the metrics to reduce, in column order (units as the runs report them).

  Returns:
    One dict per row: the labels, ``seeds`` (the number of runs), and for each metric
    ``<metric>_mean`` and ``<metric>_std`` (sample std, ddof=1). Both are None when the row
    has no runs (e.g. every seed of a sweep's setting failed) or a run of the row lacks the
    metric; the std alone is None for one run (a sample std needs two).
  """
  out = []
  for labels, runs in groups:
    row = dict(labels, seeds=len(runs))
    for m in metrics:
      if not runs or any(m not in r for r in runs):
        row[f'{m}_mean'] = row[f'{m}_std'] = None
        continue
      values = np.array([r[m] for r in runs], np.float64)
      row[f'{m}_mean'] = float(values.mean())
      row[f'{m}_std'] = float(values.std(ddof=1)) if len(values) > 1 else None
    out.append(row)
  return out


def markdown(rows: list[dict], labels: Sequence[str], metrics: Sequence[str]) -> str:
  """``summarize`` rows as a GitHub Markdown table, ending with a newline.

  Args:
    rows: from ``summarize``.
    labels: the leading columns to show, each printed with ``str`` ('|' escaped).
    metrics: one column each, ``mean +- std`` to 4 decimals: ``0.1234 +- 0.0056``;
      ``0.1234 +- -`` for one seed (no std); ``-`` where the metric is missing.
  """
  lines = ['| ' + ' | '.join([*labels, *metrics]) + ' |',
           '|' + ' --- |' * (len(labels) + len(metrics))]
  for row in rows:
    cells = [str(row[k]).replace('|', r'\|') for k in labels]
    cells += [_cell(row[f'{m}_mean'], row[f'{m}_std']) for m in metrics]
    lines.append('| ' + ' | '.join(cells) + ' |')
  return '\n'.join(lines) + '\n'


def _cell(mean: float | None, std: float | None) -> str:
  if mean is None:
    return '-'
  return f'{mean:.4f} +- ' + ('-' if std is None else f'{std:.4f}')


def write_results(workdir: str, rows: list[dict], labels: Sequence[str],
                  metrics: Sequence[str], name: str = 'results') -> str:
  """Writes ``WORKDIR/<name>.md`` (``markdown``) and ``WORKDIR/<name>.csv`` (every column
  of ``rows``, full precision, empty where None), each atomically; only process 0 writes.

  Returns:
    The Markdown text.
  """
  text = markdown(rows, labels, metrics)
  if jax.process_index() == 0:
    fileio.write_atomic(fileio.path(workdir) / f'{name}.md', text)
    out = io.StringIO(newline='')
    writer = csv.DictWriter(out, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
    fileio.write_atomic(fileio.path(workdir) / f'{name}.csv', out.getvalue())
  return text
