"""Pretraining step cost: cosub + ESD against the DeiT III baseline and timm's model, eager and compiled; MFU.

    python -m benchmarks.pretrain_step [--models vit_b@256 vit_l@64] [--img-size N] [--repeats N] [--warmup N]
                                       [--compile-variants baseline cosub_esd | none] [--compile-scope blocks|model]
                                       [--compile-mode default|reduce-overhead|max-autotune|...] [--threads N]
                                       [--out benchmarks/results/pretrain_step_<device>]

Step kinds (variants): training steps (forward, BCE loss, backward, global-norm clip, LAMB step, as the engine
does them) on the same batch of B images, at the model's rate tau (supplement Table A.1), interleaved in this
process:
  baseline     DeiT III: our ViT, stochastic depth by masking, each image once
  timm         the peer: timm's deit3 model with timm's DropPath, each image once (same weights and settings)
  cosub_mask   cosub as the official code does it: the batch twice (2 submodels), masking (paper: 2.0x time)
  cosub_esd    ours: the batch twice, efficient stochastic depth
Each runs eager; the `--compile-variants` also run compiled (a compiled copy of the model, same weights: the loss
and the optimizer stay eager, as in the engine). `--compile-scope model` (the CUDA default) compiles the whole
model as `train.compile=True` does; `blocks` (the CPU default: C++ compilation on few cores is slow) compiles each
transformer block (regional compilation: the same fused kernels for nearly all the FLOPs, a third of the compile
time, more host overhead per step). `--compile-mode` defaults to 'reduce-overhead' on CUDA (CUDA graphs: at these
batch sizes an H200 step is bound by the host launching kernels, compiled or not) and 'default' on CPU. The
device's dense matmul peak is measured in the same run (bf16 8192^3 on CUDA, float32 2048^3 on CPU): MFU = FLOPs
per step / step time / peak.

Results: benchmarks/results/pretrain_step_<device>.{json,md}. JSON schema (contract 8; pretrain/dry_run.py reads
the CUDA file to estimate GPU-hours):
  {"meta": {"device", "torch", "timm", "python", "date", "dtype", "command", "peak_flops_per_s", "peak": {...},
            "compile_scope", "compile_mode", "repeats", "warmup", "notes", "wall_s"},
   "results": [{"model", "batch", "img_size", "tau", "esd_keep",
                "variants": {"<kind>": {"images": B, "samples": B * submodels, "flops", "activation_bytes",
                                        "aten_ops",                 # eager, forward + backward
                                        "time_ms":   {"eager", "compiled"},   # median step time
                                        "img_per_s": {"eager", "compiled"},   # B / time: distinct images
                                        "mfu":       {"eager", "compiled"},   # flops / time / peak
                                        "times_ms":  {"eager": [...], "compiled": [...]},
                                        "compile_s", "host_ms", "kernel_ms", "peak_bytes"  # CUDA / compiled only
                                        }},
                "ratios": {"cosub_esd / baseline": {"time": {"eager", "compiled"}, "flops", "activation_memory",
                                                    "peak_memory": {"eager", "compiled"}}, ...}}]}
"compiled" keys appear only for compiled kinds; "host_ms" (time for the host to issue the step) and "kernel_ms"
(summed GPU kernel time, torch.profiler) only on CUDA: host_ms above kernel_ms means the step is launch-bound.
Targets on a GPU: ViT-L at tau 0.45, batch 64: cosub_esd <= 1.15x the baseline's time; ViT-B/16 batch 256
baseline compiled: MFU >= 45%.
"""
from __future__ import annotations

import argparse
import datetime
import gc
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import torch
from torch import nn

ROOT = Path(__file__).resolve().parents[1]

import timm
from timm.optim import create_optimizer_v2

from backbones import create_model, keep_count
from benchmarks.common import (COMPILE_SCOPES, compiled_copy, counted, device_name, host_and_kernel_time,
                               load_note, matmul_peak, report, timed)
from pretrain.cosub import cosub_loss
from pretrain.engine.loop import clip_gradients

TAU = {'vit_s': 0.05, 'vit_m': 0.1, 'vit_b': 0.2, 'vit_l': 0.45, 'vit_h': 0.6}
TIMM_NAMES = {'vit_s': 'deit3_small_patch16_224', 'vit_m': 'deit3_medium_patch16_224',
              'vit_b': 'deit3_base_patch16_224', 'vit_l': 'deit3_large_patch16_224',
              'vit_h': 'deit3_huge_patch14_224'}
