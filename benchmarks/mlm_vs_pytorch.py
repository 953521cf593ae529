r"""Masked-LM train step: jaxssl against transformers' PyTorch BertForMaskedLM on the CPU.

  python benchmarks/mlm_vs_pytorch.py            # presets mini and small, 10 timed steps
  python benchmarks/mlm_vs_pytorch.py --quick    # mini, 3 timed steps: under a minute

Needs torch and transformers (``pip install -e '.[bench]'`` in a separate virtualenv); exits
with status 2 and a one-line message without them.

Both sides train the same model on the same rows: BERT post-LayerNorm encoder with learned
absolute positions (the experiment's default is RoPE, which BertForMaskedLM lacks), exact
GELU, LayerNorm eps 1e-12, dropout 0.1 on embeddings, attention output and MLP output and
none on attention probabilities, MLM head (dense, GELU, LayerNorm, decoder tied to the token
embedding, output bias); B = 32 rows of L = 128 random ordinary tokens after [CLS], no
padding, V = 4096. BertForMaskedLM adds a one-row token-type embedding (D parameters).
The step is the whole update: draw the 15% masks (80/10/10) inside the step, forward,
backward, global-norm clipping to 1.0, AdamW (b2 0.98, eps 1e-6, weight decay 0.01 off
biases and LayerNorms) with warmup and linear decay, all from ``experiments.mlm_pretrain``'s
config, which the jaxssl worker hands to the PyTorch one.

Logits: jaxssl gathers the hidden states of the P = ceil(0.15 L) prediction slots and applies
the MLM head there only ([B, P, V] logits). PyTorch runs twice: ``head at P slots`` does the
same (``model.bert`` -> gather -> ``model.cls``), the like-for-like one that the ratio uses;
``all L positions`` is the stock ``BertForMaskedLM(labels=...)`` call, head and logits
[B, L, V] at every position. PyTorch runs eagerly (no ``torch.compile``).

Each framework (and each PyTorch variant) runs in its own process pinned to the same
``--threads`` CPUs, so its peak RSS (VmHWM) is its own.
Memory columns (RSS, MiB): after the imports (the jaxssl process imports TensorFlow through
clu; transformers imports its model code lazily, later), when the first step starts (model,
optimizer state, compiled step), peak over the whole process (XLA's compilation included)
and peak over the train steps alone (the high-water mark is restarted before the first step).
MFU: FLOPs per step (XLA's cost analysis of the compiled jaxssl step, and 6 x params x
tokens, which counts the head at all L positions) over the step time, as a fraction of a
2048^3 XLA matmul of ``--dtype`` (f32 by default; ``--dtype=bfloat16`` sets jaxssl's
model.dtype and runs PyTorch under autocast) measured in the jaxssl process
(``mlm_step.matmul_peak``). loss0 is the first step's loss before any update: both should
sit near ln(V) at initialisation (the weights are drawn independently, not copied). Prints a
table per preset and ends with ``mlm_tokens_per_s_ratio=<jaxssl / PyTorch head at P
slots>``, the geometric mean over ``--presets`` (mini,small by default; mini alone with
--quick).
"""

from __future__ import annotations

import functools

import torch_common
import torch_lm

TORCH_WORKERS = {'pytorch-masked': 'head at P slots', 'pytorch-all': 'all L positions'}


def jax_worker(args) -> dict:
  """Builds and times ``mlm_pretrain.train_step``; returns the row and the shared spec."""
  from experiments import mlm_pretrain  # pylint: disable=import-outside-toplevel
  from jaxssl.data import masking  # pylint: disable=import-outside-toplevel
  from jaxssl.data import tokenizer as tok  # pylint: disable=import-outside-toplevel
  s = torch_lm.lm_jax_setup(args, mlm_pretrain)
  step = functools.partial(mlm_pretrain.train_step, config=s.config,
                           **mlm_pretrain.step_constants(s.config, {'tokenizer': s.tokenizer}))
  num_slots = masking.max_predictions(args.seq_len, s.config.method.mask_rate)
  rows = torch_lm.make_rows(args, low=tok.NUM_SPECIAL, first_id=tok.CLS_ID)
  return torch_lm.time_lm_jax(
      args, s, step, {'tokens': rows}, variant=f'head at P={num_slots} slots', arch='post-LN',
      spec=dict(method=s.config.method.to_dict(), num_slots=num_slots, pad_id=tok.PAD_ID,
                cls_id=tok.CLS_ID, mask_id=tok.MASK_ID))


