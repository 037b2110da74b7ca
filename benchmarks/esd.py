"""Efficient stochastic depth (ESD) against masking: training-step time, FLOPs and activation memory.

    python benchmarks/esd.py [--models vit_b vit_l] [--rates 0.1 0.2 0.45 0.6] [--batch N] [--repeats N]
                             [--img-size N] [--threads N] [--out benchmarks/results/esd_cpu]

For each model and rate, one model (same weights) runs forward + backward in mode 'mask' and in mode 'esd',
side by side in this process: first one counted step (FLOPs with torch's FlopCounterMode, and the bytes of
the tensors autograd saves for backward; it doubles as warm-up; masking is counted once per model, as it
computes everything at any rate), then `--repeats` timed steps per mode, interleaved mask/esd/esd/mask/...
so that drifts in machine load hit both modes alike. Times are medians; the time ratio is the median of the
per-pair ratios. Ideal ratio: keep / B = 1 - rate when B (1 - rate) is a whole number (the default batches
are chosen for that: 20 on CPU, 80 on GPU).

On CUDA the step runs under bf16 autocast and the peak memory of the step (torch.cuda.max_memory_allocated
above what was allocated before it) is reported too. Activation memory, on any device, is the total size of
the distinct storages saved for backward, parameters excluded (under autocast that includes the bf16 copies
of the weights, the same in both modes); it is deterministic, unlike CPU peak memory.
"""
from __future__ import annotations

import argparse
import datetime
import json
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Dict, List, Optional

import torch
import torch.nn.functional as F
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # runnable from a checkout without installing

import timm  # noqa: E402
from backbones import create_model, effective_drop_rate, keep_count, set_stochastic_depth  # noqa: E402
from benchmarks.common import counted, device_name, timed  # noqa: E402

MODES = ('mask', 'esd')
CPU_IMG_SIZE = {'vit_l': 112, 'vit_h': 112}  # the default CPU run: about 90 TFLOP, ~10 min on 2 idle cores


class Bench:
    def __init__(self, model: nn.Module, batch: int, img_size: int, device: torch.device):
        self.model, self.device = model, device
        self.images = torch.randn(batch, 3, img_size, img_size, device=device)
        self.labels = torch.randint(0, 1000, (batch,), device=device)
        self.cuda = device.type == 'cuda'

    def step(self) -> None:
        with torch.autocast('cuda', dtype=torch.bfloat16, enabled=self.cuda):
            loss = F.cross_entropy(self.model(self.images), self.labels)
        loss.backward()

    def counted_step(self) -> dict:
        self.model.zero_grad(set_to_none=True)
        return counted(self.model, self.step)

    def timed_step(self) -> dict:
        self.model.zero_grad(set_to_none=True)
        return timed(self.step, self.cuda)


def run_model(name: str, rates: List[float], batch: int, img_size: int, repeats: int, warmup: int,
              device: torch.device) -> List[dict]:
    torch.manual_seed(0)
    model = create_model(name, img_size=img_size, num_classes=1000).to(device).train()
    bench = Bench(model, batch, img_size, device)
    rows = []
    set_stochastic_depth(model, max(rates), 'mask')
    mask_counts = bench.counted_step()  # masking computes every branch: its counts do not depend on the rate
    for rate in rates:
        keep = keep_count(batch, rate)
        per_mode: Dict[str, dict] = {}
        for mode in MODES:
            set_stochastic_depth(model, rate, mode)
            per_mode[mode] = dict(mask_counts) if mode == 'mask' else bench.counted_step()
            for _ in range(warmup):
                bench.step()
            per_mode[mode]['times'], per_mode[mode]['peaks'] = [], []
        for r in range(repeats):
            for mode in (MODES if r % 2 == 0 else MODES[::-1]):
                set_stochastic_depth(model, rate, mode)
                measured = bench.timed_step()
                per_mode[mode]['times'].append(measured['time'])
                if 'peak_bytes' in measured:
                    per_mode[mode]['peaks'].append(measured['peak_bytes'])
        mask, esd = per_mode['mask'], per_mode['esd']
        row = dict(
            model=name, img_size=img_size, batch=batch, rate=rate, keep=keep,
            effective_rate=effective_drop_rate(batch, rate), ideal_ratio=keep / batch,
            mask=dict(time_s=statistics.median(mask['times']), times_s=mask['times'], flops=mask['flops'],
                      activation_bytes=mask['activation_bytes']),
            esd=dict(time_s=statistics.median(esd['times']), times_s=esd['times'], flops=esd['flops'],
                     activation_bytes=esd['activation_bytes']),
            ratio=dict(time=statistics.median(e / m for e, m in zip(esd['times'], mask['times'])),
                       flops=esd['flops'] / mask['flops'],
                       activation_memory=esd['activation_bytes'] / mask['activation_bytes']))
        if mask['peaks']:
            row['mask']['peak_bytes'], row['esd']['peak_bytes'] = max(mask['peaks']), max(esd['peaks'])
            row['ratio']['peak_memory'] = row['esd']['peak_bytes'] / row['mask']['peak_bytes']
        rows.append(row)
        print(format_row(row), flush=True)
    return rows


