"""Efficient stochastic depth (ESD) against masking: training-step time, FLOPs and activation memory.

    python -m benchmarks.esd [--models vit_l@80 vit_b@80 vit_b@320] [--rates 0.1 0.2 0.45 0.6] [--batch N]
                             [--repeats N] [--img-size N] [--compile-rates 0.45 | none] [--compile-runs RUN ...]
                             [--compile-scope model|blocks]
                             [--compile-mode default|...] [--host-steps N] [--threads N]
                             [--out benchmarks/results/esd_<device>]

For each model and rate, one model (same weights) runs forward + backward in mode 'mask' and in mode 'esd',
side by side in this process: first one counted step (FLOPs with torch's FlopCounterMode, and the bytes of
the tensors autograd saves for backward; it doubles as warm-up; masking is counted once per model, as it
computes everything at any rate), then `--repeats` timed steps per mode, interleaved mask/esd/esd/mask/...
so that drifts in machine load hit both modes alike. Times are medians; the time ratio is the median of the
per-pair ratios. Ideal ratio: keep / B = 1 - rate when B (1 - rate) is a whole number (the default batches
are chosen for that: 20 on CPU, 80 and 320 on GPU). Models are given as name[@batch].

At the `--compile-rates` (of the `--compile-runs`, default all), compiled copies of the model (same weights;
scope and mode as in benchmarks/pretrain_step.py: the whole model with CUDA graphs on CUDA, each block on CPU)
are timed the same way: the "compiled" columns.
The eager step also reports the aten ops it dispatches (the host's work per step) and, on CUDA, the time the
host takes to issue it against the summed GPU kernel time (host above kernels: the step is launch-bound).
On any device, "host ms" is the host's own work per eager step, measured where nothing else costs: the same
architecture (depth, blocks, both branches of each, the same batch and keep) at width 16, one head and one patch
per image, whose kernels do next to nothing; `--host-steps` interleaved steps per mode, medians. Of it, "aten ms"
is the self time of the aten operators (torch.profiler, median of 5 profiled steps) and "other ms" the rest of the
profiled step: Python (modules, ESD's code), the autograd engine, custom autograd functions.

On CUDA the step runs under bf16 autocast and the peak memory of the step (torch.cuda.max_memory_allocated
above what was allocated before it) is reported too. Activation memory, on any device, is the total size of
the distinct storages saved for backward, parameters excluded (under autocast that includes the bf16 copies
of the weights, the same in both modes); it is deterministic, unlike CPU peak memory.
"""
from __future__ import annotations

import argparse
import datetime
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import nn

ROOT = Path(__file__).resolve().parents[1]

import timm
from backbones import create_model, effective_drop_rate, is_model, keep_count, set_stochastic_depth
from backbones.vit import VIT_ARCHS
from benchmarks.common import (COMPILE_SCOPES, compiled_copy, counted, device_name, host_and_kernel_time,
                               load_note, report, timed)

MODES = ('mask', 'esd')
CPU_IMG_SIZE = {'vit_l': 112, 'vit_h': 112}  # the default CPU run: about 90 TFLOP, ~10 min on 2 idle cores
GPU_DEFAULT_RUNS = ['vit_l@80', 'vit_b@80', 'vit_b@320']  # the rows
CPU_DEFAULT_RUNS = ['vit_b@20', 'vit_l@20']


class Bench:
    def __init__(self, model: nn.Module, images: torch.Tensor, labels: torch.Tensor, compiled: bool = False):
        self.model, self.images, self.labels, self.compiled = model, images, labels, compiled
        self.cuda = images.is_cuda

    def step(self) -> None:
        if self.compiled:  # a new iteration for CUDA-graph trees (reduce-overhead / max-autotune); else a no-op
            torch.compiler.cudagraph_mark_step_begin()
        with torch.autocast('cuda', dtype=torch.bfloat16, enabled=self.cuda):
            loss = F.cross_entropy(self.model(self.images), self.labels)
        loss.backward()

    def run(self) -> None:
        self.model.zero_grad(set_to_none=True)
        self.step()

    def counted_step(self) -> dict:
        self.model.zero_grad(set_to_none=True)
        return counted(self.model, self.step)

    def timed_step(self) -> dict:
        return timed(self.run, self.cuda)


