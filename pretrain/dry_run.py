"""--dry-run: what a config will do, resolved and derived, without data, checkpoints or a GPU.

    python pretrain/train.py --cfg vit_l --dry-run
    python pretrain/train.py --cfg vit_l --dry-run --cfg-options dry_run.gpus=64

`dry_run(cfg) -> str` reports the learning rate after supplement eq. A.1 / A.2, the per-device batch and the
gradient accumulation on `dry_run.gpus` GPUs, the effective ESD rate at that per-device batch (supplement eq.
C.1), epochs, steps per epoch (from `data.num_train_images`, the dataset's published size) and total steps, and
the method's cost relative to the baseline, computed from the models it builds (pretrain/methods.py Method.cost:
the student, the teacher, the EMA copy, the second model; cosub's copies at ESD's effective keep rate) beside
Figure 2's figures where the paper has them, and an estimate of the GPU-hours from a measured training step
(benchmarks/results/pretrain_step_cuda.json, written by benchmarks/pretrain_step.py on a GPU), scaled by the
forward FLOPs of this model at this resolution against the measured one and by the method's computed compute
over that step. The models are built on the meta device (no memory, no weights) only to count their parameters
and FLOPs. Nothing is read from the data path and nothing is written; a local teacher file is opened (memory
mapped) only where --teacher-model does not name its architecture.
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


def _model_key(model_args: dict) -> str:
    """The constructor arguments of a config's model, as the key of the meta builds below."""
    return json.dumps({k: v for k, v in model_args.items() if k not in ('name', 'num_classes')}, sort_keys=True,
                      default=str)


def _forward_flops(name: str, model_args: dict, img_size: int) -> Tuple[int, int]:
    """(parameters, forward FLOPs for one image) of `name` built on the meta device."""
    return _forward_flops_cached(name, _model_key(model_args), img_size)


@functools.lru_cache(maxsize=None)
def _meta_model(name: str, args_json: str, img_size: int):
    """`name` built on the meta device (no memory, no weights), once per (name, arguments, size): read only."""
    import backbones
    args = dict(json.loads(args_json), drop_path_mode='none')  # the full model; the step kind accounts for SD
    with torch.device('meta'):  # as the engine builds it (CNNs get no img_size: backbones.factory.takes_img_size)
        model = backbones.create_model(name, num_classes=1000, img_size=img_size, **args)
    return model.eval().requires_grad_(False)  # (not no_grad(): FlopCounterMode's module hooks then fail on CaiT)


@functools.lru_cache(maxsize=None)
def _forward_flops_cached(name: str, args_json: str, img_size: int) -> Tuple[int, int]:
    from torch.utils.flop_counter import FlopCounterMode
    model = _meta_model(name, args_json, img_size)
    counter = FlopCounterMode(display=False)
    with counter, torch.device('meta'):
        model(torch.empty(1, 3, img_size, img_size))
    return sum(p.numel() for p in model.parameters()), counter.get_total_flops()


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


def _fmt_int(n) -> str:
    return f'{n:,}' if isinstance(n, int) else str(n)


def _model_size(name: str, model_args: dict, img_size: int):
    from pretrain.methods import ModelSize
    return ModelSize(*_forward_flops(name, model_args, img_size))


def _teacher(cfg, student) -> tuple:
    """(how the teacher is known, its ModelSize): the architecture kd.teacher_model names, else the one a local
    teacher file names or holds (as load_teacher reads it), else the student's (Figure 2's assumption)."""
    import backbones
    source, name, img_size = cfg.kd.teacher, cfg.kd.teacher_model, int(cfg.input_size)
    args, how = {}, 'kd.teacher_model'
    if not name:
        local = source and not str(source).startswith(backbones.hub.HF_HUB)  # a dry run downloads nothing
        if not (local and Path(backbones.hub.resolve_source(source)).is_file()):
            return "unknown (the student's size assumed; --teacher-model NAME counts it)", student
        try:
            ckpt = backbones.load_file(source, allow_pickle=cfg.allow_pickle, mmap=True)
            state = backbones.checkpoint.extract_state_dict(ckpt, str(source))
            name, args = backbones.checkpoint.architecture_of(ckpt, state, f'--teacher {source}')
        except backbones.CheckpointError as e:
            return f"unknown ({e}; the student's size assumed)", student
        how = 'the --teacher file'
        args = {k: v for k, v in args.items() if k not in ('num_classes', 'img_size') and 'drop_path' not in k}
    size = _model_size(name, args, img_size)
    return f'{name} ({how}) {size.params / 1e6:.1f}M, {size.flops / 1e9:.1f} GFLOPs', size


