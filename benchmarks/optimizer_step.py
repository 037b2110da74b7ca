"""LAMB step time: timm's Lamb against ours (pretrain/engine/lamb.py, multi-tensor), side by side (issue 17).

    python -m benchmarks.optimizer_step [--models vit_b vit_l] [--repeats N] [--warmup N] [--host-steps N]
                                        [--layer-decay LD] [--threads N] [--device cpu|cuda]
                                        [--out benchmarks/results/optimizer_step_<device>]

For each model, the parameter groups the engine builds (backbones.layer_decay_param_groups: weight decay 0.02 on
the matrices, none on biases, norms and embeddings; with --layer-decay one pair of groups per layer, as fine-tuning)
get random gradients, and three optimizers step them in turn:
  timm          timm.optim.Lamb(max_grad_norm=None) as the engine built it before (optimizer.foreach=False): timm
                resolves foreach=None to its per-parameter loop on CPU and to its foreach path on CUDA
  timm_foreach  the same with foreach=True
  ours          ForeachLamb, what the engine builds for optimizer.type='lamb'
They share the parameters, gradients and moment buffers (only the time is measured here; tests/test_lamb.py checks
that the results are timm's), so memory is that of one optimizer. `--repeats` timed rounds, each stepping every
optimizer once in a rotating order so that drifts in machine load hit all alike; times are medians and a ratio is
the median of the per-round ratios (below 1: ours is faster).
"ms" is one step's wall time (on CUDA between two synchronizations; "host ms" is when step() returned, i.e. the
host's time to issue it, unless a full launch queue held it back). "twin ms" is the host's own work per step,
measured where nothing else costs: the same architecture at width 16 with one head (the same tensors, groups and
operators per step, kernels of a few hundred numbers), `--host-steps` rounds, medians. "aten ops" counts the
operators a step dispatches from Python (a foreach op is one).
"""
from __future__ import annotations

import argparse
import datetime
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Callable, Dict, List, Optional

import timm
import torch
from timm.optim import Lamb

from backbones import create_model, is_model, layer_decay_param_groups
from benchmarks.common import OpCounter, device_name, host_and_kernel_time, load_note, report
from pretrain.engine.lamb import ForeachLamb

ROOT = Path(__file__).resolve().parents[1]
VARIANTS = ('timm', 'timm_foreach', 'ours')
TWIN_WIDTH = 16
LR, WEIGHT_DECAY, EPS = 1e-3, 0.02, 1e-8  # the cosub recipe's (configs/_base_/deit3_in1k.py); lr is irrelevant here


def make_optimizers(model: torch.nn.Module, layer_decay: Optional[float]) -> Dict[str, torch.optim.Optimizer]:
    groups = layer_decay_param_groups(model, WEIGHT_DECAY, layer_decay)
    for g in groups:
        g.pop('names')
    fresh = lambda: [dict(g, params=list(g['params'])) for g in groups]
    opts = dict(timm=Lamb(fresh(), lr=LR, weight_decay=WEIGHT_DECAY, eps=EPS, max_grad_norm=None),
                timm_foreach=Lamb(fresh(), lr=LR, weight_decay=WEIGHT_DECAY, eps=EPS, max_grad_norm=None,
                                  foreach=True),
                ours=ForeachLamb(fresh(), lr=LR, weight_decay=WEIGHT_DECAY, eps=EPS))
    g = torch.Generator(device=next(model.parameters()).device).manual_seed(0)
    for p in model.parameters():
        p.grad = torch.randn(p.shape, device=p.device, generator=g).mul_(1e-3)
    opts['ours'].step()  # creates the moment buffers; the others share them
    for name in ('timm', 'timm_foreach'):
        for p in model.parameters():
            opts[name].state[p] = opts['ours'].state[p]
    return opts


def sync(cuda: bool) -> None:
    if cuda:
        torch.cuda.synchronize()


def timed_rounds(opts: Dict[str, torch.optim.Optimizer], rounds: int, warmup: int, cuda: bool) -> Dict[str, dict]:
    """`rounds` timed steps per optimizer after `warmup` untimed ones, the order rotating each round."""
    out = {name: dict(times=[], hosts=[]) for name in opts}
    names = list(opts)
    for r in range(warmup + rounds):
        for name in names[r % len(names):] + names[:r % len(names)]:
            sync(cuda)
            start = time.perf_counter()
            opts[name].step()
            host = time.perf_counter() - start
            sync(cuda)
            if r >= warmup:
                out[name]['times'].append(time.perf_counter() - start)
                out[name]['hosts'].append(host)
    return out


