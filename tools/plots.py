"""Result plots as PNG files (matplotlib, headless): curves of a sweep's table.

Used by ``tools.sweep --plot``: e.g. the label-efficiency curve of ``text_classify`` or
``image_classify``, test accuracy against the label fraction (or, ``--plot_by_count``, the
number of labelled examples), one line per mode, beside the baselines.
"""

from __future__ import annotations

import io
from collections.abc import Sequence

import matplotlib

matplotlib.use('Agg')  # no display on a TPU VM or in CI; set before pyplot is imported
from matplotlib import pyplot  # pylint: disable=g-import-not-at-top,wrong-import-position
import numpy as np  # pylint: disable=g-import-not-at-top,wrong-import-position

from jaxssl import fileio  # pylint: disable=g-import-not-at-top,wrong-import-position


def _series(rows: Sequence[dict], x: str, series: Sequence[str], metric: str,
            position=None):
  """{label: (x [n], mean [n], std [n])}, sorted by x; a metric whose curve is the same for
  every value of the series axes (a baseline that ignores them) becomes one line.
  ``position(row)`` places a row on the horizontal axis (default: its value of ``x``)."""
  position = position or (lambda row: float(row[x]))
  curves = {}
  for row in rows:
    if row.get(f'{metric}_mean') is None:
      continue
    key = ', '.join(f'{a}={row[a]}' for a in series)
    curves.setdefault(key, []).append(
        (position(row), row[f'{metric}_mean'], row.get(f'{metric}_std') or 0.0))
  curves = {k: tuple(np.array(v) for v in zip(*sorted(pts))) for k, pts in curves.items()}
  values = list(curves.values())
  if len(values) > 1 and all(len(v[0]) == len(values[0][0]) and np.allclose(v[0], values[0][0])
                             and np.allclose(v[1], values[0][1]) for v in values):
    return {metric: values[0]}
  return {(f'{metric} ({k})' if k else metric): v for k, v in curves.items()}


def _x_axis(rows: Sequence[dict], x: str, count: str | None, count_as_x: bool):
  """(tick positions, tick labels, ``position(row)`` or None) of ``curves_png``'s horizontal
  axis: the values of ``x`` ("n = <count>" under each), or with ``count_as_x`` the mean
  ``count`` of each value ("<x's last part> = <value>" under each)."""
  try:
    xs = sorted({float(r[x]) for r in rows})
  except ValueError as e:
    raise ValueError(f'--plot={x!r}: its values must be numbers ({e})') from e
  means = {}
  if count is not None:
    for r in rows:
      if r.get(f'{count}_mean') is not None:
        means.setdefault(float(r[x]), r[f'{count}_mean'])
  if not count_as_x:
    return xs, [f'{v:g}\nn = {means[v]:.0f}' if v in means else f'{v:g}' for v in xs], None
  missing = [v for v in xs if v not in means]
  if missing:
    raise ValueError(f'--plot_by_count: the runs report no {count} for {x}={missing[0]:g}')
  name = x.rsplit('.', 1)[-1]  # 'label_fraction': the full field is the axis' label
  return ([float(means[v]) for v in xs], [f'{means[v]:.0f}\n{name} = {v:g}' for v in xs],
          lambda row: float(means[float(row[x])]))


def curves_png(rows: Sequence[dict], *, x: str, series: Sequence[str],
               metrics: Sequence[str], count: str | None = None,
               count_as_x: bool = False) -> bytes:
  """PNG bytes: each metric's mean against ``x`` with a +- std band over seeds.

  Args:
    rows: ``tools.tables.summarize`` rows (axis values as written in the table, numeric for
      ``x``; ``<metric>_mean`` / ``_std``).
    x: the axis on the horizontal scale (log scale when its values span 10x or more).
    series: the other axes; one line per combination of their values.
    metrics: table metrics to draw.
    count: a table metric (e.g. ``data/train_examples``) whose mean is written under each x
      tick ("n = ...").
    count_as_x: place each value of ``x`` at its ``count`` instead (e.g. the number of
      labelled examples of each label fraction), the value of ``x`` under each tick.

  Raises:
    ValueError: a value of ``x`` that is not a number, or with ``count_as_x`` one without
      a ``count``.
  """
  positions, ticks, position = _x_axis(rows, x, count, count_as_x)
  figure, axis = pyplot.subplots(figsize=(7, 4.5), dpi=120)
  for metric in metrics:
    for label, (px, mean, std) in _series(rows, x, series, metric, position).items():
      line, = axis.plot(px, mean, marker='o', label=label)
      axis.fill_between(px, mean - std, mean + std, alpha=0.15, color=line.get_color())
  if min(positions) > 0 and max(positions) / min(positions) >= 10:
    axis.set_xscale('log')
  axis.set_xticks(positions, ticks)
  axis.minorticks_off()
  axis.set_xlabel(f'{count} (at {x})' if count_as_x else x)
  axis.set_ylabel(', '.join(metrics) if len(metrics) == 1 else 'metric')
  axis.grid(alpha=0.3)
  axis.legend(fontsize='small')
  figure.tight_layout()
  out = io.BytesIO()
  figure.savefig(out, format='png')
  pyplot.close(figure)
  return out.getvalue()


def write_curves(path, rows: Sequence[dict], **kwargs) -> None:
  """Writes ``curves_png(rows, **kwargs)`` to ``path`` (local or a bucket), atomically."""
  fileio.write_atomic(path, curves_png(rows, **kwargs))