CPU_IMG_SIZE = {'vit_l': 112, 'vit_h': 112}
VARIANTS = ('baseline', 'timm', 'cosub_mask', 'cosub_esd')
RATIOS = (('cosub_esd', 'baseline'), ('cosub_mask', 'baseline'), ('cosub_esd', 'cosub_mask'), ('baseline', 'timm'))
GPU_DEFAULT_RUNS = ['vit_b@256', 'vit_l@64']  # the issue's rows: ViT-B/16 MFU, ViT-L cosub vs baseline
CPU_DEFAULT_RUNS = ['vit_b@10', 'vit_l@10']
COMPILE_MODES = ('default', 'reduce-overhead', 'max-autotune', 'max-autotune-no-cudagraphs')


class Step:
    """One variant's training step: its model, its optimizer, how many copies of the batch it sees."""

    def __init__(self, model: nn.Module, copies: int, images: torch.Tensor, targets: torch.Tensor,
                 compiled: bool = False):
        self.model, self.copies, self.targets, self.compiled = model.train(), copies, targets, compiled
        self.images = images.repeat(copies, 1, 1, 1) if copies > 1 else images
        # as the engine steps: the global norm clipped at 1.0 once, by the loop, not again inside LAMB
        self.optimizer = create_optimizer_v2(model, opt='lamb', lr=1e-3, weight_decay=0.02, max_grad_norm=None)
        self.cuda = images.is_cuda

    def forward_backward(self) -> None:
        if self.compiled:  # a new iteration for CUDA-graph trees (reduce-overhead / max-autotune); else a no-op
            torch.compiler.cudagraph_mark_step_begin()
        with torch.autocast('cuda', dtype=torch.bfloat16, enabled=self.cuda):
            logits = self.model(self.images)
        loss = cosub_loss(logits, self.targets, num_submodels=self.copies, lam=0.5 if self.copies > 1 else 1.0)
        loss.backward()

    def run(self) -> None:
        self.optimizer.zero_grad(set_to_none=True)
        self.forward_backward()
        clip_gradients(self.model.parameters(), 1.0)  # the engine's clip (DeiT III: 1.0)
        self.optimizer.step()

    def counted(self) -> dict:
        self.optimizer.zero_grad(set_to_none=True)
        return counted(self.model, self.forward_backward)

    def timed(self) -> dict:
        return timed(self.run, self.cuda)


def build_models(name: str, img_size: int, device: torch.device) -> Dict[str, nn.Module]:
    tau = TAU[name]
    torch.manual_seed(0)
    ours = {mode: create_model(name, img_size=img_size, drop_path_rate=tau, drop_path_mode=mode).to(device)
            for mode in ('mask', 'esd')}
    ours['esd'].load_state_dict(ours['mask'].state_dict())
    theirs = timm.create_model(TIMM_NAMES[name], pretrained=False, img_size=img_size, drop_path_rate=tau).to(device)
    theirs.load_state_dict(ours['mask'].state_dict())  # same parameter names, same weights
    return dict(mask=ours['mask'], esd=ours['esd'], timm=theirs)


# variant -> (model key, copies of the batch)
RECIPE = dict(baseline=('mask', 1), timm=('timm', 1), cosub_mask=('mask', 2), cosub_esd=('esd', 2))


def interleaved(steps: Dict[str, Step], repeats: int) -> Dict[str, dict]:
    """`repeats` timed rounds over the steps, in alternating order so that drifts hit every step alike."""
    out = {v: dict(times=[], peaks=[]) for v in steps}
    names = list(steps)
    for r in range(repeats):
        for v in (names if r % 2 == 0 else names[::-1]):
            m = steps[v].timed()
            out[v]['times'].append(m['time'])
            if 'peak_bytes' in m:
                out[v]['peaks'].append(m['peak_bytes'])
    return out


