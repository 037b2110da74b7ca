"""Everything the loop uses, built from the config: model (and --finetune weights), optimizer with the learning
rate of supplement eq. A.1/A.2, per-step schedule, mixup/cutmix and the data loaders."""
from __future__ import annotations

import inspect
import logging
import math
from typing import Dict

import torch
from torch import nn
from torch.utils.data import DataLoader

import backbones
from backbones.esd import effective_drop_rate, keep_count, set_grad_checkpointing, stochastic_depth_blocks

from .. import data as data_lib
from .distributed import Dist
from .errors import SettingsError, TrainingError
from .lamb import ForeachLamb

logger = logging.getLogger('cosub')


def build_model(cfg, num_classes: int, eval_only: bool) -> nn.Module:
    args = dict(cfg.model)
    name = args.pop('name')
    if args.pop('num_classes', None) not in (None, num_classes):
        logger.info('model.num_classes is taken from the data: %d classes', num_classes)
    model = backbones.create_model(name, num_classes=num_classes, img_size=cfg.input_size, **args)
    if cfg.finetune:
        load_finetune(cfg, model, name, num_classes, eval_only)
    if cfg.train.grad_checkpointing:  # timm's --grad-checkpointing: each residual block recomputed in backward,
        # the same weights trained (the drops are recomputed identically: backbones/esd.py StochasticDepthBlock)
        blocks = set_grad_checkpointing(model)
        logger.info('activation checkpointing: %d residual blocks recompute their activations in backward', blocks)
    n_params = sum(p.numel() for p in model.parameters())
    logger.info('model %s: %.2fM parameters, %d classes, drop_path %s (%s, %s)', name, n_params / 1e6,
                num_classes, args['drop_path_rate'], args['drop_path_mode'], args['drop_path_schedule'])
    return model


def load_finetune(cfg, model: nn.Module, name: str, num_classes: int, eval_only: bool) -> None:
    """Start from --finetune: the whole backbone must load (a checkpoint of another architecture would
    silently train from scratch); the classifier is new unless it was trained on these very classes."""
    report = backbones.load_checkpoint(model, cfg.finetune, allow_pickle=cfg.allow_pickle)
    backbone_missing = [k for k in report.missing if not backbones.checkpoint.HEAD_KEYS.match(k)]
    if (report.mismatched or backbone_missing) and not cfg.allow_partial_finetune:
        raise TrainingError(f'--finetune {cfg.finetune} does not fit model {name} ({report}); pass the --model '
                            'and model.* keys it was trained with, or allow_partial_finetune=True to train the '
                            'missing weights from scratch')
    trained_on = (report.meta.get('config') or {}).get('data') or {}
    same_classes = trained_on.get('type') == cfg.data.type and trained_on.get('classes') == cfg.data.get('classes')
    if cfg.reset_head and not report.replaced and not same_classes and not eval_only:
        # A head of the right size trained on other classes (digits 0-4 -> 5-9) means nothing for these.
        model.reset_classifier(num_classes)
        logger.info('classifier re-initialised: the checkpoint\'s head has the right size (%d classes) but was '
                    'trained on other classes (reset_head=False keeps it)', num_classes)


