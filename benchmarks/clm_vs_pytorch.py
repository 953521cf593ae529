r"""Causal-LM train step: jaxssl against transformers' PyTorch GPT2LMHeadModel on the CPU.

  python benchmarks/clm_vs_pytorch.py            # presets mini and small, 10 timed steps
  python benchmarks/clm_vs_pytorch.py --quick    # mini, 3 timed steps: under a minute

Needs torch and transformers (``pip install -e '.[bench]'`` in a separate virtualenv); exits
with status 2 and a one-line message without them.

Both sides train the same model on the same rows: GPT-2 pre-LayerNorm decoder with learned
absolute positions (the experiment's default is RoPE, which GPT2LMHeadModel lacks), exact
GELU (GPT-2's own tanh approximation is switched off), LayerNorm eps 1e-5, a final
LayerNorm, dropout 0.1 on embeddings, attention output and MLP output and none on attention
probabilities, output layer tied to the token embedding with no bias; B = 32 rows of
L = 128 random ordinary tokens after [BOS], one document per row, V = 1024 (the
experiment's). Logits at every position in both ([B, L, V]); the loss is the mean over the
B x (L - 1) next-token targets. The step is the whole update: forward, backward, global-norm
clipping to 1.0, AdamW (b2 0.95, weight decay 0.1 off biases and LayerNorms) with warmup and
cosine decay, from ``experiments.clm_pretrain``'s config, which the jaxssl worker hands to
the PyTorch one. jaxssl's step also builds its same-document attention mask from the segment
ids, as in training; GPT-2 gets no mask beyond its causal one. PyTorch runs eagerly (no
``torch.compile``).

Each framework runs in its own process pinned to the same ``--threads`` CPUs, so its peak RSS
(VmHWM) is its own.
Memory columns (RSS, MiB): after the imports (the jaxssl process imports TensorFlow through
clu; transformers imports its model code lazily, later), when the first step starts (model,
optimizer state, compiled step), peak over the whole process (XLA's compilation included)
and peak over the train steps alone (the high-water mark is restarted before the first step).
MFU: FLOPs per step (XLA's cost analysis of the compiled jaxssl step, and 6 x params x
tokens) over the step time, as a fraction of a 2048^3 XLA matmul of ``--dtype`` (f32 by
default; ``--dtype=bfloat16`` sets jaxssl's model.dtype and runs PyTorch under autocast)
measured in the jaxssl process (``mlm_step.matmul_peak``). loss0 is the first step's loss
before any update: both should sit near ln(V) at initialisation (weights drawn
independently, not copied).
Prints a table per preset and ends with ``clm_tokens_per_s_ratio=<jaxssl / PyTorch>``, the
geometric mean over ``--presets`` (mini,small by default; mini alone with --quick).
"""

from __future__ import annotations

import functools

import numpy as np

import torch_common
import torch_lm


def jax_worker(args) -> dict:
  """Builds and times ``clm_pretrain.train_step``; returns the row and the shared spec."""
  from experiments import clm_pretrain  # pylint: disable=import-outside-toplevel
  from jaxssl.data import tokenizer as tok  # pylint: disable=import-outside-toplevel
  s = torch_lm.lm_jax_setup(args, clm_pretrain)
  step = functools.partial(clm_pretrain.train_step, config=s.config)
  rows = torch_lm.make_rows(args, low=tok.NUM_SPECIAL, first_id=clm_pretrain.BOS_ID)
  return torch_lm.time_lm_jax(
      args, s, step, {'tokens': rows, 'segment_ids': np.ones_like(rows)},
      spec=dict(bos_id=clm_pretrain.BOS_ID), variant='logits at all L', arch='pre-LN')


def torch_worker(args) -> dict:
  """Times GPT2LMHeadModel train steps; returns the table row."""
  import torch  # pylint: disable=import-outside-toplevel
  import transformers  # pylint: disable=import-outside-toplevel
  import_mib, spec = torch_common.start_torch_worker(args)
  m = spec['model']
  model = transformers.GPT2LMHeadModel(transformers.GPT2Config(
      vocab_size=m['vocab_size'], n_positions=m['max_len'], n_embd=m['width'],
      n_layer=m['num_layers'], n_head=m['num_heads'], n_inner=m['mlp_dim'],
      activation_function='gelu', resid_pdrop=m['dropout_rate'],
      embd_pdrop=m['dropout_rate'], attn_pdrop=0.0, layer_norm_epsilon=m['layer_norm_eps'],
      initializer_range=0.02, use_cache=False, tie_word_embeddings=True,
      bos_token_id=spec['bos_id'], eos_token_id=None))
  tokens = torch.from_numpy(torch_lm.make_rows(
      args, low=spec['num_special'], first_id=spec['bos_id'])).long()
  return torch_lm.time_lm_torch(
      args, model, lambda: model(input_ids=tokens, labels=tokens).loss,  # shifts labels inside
      spec, variant='logits at all L', import_mib=import_mib,
      no_decay=lambda name: name.endswith('bias') or '.ln_' in name)


if __name__ == '__main__':
  torch_common.run(
      __file__, torch_lm.lm_parser(__doc__, vocab=1024),
      {'jaxssl': jax_worker, 'pytorch': torch_worker},
      functools.partial(torch_lm.compare_lm, torch_workers=('pytorch',),
                        ratio_name='clm_tokens_per_s_ratio'),
      modules=('torch', 'transformers'))
