"""The training loop: global batch -> per-device micro-batches (gradient accumulation when fewer devices hold it)
-> mixup/cutmix -> the batch repeated once per submodel -> one forward pass -> cosub loss -> backward -> clip ->
LAMB/AdamW step -> per-step cosine schedule; then evaluation, checkpoints and the epoch's log record."""
from __future__ import annotations

import contextlib
import json
import logging
import math
import time
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from ..cosub import cosub_loss
from ..plots import plot_training_curves
from .distributed import all_reduce_sum, gradient_sync
from .errors import TrainingError
from .logs import format_record, read_log

logger = logging.getLogger('cosub')


class TrainingLoop:
    """Trainer methods that train: one step, one epoch, and `fit` (all epochs with evaluation and logs)."""

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
                images, labels, _, bad_paths = self._to_device(next(batches))
                for path in filter(None, bad_paths):
                    bad += 1
                    self.first_bad = self.first_bad or path
                images, targets = self._targets(images, labels)
                if self.num_submodels > 1:  # rows i, i + B, ... are different submodels on the same image
                    images = images.repeat(self.num_submodels, 1, 1, 1)
                sync = not d.enabled or micro == self.accum_steps - 1
                with gradient_sync(self.model, model, d, self.fsdp, sync):
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

    def fit(self) -> dict:
        cfg, d = self.cfg, self.d
        if self.eval_only:
            record = self.evaluate_all()
            logger.info('evaluation: %s', format_record(record))
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
                logger.info('epoch %d/%d  %s', record['epoch'] + 1, cfg.epochs, format_record(record))
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