def check_esd_batch(model: nn.Module, micro_batch: int, num_submodels: int) -> None:
    """ESD drops a whole number of samples per branch: refuse batches where that is far from the rate."""
    batch = micro_batch * num_submodels
    rows = [r for r in backbones.esd_report(model, batch) if r['rate'] > 0]
    if rows:
        top = max(rows, key=lambda r: r['rate'])
        logger.info('stochastic depth: per-device batch %d (%d x %d submodels), %d distinct rate(s) up to %g; '
                    'at %g ESD keeps %d per branch, an effective rate of %.4f', batch, micro_batch,
                    num_submodels, len(rows), top['rate'], top['rate'], top['keep'], top['effective'])
    for block in stochastic_depth_blocks(model):
        rate, mode = block.drop_path_rate, block.drop_path_mode
        if mode != 'esd' or rate == 0.0:
            continue
        eff = effective_drop_rate(batch, rate)
        if eff == 0.0 or abs(eff - rate) > 0.5 * rate:
            need = next(b for b in range(batch, 100_000) if 0 < effective_drop_rate(b, rate)
                        and abs(effective_drop_rate(b, rate) - rate) <= 0.1 * rate)
            raise TrainingError(
                f'per-device batch of {batch} samples ({micro_batch} x {num_submodels} submodels) '
                f'at drop_path_rate {rate:g}: ESD keeps {keep_count(batch, rate)} of {batch}, an effective '
                f'rate of {eff:.3f}; use a per-device batch of at least {need} samples or '
                "model.drop_path_mode='mask'")


def learning_rate(optimizer_cfg, global_batch: int) -> float:
    """optimizer.lr when set, else supplement eq. A.1 / A.2: square-root scaling with the batch size (x the
    layer-decay multiplier when fine-tuning with layer decay)."""
    o = optimizer_cfg
    lr = o.lr
    if not lr:
        lr = o.base_lr * math.sqrt(global_batch / o.base_batch_size)
        if o.layer_decay:
            lr *= o.layer_decay_lr_mult
    return float(lr)


def build_optimizer(model: nn.Module, optimizer_cfg, global_batch: int, d: Dist, micro_batch: int,
                    accum_steps: int):
    o = optimizer_cfg
    try:
        groups = backbones.layer_decay_param_groups(model, o.weight_decay, o.layer_decay, only=o.only)
    except backbones.optim.ParamFilterError as e:  # refused before the first step, as a bad flag is
        raise SettingsError(f'optimizer.only: {e}') from None
    if o.only:
        trainable = sum(p.numel() for g in groups for p in g['params'])
        logger.info('training only parameters matching %s: %.2fM of %.2fM', list(o.only), trainable / 1e6,
                    sum(p.numel() for p in model.parameters()) / 1e6)
    for g in groups:
        g.pop('names')
    lr = learning_rate(o, global_batch)
    kwargs = {k: o[k] for k in ('betas', 'eps', 'momentum') if o.get(k) is not None}
    if o.type == 'lamb' and o.get('foreach') is not False:
        # Ours (lamb.py): timm's Lamb's update and state dict in multi-tensor ops, for host time per step (issue 17);
        # optimizer.foreach=False (configs/_base_/deit3_in1k.py) is timm's. A config whose optimizer dict replaces
        # the base's (transfer.py) has no such key: ours too. It has no clip of its own: the loop's is the only one.
        opt = ForeachLamb(groups, lr=lr, weight_decay=o.weight_decay, **{k: v for k, v in kwargs.items()
                                                                         if k != 'momentum'})
    else:
        opt = _timm_optimizer(groups, o, lr, kwargs)
    logger.info('optimizer %s%s, lr %.3g (global batch %d = %d device(s) x %d x %d accumulation), '
                'weight decay %g, layer decay %s', o.type, ' (ours, foreach)' if isinstance(opt, ForeachLamb) else '',
                lr, global_batch, d.world_size, micro_batch, accum_steps, o.weight_decay, o.layer_decay)
    return opt, lr


def _timm_optimizer(groups, o, lr: float, kwargs: dict):
    """timm's create_optimizer_v2. 'adamw' and 'sgd' are torch.optim.AdamW / SGD (timm 1.0.31) with foreach=None,
    which torch resolves to its multi-tensor path when every parameter is on CUDA (as ours are) and to the
    per-parameter loop on CPU: nothing to pass."""
    from timm.optim import create_optimizer_v2, get_optimizer_class
    if 'max_grad_norm' in inspect.signature(get_optimizer_class(o.type)).parameters:
        # timm's LAMB clips the global norm at 1.0 itself, after the loop's optimizer.clip_grad: a second norm and
        # a copy of every gradient each step, and a clip_grad above 1.0 would silently act as 1.0. The loop's clip
        # is the only one (the base config's 1.0 is DeiT III's LAMB clip).
        kwargs['max_grad_norm'] = None
    return create_optimizer_v2(groups, opt=o.type, lr=lr, weight_decay=o.weight_decay, **kwargs)