def interleaved(benches: Dict[str, Bench], repeats: int, before=lambda mode: None) -> Dict[str, dict]:
    """`repeats` timed steps per mode, in alternating order (mask/esd/esd/mask/...); `before(mode)` sets it up."""
    out = {mode: dict(times=[], peaks=[]) for mode in MODES}
    for r in range(repeats):
        for mode in (MODES if r % 2 == 0 else MODES[::-1]):
            before(mode)
            measured = benches[mode].timed_step()
            out[mode]['times'].append(measured['time'])
            if 'peak_bytes' in measured:
                out[mode]['peaks'].append(measured['peak_bytes'])
    return out


def summary(measured: Dict[str, dict]) -> dict:
    mask, esd = measured['mask'], measured['esd']
    out = {mode: dict(time_s=statistics.median(m['times']), times_s=m['times']) for mode, m in measured.items()}
    out['time_ratio'] = statistics.median(e / m for e, m in zip(esd['times'], mask['times']))
    if mask['peaks']:
        for mode, m in measured.items():
            out[mode]['peak_bytes'] = max(m['peaks'])
        out['peak_memory_ratio'] = out['esd']['peak_bytes'] / out['mask']['peak_bytes']
    return out


def run_compiled(model: nn.Module, rate: float, images: torch.Tensor, labels: torch.Tensor, repeats: int,
                 warmup: int, scope: str, mode: str) -> dict:
    """Compiled copies of `model` in each mode at this rate, timed as the eager ones."""
    cuda = images.is_cuda
    benches, compile_s = {}, {}
    for m in MODES:
        set_stochastic_depth(model, rate, m)
        benches[m] = Bench(compiled_copy(model, scope, mode), images, labels, compiled=True)
        start = time.perf_counter()
        benches[m].run()  # compiles forward and backward
        if cuda:
            torch.cuda.synchronize()
        compile_s[m] = round(time.perf_counter() - start, 1)
    for _ in range(max(warmup, 2 if cuda else 0)):  # CUDA-graph trees record on the 2nd/3rd call
        for m in MODES:
            benches[m].run()
    out = summary(interleaved(benches, repeats))
    for m in MODES:
        out[m]['compile_s'] = compile_s[m]
        if cuda:
            out[m].update(host_and_kernel_ms(benches[m]))
    return out


def host_and_kernel_ms(bench: Bench) -> dict:
    measured = host_and_kernel_time(bench.run)
    return dict(host_ms=measured['host_s'] * 1e3, kernel_ms=measured['kernel_s'] * 1e3, host_ops=measured['host_ops'])


HOST_WIDTH = 16  # the host-cost twin's width (one head): its kernels cost next to nothing


def host_twin(name: str, batch: int, device: torch.device) -> Optional[Bench]:
    """`name`'s architecture (depth, blocks, branches) at width 16, one head, one patch per image (plus the class
    token): the same Python, dispatches and autograd nodes per step as the full model, kernels of a few hundred
    numbers. Our ViTs only (their width and heads are arguments); None for other names."""
    if name not in VIT_ARCHS:
        return None
    patch = VIT_ARCHS[name][3]
    torch.manual_seed(0)
    model = create_model(name, embed_dim=HOST_WIDTH, num_heads=1, img_size=patch, num_classes=10).to(device).train()
    return Bench(model, torch.randn(batch, 3, patch, patch, device=device),
                 torch.randint(0, 10, (batch,), device=device))


