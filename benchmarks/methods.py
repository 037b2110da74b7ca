"""The cost of each training strategy of Table 4, measured, beside the paper's Figure 2 table, in one run.

    python -m benchmarks.methods                       # GPU: ViT-L, batch 64, 224 px, config vit_l (bf16)
    python -m benchmarks.methods --device cpu          # CPU: ViT-S, batch 8, 64 px, minutes
        [--model NAME] [--batch N] [--img-size N] [--steps N] [--warmup N] [--rounds N] [--methods ...]
        [--threads N] [--out benchmarks/results/methods_<device>]

Builds the real training engine (pretrain.engine.Trainer from the config, as pretrain/train.py does) once per
`--method`, all six held at once, and feeds each the same pre-collated batch from memory (uint8 images and
augmentation parameters, as the workers deliver them: benchmarks/train_throughput.py), so every method runs the
engine's own step: device augmentation, mixup/cutmix, the teacher's forward, the forward of every copy, the loss,
backward, the clip of each model, the optimizer step and what comes after it (the mean teacher's EMA update).
`--rounds` rounds of one epoch of `--warmup` + `--steps` steps per method, interleaved (method A, B, ... then
again), so that the machine's load hits all alike; the step time is the median over rounds.

Per method: step time and its ratio to the baseline's, beside Figure 2's "compute" (1 baseline, 1.33 KD and mean
teacher: a teacher forward is a third of a training step; 2 co-training and cosub without ESD: two forward +
backward; Figure 2 has no KD + cosub row: '-'); the trained parameters; the weights it holds (the model, plus the EMA, the teacher or the second model:
Figure 2 "weights"); the optimizer state (Figure 2 "optimizer"); and, on CUDA, the step's peak memory above what
is held before it. The teacher of KD is an untrained model of the student's architecture saved to a file and
loaded by `--teacher` as a user's would be (its values do not change the cost; its size does, and Figure 2
assumes a teacher of the student's size).

Results: benchmarks/results/methods_<device>.{json,md}.
"""
from __future__ import annotations

import argparse
import datetime
import gc
import logging
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List, Optional

import torch
from torch import nn
from torch.utils.data import default_collate
from torch.utils.data._utils.pin_memory import pin_memory

ROOT = Path(__file__).resolve().parents[1]

import timm
import backbones
from benchmarks.common import device_name, load_note, options_for, report, resolve_device
from benchmarks.data_pipeline import make_jpegs
from benchmarks.train_throughput import InMemoryLoader, timed_epoch
from pretrain.config import find_config, load_config
from pretrain.methods import METHODS

GPU_DEFAULTS = dict(model='vit_l', batch=64, img_size=224, steps=4, warmup=2, rounds=3)
CPU_DEFAULTS = dict(model='vit_s', batch=8, img_size=64, steps=2, warmup=1, rounds=3)
CLASSES = 10


