"""Checkpoints: what they hold (model, optimizer, scaler, scheduler, position in the epoch, every rank's RNG
states: everything needed to continue exactly), writing them atomically and resuming from them. Under FSDP the
files hold the same full (unsharded) weights."""
from __future__ import annotations

import logging

import torch.distributed as dist

import backbones

from .. import methods
from .errors import TrainingError
from .rng import get_rng_state, set_rng_state

logger = logging.getLogger('cosub')


class Checkpointing:
    """Trainer methods that write and read checkpoint.pth / checkpoint_best.pth."""

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
        mine = dict(rng=get_rng_state(), epoch_sums=dict(self.epoch_sums))
        per_rank = [None] * self.d.world_size
        if self.d.enabled:
            dist.all_gather_object(per_rank, mine)
        else:
            per_rank = [mine]
        model, optimizer = self._state_dicts()
        # 'model' is the run's model (what every loader reads); the method adds its own (peer_model, model_ema, the
        # teacher's identity) and describes its weights for the exporter (saved_weights: plain data)
        return dict(format=backbones.checkpoint.FORMAT, version=backbones.checkpoint.VERSION,
                    model_name=self.cfg.model.name, num_classes=self.num_classes, img_size=self.cfg.input_size,
                    **self.method.split_model_state(model), **self.method.state_dict(),
                    saved_weights=methods.saved_weights(self.method),
                    optimizer=optimizer, fsdp=self.fsdp, scaler=self.scaler.state_dict(),
                    epoch=self.epoch, step_in_epoch=self.step_in_epoch, global_step=self.global_step,
                    best_top1=self.best_top1, world_size=self.d.world_size, rng=[r['rng'] for r in per_rank],
                    epoch_sums=[r['epoch_sums'] for r in per_rank], config=self.cfg.to_dict())

    def save_checkpoint(self, name: str = 'checkpoint.pth') -> None:
        if self.output_dir is None:
            return
        state = self._checkpoint_state()  # collective: every rank takes part
        if self.d.is_main:
            backbones.save_file(state, self.output_dir / name)
        self.last_saved = (self.epoch, self.step_in_epoch)

    def _save_best(self) -> None:
        if self.output_dir is None:
            return
        model, _ = self._state_dicts(optimizer=False)  # collective under FSDP
        if self.d.is_main:
            backbones.save_file(dict(format=backbones.checkpoint.FORMAT, version=backbones.checkpoint.VERSION,
                                     model_name=self.cfg.model.name, num_classes=self.num_classes,
                                     img_size=self.cfg.input_size, **self.method.split_model_state(model),
                                     **self.method.state_dict(), saved_weights=methods.saved_weights(self.method),
                                     epoch=self.epoch,
                                     val_top1=self.best_top1, config=self.cfg.to_dict()),
                                self.output_dir / 'checkpoint_best.pth')

    def _resume(self) -> None:
        cfg = self.cfg
        path = cfg.resume
        if not path:
            return
        if path == 'auto':
            if self.output_dir is None or not (self.output_dir / 'checkpoint.pth').is_file():
                if self.eval_only:
                    raise TrainingError(f'--eval --resume: no checkpoint.pth in {self.output_dir} to evaluate')
                logger.info('--resume: no checkpoint.pth in %s yet, starting from scratch', self.output_dir)
                return
            path = self.output_dir / 'checkpoint.pth'
        ckpt = backbones.load_file(path, allow_pickle=cfg.allow_pickle)
        if ckpt.get('img_size') not in (None, cfg.input_size):
            raise TrainingError(f'{path} was trained at input size {ckpt["img_size"]}, this run uses '
                                f'{cfg.input_size}; pass --input-size {ckpt["img_size"]}')
        trained_with = methods.method_of(ckpt.get('config')) if isinstance(ckpt, dict) else None
        if ckpt.get('format') == backbones.checkpoint.FORMAT and 'config' in ckpt and trained_with != cfg.method:
            raise methods.MethodError(f'{path} was trained with method {trained_with}; resume or evaluate it with '
                                      f'--method {trained_with} (its weights load anywhere with --finetune)')
        if ckpt.get('format') != backbones.checkpoint.FORMAT or 'optimizer' not in ckpt:
            # weights only (e.g. an official DeiT III file): evaluate or fine-tune from them, every tensor filled
            backbones.checkpoint.load_into(self.model, ckpt, str(path), strict=True)
            logger.info('--resume %s holds weights only; training state starts fresh', path)
            return
        model_state = self.method.join_model_state(ckpt, path)
        if self.fsdp:
            from torch.distributed.checkpoint.state_dict import (StateDictOptions, set_model_state_dict,
                                                                 set_optimizer_state_dict)
            set_model_state_dict(self.model, model_state, options=StateDictOptions(full_state_dict=True))
        else:
            backbones.checkpoint.load_into(self.model, dict(model=model_state), str(path), strict=True)
        self.method.load_state_dict(ckpt, path)  # the EMA, the teacher's identity
        if self.eval_only:
            logger.info('evaluating %s (epoch %d)', path, ckpt['epoch'])
            return
        if bool(ckpt.get('fsdp')) != self.fsdp:  # the optimizer state is keyed by name under FSDP, by index else
            raise TrainingError(f'{path} was written with train.fsdp={bool(ckpt.get("fsdp"))}; resume it with the '
                                'same setting (its weights load anywhere with --finetune)')
        if self.fsdp:
            set_optimizer_state_dict(self.model, self.optimizer, ckpt['optimizer'],
                                     options=StateDictOptions(full_state_dict=True))
        else:
            self.optimizer.load_state_dict(ckpt['optimizer'])
        self.scaler.load_state_dict(ckpt['scaler'])
        old_lr = self.optimizer.param_groups[-1]['lr']
        self.epoch, self.step_in_epoch, self.global_step = ckpt['epoch'], ckpt['step_in_epoch'], ckpt['global_step']
        self._follow_changed_settings(ckpt.get('config') or {}, path)
        # The schedule is a function of the step and this run's config (its state is not loaded, so that a
        # changed --epochs or LR takes effect; unchanged, this gives the very same LR).
        self.scheduler.step_update(self.global_step)
        new_lr = self.optimizer.param_groups[-1]['lr']
        if self.changed and self.d.is_main:
            logger.warning('--resume with %s: the schedule follows the new settings from step %d on (learning rate '
                           '%.3g at the checkpoint, %.3g now)', '; '.join(self.changed), self.global_step, old_lr,
                           new_lr)
        per_rank = ckpt.get('rng') or []
        sums = ckpt.get('epoch_sums') or []
        if len(per_rank) == self.d.world_size:
            set_rng_state(per_rank[self.d.rank])
        else:
            logger.warning('checkpoint was written by %d process(es), this run has %d: random streams re-seeded',
                           len(per_rank), self.d.world_size)
        if self.step_in_epoch and len(sums) == self.d.world_size:
            self.epoch_sums = dict(sums[self.d.rank])
        self.resumed, self.last_saved = True, (self.epoch, self.step_in_epoch)
        logger.info('resumed from %s at epoch %d, step %d', path, self.epoch, self.step_in_epoch)

    def _follow_changed_settings(self, old: dict, path) -> None:
        """Say what changed since the checkpoint and what it does; a new global batch keeps the images seen."""
        self.changed = []
        cfg = self.cfg
        if old.get('epochs') not in (None, cfg.epochs):
            self.changed.append(f'epochs {old["epochs"]} -> {cfg.epochs} (the cosine schedule now ends at epoch '
                                f'{cfg.epochs})')
        old_batch = old.get('batch_size')
        if old_batch not in (None, self.global_batch):
            images = self.step_in_epoch * old_batch
            self.step_in_epoch = min(images // self.global_batch, self.steps_per_epoch)
            self.global_step = self.epoch * self.steps_per_epoch + self.step_in_epoch
            self.epoch_sums = None  # sums over steps of another size
            self.changed.append(f'batch_size {old_batch} -> {self.global_batch} (now {self.steps_per_epoch} steps '
                                f'per epoch; continuing at step {self.step_in_epoch} of epoch {self.epoch})')
        old_opt = old.get('optimizer') or {}
        for key in ('lr', 'base_lr', 'min_lr'):
            before = old_opt.get(key) if key != 'min_lr' else (old.get('schedule') or {}).get(key)
            now = cfg.optimizer[key] if key != 'min_lr' else cfg.schedule.min_lr
            if before != now and (before is not None or now is not None):
                group = 'optimizer' if key != 'min_lr' else 'schedule'
                self.changed.append(f'{group}.{key} {before} -> {now}')
        if self.epoch_sums is None:
            from .loop import new_epoch_sums
            self.epoch_sums = new_epoch_sums()