def profiled_split(bench: Bench, runs: int = 5) -> dict:
    """Median over `runs` profiled steps of the step's wall time and of its aten operators' self time
    (torch.profiler, CPU activity); the difference is the host's time outside aten operators."""
    from torch.profiler import ProfilerActivity, profile
    walls, atens = [], []
    for _ in range(runs):
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            start = time.perf_counter()
            bench.run()
            if bench.cuda:
                torch.cuda.synchronize()
            walls.append(time.perf_counter() - start)
        atens.append(sum(e.self_cpu_time_total for e in prof.key_averages() if e.key.startswith('aten::')) / 1e6)
    wall, aten_s = statistics.median(walls), statistics.median(atens)
    return dict(profiled_ms=wall * 1e3, aten_ms=aten_s * 1e3, other_ms=(wall - aten_s) * 1e3)


def host_cost(name: str, batch: int, rate: float, device: torch.device, steps: int) -> Optional[Dict[str, dict]]:
    """Per mode: the host twin's median eager step time ('host_ms'), its aten ops and the profiled split."""
    twin = host_twin(name, batch, device)
    if twin is None or steps <= 0:
        return None
    out = {}
    for mode in MODES:  # warm-up: allocator, first-call paths
        set_stochastic_depth(twin.model, rate, mode)
        for _ in range(3):
            twin.run()
        out[mode] = dict(aten_ops=twin.counted_step()['aten_ops'])
    measured = interleaved({m: twin for m in MODES}, steps,
                           before=lambda mode: set_stochastic_depth(twin.model, rate, mode))
    for mode in MODES:
        set_stochastic_depth(twin.model, rate, mode)
        out[mode].update(host_ms=statistics.median(measured[mode]['times']) * 1e3, **profiled_split(twin))
    out['ratio'] = out['esd']['host_ms'] / out['mask']['host_ms']
    return out


def run_model(name: str, rates: List[float], batch: int, img_size: int, repeats: int, warmup: int,
              device: torch.device, compile_rates: List[float], scope: str, compile_mode: str,
              host_steps: int = 0) -> List[dict]:
    torch.manual_seed(0)
    model = create_model(name, img_size=img_size, num_classes=1000).to(device).train()
    images = torch.randn(batch, 3, img_size, img_size, device=device)
    labels = torch.randint(0, 1000, (batch,), device=device)
    bench = Bench(model, images, labels)
    rows = []
    set_stochastic_depth(model, max(rates), 'mask')
    mask_counts = bench.counted_step()  # masking computes every branch: its counts do not depend on the rate
    for rate in rates:
        keep = keep_count(batch, rate)
        counts: Dict[str, dict] = {}
        for mode in MODES:
            set_stochastic_depth(model, rate, mode)
            counts[mode] = dict(mask_counts) if mode == 'mask' else bench.counted_step()
            for _ in range(warmup):
                bench.step()
        eager = summary(interleaved({m: bench for m in MODES}, repeats,
                                    before=lambda mode: set_stochastic_depth(model, rate, mode)))
        row = dict(model=name, img_size=img_size, batch=batch, rate=rate, keep=keep,
                   effective_rate=effective_drop_rate(batch, rate), ideal_ratio=keep / batch)
        for mode in MODES:
            row[mode] = dict(eager[mode], **counts[mode])
            if device.type == 'cuda':
                set_stochastic_depth(model, rate, mode)
                row[mode].update(host_and_kernel_ms(bench))
        row['ratio'] = dict(time=eager['time_ratio'], flops=counts['esd']['flops'] / counts['mask']['flops'],
                            activation_memory=counts['esd']['activation_bytes'] / counts['mask']['activation_bytes'])
        if 'peak_memory_ratio' in eager:
            row['ratio']['peak_memory'] = eager['peak_memory_ratio']
        host = host_cost(name, batch, rate, device, host_steps)
        if host is not None:
            row['host'] = host
        if any(abs(rate - r) < 1e-9 for r in compile_rates):
            row['compiled'] = run_compiled(model, rate, images, labels, repeats, warmup, scope, compile_mode)
            torch._dynamo.reset()  # drop this rate's compiled entries (the on-disk caches stay)
        rows.append(row)
        print(format_row(row), flush=True)
    return rows