# -- reporting -----------------------------------------------------------------------------------------------------
COLUMNS = ['model', 'img', 'rate', 'keep/B', 'ideal', 'mask s', 'esd s', 'time', 'speed-up', 'FLOPs', 'act. mem',
           'peak mem', 'act. MiB mask/esd']


def format_cells(row: dict) -> List[str]:
    ratio = row['ratio']
    peak = f"{ratio['peak_memory']:.3f}" if 'peak_memory' in ratio else '-'
    mib = f"{row['mask']['activation_bytes'] / 2 ** 20:.0f} / {row['esd']['activation_bytes'] / 2 ** 20:.0f}"
    return [row['model'], str(row['img_size']), f"{row['rate']:g}", f"{row['keep']}/{row['batch']}",
            f"{row['ideal_ratio']:.3f}", f"{row['mask']['time_s']:.3f}", f"{row['esd']['time_s']:.3f}",
            f"{ratio['time']:.3f}", f"{1 / ratio['time']:.2f}x", f"{ratio['flops']:.3f}",
            f"{ratio['activation_memory']:.3f}", peak, mib]


def format_row(row: dict) -> str:
    return '  '.join(f'{c}={v}' for c, v in zip(COLUMNS, format_cells(row)))


def markdown(meta: dict, rows: List[dict]) -> str:
    lines = [f"# Efficient stochastic depth vs masking ({meta['device']})", '',
             f"{meta['date']}; torch {meta['torch']}, timm {meta['timm']}; dtype {meta['dtype']}; "
             f"batch {meta['batch']}; {meta['repeats']} timed steps per mode and rate.", '',
             'Ratios are ESD / masking for one forward + backward step (ideal: keep/B = 1 - rate). '
             '"time" is the median of interleaved pairs, "act. mem" the bytes saved for backward '
             '(parameters excluded), "peak mem" the CUDA peak above the memory held before the step.', '']
    lines += [f"Command: `{meta['command']}`; wall time {meta.get('wall_s', '?')} s.", '']
    lines += [f"Note: {note}" for note in meta['notes']] + ([''] if meta['notes'] else [])
    lines.append('| ' + ' | '.join(COLUMNS) + ' |')
    lines.append('|' + '---|' * len(COLUMNS))
    lines += ['| ' + ' | '.join(format_cells(row)) + ' |' for row in rows]
    lines += ['', target_summary(meta, rows)]
    return '\n'.join(lines) + '\n'


