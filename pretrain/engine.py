"""The training engine shared by pretraining (pretrain/train.py) and transfer learning (transfer/finetune.py).

One explicit loop: global batch -> per-device micro-batches (gradient accumulation when fewer devices hold it)
-> mixup/cutmix -> the batch repeated once per submodel -> one forward pass -> cosub loss -> backward ->
clip -> LAMB/AdamW step -> per-step cosine schedule. Distributed with torchrun (DDP); every rank reads its
share of one global sample order (see data.GlobalOrderSampler), so results do not depend on the GPU count.

Checkpoints (`checkpoint.pth`, atomic) hold everything needed to continue exactly: model, optimizer, scaler,
scheduler, position in the epoch and every rank's RNG states. `train.fsdp=True` shards parameters, gradients
and optimizer state with FSDP (per residual block) instead of replicating them with DDP, for the largest models;
its checkpoints hold the same full (unsharded) weights.
"""
from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import random
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Optional

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader

import backbones
from backbones.esd import effective_drop_rate, keep_count, stochastic_depth_blocks

from . import data as data_lib
from .cosub import cosub_loss
from .plots import plot_training_curves

logger = logging.getLogger('cosub')


class TrainingError(RuntimeError):
    """A run that cannot go on (bad settings, non-finite loss, too many unreadable images)."""


# -- distributed -------------------------------------------------------------------------------------------------
@dataclass
class Dist:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device('cpu')

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def init_distributed(device: str = 'auto') -> Dist:
    """Read torchrun's environment; NCCL on GPUs, gloo on CPUs."""
    world_size = int(os.environ.get('WORLD_SIZE', 1))
    rank, local_rank = int(os.environ.get('RANK', 0)), int(os.environ.get('LOCAL_RANK', 0))
    if device == 'auto':
        device = 'cuda' if torch.cuda.is_available() else 'cpu'
    if device.startswith('cuda'):
        if not torch.cuda.is_available():
            raise TrainingError(f'device={device!r} but no CUDA GPU is available (use --device cpu)')
        dev = torch.device('cuda', local_rank)
        torch.cuda.set_device(dev)
    else:
        dev = torch.device(device)
    if world_size > 1 and not dist.is_initialized():
        dist.init_process_group('nccl' if dev.type == 'cuda' else 'gloo')
    return Dist(rank, world_size, local_rank, dev)


def all_reduce_sum(values: list, d: Dist) -> list:
    t = torch.tensor(values, dtype=torch.float64, device=d.device if d.device.type == 'cuda' else 'cpu')
    if d.enabled:
        dist.all_reduce(t)
    return t.tolist()


# -- RNG state (for exact resume) -------------------------------------------------------------------------------
def get_rng_state() -> dict:
    np_state = np.random.get_state()
    state = dict(torch=torch.get_rng_state(), python=random.getstate(),
                 numpy=dict(keys=torch.from_numpy(np_state[1].astype(np.int64)), pos=np_state[2],
                            has_gauss=np_state[3], cached_gaussian=np_state[4]))
    if torch.cuda.is_available():
        state['cuda'] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state['torch'])
    random.setstate(state['python'])
    n = state['numpy']
    np.random.set_state(('MT19937', n['keys'].numpy().astype(np.uint32), n['pos'], n['has_gauss'],
                         n['cached_gaussian']))
    if 'cuda' in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state['cuda'])


def seed_all(seed: int) -> None:
    torch.manual_seed(seed)
    np.random.seed(seed % 2 ** 32)
    random.seed(seed)


# -- logging -----------------------------------------------------------------------------------------------------
def setup_logging(output_dir: Optional[Path], is_main: bool) -> None:
    handlers = [logging.StreamHandler(sys.stdout)]
    if output_dir is not None and is_main:
        output_dir.mkdir(parents=True, exist_ok=True)
        handlers.append(logging.FileHandler(output_dir / 'train.log'))
    logging.basicConfig(level=logging.INFO if is_main else logging.WARNING, handlers=handlers, force=True,
                        format='%(asctime)s %(message)s', datefmt='%H:%M:%S')


