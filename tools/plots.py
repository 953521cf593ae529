"""Result plots as PNG files (matplotlib, headless): curves of a sweep's table.

Used by ``tools.sweep --plot``: e.g. the label-efficiency curve of ``text_classify``, test
accuracy against the label fraction, one line per mode, beside the baselines.
"""

from __future__ import annotations

import io
from collections.abc import Sequence

import matplotlib

matplotlib.use('Agg')  # no display on a TPU VM or in CI; set before pyplot is imported
from matplotlib import pyplot  # pylint: disable=g-import-not-at-top,wrong-import-position
import numpy as np  # pylint: disable=g-import-not-at-top,wrong-import-position

from jaxssl import fileio  # pylint: disable=g-import-not-at-top,wrong-import-position


def _series(rows: Sequence[dict], x: str, series: Sequence[str], metric: str):
  """{label: (x [n], mean [n], std [n])}, sorted by x; a metric whose curve is the same for
  every value of the series axes (a baseline that ignores them) becomes one line."""
  curves = {}
  for row in rows:
    if row.get(f'{metric}_mean') is None:
      continue
    key = ', '.join(f'{a}={row[a]}' for a in series)
    curves.setdefault(key, []).append(
        (float(row[x]), row[f'{metric}_mean'], row.get(f'{metric}_std') or 0.0))
  curves = {k: tuple(np.array(v) for v in zip(*sorted(pts))) for k, pts in curves.items()}
  values = list(curves.values())
  if len(values) > 1 and all(len(v[0]) == len(values[0][0]) and np.allclose(v[0], values[0][0])
                             and np.allclose(v[1], values[0][1]) for v in values):
    return {metric: values[0]}
  return {(f'{metric} ({k})' if k else metric): v for k, v in curves.items()}


def curves_png(rows: Sequence[dict], *, x: str, series: Sequence[str],
               metrics: Sequence[str], count: str | None = None) -> bytes:
  """PNG bytes: each metric's mean against ``x`` with a +- std band over seeds.

  Args:
    rows: ``tools.tables.summarize`` rows (axis values as written in the table, numeric for
      ``x``; ``<metric>_mean`` / ``_std``).
    x: the axis on the horizontal scale (log scale when its values span 10x or more).
    series: the other axes; one line per combination of their values.
    metrics: table metrics to draw.
    count: a table metric (e.g. ``data/train_examples``) whose mean is written under each x
      tick ("n = ...").

  Raises:
    ValueError: a value of ``x`` that is not a number.
  """
  try:
    xs = sorted({float(r[x]) for r in rows})
  except ValueError as e:
    raise ValueError(f'--plot={x!r}: its values must be numbers ({e})') from e
  figure, axis = pyplot.subplots(figsize=(7, 4.5), dpi=120)
  for metric in metrics:
    for label, (px, mean, std) in _series(rows, x, series, metric).items():
      line, = axis.plot(px, mean, marker='o', label=label)
      axis.fill_between(px, mean - std, mean + std, alpha=0.15, color=line.get_color())
  if min(xs) > 0 and max(xs) / min(xs) >= 10:
    axis.set_xscale('log')
  ticks = [f'{v:g}' for v in xs]
  if count is not None:
    means = {}
    for r in rows:
      if r.get(f'{count}_mean') is not None:
        means.setdefault(float(r[x]), r[f'{count}_mean'])
    ticks = [f'{t}\nn = {means[v]:.0f}' if v in means else t for t, v in zip(ticks, xs)]
  axis.set_xticks(xs, ticks)
  axis.minorticks_off()
  axis.set_xlabel(x)
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