def method_cost(cfg, method, micro: int) -> Optional[tuple]:
    """(cost, the baseline's cost, the student's ModelSize, the teacher's description, ESD keep rate) of the run's
    method from the models it builds on the meta device; None where the model is named by no config key."""
    from backbones.esd import effective_drop_rate
    from pretrain.methods import METHODS
    name = cfg.model.get('name')
    if not name:
        return None
    tau = float(cfg.model.get('drop_path_rate') or 0.0)
    keep = 1.0  # the share of blocks a training forward runs: all of them with masking (DeiT III, Figure 2)
    if method.measured_step == 'cosub' and cfg.model.get('drop_path_mode') == 'esd' and tau > 0:
        keep = 1.0 - effective_drop_rate(micro * method.copies, tau)  # ESD's saving, as its cosub step measured it
    student = _model_size(name, dict(cfg.model), int(cfg.input_size))
    teacher_text, teacher = _teacher(cfg, student) if method.needs_teacher else ('', None)
    cost = method.cost(student, teacher, keep)
    base = METHODS['baseline'](cfg).cost(student, None, 1.0)  # Figure 2's reference: DeiT III, every block
    return cost, base, student, teacher_text, keep


def _cost_lines(method, costs) -> List[str]:
    paper = method.figure_2
    paper_line = ('paper cost        x{:g} weights, x{:g} optimizer state, x{:g} compute (Figure 2)'.format(*paper)
                  if paper else f'paper cost        none: Figure 2 has no {method.row} row')
    if costs is None:
        return ['method cost       from the --finetune checkpoint\'s model (give --model to compute it)', paper_line]
    cost, base, student, teacher, keep = costs
    models = f'student {student.params / 1e6:.1f}M parameters, {student.flops / 1e9:.1f} GFLOPs per image'
    if teacher:
        models += f'; teacher {teacher}'
    if keep < 1.0:
        models += f'; ESD runs {keep:.3f} of the blocks of each copy'
    return [f'method cost       x{cost.weights / base.weights:.3g} weights, x{cost.optimizer / base.optimizer:.3g} '
            f'optimizer state, x{cost.compute / base.compute:.3g} compute of the baseline, computed ({models})',
            paper_line]