def target_summary(meta: dict, rows: List[dict]) -> str:
    """The project's GPU target: ViT-L at rate 0.45, ESD >= 1.6x faster and <= 0.6x activation memory."""
    row = next((r for r in rows if r['model'] == 'vit_l' and abs(r['rate'] - 0.45) < 1e-9), None)
    if row is None:
        return 'Target (ViT-L, rate 0.45, GPU): not measured in this run.'
    speedup, memory = 1 / row['ratio']['time'], row['ratio']['activation_memory']
    verdict = ('met' if speedup >= 1.6 and memory <= 0.6 else 'not met') if 'CPU' not in meta['device'] else \
        'not judged on CPU'
    return (f'Target (ViT-L, rate 0.45, GPU): speed-up >= 1.6x and activation memory <= 0.6x; this run: '
            f'{speedup:.2f}x and {memory:.3f}x ({verdict}).')


def main(argv: Optional[List[str]] = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--models', nargs='+', default=['vit_b', 'vit_l'])
    parser.add_argument('--rates', nargs='+', type=float, default=[0.1, 0.2, 0.45, 0.6])
    parser.add_argument('--batch', type=int, help='default 80 on CUDA, 20 on CPU (exact keep counts)')
    parser.add_argument('--img-size', type=int, help=f'default 224 (on CPU: {CPU_IMG_SIZE} for speed)')
    parser.add_argument('--repeats', type=int, help='timed steps per mode and rate: default 10 on CUDA, 3 on CPU')
    parser.add_argument('--warmup', type=int, help='extra untimed steps per mode and rate: 3 on CUDA, 0 on CPU')
    parser.add_argument('--threads', type=int, help='CPU threads (default: torch default)')
    parser.add_argument('--device', default='cuda' if torch.cuda.is_available() else 'cpu')
    parser.add_argument('--out', help='output path without suffix (default benchmarks/results/esd_<device>)')
    args = parser.parse_args(argv)

    device = torch.device(args.device)
    cuda = device.type == 'cuda'
    if args.threads:
        torch.set_num_threads(args.threads)
    batch = args.batch or (80 if cuda else 20)
    repeats = args.repeats or (10 if cuda else 3)
    warmup = args.warmup if args.warmup is not None else (3 if cuda else 0)
    notes = []
    inexact = [r for r in args.rates if abs(effective_drop_rate(batch, r) - r) > 1e-9]
    if inexact:
        notes.append(f'batch {batch} quantizes rates {inexact}: the ideal ratio uses the effective rate')
    if not cuda:
        notes.append('CPU, float32: the timings show the trend only; the target device is a GPU with bf16')
    meta = dict(device=device_name(device), torch=torch.__version__, timm=timm.__version__,
                date=datetime.datetime.now().astimezone().isoformat(timespec='seconds'), batch=batch,
                dtype='bfloat16 autocast' if cuda else 'float32', repeats=repeats, warmup=warmup,
                threads=torch.get_num_threads(), python=platform.python_version(),
                command=' '.join(['python', 'benchmarks/esd.py'] + (sys.argv[1:] if argv is None else argv)),
                notes=notes)

    rows = []
    started = time.perf_counter()
    for name in args.models:
        img_size = args.img_size or (224 if cuda else CPU_IMG_SIZE.get(name, 224))
        if img_size != 224:
            why = ', the CPU default, to keep the run short' if args.img_size is None else ''
            notes.append(f'{name} at {img_size}x{img_size} instead of 224x224{why}')
        print(f'{name}: batch {batch}, {img_size}x{img_size}, {meta["dtype"]}, {meta["device"]}', flush=True)
        rows += run_model(name, args.rates, batch, img_size, repeats, warmup, device)
    meta['wall_s'] = round(time.perf_counter() - started, 1)

    print('\n' + markdown(meta, rows))
    out = Path(args.out or ROOT / 'benchmarks' / 'results' / f'esd_{device.type}')
    out.parent.mkdir(parents=True, exist_ok=True)
    Path(f'{out}.json').write_text(json.dumps(dict(meta=meta, results=rows), indent=1) + '\n')
    Path(f'{out}.md').write_text(markdown(meta, rows))
    print(f'wrote {out}.json and {out}.md')
    return dict(meta=meta, results=rows)


if __name__ == '__main__':
    main()
