"""Checkpoints: what they hold (model, optimizer, scaler, scheduler, position in the epoch, every rank's RNG
states: everything needed to continue exactly), writing them atomically and resuming from them. Under FSDP the
files hold the same full (unsharded) weights."""
from __future__ import annotations

import logging

import torch.distributed as dist

import backbones

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
        rng = get_rng_state()
        rngs = [None] * self.d.world_size
        if self.d.enabled:
            dist.all_gather_object(rngs, rng)
        else:
            rngs = [rng]
        model, optimizer = self._state_dicts()
        return dict(format=backbones.checkpoint.FORMAT, version=backbones.checkpoint.VERSION,
                    model_name=self.cfg.model.name, num_classes=self.num_classes, img_size=self.cfg.input_size,
                    model=model, optimizer=optimizer, fsdp=self.fsdp, scaler=self.scaler.state_dict(),
                    scheduler=self.scheduler.state_dict(), epoch=self.epoch,
                    step_in_epoch=self.step_in_epoch, global_step=self.global_step, best_top1=self.best_top1,
                    world_size=self.d.world_size, rng=rngs, config=self.cfg.to_dict())

    def save_checkpoint(self, name: str = 'checkpoint.pth') -> None:
        if self.output_dir is None:
            return
        state = self._checkpoint_state()  # collective: every rank takes part
        if self.d.is_main:
            backbones.save_file(state, self.output_dir / name)

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