def dry_run(cfg, gpus_from: str = 'dry_run.gpus') -> str:
    """The derived values of a resolved config, one per line (see the module doc); `gpus_from` names where
    cfg.dry_run.gpus came from (pretrain.submit: the job's --nodes x --gpus-per-node)."""
    from backbones.esd import effective_drop_rate
    from pretrain.engine.builders import learning_rate
    from pretrain.engine.distributed import split_global_batch

    gpus = int(cfg.dry_run.gpus)
    global_batch = int(cfg.batch_size)
    micro, accum = split_global_batch(global_batch, gpus, cfg.get('micro_batch_size'))
    from pretrain.methods import build_method
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
    costs = method_cost(cfg, method, micro)
    if costs:  # built on the meta device: no memory, no weights
        student = costs[2]
        model_line = (f'model             {name} at {cfg.input_size}x{cfg.input_size}: {student.params / 1e6:.1f}M '
                      f'parameters, {student.flops / 2e9:.1f} GMACs per image')
    else:
        model_line = 'model             from the --finetune checkpoint (give --model to see its size and cost)'
    lines = [
        f'config            {cfg.get("config_file", "?")}',
        model_line,
        f'method            {method.describe()}; loss {cfg.loss.type}, label smoothing '
        f'{cfg.loss.label_smoothing:g}',
        *_cost_lines(method, costs),
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
    lines.append(_memory_line(cfg, costs, micro, k, gpus))
    lines.append(_cost_line(cfg, method, costs, total, global_batch))
    return '\n'.join(lines)


def _cost_line(cfg, method, costs, total_steps: Optional[int], global_batch: int) -> str:
    rows = measured_step()
    where = MEASURED_STEP_FILE
    if where.is_relative_to(REPO_ROOT):
        where = where.relative_to(REPO_ROOT)
    if rows is None:
        return f'GPU-hours         no measured step time ({where} not found; run python -m benchmarks.pretrain_step on a GPU)'
    if not costs or total_steps is None:
        return 'GPU-hours         unknown (needs the model name and data.num_train_images)'
    name = cfg.model.name
    kind = method.measured_step
    if kind == 'cosub':
        kind = 'cosub_esd' if cfg.model.get('drop_path_mode') == 'esd' else 'cosub_mask'
    cost, _, student, _, keep = costs
    compute = cost.compute / method.student_step(student, keep)  # the teacher's, the EMA's, a second model's share
    usable = [r for r in rows if kind in r['speeds']]
    if not usable:
        return f'GPU-hours         no measured {kind!r} step in {where}'
    flops = student.flops
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
        scaled += f', x{compute:.3g} for {cfg.method} (computed from its models, not measured)'
    return (f'GPU-hours         {hours:,.0f} ({_fmt_int(images)} images at {img_per_s:,.0f} img/s per GPU, '
            f'{kind} step of {ref["model"]}@{ref["img_size"]} measured in {where}{scaled})')


def _memory_line(cfg, costs, micro: int, copies: int, gpus: int) -> str:
    """Memory per device, a simple estimate (no GPU here), with and without activation checkpointing.

    Weights, gradients and optimizer state: 16 bytes per trained parameter (fp32 weight and gradient, the two
    moments of LAMB / AdamW), split over the GPUs under FSDP (train.fsdp), plus 4 bytes per frozen one (a KD
    teacher, an EMA). Activations, for transformers whose blocks all see the same tokens (ViTs): about
    34 x tokens x width bytes per block and image in bf16 (Korthikanti et al. 2022, "Reducing Activation
    Recomputation in Large Transformer Models", eq. 1 with fused attention storing no N x N scores; twice that in
    fp32), for the per-device batch (micro-batch x submodels), the branches on ESD's kept share only. With
    train.grad_checkpointing a block keeps only its fp32 input (4 x tokens x width bytes), plus one block's
    activations while it is recomputed. Not counted: the allocator's slack, the temporary buffers of kernels,
    FSDP's gathered parameters of the block in flight. For scale: cosub Table 7 measured a 25.0 GB peak for cosub
    ViT-H on 64 V100s (the official code, whose attention stores its N x N scores); this gives 18 GiB for vit_h
    with dry_run.gpus=64."""
    from backbones.esd import effective_drop_rate, stochastic_depth_blocks
    if not costs:
        return 'memory            unknown (needs the model name)'
    cost, gib = costs[0], 2 ** 30
    fsdp, checkpointing = bool(cfg.train.get('fsdp')), bool(cfg.train.get('grad_checkpointing'))
    state = 16 * cost.optimizer / (gpus if fsdp else 1) + 4 * (cost.weights - cost.optimizer)
    text = (f'memory/device     weights, gradients, optimizer state {state / gib:.1f} GiB: {cost.optimizer / 1e6:.0f}M '
            f'trained parameters x 16 B, ' + (f'sharded over {gpus} GPUs' if fsdp else 'on every GPU') +
            f' (train.fsdp={fsdp})')
    model = _meta_model(cfg.model.name, _model_key(cfg.model), int(cfg.input_size))  # the one the FLOPs came from
    blocks = stochastic_depth_blocks(model)
    width = getattr(model, 'embed_dim', None)
    grid = getattr(getattr(model, 'patch_embed', None), 'grid_size', None)
    if not (width and grid and all(getattr(getattr(b, 'norm1', None), 'normalized_shape', None) == (width,)
                                   for b in blocks)):
        return text + f'; activations: no estimate for {cfg.model.name} (one for ViTs: tokens x width per block)'
    tokens = grid[0] * grid[1] + getattr(model, 'num_prefix_tokens', 1)
    batch = micro * copies
    keep = 1.0
    if cfg.model.get('drop_path_mode') == 'esd':
        keep -= effective_drop_rate(batch, float(cfg.model.get('drop_path_rate') or 0.0))
    per_block = 34 * (1 if cfg.train.get('amp') in ('bf16', 'fp16') else 2) * tokens * width * batch * keep
    plain = len(blocks) * per_block
    recomputed = len(blocks) * 4 * tokens * width * batch + per_block
    chosen = recomputed if checkpointing else plain
    return '\n'.join([
        text,
        f'activations       {plain / gib:.1f} GiB without activation checkpointing, {recomputed / gib:.1f} GiB with '
        f'it (train.grad_checkpointing={checkpointing}): {len(blocks)} blocks x {batch} images ({micro} x {copies}) '
        f'x {tokens} tokens x {width} wide{f", branches on {keep:.2f} of them (ESD)" if keep < 1 else ""}; '
        f'per device about {(state + chosen) / gib:.1f} GiB in all (estimate: pretrain/dry_run.py _memory_line)'])