def mask_tokens_torch(torch, tokens, gen, spec: dict) -> dict:
  """PyTorch twin of ``jaxssl.data.masking.mask_tokens`` (token-level selection).

  Per row: select round(mask_rate x real tokens) (at least 1, at most P) of the ordinary
  tokens in random order; of those 80% -> [MASK], 10% -> a random ordinary id, 10% kept.

  Args:
    torch: the torch module (imported by the worker).
    tokens: int64 [B, L].
    gen: torch.Generator for the draws.
    spec: the jaxssl worker's spec (method, num_slots, ids, model.vocab_size).

  Returns:
    dict: ``inputs`` int64 [B, L], ``positions`` and ``labels`` int64 [B, P], ``weights``
    f32 [B, P] (1 = selected).
  """
  m, p = spec['method'], spec['num_slots']
  maskable = tokens >= spec['num_special']  # [B, L]
  num_real = maskable.sum(1)
  n_sel = torch.where(num_real > 0, torch.round(m['mask_rate'] * num_real).clamp(min=1), 0)
  n_sel = n_sel.clamp(max=p)
  scores = torch.where(maskable, torch.rand(tokens.shape, generator=gen), 2.0)
  positions = scores.argsort(dim=1)[:, :p]  # [B, P]
  selected = (torch.arange(p) < n_sel[:, None]) & maskable.gather(1, positions)
  labels = tokens.gather(1, positions)
  u = torch.rand(positions.shape, generator=gen)
  random_ids = torch.randint(spec['num_special'], spec['model']['vocab_size'], positions.shape,
                             generator=gen)
  corrupted = torch.where(u < m['replace_prob'], spec['mask_id'],
                          torch.where(u < m['replace_prob'] + m['random_prob'], random_ids,
                                      labels))
  inputs = tokens.scatter(1, positions, torch.where(selected, corrupted, labels))
  return dict(inputs=inputs, positions=positions, labels=labels, weights=selected.float())


def torch_worker(args, worker: str) -> dict:
  """Times BertForMaskedLM steps (``worker`` 'pytorch-masked' or 'pytorch-all'); returns
  the table row."""
  import torch  # pylint: disable=import-outside-toplevel
  import torch.nn.functional as F  # pylint: disable=import-outside-toplevel
  import transformers  # pylint: disable=import-outside-toplevel
  import_mib, spec = torch_common.start_torch_worker(args)
  m = spec['model']
  model = transformers.BertForMaskedLM(transformers.BertConfig(
      vocab_size=m['vocab_size'], hidden_size=m['width'], num_hidden_layers=m['num_layers'],
      num_attention_heads=m['num_heads'], intermediate_size=m['mlp_dim'],
      max_position_embeddings=m['max_len'], type_vocab_size=1, hidden_act='gelu',
      layer_norm_eps=m['layer_norm_eps'], hidden_dropout_prob=m['dropout_rate'],
      attention_probs_dropout_prob=0.0, initializer_range=0.02, tie_word_embeddings=True))
  tokens = torch.from_numpy(torch_lm.make_rows(
      args, low=spec['num_special'], first_id=spec['cls_id'])).long()
  padding = (tokens != spec['pad_id']).long()
  gen = torch.Generator().manual_seed(spec['seed'])

  def loss_fn():
    mk = mask_tokens_torch(torch, tokens, gen, spec)
    if worker == 'pytorch-masked':
      hidden = model.bert(input_ids=mk['inputs'], attention_mask=padding).last_hidden_state
      index = mk['positions'][..., None].expand(-1, -1, hidden.shape[-1])
      logits = model.cls(hidden.gather(1, index))  # [B, P, V]
      nll = F.cross_entropy(logits.flatten(0, 1), mk['labels'].flatten(), reduction='none')
      return (nll * mk['weights'].flatten()).sum() / mk['weights'].sum().clamp(min=1.0)
    targets = torch.where(mk['weights'] > 0, mk['labels'], -100)
    labels = torch.full_like(tokens, -100).scatter(1, mk['positions'], targets)  # [B, L]
    return model(input_ids=mk['inputs'], attention_mask=padding, labels=labels).loss

  return torch_lm.time_lm_torch(
      args, model, loss_fn, spec, variant=TORCH_WORKERS[worker], import_mib=import_mib,
      no_decay=lambda name: name.endswith('bias') or 'LayerNorm' in name)


if __name__ == '__main__':
  torch_common.run(
      __file__, torch_lm.lm_parser(__doc__, vocab=4096),
      {'jaxssl': jax_worker, **{w: functools.partial(torch_worker, worker=w)
                                for w in TORCH_WORKERS}},
      functools.partial(torch_lm.compare_lm, torch_workers=tuple(TORCH_WORKERS),
                        ratio_name='mlm_tokens_per_s_ratio'),
      modules=('torch', 'transformers'))