def run_model(name: str, batch: int, img_size: int, repeats: int, warmup: int, device: torch.device,
              compile_variants: List[str], scope: str, mode: str, peak: float) -> dict:
    cuda = device.type == 'cuda'
    models = build_models(name, img_size, device)
    torch.manual_seed(1)
    images = torch.randn(batch, 3, img_size, img_size, device=device)
    targets = nn.functional.one_hot(torch.randint(0, 1000, (batch,), device=device), 1000).float()
    eager = {v: Step(models[key], copies, images, targets) for v, (key, copies) in RECIPE.items()}
    result = {v: dict(images=batch, samples=batch * eager[v].copies, **eager[v].counted()) for v in VARIANTS}
    for _ in range(warmup):  # the counted step above was the first warm-up
        for v in VARIANTS:
            eager[v].run()
    kinds: Dict[str, Dict[str, dict]] = {'eager': interleaved(eager, repeats)}
    extra: Dict[str, Dict[str, dict]] = {'eager': {v: host_and_kernel_time(eager[v].run) for v in VARIANTS}
                                         if cuda else {}}

    if compile_variants:
        for step in eager.values():  # free the eager optimizers' states and gradients before the compiled copies
            step.optimizer.zero_grad(set_to_none=True)
        del eager, step
        gc.collect()
        steps = {}
        for v in compile_variants:
            key, copies = RECIPE[v]
            model = compiled_copy(models[key], scope, mode, fullgraph=v != 'timm')  # a break in ours is an error
            steps[v] = Step(model, copies, images, targets, compiled=True)
            start = time.perf_counter()
            steps[v].run()  # compiles forward and backward
            if cuda:
                torch.cuda.synchronize()
            result[v]['compile_s'] = round(time.perf_counter() - start, 1)
            print(f'  compiled {v} ({scope}, mode {mode}) in {result[v]["compile_s"]} s', flush=True)
        for _ in range(max(warmup, 2 if cuda else 0)):  # CUDA-graph trees record on the 2nd/3rd call
            for v in compile_variants:
                steps[v].run()
        kinds['compiled'] = interleaved(steps, repeats)
        extra['compiled'] = {v: host_and_kernel_time(steps[v].run) for v in compile_variants} if cuda else {}
        del steps

    for kind, measured in kinds.items():
        for v, m in measured.items():
            r, t = result[v], statistics.median(m['times'])
            r.setdefault('time_ms', {})[kind] = t * 1e3
            r.setdefault('img_per_s', {})[kind] = batch / t
            r.setdefault('mfu', {})[kind] = r['flops'] / t / peak
            r.setdefault('times_ms', {})[kind] = [x * 1e3 for x in m['times']]
            if m['peaks']:
                r.setdefault('peak_bytes', {})[kind] = max(m['peaks'])
            if v in extra[kind]:
                r.setdefault('host_ms', {})[kind] = extra[kind][v]['host_s'] * 1e3
                r.setdefault('kernel_ms', {})[kind] = extra[kind][v]['kernel_s'] * 1e3

    def ratio(a: str, b: str) -> dict:
        ra, rb = result[a], result[b]
        out = dict(time={}, flops=ra['flops'] / rb['flops'], activation_memory=ra['activation_bytes'] /
                   rb['activation_bytes'])
        for kind, measured in kinds.items():
            if a in measured and b in measured:
                out['time'][kind] = statistics.median(x / y for x, y in zip(measured[a]['times'],
                                                                             measured[b]['times']))
                if 'peak_bytes' in ra and kind in ra['peak_bytes'] and kind in rb.get('peak_bytes', {}):
                    out.setdefault('peak_memory', {})[kind] = ra['peak_bytes'][kind] / rb['peak_bytes'][kind]
        return out

    tau = TAU[name]
    return dict(model=name, img_size=img_size, batch=batch, tau=tau,
                esd_keep=f'{keep_count(2 * batch, tau)}/{2 * batch}', variants=result,
                ratios={f'{a} / {b}': ratio(a, b) for a, b in RATIOS})


# -- reporting -----------------------------------------------------------------------------------------------------
def _get(d: dict, key: str, kind: str, fmt: str, scale: float = 1.0) -> str:
    value = d.get(key, {}).get(kind)
    return '-' if value is None else format(value * scale, fmt)


