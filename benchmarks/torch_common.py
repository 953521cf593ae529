"""Shared pieces of the benchmarks that race a jaxssl train step against a PyTorch one.

Language models (``mlm_vs_pytorch.py``, ``clm_vs_pytorch.py``): per-step times after a
warm-up, memory readings around the steps and MFU. Images (``vae_vs_pytorch.py``,
``dcgan_vs_pytorch.py``): blocks of steps, examples/s and CPU time per step.

Each framework runs in its own subprocess (``--worker jaxssl``, then ``--worker pytorch...``,
one after the other, never at the same time), pinned to the same ``--threads`` CPUs before it
imports its framework, so that its peak resident memory (VmHWM) is its own and the two never
compete for cores. The jaxssl worker runs first and returns, besides its timings, ``spec``:
the resolved configuration as JSON, which the PyTorch workers receive through ``--spec`` so
that both sides train the same thing and the PyTorch process never imports jax. A worker
prints one line ``RESULT <json>``; the parent gathers them and prints the tables (``run``).

On a machine whose cores other processes also use, PyTorch's OpenMP threads (which meet at a
barrier after every parallel operator) slow down far more than XLA's: measured at load
average 9-12 on 2 cores, the same PyTorch VAE step took about 30 ms with 1 thread and 250-700
ms with 2. ``warn_if_loaded`` prints a note then; the image tables' ``cpu_ms/step`` column
(CPU time of the worker, all threads) is inflated less than wall time.

Nothing here imports jax or torch at module level: the parent process needs neither, and
``require_torch`` can fail fast with a one-line message when torch is absent.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import json
import math
import os
import resource
import statistics
import subprocess
import sys
import time
import types
from typing import Callable, Sequence

import numpy as np

INSTALL_HINT = ("pip install -e '.[bench]' in a separate virtualenv (never into the jaxssl "
                'one) and run this script with its python')
RESULT_PREFIX = 'RESULT '
IMAGE_SHAPES = {8: (8, 8, 1), 28: (28, 28, 1), 32: (32, 32, 3)}  # digits, MNIST, CIFAR-10


# ----------------------------------------------------------------------------- processes

def require_torch(modules: Sequence[str] = ('torch',)) -> None:
  """Exits with status 2 and a one-line message on stderr unless every module imports."""
  missing = [m for m in modules if importlib.util.find_spec(m) is None]
  if missing:
    verb = 'is' if len(missing) == 1 else 'are'
    print(f'error: {" and ".join(missing)} {verb} not installed: {INSTALL_HINT}',
          file=sys.stderr)
    sys.exit(2)


def pin_cpus(threads: int) -> list[int]:
  """Restricts this process to its first ``threads`` schedulable CPUs; returns their ids.

  Call before importing jax or torch: XLA's CPU client sizes its intra-op thread pool from
  the schedulable CPUs when it starts, and OpenMP (torch) reads OMP_NUM_THREADS at load.

  Raises:
    ValueError: ``threads`` < 1 or more than the CPUs this process may use.
  """
  cpus = sorted(os.sched_getaffinity(0))
  if not 1 <= threads <= len(cpus):
    raise ValueError(f'--threads={threads} must be in [1, {len(cpus)}] (schedulable CPUs)')
  for var in ('OMP_NUM_THREADS', 'MKL_NUM_THREADS', 'OPENBLAS_NUM_THREADS'):
    os.environ[var] = str(threads)
  os.sched_setaffinity(0, cpus[:threads])
  return cpus[:threads]


def memory_mib() -> dict[str, float]:
  """This process's resident memory in MiB: ``rss`` now (VmRSS) and ``peak`` so far (VmHWM,
  the same as ``ru_maxrss``, which is the fallback where /proc is missing)."""
  fields = {}
  try:
    with open('/proc/self/status') as f:
      for line in f:
        name, _, value = line.partition(':')
        if name in ('VmRSS', 'VmHWM'):
          fields[name] = float(value.split()[0]) / 1024  # kB -> MiB
  except OSError:
    pass
  max_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
  return {'rss': fields.get('VmRSS', max_rss), 'peak': fields.get('VmHWM', max_rss)}


def start_peak_window() -> dict[str, float]:
  """``memory_mib()`` now, then restarts the kernel's high-water mark (Linux clear_refs 5):
  a later ``memory_mib()['peak']`` is the largest RSS from this call on (at least the RSS
  now, which stays resident).

  Raises:
    OSError: /proc/self/clear_refs cannot be written.
  """
  now = memory_mib()
  with open('/proc/self/clear_refs', 'w') as f:
    f.write('5')
  return now


def emit(result: dict) -> None:
  """Worker side: prints ``result`` as the ``RESULT <json>`` line ``run_worker`` reads."""
  print(RESULT_PREFIX + json.dumps(result), flush=True)


def run_worker(script: str, argv: Sequence[str]) -> dict:
  """Runs ``python script *argv`` in a fresh process and returns its ``emit``ted dict.

  Lines of the worker's stderr that mention donation, recompilation or a warning are passed
  on, so a silent slowdown (e.g. donated buffers JAX could not use) shows in the log.

  Raises:
    SystemExit: the worker failed or printed no result (its output tail is printed).
  """
  cmd = [sys.executable, script, *argv]
  proc = subprocess.run(cmd, capture_output=True, text=True, check=False,
                        env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL='3'))
  results = [line[len(RESULT_PREFIX):] for line in proc.stdout.splitlines()
             if line.startswith(RESULT_PREFIX)]
  if proc.returncode != 0 or not results:
    print(proc.stdout[-4000:], proc.stderr[-4000:], sep='\n', file=sys.stderr)
    sys.exit(f'worker failed (exit status {proc.returncode}): {" ".join(cmd)[:300]}')
  for line in proc.stderr.splitlines():
    if any(word in line.lower() for word in ('donat', 'recompil', 'userwarning')):
      print(f'[worker stderr] {line}')
  return json.loads(results[-1])


def run_workers(script: str, argv: Sequence[str],
                torch_workers: Sequence[str] = ('pytorch',)) -> tuple[dict, list[dict]]:
  """Runs ``--worker jaxssl``, then each PyTorch worker given the jaxssl result's ``spec``
  through ``--spec``; returns (jaxssl result, [PyTorch results])."""
  jax_r = run_worker(script, [*argv, '--worker=jaxssl'])
  spec = f'--spec={json.dumps(jax_r["spec"])}'
  return jax_r, [run_worker(script, [*argv, f'--worker={w}', spec]) for w in torch_workers]


def load_average() -> str:
  """The 1-, 5- and 15-minute load averages, for the log (the cores may be shared)."""
  return ', '.join(f'{x:.2f}' for x in os.getloadavg())


def warn_if_loaded(threads: int) -> None:
  """Prints a note when the 1-minute load average exceeds the CPU count less ``threads``:
  other processes then share the cores, which inflates both timings and hurts PyTorch's
  OpenMP threads (they wait for each other at every parallel region) more than XLA's."""
  load, cpus = os.getloadavg()[0], os.cpu_count() or 1
  if load > max(cpus - threads, 0) + 0.5:
    print(f'note: load average {load:.2f} on {cpus} CPUs before the run: the cores are '
          'shared with other processes, so both timings are inflated and noisy (PyTorch\'s '
          'OpenMP threads suffer most); rerun on an idle machine for numbers to quote')


