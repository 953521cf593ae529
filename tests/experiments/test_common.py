"""What every experiment promises, run on each one's smoke config.

Outputs, same seed -> same metrics, resume after a fault or a SIGTERM (preemption) -> the
same parameters, refusals of foreign workdirs; for the language models also the tokenizer
and edited-corpus rules.
Experiment-specific values live in test_<name>.py.
"""

import glob
import json
import os
import signal

import jax
import numpy as np
import pytest

from experiments import autoencoder, byol, clm_pretrain, dcgan, mlm_pretrain, simclr, vae
from jaxssl.data import pipeline, text, tokenizer
from jaxssl.train import checkpoint, preemption
from tests.experiments.helpers import (SimulatedFault, batch_getter_sending_sigterm, counting,
                                      evals, fail_after, save_killed_at, smoke)

LANGUAGE_MODELS = [mlm_pretrain, clm_pretrain]
EXPERIMENTS = LANGUAGE_MODELS + [autoencoder, vae, dcgan, simclr, byol]


def _params(workdir, step):
  import orbax.checkpoint as ocp  # pylint: disable=import-outside-toplevel
  path = os.path.join(workdir, 'checkpoints', str(step), 'state')
  return ocp.StandardCheckpointer().restore(path)['params']


@pytest.fixture(params=EXPERIMENTS, ids=lambda m: m.EXPERIMENT)
def reference_run(request, smoke_run):
  return (request.param, *smoke_run(request.param))


def test_end_to_end_outputs(reference_run):
  module, workdir, summary = reference_run
  with open(os.path.join(workdir, 'summary.json')) as f:
    on_disk = json.load(f)
  assert on_disk == json.loads(json.dumps(summary))
  assert evals(on_disk) and all(np.isfinite(v) for v in evals(on_disk).values())
  assert on_disk['experiment'] == module.EXPERIMENT
  assert on_disk['step'] == 6 and on_disk['seed'] == 0 and on_disk['restored_from_step'] is None
  assert len(on_disk['data/sha256']) == 64
  assert sorted(os.listdir(os.path.join(workdir, 'checkpoints'))) == ['3', '6']
  assert glob.glob(os.path.join(workdir, 'events.out.tfevents.*'))
  assert json.load(open(os.path.join(workdir, 'config.json')))['seed'] == 0
  if module in LANGUAGE_MODELS:
    assert on_disk['config']['model']['preset'] == 'tiny'
    np.testing.assert_allclose(on_disk['eval/perplexity'],
                               np.exp(on_disk.get('eval/loss', on_disk.get('eval/mlm_loss'))))
    assert os.path.exists(os.path.join(workdir, 'tokenizer.model'))


def test_same_seed_same_metrics_other_seed_differs(reference_run, cache_dir, tmp_path):
  module, _, reference = reference_run
  again = module.train_and_evaluate(smoke(module, cache_dir), str(tmp_path / 'a'))
  assert evals(again) == evals(reference)
  other = module.train_and_evaluate(smoke(module, cache_dir, seed=1), str(tmp_path / 'b'))
  assert evals(other) != evals(reference)
  # The held-out data (and the MLM's eval masks) do not depend on the seed, nor do the
  # baselines fitted to the training split (nor the DCGAN's scoring classifier).
  for name in ('eval/num_tokens', 'eval/unigram_loss', 'eval/psnr_mean_image',
               'eval/elbo_baseline', 'eval/fd_classifier_train_images',
               'eval/classifier_accuracy'):
    assert evals(other).get(name) == evals(reference).get(name)


def test_interrupted_run_resumes_to_the_same_result(reference_run, cache_dir, tmp_path):
  module, ref_dir, reference = reference_run
  workdir = str(tmp_path / 'w')
  fail_after(4, module, smoke(module, cache_dir), workdir)
  # Step 4 is past the step-3 checkpoint: the resumed run replays step 4 from step 3. The
  # restored state has the types the step returns: one compilation for steps 4-6.
  with counting() as counts:
    resumed = module.train_and_evaluate(smoke(module, cache_dir), workdir)
  assert counts == {'trace': 1, 'compile': 1}, f'train_step over steps 4-6: {dict(counts)}'
  assert resumed['restored_from_step'] == 3
  assert evals(resumed) == evals(reference)
  jax.tree.map(np.testing.assert_array_equal, _params(workdir, 6), _params(ref_dir, 6))


@pytest.mark.slow
@pytest.mark.parametrize('point, restored', [(1, None), (3, 3), (5, 3), ('save', 3)],
                         ids=['step1', 'step3', 'step5', 'inside_save6'])
