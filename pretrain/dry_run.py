"""--dry-run: what a config will do, resolved and derived, without data, checkpoints or a GPU.

    python pretrain/train.py --cfg vit_l --dry-run
    python pretrain/train.py --cfg vit_l --dry-run --cfg-options dry_run.gpus=64

`dry_run(cfg) -> str` reports the learning rate after supplement eq. A.1 / A.2, the per-device batch and the
gradient accumulation on `dry_run.gpus` GPUs, the effective ESD rate at that per-device batch (supplement eq.
C.1), epochs, steps per epoch (from `data.num_train_images`, the dataset's published size) and total steps, and
an estimate of the GPU-hours from a measured training step (benchmarks/results/pretrain_step_cuda.json, written
by benchmarks/pretrain_step.py on a GPU), scaled by the forward FLOPs of this model at this resolution against
the measured one. The model is built on the meta device (no memory, no weights) only to count its parameters
(and, when a measured step is there to scale, its FLOPs). Nothing is read from the data path and nothing is written.
"""
from __future__ import annotations

import functools
import json
import math
from pathlib import Path
from typing import List, Optional, Tuple

import torch

REPO_ROOT = Path(__file__).resolve().parents[1]
MEASURED_STEP_FILE = REPO_ROOT / 'benchmarks' / 'results' / 'pretrain_step_cuda.json'


def _forward_flops(name: str, model_args: dict, img_size: int) -> Tuple[int, int]:
    """(parameters, forward FLOPs for one image) of `name` built on the meta device."""
    args = {k: v for k, v in model_args.items() if k not in ('name', 'num_classes')}
    return _forward_flops_cached(name, json.dumps(args, sort_keys=True, default=str), img_size)


def _meta_model(name: str, args: dict, img_size: int):
    import backbones
    args = dict(args, drop_path_mode='none')  # the full model; the step kind accounts for stochastic depth
    with torch.device('meta'):  # as the engine builds it (CNNs get no img_size: backbones.factory.takes_img_size)
        return backbones.create_model(name, num_classes=1000, img_size=img_size, **args)


@functools.lru_cache(maxsize=None)
def _parameters_cached(name: str, args_json: str, img_size: int) -> int:
    return sum(p.numel() for p in _meta_model(name, json.loads(args_json), img_size).parameters())


@functools.lru_cache(maxsize=None)
def _forward_flops_cached(name: str, args_json: str, img_size: int) -> Tuple[int, int]:
    from torch.utils.flop_counter import FlopCounterMode
    model = _meta_model(name, json.loads(args_json), img_size)
    model.eval().requires_grad_(False)  # (not no_grad(): FlopCounterMode's module hooks then fail on CaiT)
    counter = FlopCounterMode(display=False)
    with counter, torch.device('meta'):
        model(torch.empty(1, 3, img_size, img_size))
    return sum(p.numel() for p in model.parameters()), counter.get_total_flops()


def _parameters(name: str, model_args: dict, img_size: int) -> int:
    args = {k: v for k, v in model_args.items() if k not in ('name', 'num_classes')}
    return _parameters_cached(name, json.dumps(args, sort_keys=True, default=str), img_size)


def _step_rows(data) -> List[dict]:
    rows = data.get('results', data.get('rows', [])) if isinstance(data, dict) else data
    return [r for r in rows if isinstance(r, dict) and 'model' in r]


def _img_per_s(entry, batch) -> Optional[float]:
    """Distinct images per second of one measured step kind (a cosub step sees each image k times): 'img_per_s'
    (compiled if measured, else eager; contract 8), else the row's batch over 'time_ms' or 'time_s'."""
    if not isinstance(entry, dict):
        return None
    ips = entry.get('img_per_s')
    if isinstance(ips, dict):
        ips = ips.get('compiled') or ips.get('eager')
    if ips:
        return float(ips)
    seconds = entry['time_ms'] / 1000.0 if entry.get('time_ms') else entry.get('time_s')
    return float(batch) / seconds if batch and seconds else None


def measured_step(path: Optional[Path] = None) -> Optional[List[dict]]:
    """Rows of the measured GPU step file: model, img_size, batch and the kinds' images per second."""
    path = path or MEASURED_STEP_FILE
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    out = []
    for r in _step_rows(data):
        kinds = r.get('variants', r)
        speeds = {k: _img_per_s(v, r.get('batch')) for k, v in kinds.items() if _img_per_s(v, r.get('batch'))}
        if speeds and r.get('img_size'):
            out.append(dict(model=r['model'], img_size=int(r['img_size']), batch=r.get('batch'), speeds=speeds))
    return out or None


def _step_kind(cfg) -> tuple:
    """The measured step kind a method's step is estimated from, and Figure 2's compute ratio over it (the
    teacher's or the EMA's forward pass, a third of a training step; co-training's second model)."""
    cosub = 'cosub_esd' if cfg.model.get('drop_path_mode') == 'esd' else 'cosub_mask'
    return {'baseline': ('baseline', 1.0), 'cosub': (cosub, 1.0), 'kd': ('baseline', 4 / 3),
            'mean_teacher': ('baseline', 4 / 3), 'cotrain': ('baseline', 2.0),
            'kd_cosub': (cosub, 1.0 + 1 / 6)}[cfg.method]   # cosub's step is ~2 plain steps: + 1/3 of one


def _fmt_int(n) -> str:
    return f'{n:,}' if isinstance(n, int) else str(n)