def make_parser(doc: str, *, threads: int, quick: dict,
                quick_help: str) -> argparse.ArgumentParser:
  """The options every comparison has; ``--quick`` sets the options in ``quick`` (after
  parsing, see ``run``). ``--worker`` and ``--spec`` are internal."""
  parser = argparse.ArgumentParser(description=doc.split('\n')[0])
  parser.add_argument('--threads', type=int, default=threads,
                      help='CPUs (and threads) given to each framework, the same for both')
  parser.add_argument('--quick', action='store_true', help=quick_help)
  parser.add_argument('--worker', default='', help=argparse.SUPPRESS)
  parser.add_argument('--spec', default='{}', help=argparse.SUPPRESS)  # from the jaxssl side
  parser.set_defaults(quick_overrides=quick)
  return parser


def run(script: str, parser: argparse.ArgumentParser, workers: dict[str, Callable],
        compare: Callable, *, modules: Sequence[str] = ('torch',)) -> None:
  """A comparison's entry point.

  As a worker (``--worker NAME``): pins the CPUs (``args.cpus``), runs ``workers[NAME](args)``
  and ``emit``s its result. As the parent: exits with status 2 unless ``modules`` import,
  prints the load average, runs ``compare(script, args) -> (ratio_name, ratio, note)``, which
  starts the workers and prints the tables, and ends with ``note`` and ``<ratio_name>=<ratio>``.
  """
  args = parser.parse_args()
  if args.quick:
    vars(args).update(args.quick_overrides)
  if args.worker:
    args.cpus = pin_cpus(args.threads)
    emit(workers[args.worker](args))
    return
  require_torch(modules)
  print(f'load average before (1, 5, 15 min): {load_average()}')
  warn_if_loaded(args.threads)
  ratio_name, ratio, note = compare(os.path.abspath(script), args)
  print(f'load average after (1, 5, 15 min): {load_average()} (other load on the shared CPUs '
        'inflates and scatters timings)')
  if note:
    print(note)
  print(f'{ratio_name}={ratio:.3f}')