def build_scheduler(optimizer, cfg, steps_per_epoch: int):
    """Cosine with warmup, stepped every optimizer step (timm's scheduler, step_update per step)."""
    from timm.scheduler import create_scheduler_v2
    s = cfg.schedule
    sched, _ = create_scheduler_v2(optimizer, sched=s.sched, num_epochs=cfg.epochs,
                                   warmup_epochs=s.warmup_epochs, warmup_lr=s.warmup_lr, min_lr=s.min_lr,
                                   step_on_epochs=False,
                                   updates_per_epoch=steps_per_epoch)
    sched.step_update(0)
    return sched


def build_mixup(cfg, micro_batch: int, num_classes: int):
    m = cfg.mixup
    if not (m.mixup_alpha > 0 or m.cutmix_alpha > 0):
        return None
    if micro_batch % 2:
        raise TrainingError(f'mixup/cutmix need an even per-device batch; got micro_batch_size={micro_batch}')
    from timm.data import Mixup
    return Mixup(mixup_alpha=m.mixup_alpha, cutmix_alpha=m.cutmix_alpha, prob=m.prob, switch_prob=m.switch_prob,
                 mode=m.mode, label_smoothing=cfg.loss.label_smoothing, num_classes=num_classes)


def build_loader(cfg, d: Dist, dataset, transform, sampler, batch_size: int, drop_last: bool) -> DataLoader:
    workers = int(cfg.data.num_workers)
    # Workers return uint8 images + per-sample augmentation parameters (Trainer._to_device applies them on the
    # device). Training replaces an unreadable image by the next one; evaluation marks it (contract 2).
    dataset = data_lib.TransformedDataset(dataset, transform,
                                          substitute_bad=isinstance(transform, data_lib.TrainTransform))
    # Augmentation is seeded per sample; the loader's own generator keeps iterator creation from drawing
    # on the global RNG, which would make a mid-epoch resume diverge.
    return DataLoader(dataset, batch_size=batch_size, sampler=sampler,
                      num_workers=workers, pin_memory=d.device.type == 'cuda', drop_last=drop_last,
                      persistent_workers=workers > 0, generator=torch.Generator())


def build_train_loader(cfg, d: Dist, dataset, global_batch: int, micro_batch: int):
    sampler = data_lib.GlobalOrderSampler(len(dataset), rank=d.rank, world_size=d.world_size, seed=cfg.seed,
                                          repeats=cfg.data.repeated_aug, global_batch=global_batch)
    tf = data_lib.build_train_transform(cfg.data.train_transform, cfg.input_size)
    data_lib.check_backend(cfg.data)
    if cfg.data.backend == 'dali':  # GPU decoding (optional package); same order, draws and batch format
        from ..dali_loader import DaliTrainLoader
        return DaliTrainLoader(dataset, tf, sampler, micro_batch, d.device), sampler
    return build_loader(cfg, d, dataset, tf, sampler, micro_batch, True), sampler


def build_val_loaders(cfg, d: Dist, splits, micro_batch: int) -> Dict[str, DataLoader]:
    tf = data_lib.build_eval_transform(cfg.input_size, cfg.data.eval_crop_ratio)
    sets = {'val': splits.val} if splits.val is not None else {}
    sets.update(splits.extra_val)
    batch = int(cfg.eval_batch_size or micro_batch * 2)  # None: twice the training micro-batch
    return {name: build_loader(cfg, d, ds, tf, data_lib.GlobalOrderSampler(len(ds), rank=d.rank,
                                                                           world_size=d.world_size, shuffle=False),
                               batch, False)
            for name, ds in sets.items()}