def summary(measured: Dict[str, dict], cuda: bool) -> dict:
    row = {name: dict(ms=statistics.median(m['times']) * 1e3) for name, m in measured.items()}
    if cuda:
        for name, m in measured.items():
            row[name]['host_ms'] = statistics.median(m['hosts']) * 1e3
    ours = measured['ours']['times']
    row['ratio'] = {f'ours / {name}': statistics.median(a / b for a, b in zip(ours, measured[name]['times']))
                    for name in ('timm', 'timm_foreach')}
    return row


def aten_ops(step: Callable[[], None]) -> int:
    with OpCounter() as ops:
        step()
    return ops.total


def run_model(name: str, device: torch.device, repeats: int, warmup: int, host_steps: int,
              layer_decay: Optional[float]) -> dict:
    cuda = device.type == 'cuda'
    torch.manual_seed(0)
    model = create_model(name, num_classes=1000).to(device)
    opts = make_optimizers(model, layer_decay)
    row = dict(model=name, params_m=round(sum(p.numel() for p in model.parameters()) / 1e6, 1),
               tensors=sum(1 for _ in model.parameters()), groups=len(opts['ours'].param_groups))
    print(f'{name}: {row["params_m"]}M parameters in {row["tensors"]} tensors, {row["groups"]} groups', flush=True)
    full = summary(timed_rounds(opts, repeats, warmup, cuda), cuda)
    if cuda:
        for variant, opt in opts.items():
            measured = host_and_kernel_time(opt.step)
            full[variant].update(kernel_ms=measured['kernel_s'] * 1e3, host_ops=measured['host_ops'])
    row['full'] = full
    del model, opts
    if cuda:
        torch.cuda.empty_cache()
    if host_steps:
        twin = create_model(name, embed_dim=TWIN_WIDTH, num_heads=1, num_classes=10).to(device)
        opts = make_optimizers(twin, layer_decay)
        row['twin'] = summary(timed_rounds(opts, host_steps, 3, cuda), cuda)
        for variant, opt in opts.items():
            row['twin'][variant]['aten_ops'] = aten_ops(opt.step)
    print(format_row(row), flush=True)
    return row


def format_row(row: dict) -> str:
    full, twin = row['full'], row.get('twin')
    parts = [f"{row['model']}:"] + [f"{v} {full[v]['ms']:.1f} ms" + (f" (twin {twin[v]['ms']:.2f} ms)" if twin else '')
                                    for v in VARIANTS]
    parts += [f"{k} {r:.3f}" for k, r in full['ratio'].items()]
    return '  '.join(parts)


def markdown(meta: dict, rows: List[dict]) -> str:
    cuda = 'CPU' not in meta['device']
    lines = [f"# LAMB step: timm's Lamb vs ours, foreach ({meta['device']})", '',
             f"{meta['date']}; torch {meta['torch']}, timm {meta['timm']}; float32 parameters; {meta['repeats']} "
             f"timed rounds after {meta['warmup']} untimed, twin {meta['host_steps']} rounds; layer decay "
             f"{meta['layer_decay']}.", '',
             "timm: timm.optim.Lamb(max_grad_norm=None) with its default foreach=None (per-parameter loop on CPU, "
             "foreach on CUDA), what optimizer.foreach=False builds; timm_foreach: foreach=True; ours: "
             "pretrain/engine/lamb.py, what the engine builds. ms: one step (median); twin ms: the same tensors at "
             "width 16, the host's own work per step; aten ops: operators dispatched per twin step. Ratios: median of "
             "per-round ratios, below 1 ours is faster.", '',
             f"Command: `{meta['command']}`; wall time {meta.get('wall_s', '?')} s.", '']
    lines += [f"Note: {note}" for note in meta['notes']] + ([''] if meta['notes'] else [])
    head = ['model', 'params M', 'tensors', 'groups', 'variant', 'ms'] + (['host ms', 'kernel ms'] if cuda else []) \
        + ['twin ms', 'aten ops']
    lines += ['| ' + ' | '.join(head) + ' |', '|' + '---|' * len(head)]
    for row in rows:
        for v in VARIANTS:
            f, t = row['full'][v], (row.get('twin') or {}).get(v, {})
            cells = [row['model'], f"{row['params_m']}", str(row['tensors']), str(row['groups']), v, f"{f['ms']:.2f}"]
            if cuda:
                cells += [f"{f['host_ms']:.2f}", f"{f['kernel_ms']:.2f}"]
            cells += [f"{t['ms']:.3f}" if t else '-', str(t.get('aten_ops', '-'))]
            lines.append('| ' + ' | '.join(cells) + ' |')
    lines += ['', '| model | ratio | time | twin time |', '|---|---|---|---|']
    for row in rows:
        for key, r in row['full']['ratio'].items():
            twin = row.get('twin', {}).get('ratio', {}).get(key)
            lines.append(f"| {row['model']} | {key} | {r:.3f} | {f'{twin:.3f}' if twin is not None else '-'} |")
    hosts = [(row, v) for row in rows for v in VARIANTS if row['full'][v].get('host_ops')]
    if hosts:
        lines += ['', 'Host self time of one step by operator (torch.profiler, top 8: ms, calls):', '']
        lines += [f"- {row['model']} {v}: " + ', '.join(f"{o['name']} {o['self_ms']:.2f} ({o['calls']})"
                                                       for o in row['full'][v]['host_ops']) for row, v in hosts]
    return '\n'.join(lines) + '\n'