def start_torch_worker(args, *, attributes: bool = False) -> tuple[float, object]:
  """Gives torch ``--threads`` intra-op threads and seeds it with the spec's ``seed``.

  Returns:
    (RSS after the imports, MiB; the jaxssl worker's ``--spec``: a dict, or with
    ``attributes`` namespaces read as a ConfigDict is, ``config.optim.learning_rate``, with
    tuples as lists).
  """
  import torch  # pylint: disable=import-outside-toplevel
  torch.set_num_threads(args.threads)
  import_mib = memory_mib()['rss']
  hook = (lambda d: types.SimpleNamespace(**d)) if attributes else None
  spec = json.loads(args.spec, object_hook=hook)
  torch.manual_seed(spec.seed if attributes else spec['seed'])
  return import_mib, spec


def torch_lr_lambda(optim: dict, num_train_steps: int):
  """The multiplier of the peak rate at update k (0-based) that ``jaxssl.train.optim.
  make_schedule`` gives: linear warmup from 0, then linear/cosine decay to 0 or constant."""
  warmup, decay = optim['warmup_steps'], optim['decay']
  decay_steps = max(num_train_steps - warmup, 1)

  def factor(k: int) -> float:
    if k < warmup:
      return k / warmup
    frac = min(k - warmup, decay_steps) / decay_steps
    if decay == 'linear':
      return 1.0 - frac
    if decay == 'cosine':
      return 0.5 * (1.0 + math.cos(math.pi * frac))
    return 1.0
  return factor


# ----------------------------------------------------------------------------- language models

def lm_parser(doc: str, *, vocab: int) -> argparse.ArgumentParser:
  """The command line of both language-model comparisons (``--preset`` is internal)."""
  parser = make_parser(doc, threads=len(os.sched_getaffinity(0)),
                       quick={'presets': 'mini', 'steps': 3, 'warmup': 1},
                       quick_help='mini preset only, 1 warm-up + 3 timed steps: under a minute')
  parser.add_argument('--presets', default='mini,small', help='comma-separated size presets')
  parser.add_argument('--batch', type=int, default=32, help='rows per step (B)')
  parser.add_argument('--seq_len', type=int, default=128, help='tokens per row (L)')
  parser.add_argument('--vocab', type=int, default=vocab, help='vocabulary size (V)')
  parser.add_argument('--steps', type=int, default=10, help='timed steps (median reported)')
  parser.add_argument('--warmup', type=int, default=2, help='untimed steps after compiling')
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
  """Runs ``step_fn() -> loss`` (a float or a scalar array) ``warmup + steps`` times, each finished before the clock
  stops, after restarting the memory high-water mark.

  Returns:
    dict: ``setup_mib`` (``memory_mib()`` when the first step starts: ``rss`` then and
    ``peak`` up to then; see ``start_peak_window``), ``times`` (seconds per step) and
    ``loss0`` (the first step's loss, before any update).
  """
  setup = start_peak_window()
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
    analysis, MiB); ``flops`` (XLA's cost analysis of the compiled step; 0.0 when it
    reports none).
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
              flops=float((cost or {}).get('flops', 0.0)))


def finish_lm_worker(result: dict, timing: dict, *, import_mib: float, args) -> dict:
  """Adds the fields ``print_lm_table`` reads to a worker's descriptive ``result``, from
  ``timing`` (``time_each_step``'s, called just before this) and ``import_mib`` (RSS after
  the framework imports, MiB)."""
  step_s = float(np.median(timing['times'][args.warmup:]))
  steps_peak = memory_mib()['peak']
  return dict(result, step_s=step_s, tokens_per_s=args.batch * args.seq_len / step_s,
              loss0=float(timing['loss0']), peak_mib=max(timing['setup_mib']['peak'], steps_peak),
              steps_peak_mib=steps_peak, ready_mib=timing['setup_mib']['rss'],
              import_mib=import_mib)