def dry_run(cfg, gpus_from: str = 'dry_run.gpus') -> str:
    """The derived values of a resolved config, one per line (see the module doc); `gpus_from` names where
    cfg.dry_run.gpus came from (pretrain.submit: the job's --nodes x --gpus-per-node)."""
    from backbones.esd import effective_drop_rate
    from pretrain.engine.builders import learning_rate
    from pretrain.engine.distributed import split_global_batch

    gpus = int(cfg.dry_run.gpus)
    global_batch = int(cfg.batch_size)
    micro, accum = split_global_batch(global_batch, gpus, cfg.get('micro_batch_size'))
    from pretrain.methods import PAPER_COST, build_method
    method = build_method(cfg)
    k = method.copies
    o = cfg.optimizer
    lr = learning_rate(o, global_batch)
    if o.get('lr'):
        lr_rule = 'optimizer.lr as given'
    else:
        lr_rule = f'{o.base_lr:g} x sqrt({global_batch} / {o.base_batch_size})'
        if o.get('layer_decay'):
            lr_rule += f' x C_LD {o.layer_decay_lr_mult:g}  (eq. A.2)'
        else:
            lr_rule += '  (eq. A.1)'
    name = cfg.model.get('name')
    tau = float(cfg.model.get('drop_path_rate') or 0.0)
    mode = cfg.model.get('drop_path_mode')
    device_batch = micro * k
    if name:  # built on the meta device: no memory, no weights
        size = f'model             {name} at {cfg.input_size}x{cfg.input_size}'
        if measured_step() is not None:  # forward FLOPs, needed only to scale a measured step (and one meta build)
            params, flops = _forward_flops(name, dict(cfg.model), int(cfg.input_size))
            model_line = f'{size}: {params / 1e6:.1f}M parameters, {flops / 2e9:.1f} GMACs per image'
        else:
            model_line = f'{size}: {_parameters(name, dict(cfg.model), int(cfg.input_size)) / 1e6:.1f}M parameters'
    else:
        model_line = 'model             from the --finetune checkpoint (give --model to see its size and cost)'
    lines = [
        f'config            {cfg.get("config_file", "?")}',
        model_line,
        f'method            {method.describe()}; loss {cfg.loss.type}, label smoothing '
        f'{cfg.loss.label_smoothing:g}',
        'method cost       x{} weights, x{} optimizer state, x{} compute of the baseline (Figure 2)'.format(
            *PAPER_COST[cfg.method]),
        f'optimizer         {o.type}, weight decay {o.weight_decay:g}, layer decay {o.get("layer_decay")}',
        f'learning rate     {lr:.4g} = {lr_rule}',
        f'GPUs              {gpus} ({gpus_from})',
        f'batch             global {global_batch} = {gpus} GPUs x {micro} per device x {accum} accumulation step(s)',
    ]
    if mode == 'esd' and tau > 0:
        eff = effective_drop_rate(device_batch, tau)
        lines.append(f'stochastic depth  ESD, tau {tau:g}: per-device batch {device_batch} ({micro} x {k}) '
                     f'-> effective rate {eff:.4f} (eq. C.1)')
    else:
        lines.append(f'stochastic depth  {mode}, tau {tau:g}')
    n_images = cfg.data.get('num_train_images')
    epochs = int(cfg.epochs)
    if n_images:
        steps = int(n_images) // global_batch
        total = steps * epochs
        lines.append(f'schedule          {epochs} epochs x {_fmt_int(steps)} steps ({_fmt_int(int(n_images))} '
                     f'training images / {global_batch}) = {_fmt_int(total)} steps')
    else:
        steps = total = None
        lines.append(f'schedule          {epochs} epochs; steps per epoch: the dataset size is not in the config '
                     '(data.num_train_images)')
    lines.append(_cost_line(cfg, name, k, total, global_batch))
    return '\n'.join(lines)


def _cost_line(cfg, name: Optional[str], k: int, total_steps: Optional[int], global_batch: int) -> str:
    rows = measured_step()
    where = MEASURED_STEP_FILE
    if where.is_relative_to(REPO_ROOT):
        where = where.relative_to(REPO_ROOT)
    if rows is None:
        return f'GPU-hours         no measured step time ({where} not found; run python -m benchmarks.pretrain_step on a GPU)'
    if not name or total_steps is None:
        return 'GPU-hours         unknown (needs the model name and data.num_train_images)'
    kind, compute = _step_kind(cfg)
    usable = [r for r in rows if kind in r['speeds']]
    if not usable:
        return f'GPU-hours         no measured {kind!r} step in {where}'
    flops = _forward_flops(name, dict(cfg.model), int(cfg.input_size))[1]
    same = [r for r in usable if r['model'] == name and r['img_size'] == int(cfg.input_size)]
    if same:
        ref, ratio = same[0], 1.0
    else:  # the measured model of nearest cost, scaled by forward FLOPs
        def cost(r):
            return _forward_flops(r['model'], {}, r['img_size'])[1]
        costs = {id(r): cost(r) for r in usable}
        ref = min(usable, key=lambda r: abs(math.log(costs[id(r)] / flops)))
        ratio = flops / costs[id(ref)]
    img_per_s = ref['speeds'][kind] / ratio / compute
    images = total_steps * global_batch
    hours = images / img_per_s / 3600.0
    scaled = '' if ratio == 1.0 else f', scaled by forward FLOPs x{ratio:.3g}'
    if compute != 1.0:
        scaled += f', x{compute:.3g} for {cfg.method} (Figure 2, not measured)'
    return (f'GPU-hours         {hours:,.0f} ({_fmt_int(images)} images at {img_per_s:,.0f} img/s per GPU, '
            f'{kind} step of {ref["model"]}@{ref["img_size"]} measured in {where}{scaled})')