# -- reporting -----------------------------------------------------------------------------------------------------
COLUMNS = ['model', 'img', 'rate', 'keep/B', 'ideal', 'mask s', 'esd s', 'time', 'speed-up', 'FLOPs', 'act. mem',
           'peak mem', 'act. MiB mask/esd', 'aten ops mask/esd', 'host/kernel ms mask', 'host/kernel ms esd',
           'compiled mask s', 'compiled esd s', 'compiled speed-up']


def _host_kernel(entry: dict) -> str:
    return f"{entry['host_ms']:.1f} / {entry['kernel_ms']:.1f}" if 'host_ms' in entry else '-'


def format_cells(row: dict) -> List[str]:
    ratio = row['ratio']
    peak = f"{ratio['peak_memory']:.3f}" if 'peak_memory' in ratio else '-'
    mib = f"{row['mask']['activation_bytes'] / 2 ** 20:.0f} / {row['esd']['activation_bytes'] / 2 ** 20:.0f}"
    compiled = row.get('compiled')
    compiled_cells = ['-'] * 3 if compiled is None else [
        f"{compiled['mask']['time_s']:.3f}", f"{compiled['esd']['time_s']:.3f}", f"{1 / compiled['time_ratio']:.2f}x"]
    return [row['model'], str(row['img_size']), f"{row['rate']:g}", f"{row['keep']}/{row['batch']}",
            f"{row['ideal_ratio']:.3f}", f"{row['mask']['time_s']:.3f}", f"{row['esd']['time_s']:.3f}",
            f"{ratio['time']:.3f}", f"{1 / ratio['time']:.2f}x", f"{ratio['flops']:.3f}",
            f"{ratio['activation_memory']:.3f}", peak, mib,
            f"{row['mask']['aten_ops']} / {row['esd']['aten_ops']}", _host_kernel(row['mask']),
            _host_kernel(row['esd'])] + compiled_cells


def format_row(row: dict) -> str:
    return '  '.join(f'{c}={v}' for c, v in zip(COLUMNS, format_cells(row)))


def markdown(meta: dict, rows: List[dict]) -> str:
    lines = [f"# Efficient stochastic depth vs masking ({meta['device']})", '',
             f"{meta['date']}; torch {meta['torch']}, timm {meta['timm']}; dtype {meta['dtype']}; "
             f"{meta['repeats']} timed steps per mode and rate; compiled: scope {meta['compile_scope']}, mode "
             f"{meta['compile_mode']}.", '',
             'Ratios are ESD / masking for one forward + backward step (ideal: keep/B = 1 - rate). '
             '"time" is the median of interleaved pairs, "act. mem" the bytes saved for backward '
             '(parameters excluded), "peak mem" the CUDA peak above the memory held before the step, "aten ops" '
             'the operators an eager step dispatches (host work), "host/kernel ms" the time the host takes to '
             'issue an eager step and the summed GPU kernel time (CUDA only).', '']
    lines += [f"Command: `{meta['command']}`; wall time {meta.get('wall_s', '?')} s.", '']
    lines += [f"Note: {note}" for note in meta['notes']] + ([''] if meta['notes'] else [])
    lines.append('| ' + ' | '.join(COLUMNS) + ' |')
    lines.append('|' + '---|' * len(COLUMNS))
    lines += ['| ' + ' | '.join(format_cells(row)) + ' |' for row in rows]
    lines += ['', target_summary(meta, rows)]
    hosted = [row for row in rows if 'host' in row]
    if hosted:
        lines += ['', f"Host work per eager step (forward + backward), each model's architecture at width "
                  f"{HOST_WIDTH}, one head, one patch per image, same batch and keep: kernels that cost next to "
                  f"nothing (median of {meta['host_steps']} interleaved steps; aten / other: torch.profiler, median "
                  f"of 5 profiled steps):", '',
                  '| model | batch | rate | aten ops mask / esd | host ms mask | host ms esd | esd / mask | '
                  'aten ms mask / esd | other ms mask / esd |', '|---|---|---|---|---|---|---|---|---|']
        for row in hosted:
            h = row['host']
            lines.append(f"| {row['model']} | {row['batch']} | {row['rate']:g} | {h['mask']['aten_ops']} / "
                         f"{h['esd']['aten_ops']} | {h['mask']['host_ms']:.2f} | {h['esd']['host_ms']:.2f} | "
                         f"{h['ratio']:.3f} | {h['mask']['aten_ms']:.2f} / {h['esd']['aten_ms']:.2f} | "
                         f"{h['mask']['other_ms']:.2f} / {h['esd']['other_ms']:.2f} |")
    hosts = [(row, mode) for row in rows for mode in MODES if row[mode].get('host_ops')]
    if hosts:  # CUDA: where an eager step's host time goes (is ESD's extra host time in its own ops?)
        lines += ['', 'Host self time of one eager step by operator (torch.profiler, top 8: ms, calls):', '']
        lines += [f"- {row['model']} b{row['batch']} rate {row['rate']:g} {mode}: " + ', '.join(
            f"{o['name']} {o['self_ms']:.2f} ({o['calls']})" for o in row[mode]['host_ops']) for row, mode in hosts]
    return '\n'.join(lines) + '\n'