def lm_jax_setup(args, experiment) -> types.SimpleNamespace:
  """``experiment``'s (``experiments.mlm_pretrain`` or ``clm_pretrain``) config at
  ``--preset``, learned positions, B, L and V, with its mesh and train state.

  Call right after importing the experiment: ``import_mib`` is the RSS measured here.
  Returns a namespace of experiment, config, mesh, graphdef, tx, state, shardings,
  import_mib and matmul_peak (``mlm_step.matmul_peak``).
  """
  import mlm_step  # pylint: disable=import-outside-toplevel
  from jaxssl.parallel import mesh as mesh_lib  # pylint: disable=import-outside-toplevel
  import_mib = memory_mib()['rss']
  config = experiment.get_config()
  config.model.preset, config.model.position_encoding = args.preset, 'learned'
  config.global_batch_size, config.data.seq_len = args.batch, args.seq_len
  config.data.vocab_size = args.vocab
  mesh = mesh_lib.make_mesh(config.mesh)
  experiment.validate_config(config, mesh.devices.size)
  graphdef, tx, state, shardings = experiment.create_train_state(config, mesh, args.vocab)
  return types.SimpleNamespace(experiment=experiment, config=config, mesh=mesh,
                               graphdef=graphdef, tx=tx, state=state, shardings=shardings,
                               import_mib=import_mib, matmul_peak=mlm_step.matmul_peak)


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
                  f'F={cfg.mlp_dim}, learned positions, {arch}, f32'),
           versions=f'jax {jax.__version__}, Python {sys.version.split()[0]}',
           threads=(f'XLA CPU {jax.devices()}, pinned to CPUs {args.cpus} (its intra-op pool '
                    f'is sized from them), XLA_FLAGS={os.environ.get("XLA_FLAGS", "")!r}')),
      r, import_mib=s.import_mib, args=args)
  out['matmul_peak'] = s.matmul_peak(2048, jnp.float32)
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
  sched = torch.optim.lr_scheduler.LambdaLR(opt, torch_lr_lambda(optim, num_train_steps))
  return opt, sched


def torch_matmul_peak(n: int = 2048, repeats: int = 5) -> float:
  """FLOP/s of an f32 [n, n] @ [n, n] torch product (median of ``repeats``, one warm-up)."""
  import torch  # pylint: disable=import-outside-toplevel
  a = torch.ones(n, n)
  torch.mm(a, a)
  times = []
  for _ in range(repeats):
    t = time.perf_counter()
    torch.mm(a, a)
    times.append(time.perf_counter() - t)
  return 2 * n ** 3 / float(np.median(times))


def time_lm_torch(args, model, loss_fn: Callable, spec: dict, *, no_decay, variant: str,
                  import_mib: float) -> dict:
  """Times eager transformers train steps: ``loss_fn()`` (a scalar tensor), backward,
  global-norm clipping, AdamW and the schedule from ``spec['optim']``; returns the row."""
  import torch  # pylint: disable=import-outside-toplevel
  import transformers  # pylint: disable=import-outside-toplevel
  model.train()
  opt, sched = torch_adamw(model, spec['optim'], spec['num_train_steps'], no_decay)
  clip = spec['optim']['grad_clip_norm']

  def step() -> float:
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
                    f'{torch.get_num_interop_threads()}, eager, attention '
                    f'{model.config._attn_implementation}')),  # pylint: disable=protected-access
      r, import_mib=import_mib, args=args)
  out['matmul_peak'] = torch_matmul_peak()
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
  counts of the step over ``peak`` (the XLA f32 matmul FLOP/s).
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
  """``run``'s ``compare`` for the language models: per preset, the jaxssl worker then each
  PyTorch worker; prints a table per preset. The ratio is jaxssl tokens/s over the first
  PyTorch worker's (the like-for-like one), the geometric mean over ``--presets``."""
  presets = args.presets.split(',')
  ratios, first = [], None
  for preset in presets:
    jax_r, torch_rs = run_workers(script, [*sys.argv[1:], f'--preset={preset}'], torch_workers)
    if first is None:
      first = torch_rs[0]
      print(f'jaxssl:  {jax_r["versions"]}; {jax_r["threads"]}')
      print(f'PyTorch: {first["versions"]}; {first["threads"]}')
      print(f'f32 matmul 2048^3: XLA {jax_r["matmul_peak"] / 1e9:.1f} GFLOP/s, torch '
            f'{first["matmul_peak"] / 1e9:.1f} GFLOP/s (MFU columns use the XLA one)')
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
  print('\nMFU_xla: XLA cost-analysis FLOPs of the jaxssl step / step_s / XLA f32 matmul peak; '
        'MFU_6ND: 6 x params x B x L / step_s / same peak. Both count the jaxssl step\'s work, '
        'also for PyTorch rows (a variant doing more work gets no credit for it).')
  print('RSS_MiB: after imports, when the first step starts, peak of the whole process, peak '
        'during the steps; each framework in its own process.')
  note = (f'{ratio_name}: jaxssl tokens/s / PyTorch [{first["variant"]}] tokens/s, geometric '
          f'mean over presets {",".join(presets)}')
  return ratio_name, float(np.exp(np.mean(np.log(ratios)))), note