def test_interrupted_at_other_points_resumes_to_the_same_result(point, restored, reference_run,
                                                                cache_dir, tmp_path,
                                                                monkeypatch):
  # Before the first checkpoint, right after one, between two, and inside the last save
  # (which leaves a partial temporary folder, as a kill during the write would).
  module, ref_dir, reference = reference_run
  workdir = str(tmp_path / 'w')
  if point == 'save':
    save = checkpoint.save
    monkeypatch.setattr(checkpoint, 'save', save_killed_at(6))
    with pytest.raises(SimulatedFault):
      module.train_and_evaluate(smoke(module, cache_dir), workdir)
    monkeypatch.setattr(checkpoint, 'save', save)
  else:
    fail_after(point, module, smoke(module, cache_dir), workdir)
  resumed = module.train_and_evaluate(smoke(module, cache_dir), workdir)
  assert resumed['restored_from_step'] == restored
  assert evals(resumed) == evals(reference)
  jax.tree.map(np.testing.assert_array_equal, _params(workdir, 6), _params(ref_dir, 6))


def test_sigterm_checkpoints_the_step_and_the_rerun_matches(reference_run, cache_dir, tmp_path,
                                                           monkeypatch):
  module, ref_dir, reference = reference_run
  batch_getter = pipeline.batch_getter
  monkeypatch.setattr(pipeline, 'batch_getter', batch_getter_sending_sigterm(5))  # during step 5
  workdir = str(tmp_path / 'w')
  with pytest.raises(preemption.Preempted, match='at step 5'):
    module.train_and_evaluate(smoke(module, cache_dir), workdir)
  assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # the handler is removed again
  assert sorted(os.listdir(os.path.join(workdir, 'checkpoints'))) == ['3', '5']
  monkeypatch.setattr(pipeline, 'batch_getter', batch_getter)
  resumed = module.train_and_evaluate(smoke(module, cache_dir), workdir)
  assert resumed['restored_from_step'] == 5
  assert evals(resumed) == evals(reference)
  jax.tree.map(np.testing.assert_array_equal, _params(workdir, 6), _params(ref_dir, 6))


def test_rerun_of_finished_workdir_trains_nothing(reference_run, cache_dir):
  module, workdir, reference = reference_run
  again = module.train_and_evaluate(smoke(module, cache_dir), workdir)
  assert again['restored_from_step'] == 6
  assert evals(again) == evals(reference)


def test_workdir_of_another_config_or_experiment_is_refused(reference_run, cache_dir):
  module, workdir, _ = reference_run
  with pytest.raises(ValueError, match=r'optim.learning_rate: .* in the checkpoint vs 0.5'):
    module.train_and_evaluate(smoke(module, cache_dir, **{'optim.learning_rate': 0.5}),
                              workdir)
  other = next(m for m in EXPERIMENTS if m is not module)
  with pytest.raises(ValueError, match=f'experiment {module.EXPERIMENT!r}, not'):
    other.train_and_evaluate(smoke(other, cache_dir), workdir)


@pytest.mark.parametrize('module', EXPERIMENTS, ids=lambda m: m.EXPERIMENT)
def test_missing_files_are_named(module, tmp_path):
  config = smoke(module, str(tmp_path / 'cache'), **{'data.files': str(tmp_path / 'none*.txt')})
  with pytest.raises(FileNotFoundError, match='data.files'):
    module.train_and_evaluate(config, str(tmp_path / 'w'))


@pytest.mark.parametrize('module', LANGUAGE_MODELS, ids=lambda m: m.EXPERIMENT)
def test_stale_tokenizer_without_checkpoint_is_retrained(module, cache_dir, tmp_path):
  workdir = str(tmp_path / 'w')
  fail_after(1, module, smoke(module, cache_dir), workdir)  # before its first checkpoint (3)
  summary = module.train_and_evaluate(smoke(module, cache_dir, **{'data.vocab_size': 400}),
                                      workdir)
  assert summary['data/vocab_size'] == 400
  # The workdir keeps a copy of the tokenizer the run trains with.
  assert tokenizer.Tokenizer(os.path.join(workdir, 'tokenizer.model')).vocab_size == 400


@pytest.mark.parametrize('module', LANGUAGE_MODELS, ids=lambda m: m.EXPERIMENT)
def test_resume_onto_an_edited_file_is_refused_and_keeps_the_tokenizer(module, cache_dir,
                                                                      tmp_path):
  corpus = tmp_path / 'corpus.txt'
  pydoc = text.pydoc_text()
  corpus.write_text(pydoc[:len(pydoc) // 3], encoding='utf-8')
  config = smoke(module, cache_dir, **{'data.files': str(corpus),
                                       'data.validation_fraction': 0.05})
  workdir = str(tmp_path / 'w')
  module.train_and_evaluate(config, workdir)
  before = open(os.path.join(workdir, 'tokenizer.model'), 'rb').read()
  corpus.write_text(pydoc[:len(pydoc) // 2], encoding='utf-8')
  config.num_train_steps = 9  # extend the run: allowed, but not onto other data
  with pytest.raises(ValueError, match='was a file edited'):
    module.train_and_evaluate(config, workdir)
  assert open(os.path.join(workdir, 'tokenizer.model'), 'rb').read() == before