def target_summary(meta: dict, rows: List[dict]) -> str:
    """The project's GPU target: ViT-L at rate 0.45, ESD >= 1.6x faster and <= 0.6x activation memory."""
    row = next((r for r in rows if r['model'] == 'vit_l' and abs(r['rate'] - 0.45) < 1e-9), None)
    if row is None:
        return 'Target (ViT-L, rate 0.45, GPU): not measured in this run.'
    speedup, memory = 1 / row['ratio']['time'], row['ratio']['activation_memory']
    compiled = f", compiled {1 / row['compiled']['time_ratio']:.2f}x" if 'compiled' in row else ''
    best = max(speedup, 1 / row['compiled']['time_ratio'] if 'compiled' in row else 0.0)
    verdict = ('met' if best >= 1.6 and memory <= 0.6 else 'not met') if 'CPU' not in meta['device'] else \
        'not judged on CPU'
    return (f"Target (ViT-L, rate 0.45, GPU): speed-up >= 1.6x and activation memory <= 0.6x; this run (batch "
            f"{row['batch']}): {speedup:.2f}x eager{compiled} and {memory:.3f}x ({verdict}).")


def parse_run(spec: str, default_batch: int) -> Tuple[str, int]:
    name, _, batch = spec.partition('@')
    if not is_model(name):
        raise SystemExit(f'--models {spec!r}: unknown model {name!r} (see backbones.list_models())')
    if batch and not (batch.isdigit() and int(batch) > 0):
        raise SystemExit(f'--models {spec!r}: the batch after @ must be a positive integer')
    return name, int(batch) if batch else default_batch