def read_log(path: Path) -> list:
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


# -- the trainer -------------------------------------------------------------------------------------------------
class Trainer:
    """Builds everything from a config, then `fit()` trains, evaluates, logs and checkpoints."""

    def __init__(self, cfg, splits: Optional[data_lib.Splits] = None):
        self.cfg = cfg
        self.d = init_distributed(cfg.get('device', 'auto'))
        self.output_dir = Path(cfg.output_dir) if cfg.get('output_dir') else None
        setup_logging(self.output_dir, self.d.is_main)
        self.eval_only = bool(cfg.get('eval_only', False))
        self.splits = splits or data_lib.build_splits(cfg.data)
        if self.splits.train is None and not self.eval_only:
            raise TrainingError('the dataset has no training split')
        self.num_classes = self.splits.num_classes
        self._setup_batching()
        seed_all(cfg.seed)  # same initial weights on every rank
        self.model = self._build_model()
        self._check_esd_batch()
        seed_all(cfg.seed + self.d.rank)  # independent stochastic depth / mixup draws per rank
        self.model.to(self.d.device)
        self.fsdp = bool(cfg.train.get('fsdp')) and self.d.enabled
        self.train_model = self._wrap(self.model)
        self.optimizer, self.base_lr = self._build_optimizer()
        self.scheduler = self._build_scheduler()
        self.scaler = torch.amp.GradScaler('cuda', enabled=self._amp_dtype() == torch.float16)
        self.mixup = self._build_mixup()
        self.train_loader, self.train_sampler = self._train_loader()
        self.val_loaders = self._val_loaders()
        self.epoch, self.step_in_epoch, self.global_step, self.best_top1 = 0, 0, 0, None
        self.first_bad, self.tb = None, None
        self._resume()

    # ---- construction ----
    def _setup_batching(self) -> None:
        cfg, world = self.cfg, self.d.world_size
        self.global_batch = int(cfg.batch_size)
        micro = cfg.get('micro_batch_size') or self.global_batch // world
        if micro < 1 or self.global_batch % (world * micro):
            raise TrainingError(f'batch_size={self.global_batch} cannot be split into {world} device(s) x '
                                f'micro_batch_size={micro} x an integer number of accumulation steps')
        self.micro_batch, self.accum_steps = int(micro), self.global_batch // (world * micro)
        self.num_submodels = int(cfg.cosub.num_submodels) if cfg.cosub.enabled else 1
        if self.splits.train is not None and not self.eval_only:
            self.steps_per_epoch = len(self.splits.train) // self.global_batch
            if self.steps_per_epoch == 0:
                raise TrainingError(f'the training set has {len(self.splits.train)} images, fewer than one global '
                                    f'batch of {self.global_batch}; lower --batch-size')

    def _build_model(self) -> nn.Module:
        cfg = self.cfg
        args = dict(cfg.model)
        name = args.pop('name')
        if args.pop('num_classes', None) not in (None, self.num_classes):
            logger.info('model.num_classes is taken from the data: %d classes', self.num_classes)
        model = backbones.create_model(name, num_classes=self.num_classes, img_size=cfg.input_size, **args)
        if cfg.get('finetune'):
            self._load_finetune(model, name)
        n_params = sum(p.numel() for p in model.parameters())
        logger.info('model %s: %.2fM parameters, %d classes, drop_path %s (%s, %s)', name, n_params / 1e6,
                    self.num_classes, args.get('drop_path_rate', 0.0), args.get('drop_path_mode', 'esd'),
                    args.get('drop_path_schedule', 'uniform'))
        return model

    def _load_finetune(self, model: nn.Module, name: str) -> None:
        """Start from --finetune: the whole backbone must load (a checkpoint of another architecture would
        silently train from scratch); the classifier is new unless it was trained on these very classes."""
        cfg = self.cfg
        report = backbones.load_checkpoint(model, cfg.finetune, allow_pickle=cfg.get('allow_pickle', False))
        backbone_missing = [k for k in report.missing if not backbones.checkpoint.HEAD_KEYS.match(k)]
        if (report.mismatched or backbone_missing) and not cfg.get('allow_partial_finetune', False):
            raise TrainingError(f'--finetune {cfg.finetune} does not fit model {name} ({report}); pass the --model '
                                'and model.* keys it was trained with, or allow_partial_finetune=True to train the '
                                'missing weights from scratch')
        trained_on = (report.meta.get('config') or {}).get('data') or {}
        same_classes = trained_on.get('type') == cfg.data.type and trained_on.get('classes') == cfg.data.get('classes')
        if cfg.get('reset_head') and not report.replaced and not same_classes and not self.eval_only:
            # A head of the right size trained on other classes (digits 0-4 -> 5-9) means nothing for these.
            model.reset_classifier(self.num_classes)
            logger.info('classifier re-initialised: the checkpoint\'s head has the right size (%d classes) but was '
                        'trained on other classes (reset_head=False keeps it)', self.num_classes)

    def _check_esd_batch(self) -> None:
        """ESD drops a whole number of samples per branch: refuse batches where that is far from the rate."""
        batch = self.micro_batch * self.num_submodels
        rows = [r for r in backbones.esd_report(self.model, batch) if r['rate'] > 0]
        if rows:
            top = max(rows, key=lambda r: r['rate'])
            logger.info('stochastic depth: per-device batch %d (%d x %d submodels), %d distinct rate(s) up to %g; '
                        'at %g ESD keeps %d per branch, an effective rate of %.4f', batch, self.micro_batch,
                        self.num_submodels, len(rows), top['rate'], top['rate'], top['keep'], top['effective'])
        for block in stochastic_depth_blocks(self.model):
            rate, mode = block.drop_path_rate, block.drop_path_mode
            if mode != 'esd' or rate == 0.0:
                continue
            eff = effective_drop_rate(batch, rate)
            if eff == 0.0 or abs(eff - rate) > 0.5 * rate:
                need = next(b for b in range(batch, 100_000) if 0 < effective_drop_rate(b, rate)
                            and abs(effective_drop_rate(b, rate) - rate) <= 0.1 * rate)
                raise TrainingError(
                    f'per-device batch of {batch} samples ({self.micro_batch} x {self.num_submodels} submodels) '
                    f'at drop_path_rate {rate:g}: ESD keeps {keep_count(batch, rate)} of {batch}, an effective '
                    f'rate of {eff:.3f}; use a per-device batch of at least {need} samples or '
                    "model.drop_path_mode='mask'")

    def _wrap(self, model: nn.Module) -> nn.Module:
        if self.fsdp:  # in place: self.model becomes the sharded module
            from torch.distributed.fsdp import fully_shard
            for block in stochastic_depth_blocks(model):
                fully_shard(block)
            fully_shard(model)
        if self.cfg.train.get('compile'):
            model = torch.compile(model)
        if self.d.enabled and not self.fsdp:
            ids = [self.d.local_rank] if self.d.device.type == 'cuda' else None
            model = nn.parallel.DistributedDataParallel(model, device_ids=ids)
        return model

    @contextlib.contextmanager
    def _gradient_sync(self, sync: bool):
        """Skip the gradient all-reduce on all but the last micro-batch of an accumulated step."""
        if sync or not self.d.enabled:
            yield
        elif self.fsdp:
            self.model.set_requires_gradient_sync(False)
            try:
                yield
            finally:
                self.model.set_requires_gradient_sync(True)
        else:
            with self.train_model.no_sync():
                yield

    def _build_optimizer(self):
        from timm.optim import create_optimizer_v2
        o = self.cfg.optimizer
        groups = backbones.layer_decay_param_groups(self.model, o.weight_decay, o.get('layer_decay'),
                                                    only=o.get('only'))
        if o.get('only'):
            trainable = sum(p.numel() for g in groups for p in g['params'])
            logger.info('training only parameters matching %s: %.2fM of %.2fM', list(o.only), trainable / 1e6,
                        sum(p.numel() for p in self.model.parameters()) / 1e6)
        for g in groups:
            g.pop('names')
        lr = o.get('lr')
        if not lr:  # supplement eq. A.1 / A.2: square-root scaling with the batch size
            lr = o.base_lr * math.sqrt(self.global_batch / o.base_batch_size)
            if o.get('layer_decay'):
                lr *= o.get('layer_decay_lr_mult', 2.0)
        kwargs = {k: o[k] for k in ('betas', 'eps', 'momentum') if o.get(k) is not None}
        opt = create_optimizer_v2(groups, opt=o.type, lr=lr, weight_decay=o.weight_decay, **kwargs)
        logger.info('optimizer %s, lr %.3g (global batch %d = %d device(s) x %d x %d accumulation), '
                    'weight decay %g, layer decay %s', o.type, lr, self.global_batch, self.d.world_size,
                    self.micro_batch, self.accum_steps, o.weight_decay, o.get('layer_decay'))
        return opt, lr

    def _build_scheduler(self):
        if self.eval_only:
            return None
        from timm.scheduler import create_scheduler_v2
        s = self.cfg.schedule
        sched, _ = create_scheduler_v2(self.optimizer, sched=s.get('sched', 'cosine'), num_epochs=self.cfg.epochs,
                                       warmup_epochs=s.get('warmup_epochs', 5), warmup_lr=s.get('warmup_lr', 1e-6),
                                       min_lr=s.get('min_lr', 1e-5), step_on_epochs=False,
                                       updates_per_epoch=self.steps_per_epoch)
        sched.step_update(0)
        return sched

    def _build_mixup(self):
        m = self.cfg.get('mixup') or {}
        if not (m.get('mixup_alpha', 0) > 0 or m.get('cutmix_alpha', 0) > 0):
            return None
        if self.micro_batch % 2:
            raise TrainingError(f'mixup/cutmix need an even per-device batch; got micro_batch_size={self.micro_batch}')
        from timm.data import Mixup
        return Mixup(mixup_alpha=m.get('mixup_alpha', 0.0), cutmix_alpha=m.get('cutmix_alpha', 0.0),
                     prob=m.get('prob', 1.0), switch_prob=m.get('switch_prob', 0.5), mode=m.get('mode', 'batch'),
                     label_smoothing=self.cfg.loss.get('label_smoothing', 0.0), num_classes=self.num_classes)

    def _loader(self, dataset, transform, sampler, batch_size, drop_last) -> DataLoader:
        workers = int(self.cfg.data.get('num_workers', 4))
        # Augmentation is seeded per sample; the loader's own generator keeps iterator creation from drawing
        # on the global RNG, which would make a mid-epoch resume diverge.
        return DataLoader(data_lib.TransformedDataset(dataset, transform), batch_size=batch_size, sampler=sampler,
                          num_workers=workers, pin_memory=self.d.device.type == 'cuda', drop_last=drop_last,
                          persistent_workers=workers > 0, generator=torch.Generator())

    def _train_loader(self):
        if self.eval_only:
            return None, None
        d, cfg = self.d, self.cfg
        sampler = data_lib.GlobalOrderSampler(len(self.splits.train), rank=d.rank, world_size=d.world_size,
                                              seed=cfg.seed, repeats=cfg.data.get('repeated_aug', 1),
                                              global_batch=self.global_batch)
        tf = data_lib.build_train_transform(cfg.data.get('train_transform', {}), cfg.input_size,
                                            cfg.data.get('mean', data_lib.IMAGENET_MEAN),
                                            cfg.data.get('std', data_lib.IMAGENET_STD))
        return self._loader(self.splits.train, tf, sampler, self.micro_batch, True), sampler

    def _val_loaders(self) -> Dict[str, DataLoader]:
        cfg, d = self.cfg, self.d
        tf = data_lib.build_eval_transform(cfg.input_size, cfg.data.get('eval_crop_ratio', 1.0),
                                           cfg.data.get('mean', data_lib.IMAGENET_MEAN),
                                           cfg.data.get('std', data_lib.IMAGENET_STD))
        sets = {'val': self.splits.val} if self.splits.val is not None else {}
        sets.update(self.splits.extra_val)
        batch = int(cfg.get('eval_batch_size') or self.micro_batch * 2)
        return {name: self._loader(ds, tf, data_lib.GlobalOrderSampler(len(ds), rank=d.rank, world_size=d.world_size,
                                                                       shuffle=False), batch, False)
                for name, ds in sets.items()}

    # ---- checkpoints ----
    def _state_dicts(self, optimizer: bool = True):
        """Full model (and optimizer) state; collective under FSDP, where only rank 0 receives it."""
        if not self.fsdp:
            return self.model.state_dict(), self.optimizer.state_dict() if optimizer else None
        from torch.distributed.checkpoint.state_dict import (StateDictOptions, get_model_state_dict,
                                                             get_optimizer_state_dict)
        options = StateDictOptions(full_state_dict=True, cpu_offload=True)
        return (get_model_state_dict(self.model, options=options),
                get_optimizer_state_dict(self.model, self.optimizer, options=options) if optimizer else None)

    def _checkpoint_state(self) -> dict:
        rng = get_rng_state()
        rngs = [None] * self.d.world_size
        if self.d.enabled:
            dist.all_gather_object(rngs, rng)
        else:
            rngs = [rng]
        model, optimizer = self._state_dicts()
        return dict(format=backbones.checkpoint.FORMAT, version=backbones.checkpoint.VERSION,
                    model_name=self.cfg.model.name, num_classes=self.num_classes, img_size=self.cfg.input_size,
                    model=model, optimizer=optimizer, fsdp=self.fsdp, scaler=self.scaler.state_dict(), scheduler=self.scheduler.state_dict(), epoch=self.epoch,
                    step_in_epoch=self.step_in_epoch, global_step=self.global_step, best_top1=self.best_top1,
                    world_size=self.d.world_size, rng=rngs, config=self.cfg.to_dict())

    def save_checkpoint(self, name: str = 'checkpoint.pth') -> None:
        if self.output_dir is None:
            return
        state = self._checkpoint_state()  # collective: every rank takes part
        if self.d.is_main:
            backbones.save_file(state, self.output_dir / name)

    def _resume(self) -> None:
        cfg = self.cfg
        path = cfg.get('resume')
        if not path:
            return
        if path == 'auto':
            if self.output_dir is None or not (self.output_dir / 'checkpoint.pth').is_file():
                logger.info('--resume: no checkpoint.pth in %s yet, starting from scratch', self.output_dir)
                return
            path = self.output_dir / 'checkpoint.pth'
        ckpt = backbones.load_file(path, allow_pickle=cfg.get('allow_pickle', False))
        if ckpt.get('img_size') not in (None, cfg.input_size):
            raise TrainingError(f'{path} was trained at input size {ckpt["img_size"]}, this run uses '
                                f'{cfg.input_size}; pass --input-size {ckpt["img_size"]}')
        if ckpt.get('format') != backbones.checkpoint.FORMAT or 'optimizer' not in ckpt:
            # weights only (e.g. an official DeiT III file): evaluate or fine-tune from them
            backbones.load_checkpoint(self.model, path, allow_pickle=cfg.get('allow_pickle', False))
            logger.info('--resume %s holds weights only; training state starts fresh', path)
            return
        if self.fsdp:
            from torch.distributed.checkpoint.state_dict import (StateDictOptions, set_model_state_dict,
                                                                 set_optimizer_state_dict)
            set_model_state_dict(self.model, ckpt['model'], options=StateDictOptions(full_state_dict=True))
        else:
            self.model.load_state_dict(ckpt['model'])
        if not self.eval_only:
            if bool(ckpt.get('fsdp')) != self.fsdp:  # the optimizer state is keyed by name under FSDP, by index else
                raise TrainingError(f'{path} was written with train.fsdp={bool(ckpt.get("fsdp"))}; resume it with the '
                                    'same setting (its weights load anywhere with --finetune)')
            if self.fsdp:
                set_optimizer_state_dict(self.model, self.optimizer, ckpt['optimizer'],
                                         options=StateDictOptions(full_state_dict=True))
            else:
                self.optimizer.load_state_dict(ckpt['optimizer'])
            self.scaler.load_state_dict(ckpt['scaler'])
            self.scheduler.load_state_dict(ckpt['scheduler'])
        self.epoch, self.step_in_epoch = ckpt['epoch'], ckpt['step_in_epoch']
        self.global_step, self.best_top1 = ckpt['global_step'], ckpt.get('best_top1')
        if self.scheduler is not None:
            self.scheduler.step_update(self.global_step)
        rngs = ckpt.get('rng') or []
        if len(rngs) == self.d.world_size:
            set_rng_state(rngs[self.d.rank])
        else:
            logger.warning('checkpoint was written by %d process(es), this run has %d: random streams re-seeded',
                           len(rngs), self.d.world_size)
        logger.info('resumed from %s at epoch %d, step %d', path, self.epoch, self.step_in_epoch)

    # ---- training ----
    def _amp_dtype(self) -> Optional[torch.dtype]:
        amp = self.cfg.train.get('amp')
        if self.d.device.type != 'cuda' or not amp:
            return None
        return {'bf16': torch.bfloat16, 'fp16': torch.float16}[amp]

    def _autocast(self):
        dtype = self._amp_dtype()
        return torch.autocast('cuda', dtype=dtype) if dtype else contextlib.nullcontext()

    def _targets(self, images: torch.Tensor, labels: torch.Tensor):
        if self.mixup is not None:
            return self.mixup(images, labels)
        smoothing = self.cfg.loss.get('label_smoothing', 0.0)
        onehot = F.one_hot(labels, self.num_classes).float()
        return images, onehot * (1.0 - smoothing) + smoothing / self.num_classes

    def _loss(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        c = self.cfg.cosub
        if not c.enabled:
            return cosub_loss(logits, targets, num_submodels=1, lam=1.0, loss=self.cfg.loss.type)
        return cosub_loss(logits, targets, num_submodels=self.num_submodels, lam=c.lam, loss=self.cfg.loss.type,
                          soft=c.get('soft', True))

    def train_one_epoch(self) -> dict:
        from tqdm import tqdm
        model, opt, d = self.train_model, self.optimizer, self.d
        model.train()
        self.train_sampler.set_epoch(self.epoch, self.step_in_epoch * self.global_batch)
        batches = iter(self.train_loader)
        clip = self.cfg.optimizer.get('clip_grad')
        ckpt_steps = int(self.cfg.train.get('checkpoint_steps') or 0)
        loss_sum, bad, seen, t0 = 0.0, 0, 0, time.time()
        first_step = self.step_in_epoch
        bar = tqdm(range(first_step, self.steps_per_epoch), desc=f'epoch {self.epoch}', disable=not d.is_main,
                   dynamic_ncols=True, leave=False)
        for step in bar:
            opt.zero_grad(set_to_none=True)
            step_loss = 0.0
            for micro in range(self.accum_steps):
                images, labels, _, bad_paths = next(batches)
                for path in filter(None, bad_paths):
                    bad += 1
                    self.first_bad = self.first_bad or path
                images = images.to(d.device, non_blocking=True)
                labels = labels.to(d.device, non_blocking=True)
                images, targets = self._targets(images, labels)
                if self.num_submodels > 1:  # rows i, i + B, ... are different submodels on the same image
                    images = images.repeat(self.num_submodels, 1, 1, 1)
                sync = not d.enabled or micro == self.accum_steps - 1
                with self._gradient_sync(sync):
                    with self._autocast():
                        logits = model(images)
                    loss = self._loss(logits, targets)
                    self.scaler.scale(loss / self.accum_steps).backward()
                step_loss += loss.item() / self.accum_steps
            self.scaler.unscale_(opt)
            grad_norm = nn.utils.clip_grad_norm_(self.model.parameters(), clip if clip else float('inf'))
            if hasattr(grad_norm, 'full_tensor'):  # a DTensor under FSDP
                grad_norm = grad_norm.full_tensor()
            if not (math.isfinite(step_loss) and torch.isfinite(grad_norm)):
                raise TrainingError(f'non-finite loss ({step_loss}) or gradient norm ({grad_norm.item()}) at epoch '
                                    f'{self.epoch}, step {step}; stopped without saving, the last good checkpoint is '
                                    f'{self.output_dir / "checkpoint.pth" if self.output_dir else "not kept (no output dir)"}')
            self.scaler.step(opt)
            self.scaler.update()
            self.global_step += 1
            self.step_in_epoch = step + 1
            self.scheduler.step_update(self.global_step)
            loss_sum += step_loss
            seen += self.global_batch
            self._check_bad(bad, seen)
            lr = opt.param_groups[-1]['lr']
            bar.set_postfix(loss=f'{step_loss:.4f}', lr=f'{lr:.2e}')
            if self.tb is not None and self.global_step % 10 == 0:
                self.tb.add_scalar('train/loss', step_loss, self.global_step)
                self.tb.add_scalar('train/lr', lr, self.global_step)
            if ckpt_steps and self.step_in_epoch % ckpt_steps == 0 and self.step_in_epoch < self.steps_per_epoch:
                self.save_checkpoint()
        bar.close()
        steps = max(self.steps_per_epoch - first_step, 1)
        loss_avg, bad_total, seen_total = all_reduce_sum([loss_sum / steps, bad, seen], d)
        elapsed = time.time() - t0
        return dict(train_loss=loss_avg / d.world_size, lr=opt.param_groups[-1]['lr'], bad_images=int(bad_total),
                    epoch_time=round(elapsed, 1), images_per_sec=round(seen / max(elapsed, 1e-9), 1))

    def _check_bad(self, bad: int, seen: int) -> None:
        limit = float(self.cfg.data.get('max_bad_fraction', 0.001))
        if bad > limit * max(seen, 1):
            raise TrainingError(f'{bad} unreadable images among {seen} ({bad / seen:.2%} > data.max_bad_fraction='
                                f'{limit}); the first was {self.first_bad}')

    @torch.no_grad()
    def evaluate(self, name: str = 'val') -> dict:
        loader = self.val_loaders[name]
        ds = loader.dataset.base
        real = getattr(ds, 'real_labels', None)
        self.model.eval()
        sums = [0.0] * 6  # correct@1, correct@5, loss, n, real correct, real n
        from tqdm import tqdm
        if self.fsdp:  # every forward pass gathers parameters from all ranks: all must run as many
            most = torch.tensor([len(loader)], device=self.d.device if self.d.device.type == 'cuda' else 'cpu')
            dist.all_reduce(most, op=dist.ReduceOp.MAX)  # before any forward pass, so the collectives pair up
        for images, labels, index, _ in tqdm(loader, desc=f'eval {name}', disable=not self.d.is_main, leave=False):
            images, labels = images.to(self.d.device), labels.to(self.d.device)
            with self._autocast():
                logits = self.model(images)
            logits = logits.float()
            top5 = logits.topk(min(5, logits.shape[1]), dim=1).indices
            sums[0] += (top5[:, 0] == labels).sum().item()
            sums[1] += (top5 == labels[:, None]).any(dim=1).sum().item()
            sums[2] += F.cross_entropy(logits, labels, reduction='sum').item()
            sums[3] += len(labels)
            if real is not None:
                for pred, i in zip(top5[:, 0].tolist(), index.tolist()):
                    if real[i]:
                        sums[4] += pred in real[i]
                        sums[5] += 1
        if self.fsdp:
            blank = torch.zeros(1, 3, self.cfg.input_size, self.cfg.input_size, device=self.d.device)
            with self._autocast():
                for _ in range(int(most.item()) - len(loader)):
                    self.model(blank)
        c1, c5, loss, n, rc, rn = all_reduce_sum(sums, self.d)
        out = {'top1': 100 * c1 / max(n, 1), 'top5': 100 * c5 / max(n, 1), 'loss': loss / max(n, 1), 'n': int(n)}
        if real is not None:
            out['real_top1'] = 100 * rc / max(rn, 1)
        return out

    def evaluate_all(self) -> dict:
        record = {}
        for name in self.val_loaders:
            for k, v in self.evaluate(name).items():
                if name == 'val' and k == 'real_top1':
                    record['real_top1'] = v
                else:
                    record[f'{name}_{k}'] = v
        return record

    def fit(self) -> dict:
        cfg, d = self.cfg, self.d
        if self.eval_only:
            record = self.evaluate_all()
            logger.info('evaluation: %s', _fmt(record))
            if self.output_dir is not None and d.is_main:
                (self.output_dir / 'eval.json').write_text(json.dumps(record, indent=1))
            return record
        log_path = self.output_dir / 'log.jsonl' if self.output_dir else None
        if d.is_main and self.output_dir is not None:
            from torch.utils.tensorboard import SummaryWriter
            cfg.dump(str(self.output_dir / 'config.py'))
            self.tb = SummaryWriter(str(self.output_dir / 'tensorboard'))
            # Records of epochs we are about to redo (a crash after logging) are dropped.
            kept = [r for r in read_log(log_path) if r['epoch'] < self.epoch]
            log_path.write_text(''.join(json.dumps(r) + '\n' for r in kept))
        logger.info('training %d epochs x %d steps from epoch %d (%d images, %d classes, cosub %s)', cfg.epochs,
                    self.steps_per_epoch, self.epoch, len(self.splits.train), self.num_classes,
                    f'{self.num_submodels} submodels, lambda {cfg.cosub.lam}' if cfg.cosub.enabled else 'off')
        record = {}
        while self.epoch < cfg.epochs:
            record = dict(epoch=self.epoch, **self.train_one_epoch())
            last = self.epoch + 1 == cfg.epochs
            if self.val_loaders and (last or (self.epoch + 1) % cfg.train.get('eval_interval', 1) == 0):
                record.update(self.evaluate_all())
            record['val_top1'] = record.get('val_top1')
            self.epoch, self.step_in_epoch = self.epoch + 1, 0
            improved = record['val_top1'] is not None and (self.best_top1 is None or record['val_top1'] > self.best_top1)
            if improved:
                self.best_top1 = record['val_top1']
            if last or self.epoch % cfg.train.get('checkpoint_interval', 1) == 0:
                self.save_checkpoint()
            if improved and cfg.train.get('save_best', True):
                self._save_best()
            if d.is_main:
                logger.info('epoch %d/%d  %s', record['epoch'] + 1, cfg.epochs, _fmt(record))
                if log_path is not None:
                    with open(log_path, 'a') as f:
                        f.write(json.dumps(record) + '\n')
                    plot_training_curves(read_log(log_path), self.output_dir / 'training_curves.png')
                    for k, v in record.items():
                        if isinstance(v, (int, float)) and k != 'epoch':
                            self.tb.add_scalar(f'epoch/{k}', v, record['epoch'])
        if self.tb is not None:
            self.tb.close()
        return record

    def _save_best(self) -> None:
        if self.output_dir is None:
            return
        model, _ = self._state_dicts(optimizer=False)  # collective under FSDP
        if self.d.is_main:
            backbones.save_file(dict(format=backbones.checkpoint.FORMAT, version=backbones.checkpoint.VERSION,
                                     model_name=self.cfg.model.name, num_classes=self.num_classes,
                                     img_size=self.cfg.input_size, model=model, epoch=self.epoch,
                                     val_top1=self.best_top1, config=self.cfg.to_dict()),
                                self.output_dir / 'checkpoint_best.pth')


def _fmt(record: dict) -> str:
    return '  '.join(f'{k} {v:.4g}' if isinstance(v, float) else f'{k} {v}' for k, v in record.items()
                     if k != 'epoch' and v is not None)


def run(cfg, splits: Optional[data_lib.Splits] = None) -> dict:
    """Train (or evaluate) as the config says; returns the last epoch's log record."""
    trainer = Trainer(cfg, splits)
    try:
        return trainer.fit()
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()
