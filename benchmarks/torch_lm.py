"""The language-model comparisons (``mlm_vs_pytorch.py``, ``clm_vs_pytorch.py``): per-step
times after a warm-up, memory readings around the steps and MFU.

The command line (``lm_parser``), the jaxssl side (``lm_jax_setup``, ``time_lm_jax``), the
eager PyTorch side (``torch_adamw``, ``time_lm_torch``) and the table of each preset
(``compare_lm``, ``print_lm_table``). Processes, memory and the entry point are
``torch_common``'s. Nothing here imports jax or torch at module level.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import os
import sys
import time
import types
from typing import Callable, Sequence

import numpy as np

import torch_common


def lm_parser(doc: str, *, vocab: int) -> argparse.ArgumentParser:
  """The command line of both language-model comparisons (``--preset`` is internal)."""
  parser = torch_common.make_parser(doc, threads=len(os.sched_getaffinity(0)),
                       quick={'presets': 'mini', 'steps': 3, 'warmup': 1},
                       quick_help='mini preset only, 1 warm-up + 3 timed steps: under a minute')
  parser.add_argument('--presets', default='mini,small', help='comma-separated size presets')
  parser.add_argument('--batch', type=int, default=32, help='rows per step (B)')
  parser.add_argument('--seq_len', type=int, default=128, help='tokens per row (L)')
  parser.add_argument('--vocab', type=int, default=vocab, help='vocabulary size (V)')
  parser.add_argument('--steps', type=int, default=10, help='timed steps (median reported)')
  parser.add_argument('--warmup', type=int, default=2, help='untimed steps after compiling')
  parser.add_argument('--dtype', default='float32', choices=('float32', 'bfloat16'),
                      help="matmul operands: jaxssl's model.dtype; PyTorch runs the forward "
                           'under torch.autocast (CPU, that dtype) for bfloat16')
  parser.add_argument('--preset', default='mini', help=argparse.SUPPRESS)
  return parser


def make_rows(args, *, low: int, first_id: int, seed: int = 0) -> np.ndarray:
  """int32 [B, L] random ordinary token ids in [low, V), column 0 set to ``first_id``.

  The same rows in every process (NumPy's PCG64 from ``seed``); no data pipeline is timed.
  """
  rows = np.random.default_rng(seed).integers(low, args.vocab, (args.batch, args.seq_len))
  rows[:, 0] = first_id
  return rows.astype(np.int32)


def time_each_step(step_fn: Callable, *, warmup: int, steps: int) -> dict:
  """Runs ``step_fn() -> loss`` (a float or a scalar array) ``warmup + steps`` times, each
  finished before the clock stops, after restarting the memory high-water mark.

  Returns:
    dict: ``setup_mib`` (``torch_common.memory_mib()`` when the first step starts: ``rss``
    then and ``peak`` up to then; see ``torch_common.start_peak_window``), ``times``
    (seconds per step) and ``loss0`` (the first step's loss, before any update).
  """
  setup = torch_common.start_peak_window()
  times, loss0 = [], None
  for i in range(warmup + steps):
    t = time.perf_counter()
    loss = step_fn()
    times.append(time.perf_counter() - t)
    if i == 0:
      loss0 = loss
  return dict(setup_mib=setup, times=times, loss0=loss0)


def time_jax_steps(step, state, batch, rng, *, warmup: int, steps: int) -> dict:
  """Compiles a jitted ``step(state, batch, rng) -> (state, metrics)`` and runs it.

  The state is carried from step to step (donated, as in training) and every step is
  waited for before the clock stops.

  Returns:
    dict: ``time_each_step``'s, with ``setup_mib['peak']`` covering compilation, and
    ``compile_s``; ``xla_temp_mib`` (the compiled step's temporary buffers per XLA's memory
    analysis, MiB, per device); ``flops`` (XLA's cost analysis of the compiled step, which
    counts one device's partition, times the device count; 0.0 when it reports none).
  """
  import jax  # pylint: disable=import-outside-toplevel
  t = time.perf_counter()
  compiled = step.lower(state, batch, rng).compile()
  compile_s = time.perf_counter() - t
  cost = compiled.cost_analysis()
  cost = cost[0] if isinstance(cost, list) else cost
  carry = {'state': state}

  def one_step():
    carry['state'], metrics = compiled(carry['state'], batch, rng)
    jax.block_until_ready((carry['state'], metrics))
    return metrics['loss']  # read back once, for step 0 (finish_lm_worker)

  return dict(time_each_step(one_step, warmup=warmup, steps=steps), compile_s=compile_s,
              xla_temp_mib=compiled.memory_analysis().temp_size_in_bytes / 2 ** 20,
              flops=float((cost or {}).get('flops', 0.0)) * jax.device_count())


def finish_lm_worker(result: dict, timing: dict, *, import_mib: float, args) -> dict:
  """Adds the fields ``print_lm_table`` reads to a worker's descriptive ``result``, from
  ``timing`` (``time_each_step``'s, called just before this) and ``import_mib`` (RSS after
  the framework imports, MiB)."""
  step_s = float(np.median(timing['times'][args.warmup:]))
  steps_peak = torch_common.memory_mib()['peak']
  return dict(result, step_s=step_s, tokens_per_s=args.batch * args.seq_len / step_s,
              loss0=float(timing['loss0']), peak_mib=max(timing['setup_mib']['peak'], steps_peak),
              steps_peak_mib=steps_peak, ready_mib=timing['setup_mib']['rss'],
              import_mib=import_mib)


def lm_jax_setup(args, experiment) -> types.SimpleNamespace:
  """``experiment``'s (``experiments.mlm_pretrain`` or ``clm_pretrain``) config at
  ``--preset``, learned positions, B, L and V, with its mesh and train state.

  Call right after importing the experiment: ``import_mib`` is the RSS measured here.
  Returns a namespace of experiment, config, mesh, tokenizer (its vocab_size and an all-False
  word_start), state, shardings, import_mib and matmul_peak (``mlm_step.matmul_peak``).
  """
  import mlm_step  # pylint: disable=import-outside-toplevel
  from jaxssl.parallel import mesh as mesh_lib  # pylint: disable=import-outside-toplevel
  from jaxssl.train import rngs  # pylint: disable=import-outside-toplevel
  from jaxssl.train import state as state_lib  # pylint: disable=import-outside-toplevel
  import_mib = torch_common.memory_mib()['rss']
  config = experiment.get_config()
  config.model.preset, config.model.position_encoding = args.preset, 'learned'
  config.global_batch_size, config.data.seq_len = args.batch, args.seq_len
  config.data.vocab_size, config.model.dtype = args.vocab, args.dtype
  mesh = mesh_lib.make_mesh(config.mesh)
  experiment.validate_config(config, mesh.devices.size)
  tokenizer = types.SimpleNamespace(vocab_size=args.vocab,
                                    word_start=np.zeros((args.vocab,), bool))
  state = experiment.create_train_state(config, {'tokenizer': tokenizer}, mesh,
                                        rngs.run_keys(config.seed).init)
  return types.SimpleNamespace(experiment=experiment, config=config, mesh=mesh,
                               tokenizer=tokenizer, state=state,
                               shardings=state_lib.shardings(state), import_mib=import_mib,
                               matmul_peak=mlm_step.matmul_peak)


def time_lm_jax(args, s: types.SimpleNamespace, train_step, inputs: dict, *, spec: dict,
                variant: str, arch: str) -> dict:
  """Jits ``train_step(state, batch, rng)`` over ``s`` (``lm_jax_setup``) and times it on
  ``inputs`` (numpy arrays [B, L]); returns the jaxssl row, whose ``spec`` (``spec`` plus the
  model, optimizer, schedule length, NUM_SPECIAL and seed) goes to the PyTorch workers."""
  import jax  # pylint: disable=import-outside-toplevel
  import jax.numpy as jnp  # pylint: disable=import-outside-toplevel
  from jaxssl.data import tokenizer  # pylint: disable=import-outside-toplevel
  from jaxssl.parallel import sharding  # pylint: disable=import-outside-toplevel
  num_params = sum(x.size for x in jax.tree.leaves(s.state.params))
  step = sharding.jit_train_step(train_step, s.shardings, s.mesh)
  batch = sharding.put_batch(inputs, s.mesh)
  r = time_jax_steps(step, s.state, batch, jax.random.key(s.config.seed),
                     warmup=args.warmup, steps=args.steps)
  cfg = s.experiment.model_config(s.config, args.vocab)
  spec = dict(spec, model=dataclasses.asdict(cfg), optim=s.config.optim.to_dict(),
              num_train_steps=s.config.num_train_steps, num_special=tokenizer.NUM_SPECIAL,
              seed=s.config.seed)
  out = finish_lm_worker(
      dict(framework='jaxssl', variant=variant, num_params=int(num_params), flops=r['flops'],
           compile_s=r['compile_s'], xla_temp_mib=r['xla_temp_mib'],
           flops_6nd=6.0 * num_params * args.batch * args.seq_len, spec=spec,
           model=(f'{cfg.num_layers} layers, D={cfg.width}, H={cfg.num_heads}, '
                  f'F={cfg.mlp_dim}, learned positions, {arch}, {args.dtype} matmuls'),
           versions=f'jax {jax.__version__}, Python {sys.version.split()[0]}',
           threads=(f'XLA CPU {jax.devices()}, pinned to CPUs {args.cpus} (its intra-op pool '
                    f'is sized from them), XLA_FLAGS={os.environ.get("XLA_FLAGS", "")!r}')),
      r, import_mib=s.import_mib, args=args)
  out['matmul_peak'] = s.matmul_peak(2048, jnp.dtype(args.dtype))
  return out


def torch_adamw(model, optim: dict, num_train_steps: int, no_decay) -> tuple:
  """(torch AdamW, LambdaLR) with jaxssl's hyperparameters and weight-decay mask.

  Args:
    model: a torch.nn.Module (tied parameters appear once in ``named_parameters``).
    optim: the jaxssl ``config.optim`` as a dict (learning_rate, b1, b2, eps,
      weight_decay, warmup_steps, decay).
    num_train_steps: the schedule's length.
    no_decay: ``name -> bool``, True for parameters jaxssl does not decay (biases, norms).
  """
  import torch  # pylint: disable=import-outside-toplevel
  named = list(model.named_parameters())
  groups = [{'params': [p for n, p in named if not no_decay(n)],
             'weight_decay': optim['weight_decay']},
            {'params': [p for n, p in named if no_decay(n)], 'weight_decay': 0.0}]
  opt = torch.optim.AdamW(groups, lr=optim['learning_rate'], betas=(optim['b1'], optim['b2']),
                          eps=optim['eps'])
  sched = torch.optim.lr_scheduler.LambdaLR(
      opt, torch_common.torch_lr_lambda(optim, num_train_steps))
  return opt, sched


def torch_matmul_peak(n: int = 2048, repeats: int = 5, dtype: str = 'float32') -> float:
  """FLOP/s of a [n, n] @ [n, n] torch product of ``dtype`` (median of ``repeats``, one
  warm-up)."""
  import torch  # pylint: disable=import-outside-toplevel
  a = torch.ones(n, n, dtype=getattr(torch, dtype))
  torch.mm(a, a)
  times = []
  for _ in range(repeats):
    t = time.perf_counter()
    torch.mm(a, a)
    times.append(time.perf_counter() - t)
  return 2 * n ** 3 / float(np.median(times))


def time_lm_torch(args, model, loss_fn: Callable, spec: dict, *, no_decay, variant: str,
                  import_mib: float) -> dict:
  """Times eager transformers train steps: ``loss_fn()`` (a scalar tensor; under
  ``torch.autocast`` for ``--dtype=bfloat16``), backward, global-norm clipping, AdamW and the
  schedule from ``spec['optim']``; returns the row."""
  import torch  # pylint: disable=import-outside-toplevel
  import transformers  # pylint: disable=import-outside-toplevel
  model.train()
  opt, sched = torch_adamw(model, spec['optim'], spec['num_train_steps'], no_decay)
  clip = spec['optim']['grad_clip_norm']

  autocast = args.dtype != 'float32'

  def step() -> float:
    with torch.autocast('cpu', dtype=getattr(torch, args.dtype), enabled=autocast):
      loss = loss_fn()
    opt.zero_grad(set_to_none=True)
    loss.backward()
    if clip > 0:
      torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
    opt.step()
    sched.step()
    return loss.item()  # eager CPU torch is synchronous; item() waits anyway

  r = time_each_step(step, warmup=args.warmup, steps=args.steps)
  out = finish_lm_worker(
      dict(framework='PyTorch', variant=variant,
           num_params=sum(p.numel() for p in model.parameters()),
           versions=f'torch {torch.__version__}, transformers {transformers.__version__}',
           threads=(f'pinned to CPUs {args.cpus}, torch.get_num_threads()='
                    f'{torch.get_num_threads()} get_num_interop_threads()='
                    f'{torch.get_num_interop_threads()}, eager'
                    f'{", autocast " + args.dtype if autocast else ""}, attention '
                    f'{model.config._attn_implementation}')),  # pylint: disable=protected-access
      r, import_mib=import_mib, args=args)
  out['matmul_peak'] = torch_matmul_peak(dtype=args.dtype)
  return out


def mfu(flops: float, seconds: float, peak: float) -> float:
  """Model FLOPs utilisation: ``flops`` per step / ``seconds`` per step / ``peak`` FLOP/s."""
  return flops / seconds / peak if flops and seconds and peak else float('nan')


def print_lm_table(rows: list[dict], *, peak: float, flops_xla: float,
                   flops_6nd: float) -> None:
  """One line per (framework, variant) of one preset.

  Columns: median step seconds, tokens/s (B x L per step); the worker process's RSS after
  its imports (``import``), when the first step starts (``ready``: model, optimizer state,
  compiled step), its peak over the whole process (``peak``, compilation included) and over
  the train steps alone (``steps``), all MiB; loss of step 0; MFU with the XLA and 6ND FLOP
  counts of the step over ``peak`` (the XLA matmul FLOP/s of ``--dtype``).
  """
  print(f'  {"framework":8} {"variant":18} {"step_s":>6} {"tokens/s":>8} '
        f'{"RSS_MiB: import":>15} {"ready":>5} {"peak":>5} {"steps":>5} {"loss0":>6} '
        f'{"MFU_xla":>7} {"MFU_6ND":>7}')
  for r in rows:
    print(f'  {r["framework"]:8} {r["variant"]:18} {r["step_s"]:6.3f} {r["tokens_per_s"]:8.0f} '
          f'{r["import_mib"]:15.0f} {r["ready_mib"]:5.0f} {r["peak_mib"]:5.0f} '
          f'{r["steps_peak_mib"]:5.0f} {r["loss0"]:6.3f} {mfu(flops_xla, r["step_s"], peak):7.3f} '
          f'{mfu(flops_6nd, r["step_s"], peak):7.3f}')


def compare_lm(script: str, args, *, torch_workers: Sequence[str], ratio_name: str) -> tuple:
  """``torch_common.run``'s ``compare`` for the language models: per preset, the jaxssl
  worker then each PyTorch worker; prints a table per preset. The ratio is jaxssl tokens/s
  over the first PyTorch worker's (the like-for-like one), the geometric mean over
  ``--presets``."""
  presets = args.presets.split(',')
  ratios, first = [], None
  for preset in presets:
    jax_r, torch_rs = torch_common.run_workers(script, [*sys.argv[1:], f'--preset={preset}'],
                                               torch_workers)
    if first is None:
      first = torch_rs[0]
      print(f'jaxssl:  {jax_r["versions"]}; {jax_r["threads"]}')
      print(f'PyTorch: {first["versions"]}; {first["threads"]}')
      print(f'{args.dtype} matmul 2048^3 (f32 accumulation): XLA '
            f'{jax_r["matmul_peak"] / 1e9:.1f} GFLOP/s, torch {first["matmul_peak"] / 1e9:.1f} '
            'GFLOP/s (MFU columns use the XLA one)')
    print(f'\npreset={preset}: {jax_r["model"]}; B={args.batch} L={args.seq_len} '
          f'V={args.vocab}; {args.batch * args.seq_len} tokens/step; median of {args.steps} '
          f'steps after {args.warmup} warm-up')
    print(f'  params: jaxssl {jax_r["num_params"]:,}, PyTorch {torch_rs[0]["num_params"]:,}; '
          f'FLOPs/step: XLA cost analysis {jax_r["flops"] / 1e9:.2f} G, '
          f'6 x params x tokens {jax_r["flops_6nd"] / 1e9:.2f} G; '
          f'ln(V) = {math.log(args.vocab):.3f}')
    print(f'  jaxssl compile {jax_r["compile_s"]:.1f} s; XLA temporary buffers of the step '
          f'{jax_r["xla_temp_mib"]:.0f} MiB')
    print_lm_table([jax_r, *torch_rs], peak=jax_r['matmul_peak'], flops_xla=jax_r['flops'],
                   flops_6nd=jax_r['flops_6nd'])
    for t in torch_rs:
      print(f'  jaxssl / PyTorch [{t["variant"]}] tokens/s: '
            f'{jax_r["tokens_per_s"] / t["tokens_per_s"]:.2f}')
    ratios.append(jax_r['tokens_per_s'] / torch_rs[0]['tokens_per_s'])
  print(f'\nMFU_xla: XLA cost-analysis FLOPs of the jaxssl step / step_s / XLA {args.dtype} '
        'matmul peak; '
        'MFU_6ND: 6 x params x B x L / step_s / same peak. Both count the jaxssl step\'s work, '
        'also for PyTorch rows (a variant doing more work gets no credit for it).')
  print('RSS_MiB: after imports, when the first step starts, peak of the whole process, peak '
        'during the steps; each framework in its own process.')
  note = (f'{ratio_name}: jaxssl tokens/s / PyTorch [{first["variant"]}] tokens/s, geometric '
          f'mean over presets {",".join(presets)}')
  return ratio_name, float(np.exp(np.mean(np.log(ratios)))), note
