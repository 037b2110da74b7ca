"""The Trainer: builds everything from a config (builders.py), then `fit()` (loop.py) trains, evaluates
(evaluation.py), logs and checkpoints (checkpointing.py)."""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Optional

import torch
import torch.distributed as dist

from .. import data as data_lib
from .. import methods as methods_lib
from ..augment import augment
from . import builders
from .checkpointing import Checkpointing
from .distributed import init_distributed, split_global_batch, wrap_model
from .errors import TrainingError
from .evaluation import Evaluation
from .logs import log_run_header, setup_logging
from .loop import TrainingLoop, new_epoch_sums
from .preemption import StopRequest
from .run_dir import prepare_output_dir
from .rng import seed_all
from .threads import budget_cpu_threads

logger = logging.getLogger('cosub')


class Trainer(TrainingLoop, Evaluation, Checkpointing):
    """Builds everything from a config, then `fit()` trains, evaluates, logs and checkpoints."""

    def __init__(self, cfg, splits: Optional[data_lib.Splits] = None):
        """Every attribute of a Trainer is set here, in the order a run needs them; the loop, the evaluation and
        the checkpoints (loop.py, evaluation.py, checkpointing.py) only update them."""
        self.cfg = cfg
        self.method = methods_lib.build_method(cfg)  # the Table 4 strategy: loss, outside models, extra state
        self.d = init_distributed(cfg.device)
        self.output_dir = Path(cfg.output_dir) if cfg.output_dir else None
        self.eval_only = bool(cfg.eval_only)
        if self.eval_only and not (cfg.resume or cfg.finetune):
            raise TrainingError('--eval needs weights: pass --resume [CHECKPOINT] or --finetune CHECKPOINT')
        self.run_lock = None  # rank 0's lock on the output folder, from prepare_output_dir to the end of run()
        try:
            if self.output_dir is not None:  # before anything is written
                self.run_lock = prepare_output_dir(self.output_dir, resume=cfg.resume, overwrite=bool(cfg.overwrite),
                                                   eval_only=self.eval_only, is_main=self.d.is_main)
                if self.d.enabled:
                    dist.barrier()  # rank 0 has moved an earlier run aside
            setup_logging(self.output_dir, self.d.is_main)
            log_run_header(cfg, self.d.world_size)
            if self.d.device.type == 'cpu':  # the main process's threads beside the loader's workers (threads.py)
                budget_cpu_threads(int(cfg.data.num_workers))
            if self.run_lock is not None:
                self.run_lock.log_takeover()
            if not self.eval_only and cfg.schedule.warmup_epochs >= cfg.epochs:  # allowed: short smoke tests do it
                logger.warning('schedule.warmup_epochs=%s of %s epochs: the learning rate never reaches its peak (%s)',
                               cfg.schedule.warmup_epochs, cfg.epochs, 'the whole run is warm-up')
            # the data and the batch: a global batch of micro-batches, each image seen `copies` times per forward
            self.splits = splits or data_lib.build_splits(cfg.data)
            if self.splits.train is None and not self.eval_only:
                raise TrainingError('the dataset has no training split')
            self.num_classes = self.splits.num_classes
            self.global_batch = int(cfg.batch_size)
            self.micro_batch, self.accum_steps = split_global_batch(self.global_batch, self.d.world_size,
                                                                    cfg.micro_batch_size)
            self.num_submodels = self.method.copies  # rows per image in the forward pass
            self.steps_per_epoch = None
            if self.splits.train is not None and not self.eval_only:
                self.steps_per_epoch = len(self.splits.train) // self.global_batch
                if self.steps_per_epoch == 0:
                    raise TrainingError(f'the training set has {len(self.splits.train)} images, fewer than one '
                                        f'global batch of {self.global_batch}; lower --batch-size')
            # the model, the method's outside models, the optimizer and its schedule
            seed_all(cfg.seed)  # same initial weights on every rank
            self.model = self.method.build_model(lambda: builders.build_model(cfg, self.num_classes, self.eval_only))
            builders.check_esd_batch(self.model, self.micro_batch, self.num_submodels)
            seed_all(cfg.seed + self.d.rank)  # independent stochastic depth / mixup draws per rank
            self.model.to(self.d.device)
            self.fsdp = bool(cfg.train.fsdp) and self.d.enabled
            self.compiled = bool(cfg.train.compile)
            self.train_model = wrap_model(self.model, self.d, self.fsdp, self.compiled, cfg.train.compile_mode)
            self.method.setup(self)  # the teacher or the EMA, on the device
            self.optimizer, self.base_lr = builders.build_optimizer(self.model, cfg.optimizer, self.global_batch,
                                                                    self.d, self.micro_batch, self.accum_steps)
            self.scheduler = None if self.eval_only else builders.build_scheduler(self.optimizer, cfg,
                                                                                  self.steps_per_epoch)
            self.scaler = torch.amp.GradScaler('cuda', enabled=self._amp_dtype() == torch.float16)
            self.mixup = builders.build_mixup(cfg, self.micro_batch, self.num_classes)
            # the loaders
            self.train_loader, self.train_sampler = (None, None) if self.eval_only else builders.build_train_loader(
                cfg, self.d, self.splits.train, self.global_batch, self.micro_batch)
            self.val_loaders = builders.build_val_loaders(cfg, self.d, self.splits, self.micro_batch)
            # the position and what the loop keeps; _resume() moves them to the checkpoint's
            self.epoch, self.step_in_epoch, self.global_step, self.best_top1 = 0, 0, 0, None
            self.epoch_sums = new_epoch_sums()  # running sums of the epoch in progress, kept in checkpoints
            self.first_bad = None  # the first unreadable image, named when too many were
            self.tb = None  # the TensorBoard writer, opened by fit() on rank 0
            self.resumed, self.last_saved = False, None  # last_saved: (epoch, step) of the last checkpoint written
            self.changed = []  # settings changed since the checkpoint resumed (checkpointing.py)
            self.stop = StopRequest()
            self._resume()
        except BaseException:
            self.release_run_dir()
            raise

    def release_run_dir(self) -> None:
        if self.run_lock is not None:
            self.run_lock.release()

    def _to_device(self, batch):
        """The one place a loader batch is unpacked: (images, labels, index, bad_paths), tensors on the device.
        Loaders deliver uint8 images and per-sample augmentation parameters; pretrain/augment.py applies them
        (3-Augment and colour jitter when training) and normalises, batched on the device."""
        images, labels, index, bad_paths, params = batch
        images = images.to(self.d.device, non_blocking=True)
        labels = labels.to(self.d.device, non_blocking=True)
        params = {k: v.to(self.d.device, non_blocking=True) for k, v in params.items()}
        images = augment(images, params, self.cfg.data.mean, self.cfg.data.std)
        return images, labels, index, bad_paths


def run(cfg, splits: Optional[data_lib.Splits] = None) -> dict:
    """Train (or evaluate) as the config says; returns the last epoch's log record."""
    return fit(Trainer(cfg, splits))


def fit(trainer: Trainer) -> dict:
    """trainer.fit(), then its run dir and the process group released whatever happened."""
    try:
        return trainer.fit()
    finally:
        trainer.release_run_dir()
        if dist.is_initialized():
            dist.destroy_process_group()