# ----------------------------------------------------------------------------- images

def image_parser(doc: str, *, warmup: int, steps: int, quick: dict) -> argparse.ArgumentParser:
  """The command line of both image comparisons (quick: the block sizes of ``--quick``)."""
  parser = make_parser(
      doc, threads=min(2, len(os.sched_getaffinity(0))), quick=quick,
      quick_help=' '.join(f'--{k} {v}' for k, v in quick.items()) + ': under a minute')
  parser.add_argument('--image_size', type=int, default=8, choices=sorted(IMAGE_SHAPES),
                      help='8: 8x8x1 digits (the default data); 28: 28x28x1; 32: 32x32x3')
  parser.add_argument('--warmup', type=int, default=warmup, help='untimed steps first')
  parser.add_argument('--steps', type=int, default=steps, help='steps per timed block')
  parser.add_argument('--repeats', type=int, default=5, help='timed blocks (median taken)')
  return parser


def make_batches(shape, batch_size: int, count: int = 8, seed: int = 0) -> list[np.ndarray]:
  """``count`` batches of random uint8 images [B, H, W, C], cycled through by both sides."""
  rng = np.random.default_rng(seed)
  return [rng.integers(0, 256, (batch_size,) + shape, dtype=np.uint8) for _ in range(count)]


def time_steps(step: Callable[[int], None], sync: Callable[[], None], *, examples_per_step: int,
               warmup: int, steps: int, repeats: int) -> dict:
  """Examples per second of full train steps, after warm-up.

  ``step(i)`` runs train step i (dispatch only is fine); ``sync()`` waits until every
  dispatched step has finished. The first call (JIT compilation for jaxssl) is timed on its
  own, then ``warmup - 1`` more steps run untimed, then ``repeats`` blocks of ``steps`` steps
  are each timed from the first dispatch to the end of ``sync``.

  Returns:
    {'first_step_s': seconds of step 0 including compilation, 'examples_per_s': median over
    the blocks, 'examples_per_s_blocks': every block's rate, 'cpu_ms_per_step': median over
    the blocks of this process's CPU time (user + system, all threads) per step, which other
    processes on the machine inflate less than wall time, 'steps_run': total steps}.
  """
  t = time.perf_counter()
  step(0)
  sync()
  first = time.perf_counter() - t
  i = 1
  for _ in range(max(warmup - 1, 0)):
    step(i)
    i += 1
  sync()
  rates, cpu_ms = [], []
  for _ in range(repeats):
    t, cpu = time.perf_counter(), time.process_time()
    for _ in range(steps):
      step(i)
      i += 1
    sync()
    rates.append(steps * examples_per_step / (time.perf_counter() - t))
    cpu_ms.append(1e3 * (time.process_time() - cpu) / steps)
  return {'first_step_s': first, 'examples_per_s': statistics.median(rates),
          'examples_per_s_blocks': rates, 'cpu_ms_per_step': statistics.median(cpu_ms),
          'steps_run': i}


def time_image_steps(args, step, sync, *, batch_size: int, import_mib: float, version: str,
                     threads: int, params: dict, last_loss: Callable[[], float]) -> dict:
  """``time_steps`` with the command line's block sizes, plus the fields ``print_image_table``
  and ``check_param_counts`` read (``last_loss()`` is called after the steps)."""
  timing = time_steps(step, sync, examples_per_step=batch_size, warmup=args.warmup,
                      steps=args.steps, repeats=args.repeats)
  return dict(timing, version=version, batch_size=batch_size, threads=threads, params=params,
              rss_import_mib=import_mib, peak_rss_mib=memory_mib()['peak'],
              last_loss=float(last_loss()))


