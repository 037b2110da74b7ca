"""Pretraining step cost: cosub + ESD against the DeiT III baseline, and our baseline against timm's model.

    python benchmarks/pretrain_step.py [--models vit_b vit_l] [--batch N] [--img-size N] [--repeats N]
                                       [--threads N] [--out benchmarks/results/pretrain_step_cpu]

For each model, four training steps (forward, BCE loss, backward, LAMB step) run side by side in this process,
interleaved, on the same batch of B images, at the model's rate tau (supplement Table A.1):
  baseline     DeiT III: our ViT, stochastic depth by masking, each image once
  timm         timm's deit3 model with timm's DropPath, each image once (same settings as `baseline`)
  cosub_mask   cosub as the official code does it: the batch twice, masking (the paper measured 2.0x time)
  cosub_esd    ours: the batch twice (2 submodels), efficient stochastic depth
Reported per step: time (median over interleaved rounds), FLOPs, bytes saved for backward ("activation
memory", deterministic on any device) and, on CUDA, the peak allocated memory. Targets on a GPU, ViT-L at
tau 0.45: cosub_esd at most 1.2x the baseline's time and 1.15x its memory.
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
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import timm  # noqa: E402
from timm.optim import create_optimizer_v2  # noqa: E402

from backbones import create_model, keep_count  # noqa: E402
from benchmarks.common import counted, device_name, timed  # noqa: E402
from pretrain.cosub import cosub_loss  # noqa: E402

TAU = {'vit_s': 0.05, 'vit_m': 0.1, 'vit_b': 0.2, 'vit_l': 0.45, 'vit_h': 0.6}
TIMM_NAMES = {'vit_s': 'deit3_small_patch16_224', 'vit_m': 'deit3_medium_patch16_224',
              'vit_b': 'deit3_base_patch16_224', 'vit_l': 'deit3_large_patch16_224',
              'vit_h': 'deit3_huge_patch14_224'}
CPU_IMG_SIZE = {'vit_l': 112, 'vit_h': 112}
VARIANTS = ('baseline', 'timm', 'cosub_mask', 'cosub_esd')


class Step:
    """One variant's training step: its model, its optimizer, how many copies of the batch it sees."""

    def __init__(self, model: nn.Module, copies: int, images: torch.Tensor, targets: torch.Tensor):
        self.model, self.copies, self.targets = model.train(), copies, targets
        self.images = images.repeat(copies, 1, 1, 1) if copies > 1 else images
        self.optimizer = create_optimizer_v2(model, opt='lamb', lr=1e-3, weight_decay=0.02)
        self.cuda = images.is_cuda

    def forward_backward(self) -> None:
        with torch.autocast('cuda', dtype=torch.bfloat16, enabled=self.cuda):
            logits = self.model(self.images)
        loss = cosub_loss(logits, self.targets, num_submodels=self.copies, lam=0.5 if self.copies > 1 else 1.0)
        loss.backward()

    def run(self) -> None:
        self.optimizer.zero_grad(set_to_none=True)
        self.forward_backward()
        self.optimizer.step()

    def counted(self) -> dict:
        self.optimizer.zero_grad(set_to_none=True)
        return counted(self.model, self.forward_backward)

    def timed(self) -> dict:
        return timed(self.run, self.cuda)


def build_steps(name: str, batch: int, img_size: int, device: torch.device) -> Dict[str, Step]:
    tau = TAU[name]
    torch.manual_seed(0)
    images = torch.randn(batch, 3, img_size, img_size, device=device)
    targets = nn.functional.one_hot(torch.randint(0, 1000, (batch,), device=device), 1000).float()
    ours = {mode: create_model(name, img_size=img_size, drop_path_rate=tau, drop_path_mode=mode).to(device)
            for mode in ('mask', 'esd')}
    ours['esd'].load_state_dict(ours['mask'].state_dict())
    theirs = timm.create_model(TIMM_NAMES[name], pretrained=False, img_size=img_size, drop_path_rate=tau).to(device)
    theirs.load_state_dict(ours['mask'].state_dict())  # same parameter names, same weights
    return dict(baseline=Step(ours['mask'], 1, images, targets), timm=Step(theirs, 1, images, targets),
                cosub_mask=Step(ours['mask'], 2, images, targets), cosub_esd=Step(ours['esd'], 2, images, targets))


def run_model(name: str, batch: int, img_size: int, repeats: int, warmup: int, device: torch.device) -> dict:
    steps = build_steps(name, batch, img_size, device)
    result = {v: steps[v].counted() for v in VARIANTS}  # also warms up every variant once
    for _ in range(warmup):
        for v in VARIANTS:
            steps[v].run()
    for v in VARIANTS:
        result[v].update(times=[], peaks=[])
    for r in range(repeats):
        for v in (VARIANTS if r % 2 == 0 else VARIANTS[::-1]):
            m = steps[v].timed()
            result[v]['times'].append(m['time'])
            if 'peak_bytes' in m:
                result[v]['peaks'].append(m['peak_bytes'])
    for v in VARIANTS:
        result[v]['time_s'] = statistics.median(result[v]['times'])
        if result[v]['peaks']:
            result[v]['peak_bytes'] = max(result[v]['peaks'])

    def ratio(a: str, b: str) -> dict:
        out = dict(time=statistics.median(x / y for x, y in zip(result[a]['times'], result[b]['times'])),
                   flops=result[a]['flops'] / result[b]['flops'],
                   activation_memory=result[a]['activation_bytes'] / result[b]['activation_bytes'])
        if 'peak_bytes' in result[a]:
            out['peak_memory'] = result[a]['peak_bytes'] / result[b]['peak_bytes']
        return out

    tau = TAU[name]
    return dict(model=name, img_size=img_size, batch=batch, tau=tau, esd_keep=f'{keep_count(2 * batch, tau)}/{2 * batch}',
                variants=result, ratios={'cosub_esd / baseline': ratio('cosub_esd', 'baseline'),
                                         'cosub_mask / baseline': ratio('cosub_mask', 'baseline'),
                                         'baseline / timm': ratio('baseline', 'timm')})