def markdown(meta: dict, rows: List[dict]) -> str:
    lines = [f"# Pretraining step: cosub + ESD vs the DeiT III baseline and timm ({meta['device']})", '',
             f"{meta['date']}; torch {meta['torch']}, timm {meta['timm']}; {meta['dtype']}; "
             f"{meta['repeats']} interleaved timed rounds; compiled: scope {meta['compile_scope']}, "
             f"mode {meta['compile_mode']}; measured {meta['peak']['dtype']} matmul peak "
             f"{meta['peak_flops_per_s'] / 1e12:.2f} TFLOP/s ({meta['peak']['size']}^3); command "
             f"`{meta['command']}`; wall time {meta['wall_s']} s.", '']
    lines += [f'Note: {n}' for n in meta['notes']] + ([''] if meta['notes'] else [])
    lines += ['Per step: median time, distinct images per second (B / time), MFU (counted FLOPs / time / the '
              'measured peak), activation memory (bytes saved for backward), aten ops dispatched (eager host work)'
              + ('; host = time to issue the step, kernels = summed GPU kernel time (eager / compiled).'
                 if 'CPU' not in meta['device'] else '.'), '',
              '| model | B | img | variant | ms eager | ms compiled | img/s eager | img/s compiled | MFU eager | '
              'MFU compiled | GFLOP | act. MiB | aten ops | host ms | kernel ms | peak MiB |',
              '|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|']
    for row in rows:
        for v in VARIANTS:
            r = row['variants'][v]
            pair = lambda key, fmt, scale=1.0: ' / '.join(_get(r, key, k, fmt, scale) for k in ('eager', 'compiled'))
            lines.append(
                f"| {row['model']} | {row['batch']} | {row['img_size']} | {v} | {_get(r, 'time_ms', 'eager', '.1f')} | "
                f"{_get(r, 'time_ms', 'compiled', '.1f')} | {_get(r, 'img_per_s', 'eager', '.1f')} | "
                f"{_get(r, 'img_per_s', 'compiled', '.1f')} | {_get(r, 'mfu', 'eager', '.1%')} | "
                f"{_get(r, 'mfu', 'compiled', '.1%')} | {r['flops'] / 1e9:.1f} | "
                f"{r['activation_bytes'] / 2 ** 20:.0f} | {r['aten_ops']} | {pair('host_ms', '.1f')} | "
                f"{pair('kernel_ms', '.1f')} | {pair('peak_bytes', '.0f', 2 ** -20)} |")
    lines += ['', 'Ratios (time: median of per-round ratios; below 1 the first is faster):', '',
              '| model | ratio | time eager | time compiled | FLOPs | act. mem | peak mem eager / compiled |',
              '|---|---|---|---|---|---|---|']
    for row in rows:
        for k, r in row['ratios'].items():
            peak = ' / '.join(_get(r, 'peak_memory', kind, '.3f') for kind in ('eager', 'compiled'))
            lines.append(f"| {row['model']} | {k} | {_get(r, 'time', 'eager', '.3f')} | "
                         f"{_get(r, 'time', 'compiled', '.3f')} | {r['flops']:.3f} | {r['activation_memory']:.3f} | "
                         f"{peak} |")
    lines += [''] + targets(meta, rows)
    return '\n'.join(lines) + '\n'


def targets(meta: dict, rows: List[dict]) -> List[str]:
    on_cpu = 'CPU' in meta['device']
    verdict = lambda ok: 'not judged on CPU' if on_cpu else ('met' if ok else 'not met')
    out = []
    row = next((r for r in rows if r['model'] == 'vit_l'), None)
    if row is not None:
        r = row['ratios']['cosub_esd / baseline']
        times = {k: v for k, v in r['time'].items()}
        best = min(times.values())
        out.append(f"Target (GPU, ViT-L, tau 0.45, batch 64): cosub_esd <= 1.15x the baseline's time; this run "
                   f"(batch {row['batch']}): " + ', '.join(f'{v:.2f}x {k}' for k, v in times.items())
                   + f" ({verdict(best <= 1.15)}). The paper measured 2.0x.")
    row = next((r for r in rows if r['model'] == 'vit_b'), None)
    if row is not None:
        mfu = row['variants']['baseline']['mfu']
        out.append(f"Target (GPU, ViT-B/16, batch 256, baseline compiled): MFU >= 45%; this run (batch "
                   f"{row['batch']}): " + ', '.join(f'{v:.1%} {k}' for k, v in mfu.items())
                   + f" ({verdict(mfu.get('compiled', 0.0) >= 0.45)}).")
    return out


def parse_run(spec: str, default_batch: int) -> Tuple[str, int]:
    name, _, batch = spec.partition('@')
    if name not in TAU:
        raise SystemExit(f'--models {spec!r}: unknown model {name!r}; expected one of {sorted(TAU)} (optionally '
                         f'@batch, e.g. vit_l@64)')
    if batch and not (batch.isdigit() and int(batch) > 0):
        raise SystemExit(f'--models {spec!r}: the batch after @ must be a positive integer')
    return name, int(batch) if batch else default_batch