def time_image_jax(args, experiment, make_config: Callable, *, params_of: Callable,
                   loss_key: str) -> dict:
  """Times ``experiment``'s (``experiments.vae`` or ``dcgan``) jitted train step as its
  ``train_and_evaluate`` runs it (state donated, each batch placed by ``put_batch``) on
  random images of ``--image_size``; returns the jaxssl result (``spec``: the config).

  Args:
    experiment: the imported experiment module (import it just before: the RSS after the
      imports is measured here).
    make_config: ``() -> ConfigDict`` of the experiment.
    params_of: ``state -> {network name: parameter count}``.
    loss_key: the metric reported as ``last_loss``.
  """
  import jax  # pylint: disable=import-outside-toplevel
  from jaxssl.parallel import mesh as mesh_lib  # pylint: disable=import-outside-toplevel
  from jaxssl.parallel import sharding  # pylint: disable=import-outside-toplevel
  import_mib = memory_mib()['rss']
  shape = IMAGE_SHAPES[args.image_size]
  config = make_config()
  mesh = mesh_lib.make_mesh(config.mesh)
  data = {'image_shape': shape, 'num_train_steps': config.num_train_steps}
  graphdef, tx, state, shardings = experiment.create_train_state(config, mesh, data)
  step_fn = sharding.jit_train_step(experiment.make_train_step(config, graphdef, tx, data),
                                    shardings, mesh)
  rng = jax.random.fold_in(jax.random.key(config.seed), 1)  # as loop.run_and_close
  batches = make_batches(shape, config.global_batch_size)
  labels = np.zeros((config.global_batch_size,), np.int32)
  carry = {'state': state, 'metrics': None}
  params = params_of(state)

  def step(i):
    batch = sharding.put_batch({'image': batches[i % len(batches)], 'label': labels}, mesh)
    carry['state'], carry['metrics'] = step_fn(carry['state'], batch, rng)

  def sync():
    jax.block_until_ready((carry['state'], carry['metrics']))

  out = time_image_steps(args, step, sync, batch_size=config.global_batch_size,
                         import_mib=import_mib, version=f'jax {jax.__version__}',
                         threads=len(os.sched_getaffinity(0)), params=params,
                         last_loss=lambda: carry['metrics'][loss_key])
  return dict(out, spec=json.loads(config.to_json()),
              compilations=step_fn._cache_size())  # pylint: disable=protected-access


def jax_param_count(params) -> int:
  """Number of scalars in a pytree of parameter arrays."""
  import jax  # pylint: disable=import-outside-toplevel
  return int(sum(x.size for x in jax.tree.leaves(params)))


def torch_param_count(module) -> int:
  """Number of scalars in a torch module's parameters (BatchNorm running statistics are
  buffers, not parameters, as in jaxssl where they are ``nnx.BatchStat``)."""
  return int(sum(p.numel() for p in module.parameters()))


def check_param_counts(results: dict[str, dict]) -> None:
  """Prints every network's parameter count on both sides; exits with status 1 naming the
  network when they differ (the two sides would then not be the same model)."""
  jax_counts, torch_counts = results['jaxssl']['params'], results['pytorch']['params']
  bad = []
  for name in jax_counts:
    ours, theirs = jax_counts[name], torch_counts.get(name)
    print(f'parameters {name:14} jaxssl {ours:>10,}   pytorch '
          f'{theirs if theirs is None else format(theirs, ",")!s:>10}')
    if ours != theirs:
      bad.append(name)
  if bad or set(torch_counts) != set(jax_counts):
    sys.exit(f'parameter counts differ ({", ".join(bad) or "network names"}): the PyTorch '
             'networks are not the jaxssl ones')