def markdown(meta: dict, rows: List[dict]) -> str:
    lines = [f"# Pretraining step: cosub + ESD vs the DeiT III baseline ({meta['device']})", '',
             f"{meta['date']}; torch {meta['torch']}, timm {meta['timm']}; {meta['dtype']}; batch {meta['batch']} "
             f"images; {meta['repeats']} interleaved timed rounds; command `{meta['command']}`; "
             f"wall time {meta['wall_s']} s.", '']
    lines += [f'Note: {n}' for n in meta['notes']] + ([''] if meta['notes'] else [])
    lines += ['| model | img | tau | variant | step s | GFLOP | act. MiB | peak MiB |', '|---|---|---|---|---|---|---|---|']
    for row in rows:
        for v in VARIANTS:
            r = row['variants'][v]
            peak = f"{r['peak_bytes'] / 2 ** 20:.0f}" if 'peak_bytes' in r else '-'
            lines.append(f"| {row['model']} | {row['img_size']} | {row['tau']} | {v} | {r['time_s']:.3f} | "
                         f"{r['flops'] / 1e9:.1f} | {r['activation_bytes'] / 2 ** 20:.0f} | {peak} |")
    lines += ['', '| model | ratio | time | FLOPs | act. mem | peak mem |', '|---|---|---|---|---|---|']
    for row in rows:
        for k, r in row['ratios'].items():
            peak = f"{r['peak_memory']:.3f}" if 'peak_memory' in r else '-'
            lines.append(f"| {row['model']} | {k} | {r['time']:.3f} | {r['flops']:.3f} | "
                         f"{r['activation_memory']:.3f} | {peak} |")
    row = next((r for r in rows if r['model'] == 'vit_l'), None)
    if row is not None:
        r = row['ratios']['cosub_esd / baseline']
        mem = r.get('peak_memory', r['activation_memory'])
        lines += ['', f"Target (GPU, ViT-L, tau 0.45): cosub_esd <= 1.2x the baseline's time and <= 1.15x its memory; "
                      f"this run: {r['time']:.2f}x time, {mem:.2f}x memory"
                      f"{' (not judged on CPU)' if 'CPU' in meta['device'] else ''}. The paper measured 2.0x and 1.26x."]
    return '\n'.join(lines) + '\n'


def main(argv: Optional[List[str]] = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('--models', nargs='+', default=['vit_b', 'vit_l'], choices=sorted(TAU))
    p.add_argument('--batch', type=int, help='images per step: default 64 on CUDA, 10 on CPU (exact ESD keep counts)')
    p.add_argument('--img-size', type=int, help=f'default 224 (on CPU: {CPU_IMG_SIZE})')
    p.add_argument('--repeats', type=int, help='timed rounds: default 10 on CUDA, 2 on CPU')
    p.add_argument('--warmup', type=int, help='untimed rounds after the counted one: 3 on CUDA, 0 on CPU')
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
    batch, repeats = args.batch or (64 if cuda else 10), args.repeats or (10 if cuda else 2)
    warmup = args.warmup if args.warmup is not None else (3 if cuda else 0)
    notes = [] if cuda else ['CPU, float32: timings show the trend only; the targets are for a GPU with bf16']
    meta = dict(device=device_name(device), torch=torch.__version__, timm=timm.__version__,
                date=datetime.datetime.now().astimezone().isoformat(timespec='seconds'), batch=batch,
                dtype='bfloat16 autocast' if cuda else 'float32', repeats=repeats, warmup=warmup,
                python=platform.python_version(), notes=notes,
                command=' '.join(['python', 'benchmarks/pretrain_step.py'] + (sys.argv[1:] if argv is None else argv)))
    rows, started = [], time.perf_counter()
    for name in args.models:
        img = args.img_size or (224 if cuda else CPU_IMG_SIZE.get(name, 224))
        if img != 224:
            notes.append(f'{name} at {img}x{img} instead of 224x224'
                         + (', the CPU default, to keep the run short' if args.img_size is None else ''))
        print(f'{name}: batch {batch}, {img}x{img}, tau {TAU[name]}', flush=True)
        rows.append(run_model(name, batch, img, repeats, warmup, device))
        for k, r in rows[-1]['ratios'].items():
            print(f'  {k}: time {r["time"]:.3f}  FLOPs {r["flops"]:.3f}  act. mem {r["activation_memory"]:.3f}'
                  + (f'  peak {r["peak_memory"]:.3f}' if 'peak_memory' in r else ''), flush=True)
    meta['wall_s'] = round(time.perf_counter() - started, 1)
    text = markdown(meta, rows)
    print('\n' + text)
    out = Path(args.out or ROOT / 'benchmarks' / 'results' / f'pretrain_step_{device.type}')
    out.parent.mkdir(parents=True, exist_ok=True)
    Path(f'{out}.json').write_text(json.dumps(dict(meta=meta, results=rows), indent=1) + '\n')
    Path(f'{out}.md').write_text(text)
    print(f'wrote {out}.json and {out}.md')
    return dict(meta=meta, results=rows)


if __name__ == '__main__':
    main()
