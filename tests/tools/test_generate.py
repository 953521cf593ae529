"""``python -m tools.generate``: stdout holds only the samples; bad workdirs are named."""

import os
import subprocess
import sys

import jax
import pytest

from experiments import clm_pretrain, mlm_pretrain
from tools import generate
from jaxssl.generation import decode

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _cli(*flags):
  return subprocess.run([sys.executable, '-m', 'tools.generate', *flags], cwd=ROOT,
                        capture_output=True, text=True, timeout=300, check=False)


def test_stdout_is_exactly_the_samples_of_the_library_call(smoke_run):
  workdir, _ = smoke_run(clm_pretrain)
  settings = dict(temperature=0.9, top_k=20, top_p=0.9)
  proc = _cli(f'--workdir={workdir}', '--prompt=The', '--max_new_tokens=12',
              '--num_samples=3', '--seed=7', *(f'--{k}={v}' for k, v in settings.items()))
  assert proc.returncode == 0, proc.stderr[-2000:]
  graphdef, params, tokenizer, step = generate.load_model(workdir)
  assert step == 6
  expected = decode.generate_text(
      graphdef, params, tokenizer, 'The', bos_id=clm_pretrain.BOS_ID, eos_id=clm_pretrain.EOS_ID,
      num_samples=3, max_new_tokens=12, rng=jax.random.key(7), **settings)
  assert proc.stdout.split('\n') == [t.replace('\n', ' ') for t in expected] + ['']
  assert len(set(expected)) > 1  # three different samples of one prompt
  assert 'restored step 6' in proc.stderr  # logs go to stderr


def test_workdirs_without_a_causal_lm_are_refused(smoke_run, tmp_path):
  proc = _cli(f'--workdir={tmp_path}')
  assert proc.returncode != 0 and 'has no checkpoints' in proc.stderr and not proc.stdout
  mlm_workdir, _ = smoke_run(mlm_pretrain)
  with pytest.raises(ValueError, match="no readable clm_pretrain checkpoint.*'mlm_pretrain'"):
    generate.load_model(mlm_workdir)