def main(argv: Optional[List[str]] = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('--models', nargs='+', help=f'model[@batch] (batch default --batch); default on CUDA '
                   f'{GPU_DEFAULT_RUNS}, on CPU {CPU_DEFAULT_RUNS}')
    p.add_argument('--batch', type=int, help='images per step where --models gives none: 64 on CUDA, 10 on CPU')
    p.add_argument('--img-size', type=int, help=f'default 224 (on CPU: {CPU_IMG_SIZE})')
    p.add_argument('--repeats', type=int, help='timed rounds: default 10 on CUDA, 2 on CPU')
    p.add_argument('--warmup', type=int, help='untimed rounds after the counted one: 3 on CUDA, 0 on CPU')
    p.add_argument('--compile-variants', nargs='+', default=['baseline', 'cosub_esd'],
                   choices=list(VARIANTS) + ['none'], help="step kinds also run compiled ('none': eager only)")
    p.add_argument('--compile-scope', choices=COMPILE_SCOPES, help="default 'model' on CUDA, 'blocks' on CPU")
    p.add_argument('--compile-mode', choices=COMPILE_MODES,
                   help="default 'reduce-overhead' (CUDA graphs) on CUDA, 'default' on CPU")
    p.add_argument('--threads', type=int)
    p.add_argument('--device', default='cuda' if torch.cuda.is_available() else 'cpu')
    p.add_argument('--out', help='output path without suffix (default benchmarks/results/pretrain_step_<device>)')
    args = p.parse_args(argv)
    device = torch.device(args.device)
    cuda = device.type == 'cuda'
    if args.threads:
        torch.set_num_threads(args.threads)
    if cuda:
        torch.backends.cuda.matmul.allow_tf32 = True
    default_batch = args.batch or (64 if cuda else 10)
    runs = [parse_run(s, default_batch) for s in (args.models or (GPU_DEFAULT_RUNS if cuda else CPU_DEFAULT_RUNS))]
    repeats = args.repeats or (10 if cuda else 2)
    warmup = args.warmup if args.warmup is not None else (3 if cuda else 0)
    compile_variants = [v for v in VARIANTS if v in args.compile_variants and 'none' not in args.compile_variants]
    scope = args.compile_scope or ('model' if cuda else 'blocks')
    compile_mode = args.compile_mode or ('reduce-overhead' if cuda else 'default')
    notes = [] if cuda else ['CPU, float32: timings show the trend only; the targets are for a GPU with bf16']
    load_at_start = load_note()
    started = time.perf_counter()
    peak = matmul_peak(device)
    meta = dict(device=device_name(device), torch=torch.__version__, timm=timm.__version__,
                date=datetime.datetime.now().astimezone().isoformat(timespec='seconds'),
                dtype='bfloat16 autocast' if cuda else 'float32', repeats=repeats, warmup=warmup,
                python=platform.python_version(), notes=notes, peak_flops_per_s=peak['flops_per_s'], peak=peak,
                compile_scope=scope, compile_mode=compile_mode, compile_variants=compile_variants,
                command=' '.join(['python', '-m', 'benchmarks.pretrain_step'] + (sys.argv[1:] if argv is None else argv)))
    print(f"{meta['device']}: {peak['dtype']} matmul peak {peak['flops_per_s'] / 1e12:.2f} TFLOP/s", flush=True)
    rows = []
    for name, batch in runs:
        img = args.img_size or (224 if cuda else CPU_IMG_SIZE.get(name, 224))
        if img != 224:
            notes.append(f'{name} at {img}x{img} instead of 224x224'
                         + (', the CPU default, to keep the run short' if args.img_size is None else ''))
        print(f'{name}: batch {batch}, {img}x{img}, tau {TAU[name]}', flush=True)
        rows.append(run_model(name, batch, img, repeats, warmup, device, compile_variants, scope, compile_mode,
                              peak['flops_per_s']))
        for v, r in rows[-1]['variants'].items():
            print(f"  {v:11s} " + '  '.join(f"{k}: {r['time_ms'][k]:.1f} ms, {r['img_per_s'][k]:.1f} img/s, "
                                            f"MFU {r['mfu'][k]:.1%}" for k in r['time_ms']), flush=True)
        for k, r in rows[-1]['ratios'].items():
            print(f'  {k}: time ' + ', '.join(f'{t:.3f} {kind}' for kind, t in r['time'].items())
                  + f'  FLOPs {r["flops"]:.3f}  act. mem {r["activation_memory"]:.3f}', flush=True)
        if cuda:
            torch.cuda.empty_cache()
        torch._dynamo.reset()  # the next model's compiled entries start afresh (the on-disk caches stay)
    out = Path(args.out or ROOT / 'benchmarks' / 'results' / f'pretrain_step_{device.type}')
    return report(out, meta, rows, markdown, started, load_at_start)


if __name__ == '__main__':
    main()