def main(argv: Optional[List[str]] = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--models', nargs='+', help=f'name[@batch] (batch default --batch); default on CUDA '
                        f'{GPU_DEFAULT_RUNS}, on CPU {CPU_DEFAULT_RUNS}')
    parser.add_argument('--rates', nargs='+', type=float, default=[0.1, 0.2, 0.45, 0.6])
    parser.add_argument('--batch', type=int, help='where --models gives none: 80 on CUDA, 20 on CPU (exact keeps)')
    parser.add_argument('--img-size', type=int, help=f'default 224 (on CPU: {CPU_IMG_SIZE} for speed)')
    parser.add_argument('--repeats', type=int, help='timed steps per mode and rate: default 10 on CUDA, 3 on CPU')
    parser.add_argument('--warmup', type=int, help='extra untimed steps per mode and rate: 3 on CUDA, 0 on CPU')
    parser.add_argument('--compile-rates', nargs='+', default=['0.45'],
                        help="rates also timed compiled ('none': eager only; default 0.45)")
    parser.add_argument('--compile-runs', nargs='+', help='the --models entries that get compiled columns '
                        '(default: all)')
    parser.add_argument('--compile-scope', choices=COMPILE_SCOPES, help="default 'model' on CUDA, 'blocks' on CPU")
    parser.add_argument('--compile-mode', choices=('default', 'reduce-overhead', 'max-autotune',
                                                   'max-autotune-no-cudagraphs'),
                        help="default 'reduce-overhead' (CUDA graphs) on CUDA, 'default' on CPU")
    parser.add_argument('--host-steps', type=int, default=30,
                        help='steps per mode of the host-cost twin (width 16; 0: skip it); default 30')
    parser.add_argument('--threads', type=int, help='CPU threads (default: torch default)')
    parser.add_argument('--device', default='cuda' if torch.cuda.is_available() else 'cpu')
    parser.add_argument('--out', help='output path without suffix (default benchmarks/results/esd_<device>)')
    args = parser.parse_args(argv)

    device = torch.device(args.device)
    cuda = device.type == 'cuda'
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.host_steps < 0:
        parser.error(f'--host-steps {args.host_steps}: expected 0 or more')
    default_batch = args.batch or (80 if cuda else 20)
    runs = [parse_run(s, default_batch) for s in (args.models or (GPU_DEFAULT_RUNS if cuda else CPU_DEFAULT_RUNS))]
    compile_runs = runs if args.compile_runs is None else [parse_run(s, default_batch) for s in args.compile_runs]
    if not set(compile_runs) <= set(runs):
        raise SystemExit(f'--compile-runs {" ".join(args.compile_runs)}: each must be one of the --models runs')
    scope = args.compile_scope or ('model' if cuda else 'blocks')
    compile_mode = args.compile_mode or ('reduce-overhead' if cuda else 'default')
    try:
        compile_rates = [] if args.compile_rates == ['none'] else [float(r) for r in args.compile_rates]
    except ValueError:
        raise SystemExit(f"--compile-rates {' '.join(args.compile_rates)}: expected rates or 'none'")
    repeats = args.repeats or (10 if cuda else 3)
    warmup = args.warmup if args.warmup is not None else (3 if cuda else 0)
    notes = []
    for batch in sorted({b for _, b in runs}):
        inexact = [r for r in args.rates if abs(effective_drop_rate(batch, r) - r) > 1e-9]
        if inexact:
            notes.append(f'batch {batch} quantizes rates {inexact}: the ideal ratio uses the effective rate')
    if not cuda:
        notes.append('CPU, float32: the timings show the trend only; the target device is a GPU with bf16')
    meta = dict(device=device_name(device), torch=torch.__version__, timm=timm.__version__,
                date=datetime.datetime.now().astimezone().isoformat(timespec='seconds'),
                batches=sorted({b for _, b in runs}), dtype='bfloat16 autocast' if cuda else 'float32',
                repeats=repeats, warmup=warmup, threads=torch.get_num_threads(), python=platform.python_version(),
                compile_rates=compile_rates, compile_runs=[f'{n}@{b}' for n, b in compile_runs],
                compile_scope=scope, compile_mode=compile_mode, host_steps=args.host_steps,
                command=' '.join(['python', '-m', 'benchmarks.esd'] + (sys.argv[1:] if argv is None else argv)),
                notes=notes)

    rows = []
    load_at_start = load_note()
    started = time.perf_counter()
    for name, batch in runs:
        img_size = args.img_size or (224 if cuda else CPU_IMG_SIZE.get(name, 224))
        if img_size != 224:
            why = ', the CPU default, to keep the run short' if args.img_size is None else ''
            note = f'{name} at {img_size}x{img_size} instead of 224x224{why}'
            if note not in notes:
                notes.append(note)
        print(f'{name}: batch {batch}, {img_size}x{img_size}, {meta["dtype"]}, {meta["device"]}', flush=True)
        rows += run_model(name, args.rates, batch, img_size, repeats, warmup, device,
                          compile_rates if (name, batch) in compile_runs else [], scope, compile_mode,
                          args.host_steps)
        if cuda:
            torch.cuda.empty_cache()
    out = Path(args.out or ROOT / 'benchmarks' / 'results' / f'esd_{device.type}')
    return report(out, meta, rows, markdown, started, load_at_start)


if __name__ == '__main__':
    main()
