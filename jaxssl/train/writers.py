"""CLU metric writers and the run's JSON outputs."""

from __future__ import annotations

import json
import os

import jax
from clu import metric_writers


def create_writer(workdir: str) -> metric_writers.MetricWriter:
  """TensorBoard event files in ``workdir`` plus console logging (process 0 only)."""
  return metric_writers.create_default_writer(workdir, just_logging=jax.process_index() > 0)


def write_json(path: str, obj: dict) -> None:
  """Writes ``obj`` as indented JSON atomically (tmp + rename); only process 0 writes."""
  if jax.process_index() != 0:
    return
  tmp = f'{path}.tmp'
  with open(tmp, 'w', encoding='utf-8') as f:
    json.dump(obj, f, indent=2, sort_keys=True, default=str)
    f.write('\n')
  os.replace(tmp, path)


def write_summary(workdir: str, *, experiment: str, config, state, last_eval: dict,
                  info: dict, restored_from_step: int | None, wall_time_s: float) -> dict:
  """Writes and returns ``WORKDIR/summary.json``: ``eval/<name>`` metrics, the data facts,
  step, seed, restored_from_step, wall_time_s (seconds), experiment and the resolved config."""
  summary = {f'eval/{k}': v for k, v in last_eval.items()}
  summary.update(info)
  summary.update(step=int(jax.device_get(state.step)), seed=config.seed,
                 restored_from_step=restored_from_step, wall_time_s=wall_time_s,
                 experiment=experiment, config=config.to_dict())
  write_json(os.path.join(workdir, 'summary.json'), summary)
  return summary
