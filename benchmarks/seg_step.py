"""Training-iteration time and memory: our ViT-B UperNet vs. MMSeg's own ViT-B UperNet, interleaved in one run.

    python -m benchmarks.seg_step                          # CPU: crop 256, batch 2 (see --help)
    python -m benchmarks.seg_step --device cuda --crop 512 --batch 2 --steps 20

Models (all built from config files, random weights, fp32, one full `train_step`: data preprocessor, forward with
both heads and losses, backward, AdamW step with the config's optimizer wrapper):
  mmseg     mmseg::vit/vit_vit-b16_mln_upernet_8xb2-160k_ade20k-512x512.py (the reference: MMSeg's ViT-B,
            MultiLevelNeck, UPerHead 512, FCN aux)
  ours      configs/upernet_vit_b_cosub.py (our ViT-B, Feature2Pyramid neck, same UPerHead 512 + FCN aux,
            layer-decay AdamW, drop-path 0.1 'mask')
  ours_in_mmseg  MMSeg's config with only the backbone replaced by ours (same out_indices 2/5/8/11, same neck,
            heads and optimizer): isolates the backbone.
Each round runs one step of every model, in turn; times are medians over rounds. Memory: on CUDA the peak
allocated during a step; on CPU (no allocator statistics) the bytes of tensors saved for backward (activations)
plus parameters, gradients and AdamW states, counted exactly.
Results go to benchmarks/results/seg_step_<device>.{json,md}.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import statistics
import sys
from pathlib import Path
from typing import Dict, List

import torch

ROOT = Path(__file__).resolve().parents[1]

import segmentation  # noqa: F401  (compatibility layer before mmseg.models)
from benchmarks.common import SavedForBackward, device_name, timed
from segmentation.complexity import versions

MMSEG_CONFIG = 'mmseg::vit/vit_vit-b16_mln_upernet_8xb2-160k_ade20k-512x512.py'
OUR_CONFIG = str(ROOT / 'configs/upernet_vit_b_cosub.py')


def load_configs(crop: int) -> Dict[str, object]:
    from mmengine.config import Config
    from mmengine.hub import get_config  # resolves 'mmseg::' inside the installed mmseg package
    ours, ref, hybrid = Config.fromfile(OUR_CONFIG), get_config(MMSEG_CONFIG), get_config(MMSEG_CONFIG)
    ours.model.backbone.init_cfg = None
    ref.model.pretrained = None
    hybrid.model.pretrained = None
    hybrid.model.backbone = dict(type='backbones.CosubViT', arch='vit_b', img_size=crop, out_indices=(2, 5, 8, 11),
                                 drop_path_rate=0.0)
    # Position embeddings at the crop size, so that neither ViT interpolates them every step.
    ours.model.backbone.img_size = crop
    ref.model.backbone.img_size = (crop, crop)
    for cfg in (ours, ref, hybrid):
        cfg.model.data_preprocessor.size = (crop, crop)
    return {'mmseg': ref, 'ours': ours, 'ours_in_mmseg': hybrid}


def build(cfg, device: str):
    from mmengine.model.utils import revert_sync_batchnorm
    from mmengine.optim import build_optim_wrapper
    from mmengine.registry import MODELS
    model = revert_sync_batchnorm(MODELS.build(cfg.model))  # one process: plain BN for every model alike
    model.init_weights()
    model.to(device).train()
    return model, build_optim_wrapper(model, cfg.optim_wrapper)


def make_batch(batch: int, crop: int, seed: int = 0) -> dict:
    from mmengine.structures import PixelData
    from mmseg.structures import SegDataSample
    g = torch.Generator().manual_seed(seed)
    inputs, samples = [], []
    for _ in range(batch):
        inputs.append(torch.randint(0, 256, (3, crop, crop), dtype=torch.uint8, generator=g))
        sample = SegDataSample(gt_sem_seg=PixelData(data=torch.randint(0, 150, (1, crop, crop), generator=g)))
        sample.set_metainfo(dict(img_shape=(crop, crop), ori_shape=(crop, crop), pad_shape=(crop, crop)))
        samples.append(sample)
    return dict(inputs=inputs, data_samples=samples)


def state_bytes(model, optim_wrapper) -> int:
    params = [p for p in model.parameters() if p.requires_grad]
    total = sum(p.numel() * p.element_size() for p in params) * 2  # weights + gradients
    for state in optim_wrapper.optimizer.state.values():
        total += sum(v.numel() * v.element_size() for v in state.values() if torch.is_tensor(v))
    return total


def saved_activation_bytes(model, batch) -> int:
    """Bytes of the distinct storages autograd saves for backward in one forward (parameters excluded)."""
    with SavedForBackward(model) as saved:
        data = model.data_preprocessor(batch, True)
        model._run_forward(data, mode='loss')
    return saved.bytes


def run(args) -> dict:
    from mmengine.registry import init_default_scope
    init_default_scope('mmseg')
    load_before = os.getloadavg() if hasattr(os, 'getloadavg') else None
    configs = load_configs(args.crop)
    models = {name: build(cfg, args.device) for name, cfg in configs.items()}
    batch = make_batch(args.batch, args.crop)
    times: Dict[str, List[float]] = {name: [] for name in models}
    peak: Dict[str, int] = {}
    autocast = torch.autocast(args.device.split(':')[0], dtype=torch.bfloat16, enabled=args.amp)
    for rnd in range(args.warmup + args.steps):
        for name, (model, ow) in models.items():  # interleaved: every round runs each model once
            if args.device.startswith('cuda'):
                torch.cuda.reset_peak_memory_stats(args.device)
            with autocast:
                t = timed(lambda: model.train_step(batch, ow), args.device.startswith('cuda'))['time']
            if rnd >= args.warmup:
                times[name].append(t)
            if args.device.startswith('cuda'):
                peak[name] = max(peak.get(name, 0), torch.cuda.max_memory_allocated(args.device))
            print(f'round {rnd + 1}/{args.warmup + args.steps} {name:14s} {t:7.3f} s'
                  + ('  (warm-up)' if rnd < args.warmup else ''), flush=True)
    results = {}
    for name, (model, ow) in models.items():
        params = sum(p.numel() for p in model.parameters())
        row = dict(step_s_median=statistics.median(times[name]), step_s_all=[round(t, 4) for t in times[name]],
                   params_m=round(params / 1e6, 2))
        if args.device.startswith('cuda'):
            row['peak_memory_mb'] = round(peak[name] / 2**20, 1)
        else:
            act = saved_activation_bytes(model, batch)
            row['saved_activations_mb'] = round(act / 2**20, 1)
            row['train_state_mb'] = round(state_bytes(model, ow) / 2**20, 1)
            row['memory_mb'] = round(row['saved_activations_mb'] + row['train_state_mb'], 1)
        results[name] = row
    ref = results['mmseg']
    mem_key = 'peak_memory_mb' if args.device.startswith('cuda') else 'memory_mb'
    for row in results.values():
        row['time_ratio_vs_mmseg'] = round(row['step_s_median'] / ref['step_s_median'], 3)
        row['memory_ratio_vs_mmseg'] = round(row[mem_key] / ref[mem_key], 3)
    return dict(meta=dict(date=datetime.datetime.now().isoformat(timespec='seconds'), device=device_name(torch.device(args.device)),
                          device_type=args.device, versions=versions(), crop=args.crop, batch=args.batch,
                          steps=args.steps, warmup=args.warmup, amp_bf16=args.amp,
                          load_average_before_after=[load_before,
                                                     os.getloadavg() if hasattr(os, 'getloadavg') else None],
                          command='python -m benchmarks.seg_step ' + ' '.join(sys.argv[1:]),
                          configs=dict(mmseg=MMSEG_CONFIG, ours='configs/upernet_vit_b_cosub.py',
                                       ours_in_mmseg=f'{MMSEG_CONFIG} with backbone=backbones.CosubViT')),
                results=results)


def to_markdown(report: dict) -> str:
    m, res = report['meta'], report['results']
    cuda = m['device_type'].startswith('cuda')
    mem = 'peak allocated (MB)' if cuda else 'saved activations + params/grads/AdamW (MB)'
    lines = ['# Segmentation training step: ours vs. MMSeg ViT-B UperNet', '',
             f"{m['date']}, {m['device']}; crop {m['crop']}x{m['crop']}, batch {m['batch']}, {m['steps']} timed "
             f"rounds after {m['warmup']} warm-up, interleaved; {'bf16 autocast' if m['amp_bf16'] else 'fp32'}.",
             f"Versions: {', '.join(f'{k} {v}' for k, v in m['versions'].items())}. Command: `{m['command']}`.",
             '', f'| model | params (M) | step (s, median) | vs. mmseg | memory: {mem} | vs. mmseg |',
             '|---|---|---|---|---|---|']
    for name, r in res.items():
        memory = r['peak_memory_mb'] if cuda else r['memory_mb']
        lines.append(f"| {name} | {r['params_m']} | {r['step_s_median']:.3f} | {r['time_ratio_vs_mmseg']:.2f}x | "
                     f"{memory} | {r['memory_ratio_vs_mmseg']:.2f}x |")
    lines += ['', 'mmseg: `' + m['configs']['mmseg'] + '`; ours: `' + m['configs']['ours'] + '`; ours_in_mmseg: '
              "MMSeg's config with only the backbone replaced by `backbones.CosubViT` (same neck, heads, optimizer).",
              'Ratios below 1 mean ours is faster / smaller.']
    if not cuda:
        load = m.get('load_average_before_after') or [None, None]
        lines.append('CPU run: smaller crop than the 512x512 of the configs so that it finishes in minutes; '
                     'CPU times on a shared machine are noisy, hence the interleaving and medians (1-minute load '
                     f"average before / after: {f'{load[0][0]:.1f}' if load[0] else '?'} / "
                     f"{f'{load[1][0]:.1f}' if load[1] else '?'}"
                     f' on {os.cpu_count()} cores).')
    return '\n'.join(lines) + '\n'


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--device', default='cuda' if torch.cuda.is_available() else 'cpu')
    parser.add_argument('--crop', type=int, default=None, help='square crop (default 512 on CUDA, 256 on CPU)')
    parser.add_argument('--batch', type=int, default=2, help='images per step (default 2, as 8xb2 configs)')
    parser.add_argument('--steps', type=int, default=None, help='timed rounds (default 20 on CUDA, 4 on CPU)')
    parser.add_argument('--warmup', type=int, default=None, help='untimed rounds (default 3 on CUDA, 1 on CPU)')
    parser.add_argument('--amp', action='store_true', help='bf16 autocast')
    parser.add_argument('--out', default=None, help='output stem (default benchmarks/results/seg_step_<device>)')
    args = parser.parse_args(argv)
    cuda = args.device.startswith('cuda')
    if cuda and not torch.cuda.is_available():
        parser.error(f'--device {args.device}: CUDA is not available on this machine')
    args.crop = args.crop or (512 if cuda else 256)
    args.steps = args.steps or (20 if cuda else 4)
    args.warmup = args.warmup if args.warmup is not None else (3 if cuda else 1)
    if args.crop % 16 or args.crop < 64:
        parser.error(f'--crop {args.crop}: expected a multiple of 16, at least 64')
    report = run(args)
    text = to_markdown(report)
    print(text)
    out = Path(args.out or ROOT / 'benchmarks/results' / f'seg_step_{"cuda" if cuda else "cpu"}')
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix('.json').write_text(json.dumps(report, indent=2) + '\n')
    out.with_suffix('.md').write_text(text)
    print(f'wrote {out.with_suffix(".json")} and {out.with_suffix(".md")}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