def tensor_bytes(tensors) -> int:
    """Bytes of the distinct storages among `tensors`."""
    storages = {}
    for t in tensors:
        if isinstance(t, torch.Tensor) and t.numel():
            storages[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
    return sum(storages.values())


def held_models(trainer) -> List[nn.Module]:
    """The models a method keeps in memory: the trained one (for co-training, the pair) and any other model the
    method holds (the mean teacher's EMA, KD's teacher)."""
    extra = [m for m in vars(trainer.method).values() if isinstance(m, nn.Module)]
    return [trainer.model] + extra


def footprint(trainer) -> dict:
    models = held_models(trainer)
    weights = [t for m in models for t in list(m.parameters()) + list(m.buffers())]
    state = [v for s in trainer.optimizer.state.values() for v in s.values()]
    return dict(trained_params=sum(p.numel() for p in trainer.model.parameters() if p.requires_grad),
                held_params=sum({p.untyped_storage().data_ptr(): p.numel()
                                 for m in models for p in m.parameters()}.values()),
                weight_bytes=tensor_bytes(weights), optimizer_bytes=tensor_bytes(state))


def teacher_file(name: str, img_size: int, folder: Path) -> Path:
    """An untrained model of the student's architecture, saved as our checkpoints are: KD's `--teacher`."""
    path = folder / f'teacher_{name}.pth'
    torch.manual_seed(1)
    model = backbones.create_model(name, num_classes=CLASSES, img_size=img_size)
    backbones.save_file(dict(model=model.state_dict(), model_name=name), path)
    return path


def build_trainer(method: str, opts: dict, cfg_name: str, data: Path, teacher: Path, device: str):
    from pretrain.engine import Trainer
    cfg = load_config(find_config(cfg_name))
    cfg.merge_from_dict({
        'method': method, 'model.name': opts['model'], 'input_size': opts['img_size'], 'batch_size': opts['batch'],
        'micro_batch_size': None, 'epochs': 2, 'device': device, 'output_dir': None, 'resume': None,
        'data.path': str(data), 'data.train_split': 'train', 'data.val_split': None, 'data.v2_path': None,
        'data.real_path': None, 'data.num_workers': 0, 'data.repeated_aug': 1,
        'data.index_cache': str(data / 'index-cache'), 'schedule.warmup_epochs': 0,
        **({'kd.teacher': str(teacher)} if method in ('kd', 'kd_cosub') else {})})
    trainer = Trainer(cfg)
    keys = list(trainer.train_sampler)[:trainer.micro_batch]
    batch = default_collate([trainer.train_loader.dataset[key] for key in keys])
    if device.startswith('cuda'):
        batch = pin_memory(batch)
    # the engine's epoch, cut to the steps this benchmark times (the LR schedule is irrelevant to the cost)
    trainer.steps_per_epoch = opts['warmup'] + opts['steps']
    trainer.train_loader = InMemoryLoader(batch, trainer.steps_per_epoch)
    return trainer


def run(methods: List[str], opts: dict, cfg_name: str, device: str, workdir: Path) -> List[dict]:
    cuda = device.startswith('cuda')
    data = workdir / 'data'
    make_jpegs(data / 'train', max(opts['batch'], CLASSES) * 2, classes=CLASSES)  # every class: the teacher's head
    teacher = teacher_file(opts['model'], opts['img_size'], workdir)
    trainers = {}
    for method in methods:
        trainers[method] = build_trainer(method, opts, cfg_name, data, teacher, device)
        print(f'{method}: {trainers[method].method.describe()}', flush=True)
    times: Dict[str, List[float]] = {m: [] for m in methods}
    peaks: Dict[str, List[int]] = {m: [] for m in methods}
    for r in range(opts['rounds']):
        for method, trainer in trainers.items():
            gc.collect()
            if cuda:
                torch.cuda.synchronize()
                before = torch.cuda.memory_allocated()
                torch.cuda.reset_peak_memory_stats()
            measured = timed_epoch(trainer, opts['warmup'])
            if cuda:
                peaks[method].append(torch.cuda.max_memory_allocated() - before)
            times[method].append(measured['step_ms'])
            print(f'round {r + 1}/{opts["rounds"]} {method}: {measured["step_ms"]} ms/step', flush=True)
    rows = []
    base = statistics.median(times['baseline']) if 'baseline' in times else None
    for method, trainer in trainers.items():
        step_ms = statistics.median(times[method])
        figure_2 = METHODS[method].figure_2  # None: not in the paper
        rows.append(dict(method=method, row=METHODS[method].row, step_ms=step_ms, times_ms=times[method],
                         time_vs_baseline=step_ms / base if base else None,
                         step_peak_bytes=max(peaks[method]) if peaks[method] else None,
                         figure_2=dict(zip(('weights', 'optimizer', 'compute'), figure_2)) if figure_2 else None,
                         **footprint(trainer)))
    if 'baseline' in trainers:
        ref = next(r for r in rows if r['method'] == 'baseline')
        for r in rows:
            r['weights_vs_baseline'] = r['weight_bytes'] / ref['weight_bytes']
            r['optimizer_vs_baseline'] = r['optimizer_bytes'] / ref['optimizer_bytes']
    return rows


def _mib(n: Optional[int]) -> str:
    return '-' if n is None else f'{n / 2 ** 20:,.0f}'


def _x(v: Optional[float]) -> str:
    return '-' if v is None else f'{v:.2f}x'


def markdown(meta: dict, rows: List[dict]) -> str:
    lines = [f"# Table 4's training strategies: the cost of one step ({meta['device']})", '',
             f"{meta['date']}; torch {meta['torch']}, timm {meta['timm']}; {meta['model']} at {meta['img_size']} px, "
             f"batch {meta['batch']} images, config {meta['config']} (its recipe, tau, {meta['dtype']}), "
             f"{meta['warmup']} warm-up + {meta['steps']} timed steps x {meta['rounds']} interleaved rounds; KD's "
             f"teacher: the student's architecture. Command: `{meta['command']}`; wall time {meta['wall_s']} s.", '']
    lines += [f'Note: {n}' for n in meta['notes']] + ['']
    lines += ['Measured, with Figure 2\'s figures in brackets (weights held, optimizer states, compute; 1 = the '
              'baseline; "-": Figure 2 has no such row). "weights" are all the parameters and buffers the method holds '
              '(model, EMA, teacher, second model), "optimizer" the optimizer state, "step peak" the CUDA peak of a '
              'step above what is held before it.',
              '', '| method | row of Table 4 | ms / step | time vs baseline (Figure 2 compute) | trained params | '
              'weights MiB | weights vs baseline (Figure 2) | optimizer MiB | optimizer vs baseline (Figure 2) | '
              'step peak MiB |', '|---|---|---|---|---|---|---|---|---|---|']
    for r in rows:
        f2 = r['figure_2'] or dict(weights='-', optimizer='-', compute='-')
        lines.append(f"| {r['method']} | {r['row']} | {r['step_ms']:.1f} | {_x(r['time_vs_baseline'])} "
                     f"({f2['compute']}) | {r['trained_params'] / 1e6:.1f}M | {_mib(r['weight_bytes'])} | "
                     f"{_x(r.get('weights_vs_baseline'))} ({f2['weights']}) | {_mib(r['optimizer_bytes'])} | "
                     f"{_x(r.get('optimizer_vs_baseline'))} ({f2['optimizer']}) | {_mib(r['step_peak_bytes'])} |")
    return '\n'.join(lines) + '\n'


def main(argv: Optional[List[str]] = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('--device', default='auto', help="'cuda', 'cpu' or 'auto'")
    p.add_argument('--cfg', default='vit_l', help='pretraining config whose recipe every method runs (default vit_l)')
    p.add_argument('--model', help='architecture (GPU default vit_l, CPU vit_s)')
    p.add_argument('--batch', type=int, help='images per step (GPU default 64, CPU 8)')
    p.add_argument('--img-size', type=int, help='input size (GPU default 224, CPU 64)')
    p.add_argument('--steps', type=int, help='timed steps per round (GPU default 4, CPU 2)')
    p.add_argument('--warmup', type=int, help='untimed steps per round (GPU default 2, CPU 1)')
    p.add_argument('--rounds', type=int, help='interleaved rounds (default 3)')
    p.add_argument('--methods', nargs='+', choices=list(METHODS), default=sorted(METHODS, key=lambda m: METHODS[m].row),
                   help='default: all, in the order of Table 4 (the baseline first: the ratios are to it)')
    p.add_argument('--threads', type=int, help='CPU threads (default: torch default)')
    p.add_argument('--out', help='output path without suffix (default benchmarks/results/methods_<device>)')
    args = p.parse_args(argv)
    device = resolve_device(p, args.device)
    opts = options_for(args, device, GPU_DEFAULTS, CPU_DEFAULTS)
    for key in ('batch', 'img_size', 'steps', 'warmup', 'rounds'):
        if opts[key] < 1:
            p.error(f'--{key.replace("_", "-")} {opts[key]}: expected at least 1')
    if args.threads:
        torch.set_num_threads(args.threads)
    started, load_at_start = time.perf_counter(), load_note()
    engine_logger = logging.getLogger('cosub')
    level = engine_logger.level
    engine_logger.setLevel(logging.WARNING)  # six engines' headers would drown the measurements
    try:
        with tempfile.TemporaryDirectory(prefix='cosub_methods_') as tmp:
            rows = run(args.methods, opts, args.cfg, device, Path(tmp))
    finally:  # main() may run inside a bigger program (the tests): leave its logging as it was
        engine_logger.setLevel(level)
    cuda = device.startswith('cuda')
    notes = [] if cuda else ['CPU, float32, shared 2-core machine: the times show the trend only; weights and '
                             'optimizer state are exact']
    meta = dict(device=device_name(torch.device(device)), torch=torch.__version__, timm=timm.__version__,
                python=platform.python_version(), config=args.cfg, dtype='bf16 autocast' if cuda else 'float32',
                date=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec='seconds'),
                command=' '.join(['python', '-m', 'benchmarks.methods'] + (sys.argv[1:] if argv is None else argv)),
                threads=torch.get_num_threads(), notes=notes, **opts)
    out = Path(args.out or ROOT / 'benchmarks' / 'results' / f'methods_{device.split(":")[0]}')
    return report(out, meta, rows, markdown, started, load_at_start)


if __name__ == '__main__':
    main()