def print_image_table(results: dict[str, dict], batch_size: int) -> None:
  """One row per framework: version, threads, first step, median examples/s (and the range
  over blocks), ms per step, resident memory after imports and at the peak (MiB)."""
  print(f'\n{"":8} {"version":>16} {"threads":>7} {"first_step_s":>12} {"examples/s":>10} '
        f'{"(min-max)":>11} {"ms/step":>8} {"cpu_ms/step":>11} {"rss_import":>10} {"peak_rss":>8} '
        f'{"peak-import":>11} {"last_loss":>9}')
  for name in ('jaxssl', 'pytorch'):
    r = results[name]
    rates = r['examples_per_s_blocks']
    print(f'{name:8} {r["version"]:>16} {r["threads"]:>7} {r["first_step_s"]:12.2f} '
          f'{r["examples_per_s"]:10.0f} {f"{min(rates):.0f}-{max(rates):.0f}":>11} '
          f'{1e3 * batch_size / r["examples_per_s"]:8.2f} {r["cpu_ms_per_step"]:11.2f} '
          f'{r["rss_import_mib"]:10.0f} '
          f'{r["peak_rss_mib"]:8.0f} {r["peak_rss_mib"] - r["rss_import_mib"]:11.0f} '
          f'{r["last_loss"]:9.3f}')
  print('(examples/s and ms/step: wall time, median over the timed blocks; cpu_ms/step: the '
        "worker's CPU time over all its threads, median; memory in MiB: resident after "
        'imports, VmHWM peak of the worker process, and their difference)')


def compare_images(script: str, args, *, describe: Callable[..., str], loss_note: str,
                   ratio_name: str) -> tuple:
  """``run``'s ``compare`` for the images: the jaxssl worker, then the PyTorch one; checks
  that the batch sizes and parameter counts agree, prints ``describe(args, batch size,
  'HxWxC')`` and the table. The ratio is jaxssl examples/s over PyTorch's."""
  jax_r, (torch_r,) = run_workers(script, sys.argv[1:])
  results, batch = {'jaxssl': jax_r, 'pytorch': torch_r}, jax_r['batch_size']
  if torch_r['batch_size'] != batch:
    sys.exit(f'batch sizes differ: {batch} and {torch_r["batch_size"]}')
  shape = 'x'.join(map(str, IMAGE_SHAPES[args.image_size]))
  print(f'{describe(args, batch, shape)}; {args.threads} threads each '
        f'(torch.get_num_threads() = {torch_r["threads"]}, jaxssl CPUs allowed = {jax_r["threads"]}); warm-up '
        f'{args.warmup} steps, median of {args.repeats} blocks of {args.steps} steps')
  check_param_counts(results)
  print_image_table(results, batch)
  print(loss_note)
  print(f'jaxssl jitted step compilations: {jax_r["compilations"]} (1 = no recompilation)')
  return ratio_name, jax_r['examples_per_s'] / torch_r['examples_per_s'], None


def same_padding(size: int, kernel: int, stride: int) -> tuple[int, int]:
  """(before, after) zero padding of XLA/Flax 'SAME' for one spatial axis: the output has
  ceil(size / stride) positions and any odd padding goes after (e.g. 7 -> 4 pads (1, 2))."""
  out = -(-size // stride)
  total = max((out - 1) * stride + kernel - size, 0)
  return total // 2, total - total // 2


def torch_same_conv(cin: int, cout: int, kernel: int, stride: int, size: int, *,
                    bias: bool = True) -> list:
  """PyTorch layers equal to Flax ``nnx.Conv(..., padding='SAME')`` on a square input of
  side ``size``: a Conv2d with symmetric padding, or a ZeroPad2d then an unpadded Conv2d
  when 'SAME' pads unevenly. Returns a list of modules (for ``nn.Sequential``)."""
  from torch import nn  # pylint: disable=import-outside-toplevel
  lo, hi = same_padding(size, kernel, stride)
  if lo == hi:
    return [nn.Conv2d(cin, cout, kernel, stride, padding=lo, bias=bias)]
  return [nn.ZeroPad2d((lo, hi, lo, hi)), nn.Conv2d(cin, cout, kernel, stride, bias=bias)]


def torch_upsample2(cin: int, cout: int, *, bias: bool = True):
  """PyTorch layer equal in shape to Flax ``nnx.ConvTranspose(cin, cout, (4, 4),
  strides=(2, 2), padding='SAME')``: a 4x4 stride-2 transposed convolution with padding 1,
  which doubles the height and width."""
  from torch import nn  # pylint: disable=import-outside-toplevel
  return nn.ConvTranspose2d(cin, cout, 4, 2, padding=1, bias=bias)


def torch_grad_norm(module):
  """Global L2 norm of a module's gradients (``optax.global_norm`` of the grads), a tensor."""
  import torch  # pylint: disable=import-outside-toplevel
  return torch.nn.utils.get_total_norm([p.grad for p in module.parameters()
                                        if p.grad is not None])