def main(argv: Optional[List[str]] = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--models', nargs='+', default=['vit_b', 'vit_l'])
    parser.add_argument('--repeats', type=int, help='timed rounds: default 20 on CUDA, 5 on CPU')
    parser.add_argument('--warmup', type=int, help='untimed rounds first: default 5 on CUDA, 1 on CPU')
    parser.add_argument('--host-steps', type=int, default=30, help='rounds of the width-16 twin (0: skip it)')
    parser.add_argument('--layer-decay', type=float, help='per-layer groups as fine-tuning (default: none, as '
                        'pretraining)')
    parser.add_argument('--threads', type=int, help='CPU threads (default: torch default)')
    parser.add_argument('--device', default='cuda' if torch.cuda.is_available() else 'cpu')
    parser.add_argument('--out', help='output path without suffix (default benchmarks/results/optimizer_step_<device>)')
    args = parser.parse_args(argv)
    for name in args.models:
        if not is_model(name):
            parser.error(f'--models {name}: unknown model (see backbones.list_models())')
    for flag, value in (('--repeats', args.repeats), ('--warmup', args.warmup), ('--host-steps', args.host_steps)):
        if value is not None and value < (1 if flag == '--repeats' else 0):
            parser.error(f'{flag} {value}: expected a whole number >= {1 if flag == "--repeats" else 0}')
    if args.layer_decay is not None and not 0 < args.layer_decay <= 1:
        parser.error(f'--layer-decay {args.layer_decay}: expected a number in (0, 1]')
    device = torch.device(args.device)
    cuda = device.type == 'cuda'
    if args.threads:
        torch.set_num_threads(args.threads)
    repeats = args.repeats or (20 if cuda else 5)
    warmup = args.warmup if args.warmup is not None else (5 if cuda else 1)
    notes = [] if cuda else ['CPU: torch runs foreach ops as a loop over the tensors in C++ (no multi-tensor '
                             'kernels); the target device is a GPU']
    meta = dict(device=device_name(device), torch=torch.__version__, timm=timm.__version__,
                date=datetime.datetime.now().astimezone().isoformat(timespec='seconds'), repeats=repeats,
                warmup=warmup, host_steps=args.host_steps, layer_decay=args.layer_decay,
                threads=torch.get_num_threads(), python=platform.python_version(),
                command=' '.join(['python', '-m', 'benchmarks.optimizer_step']
                                 + (sys.argv[1:] if argv is None else argv)),
                notes=notes)
    load_at_start = load_note()
    started = time.perf_counter()
    rows = [run_model(name, device, repeats, warmup, args.host_steps, args.layer_decay) for name in args.models]
    out = Path(args.out or ROOT / 'benchmarks' / 'results' / f'optimizer_step_{device.type}')
    return report(out, meta, rows, markdown, started, load_at_start)


if __name__ == '__main__':
    main()
