"""Loader-fed training throughput over the same step on in-memory data: does the data pipeline keep the GPU busy?

    python -m benchmarks.train_throughput                        # GPU: ViT-B cosub, batch 256, 15 workers
    python -m benchmarks.train_throughput --compile              # the same with train.compile=True (CUDA graphs)
    python -m benchmarks.train_throughput --device cpu           # tiny settings (vit_t, 64 px, batch 8), minutes

Runs the real training engine (pretrain.engine.Trainer from a config, as pretrain/train.py does) for --warmup +
--steps optimizer steps twice: (1) fed by the real loader from a generated ImageNet folder (JPEGs of ImageNet
size, 500x375 quality 90, generated once under --data-dir; --unique distinct files, hard-linked up to the count
the steps need), (2) fed by one pre-collated batch held in memory, same format (uint8 images + per-sample
augmentation parameters), so the step itself (host-to-device copy, device augmentation, mixup, forward, backward,
optimizer) is identical. Prints loader-fed img/s / in-memory img/s (goal on a GPU: >= 0.95) and writes
benchmarks/results/train_throughput_<device>[_compiled].{json,md}. No checkpoints are written (no output folder); nothing
is downloaded.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import sys
import tempfile
import time
from multiprocessing import Pool
from pathlib import Path
from typing import List, Optional

import torch
from torch.utils.data import default_collate
from torch.utils.data._utils.pin_memory import pin_memory

ROOT = Path(__file__).resolve().parents[1]

from benchmarks.common import options_for, resolve_device
from benchmarks.data_pipeline import cpu_model, make_jpegs, versions
from pretrain.config import find_config, load_config

GPU_DEFAULTS = dict(model='vit_b', input_size=224, batch=256, workers=15, steps=30, warmup=10)
CPU_DEFAULTS = dict(model='vit_t', input_size=64, batch=8, workers=2, steps=4, warmup=2)


def _make(args):
    folder, start, count = args
    # each chunk its own seed: files differ across chunks, and the same chunk always gives the same files
    return make_jpegs(Path(folder), count, classes=1, seed=start)


def imagenet_folder(root: Path, images: int, unique: int, classes: int, processes: int) -> Path:
    """root/train/<class>/*.JPEG with `images` files: `unique` generated ones, the rest hard links to them."""
    pool_dir = root / 'unique'
    chunks = [(str(pool_dir / f'{start:06d}'), start, min(256, unique - start)) for start in range(0, unique, 256)]
    with Pool(processes) as pool:
        files = [p for chunk in pool.map(_make, chunks) for p in chunk]
    train = root / f'train_{images}'
    for i in range(images):
        link = train / f'n{i % classes:08d}' / f'{i:07d}.JPEG'
        if not link.exists():
            link.parent.mkdir(parents=True, exist_ok=True)
            os.link(files[i % len(files)], link)
    return root


class InMemoryLoader:
    """Yields one pre-collated (pinned on CUDA) batch `length` times: the step without the data pipeline."""

    def __init__(self, batch, length: int):
        self.batch, self.length = batch, length

    def __iter__(self):
        return (self.batch for _ in range(self.length))

    def __len__(self) -> int:
        return self.length


def timed_epoch(trainer, warmup: int) -> dict:
    """Runs one epoch of the engine's own loop; times the steps after `warmup`: from the scheduler's call that ends
    the queueing of the last warm-up step to the end of the epoch (when the loop has waited for the last step)."""
    marks: List[float] = []
    step_update = trainer.scheduler.step_update

    def mark(step):
        marks.append(time.perf_counter())
        return step_update(step)

    trainer.scheduler.step_update = mark
    try:
        record = trainer.train_one_epoch()
        end = time.perf_counter()
    finally:
        trainer.scheduler.step_update = step_update
    trainer.epoch += 1
    trainer.step_in_epoch = 0
    steps = len(marks) - warmup
    seconds = end - marks[warmup - 1]
    return dict(img_per_s=round(steps * trainer.global_batch / seconds, 1), steps=steps,
                step_ms=round(1000 * seconds / steps, 1), loss=record['train_loss'])


def host_syncs(trainer) -> dict:
    """The host-device synchronisations one epoch of the engine's steps makes (CUDA's sync debug mode warns at
    each, with the Python line that caused it). The loop reads each step's values with an event one step later
    (pretrain/engine/pending.py), which this mode does not count; the epoch's end makes a few."""
    import warnings
    from collections import Counter
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter('always')
        torch.cuda.set_sync_debug_mode('warn')
        try:
            timed_epoch(trainer, 1)  # the engine's epoch; its times are not used here
        finally:
            torch.cuda.set_sync_debug_mode('default')
    where = Counter(f'{Path(w.filename).name}:{w.lineno}' for w in caught if 'synchroniz' in str(w.message))
    steps = trainer.steps_per_epoch
    return dict(steps=steps, syncs=sum(where.values()), per_step=round(sum(where.values()) / steps, 2),
                where=dict(where.most_common(10)))


def main(argv: Optional[List[str]] = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('--device', default='auto', help="'cuda', 'cpu' or 'auto'")
    p.add_argument('--cfg', default='vit_b', help='pretraining config (default vit_b: cosub + ESD, 3-Augment)')
    p.add_argument('--model', help=f"architecture (GPU default {GPU_DEFAULTS['model']}, CPU {CPU_DEFAULTS['model']})")
    p.add_argument('--input-size', type=int)
    p.add_argument('--batch', type=int, help='global batch (GPU default 256, CPU 8)')
    p.add_argument('--workers', type=int, help='DataLoader workers (GPU default 15, CPU 2)')
    p.add_argument('--steps', type=int, help='timed optimizer steps (GPU default 30, CPU 4)')
    p.add_argument('--warmup', type=int, help='untimed first steps (GPU default 10, CPU 2)')
    p.add_argument('--compile', action='store_true', help='train.compile=True')
    p.add_argument('--compile-mode', help="train.compile_mode (default: the config's, 'reduce-overhead')")
    p.add_argument('--unique', type=int, default=1024, help='distinct generated JPEGs (the rest are hard links)')
    p.add_argument('--data-dir', default=str(Path(tempfile.gettempdir()) / 'cosub_train_throughput'),
                   help='where the ImageNet-layout folder is generated (kept for the next run)')
    p.add_argument('--out', help='output path without suffix (default benchmarks/results/train_throughput_<device>)')
    args = p.parse_args(argv)
    device = resolve_device(p, args.device)
    opts = options_for(args, device, GPU_DEFAULTS, CPU_DEFAULTS)
    if opts['warmup'] < 1 or opts['steps'] < 1:
        p.error('--warmup and --steps must be at least 1')
    wall = time.perf_counter()

    steps_total = opts['warmup'] + opts['steps']
    images = steps_total * opts['batch']
    classes = 10
    t0 = time.perf_counter()
    root = imagenet_folder(Path(args.data_dir), images, min(args.unique, images), classes,
                           processes=max(1, min(16, os.cpu_count() or 1)))
    print(f'{images} JPEGs ({min(args.unique, images)} distinct) in {root}: {time.perf_counter() - t0:.1f} s',
          flush=True)

    from pretrain.engine import Trainer
    cfg = load_config(find_config(args.cfg))
    cfg.merge_from_dict({
        'model.name': opts['model'], 'input_size': opts['input_size'], 'batch_size': opts['batch'],
        'micro_batch_size': None, 'epochs': 2, 'device': device, 'output_dir': None, 'resume': None,
        'data.path': str(root), 'data.train_split': f'train_{images}', 'data.val_split': None,
        'data.v2_path': None, 'data.real_path': None, 'data.num_workers': opts['workers'],
        'data.repeated_aug': 1, 'data.index_cache': str(root / 'index-cache'), 'train.compile': args.compile,
        'schedule.warmup_epochs': 0, **({'train.compile_mode': args.compile_mode} if args.compile_mode else {})})
    trainer = Trainer(cfg)
    print(f"{opts['model']} {opts['input_size']}px, batch {opts['batch']}, method {cfg.method}, "
          f"{opts['workers']} workers, {device}{', compiled' if args.compile else ''}", flush=True)
    fed = timed_epoch(trainer, opts['warmup'])
    print(f"loader-fed: {fed['img_per_s']} img/s ({fed['step_ms']} ms/step)", flush=True)

    # A real batch as the workers deliver it, made here (a fresh loader iteration would leave the workers
    # prefetching during the in-memory run, taking cores from the step).
    keys = list(trainer.train_sampler)[:trainer.micro_batch]
    batch = default_collate([trainer.train_loader.dataset[key] for key in keys])
    if device.startswith('cuda'):
        batch = pin_memory(batch)
    real_loader = trainer.train_loader
    trainer.train_loader = InMemoryLoader(batch, trainer.steps_per_epoch)
    memory = timed_epoch(trainer, opts['warmup'])
    syncs = None
    if device.startswith('cuda'):
        try:
            syncs = host_syncs(trainer)
            print(f"host-device syncs: {syncs['syncs']} in {syncs['steps']} steps ({syncs['where']})", flush=True)
        except Exception as e:  # a diagnosis: its failure must not cost the throughput figures
            syncs = dict(error=f'{type(e).__name__}: {e}')
    trainer.train_loader = real_loader
    print(f"in-memory:  {memory['img_per_s']} img/s ({memory['step_ms']} ms/step)", flush=True)
    ratio = round(fed['img_per_s'] / memory['img_per_s'], 3)
    print(f'loader-fed / in-memory: {ratio} (goal on a GPU: >= 0.95)')

    meta = dict(device=torch.cuda.get_device_name() if device.startswith('cuda') else 'CPU only', cpu=cpu_model(),
                cores=len(os.sched_getaffinity(0)) if hasattr(os, 'sched_getaffinity') else os.cpu_count(),
                config=args.cfg, compile=args.compile, compile_mode=cfg.train.compile_mode if args.compile else None, amp=cfg.train.amp if device.startswith('cuda') else None,
                cosub=cfg.method == 'cosub', images=images, unique_images=min(args.unique, images),
                date=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec='seconds'),
                command='python -m benchmarks.train_throughput ' + ' '.join(argv if argv is not None else sys.argv[1:]),
                wall_s=round(time.perf_counter() - wall, 1), **opts, **versions())
    result = dict(meta=meta, loader_fed=fed, in_memory=memory, ratio=ratio, host_syncs=syncs)
    text = '\n'.join([
        f"# Training throughput, loader-fed vs in-memory ({meta['device']}; {meta['cpu']}, {meta['cores']} cores)", '',
        f"{meta['date']}; torch {meta['torch']}, timm {meta['timm']}, Pillow {meta['pillow']}; config {args.cfg}, "
        f"model {opts['model']} at {opts['input_size']}px, global batch {opts['batch']}, cosub {meta['cosub']}, "
        f"amp {meta['amp']}, compile {args.compile}{' (' + meta['compile_mode'] + ')' if args.compile else ''}, "
        f"{opts['workers']} workers; {opts['warmup']} warm-up + "
        f"{opts['steps']} timed steps; {images} JPEGs 500x375 q90 ({meta['unique_images']} distinct); command "
        f"`{meta['command']}`; wall time {meta['wall_s']} s.", '',
        '| fed by | img/s | ms/step |', '|---|---|---|',
        f"| loader (JPEG folder) | {fed['img_per_s']} | {fed['step_ms']} |",
        f"| in-memory batch | {memory['img_per_s']} | {memory['step_ms']} |", '',
        f'loader-fed / in-memory: **{ratio}** (goal on a GPU: >= 0.95).'] +
        (['', f"Host-device syncs in one more in-memory epoch (CUDA sync debug mode): {syncs.get('syncs')} in "
          f"{syncs.get('steps')} steps, at {syncs.get('where') or syncs.get('error')}."] if syncs else []) +
        (['', 'CPU only (tiny model, shared 2-core machine): proves the benchmark runs; the ratio is meaningful on '
              'the GPU machine only, where the step does not compete with the workers for the cores.']
         if not device.startswith('cuda') else [])) + '\n'
    name = f"train_throughput_{device.split(':')[0]}{'_compiled' if args.compile else ''}"
    out = Path(args.out or ROOT / 'benchmarks' / 'results' / name)
    out.parent.mkdir(parents=True, exist_ok=True)
    Path(f'{out}.json').write_text(json.dumps(result, indent=1) + '\n')
    Path(f'{out}.md').write_text(text)
    print(text)
    print(f'wrote {out}.json and {out}.md')
    return result


if __name__ == '__main__':
    main()
