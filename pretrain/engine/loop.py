"""The training loop: global batch -> per-device micro-batches (gradient accumulation when fewer devices hold it)
-> mixup/cutmix -> the batch repeated once per submodel -> one forward pass -> cosub loss -> backward -> clip ->
LAMB/AdamW step -> per-step cosine schedule, all in `train_one_epoch`; then evaluation, checkpoints and the epoch's
log record (`fit`)."""
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

from ..plots import plot_training_curves
from .distributed import all_reduce_sum, gradient_sync
from .errors import TrainingError
from .pending import PendingStep
from .logs import flush_logs, format_record, progress_line, read_log, show_bar
from .preemption import Preempted, signal_name
from .run_dir import append_line, write_atomic

logger = logging.getLogger('cosub')


def clip_gradients(parameters, max_norm: Optional[float]) -> torch.Tensor:
    """The global gradient norm, and the gradients scaled down to `max_norm` when it is set: the only clip of a
    step (builders.build_optimizer turns the optimizer's own off). benchmarks/pretrain_step.py steps with it too."""
    parameters = [p for p in parameters if p.grad is not None]
    norm = nn.utils.get_total_norm([p.grad for p in parameters])
    if max_norm:
        nn.utils.clip_grads_with_norm_(parameters, max_norm, norm)
    return norm


def new_epoch_sums() -> dict:
    """What an epoch's record averages, carried in checkpoints so that a resumed epoch reports all its steps."""
    return dict(loss=0.0, steps=0, bad=0, seen=0, seconds=0.0)


class TrainingLoop:
    """Trainer methods that train: one step, one epoch, and `fit` (all epochs with evaluation and logs)."""

    def _amp_dtype(self) -> Optional[torch.dtype]:
        amp = self.cfg.train.amp
        if self.d.device.type != 'cuda' or not amp:
            return None
        return {'bf16': torch.bfloat16, 'fp16': torch.float16}[amp]

    def _autocast(self):
        dtype = self._amp_dtype()
        return torch.autocast('cuda', dtype=dtype) if dtype else contextlib.nullcontext()

    def _loss(self, logits: torch.Tensor, targets: torch.Tensor, teacher: Optional[torch.Tensor]) -> torch.Tensor:
        """The method's loss (pretrain/methods.py: cosub's, KD's, ...); the one call the fault tests wrap."""
        return self.method.loss(logits, targets, teacher)

    def train_one_epoch(self) -> dict:
        """The epoch's optimizer steps, each read top to bottom in the loop below (as the official DeiT engine.py's
        train_one_epoch): the micro-batches of the global batch (forward, the method's loss, backward), the clip,
        the optimizer step, then the previous step's values read one step late (pending.py): the host queues step
        N + 1 before it waits for step N. Before a checkpoint or a stop the pending step is read first."""
        from tqdm import tqdm
        cfg, opt, d, method = self.cfg, self.optimizer, self.d, self.method
        smoothing, clip = cfg.loss.label_smoothing, cfg.optimizer.clip_grad
        self.train_model.train()
        self.train_sampler.set_epoch(self.epoch, self.step_in_epoch * self.global_batch)
        batches = iter(self.train_loader)
        ckpt_steps = int(cfg.train.checkpoint_steps or 0)
        if self.step_in_epoch == 0:
            self.epoch_sums = new_epoch_sums()
        sums, t0, run_steps, pending = self.epoch_sums, time.time(), 0, None
        bar = tqdm(range(self.step_in_epoch, self.steps_per_epoch), desc=f'epoch {self.epoch}',
                   disable=not (d.is_main and show_bar()), dynamic_ncols=True, leave=False)
        for step in bar:
            t_step = time.time()
            # 1. the micro-batches of the global batch: gradients summed, synchronised across ranks on the last
            opt.zero_grad(set_to_none=True)
            step_loss, bad = None, 0
            for micro in range(self.accum_steps):
                images, labels, _, bad_paths = self._to_device(next(batches))
                for path in filter(None, bad_paths):
                    bad += 1
                    self.first_bad = self.first_bad or path
                if self.mixup is not None:
                    images, targets = self.mixup(images, labels)
                else:
                    targets = F.one_hot(labels, self.num_classes).float() * (1.0 - smoothing) + \
                        smoothing / self.num_classes
                teacher = method.teacher_logits(images, self._autocast)  # an outside model's, or None
                if self.num_submodels > 1:  # rows i, i + B, ... are different submodels on the same image
                    images = images.repeat(self.num_submodels, 1, 1, 1)
                sync = not d.enabled or micro == self.accum_steps - 1
                with gradient_sync(self.model, self.train_model, d, self.fsdp, sync):
                    if self.compiled:  # a new iteration for CUDA-graph trees: the last one's outputs are consumed
                        torch.compiler.cudagraph_mark_step_begin()
                    with self._autocast():
                        logits = self.train_model(images)
                    loss = self._loss(logits, targets, teacher)
                    self.scaler.scale(loss / self.accum_steps).backward()
                loss = loss.detach() / self.accum_steps
                step_loss = loss if step_loss is None else step_loss + loss
            # 2. clip (each model of the method on its own), step, the method's update (e.g. the EMA), schedule
            self.scaler.unscale_(opt)
            norms = [clip_gradients(params, clip) for params in method.parameter_sets(self.model)]
            norms = [n.full_tensor() if hasattr(n, 'full_tensor') else n for n in norms]  # DTensors under FSDP
            grad_norm = norms[0] if len(norms) == 1 else torch.stack(norms).norm()
            # a signal any rank has seen by now: all-reduced on the device, read with the step's values
            values = [step_loss, grad_norm] + ([self.stop.flag(d)] if d.enabled else [])
            self.scaler.step(opt)
            self.scaler.update()
            method.after_step(self.model, self.global_step + 1)
            current = PendingStep(self.epoch, step, opt.param_groups[-1]['lr'], values, bad)  # copied, not read
            self.global_step += 1
            self.step_in_epoch = step + 1
            self.scheduler.step_update(self.global_step)
            run_steps += 1
            # 3. the previous step's values, read now that this one is queued: checked, counted, logged
            signum = self._read_step(pending, bar, t0, run_steps - 1)
            pending = current
            signum = signum if d.enabled else self.stop.signum  # one process: its own flag, at once
            last = self.step_in_epoch == self.steps_per_epoch
            checkpoint_due = bool(ckpt_steps) and self.step_in_epoch % ckpt_steps == 0 and not last
            if signum or checkpoint_due or last:  # read this step too: a checkpoint holds checked steps only
                signum = max(signum, self._read_step(pending, bar, t0, run_steps))
                pending = None
            sums['seconds'] += time.time() - t_step
            if signum:  # a step boundary every rank reaches: save the position and stop
                self._stop_on_signal(signum)
            if checkpoint_due:
                self.save_checkpoint()
        bar.close()
        loss_sum, bad_total, seen_total = all_reduce_sum([sums['loss'] / max(sums['steps'], 1), sums['bad'],
                                                          sums['seen']], d)
        return dict(train_loss=loss_sum / d.world_size, lr=opt.param_groups[-1]['lr'], bad_images=int(bad_total),
                    epoch_time=round(sums['seconds'], 1),
                    images_per_sec=round(sums['seen'] / max(sums['seconds'], 1e-9), 1))

    def _read_step(self, pending: Optional[PendingStep], bar, t0: float, run_steps: int) -> int:
        """Wait for a queued step's values, then check, count and log them; returns the agreed stop signal."""
        if pending is None:
            return 0
        cfg, d, sums = self.cfg, self.d, self.epoch_sums
        step_loss, grad_norm, *signum = pending.values()  # the agreed signal under DDP
        if not (math.isfinite(step_loss) and math.isfinite(grad_norm)):
            self._stop_non_finite(step_loss, grad_norm, pending.epoch, pending.step)
        sums['loss'] += step_loss
        sums['bad'] += pending.bad
        sums['steps'] += 1
        sums['seen'] += self.global_batch
        self._check_bad(sums['bad'], sums['seen'])
        done, lr = pending.step + 1, pending.lr
        bar.set_postfix(loss=f'{step_loss:.4f}', lr=f'{lr:.2e}')
        global_step = pending.epoch * self.steps_per_epoch + done
        if self.tb is not None and global_step % 10 == 0:
            self.tb.add_scalar('train/loss', step_loss, global_step)
            self.tb.add_scalar('train/lr', lr, global_step)
        log_every = int(cfg.train.log_interval or 0)
        if log_every and done % log_every == 0:
            per_s = run_steps * self.global_batch / max(time.time() - t0, 1e-9)
            left = (cfg.epochs - self.epoch) * self.steps_per_epoch - done
            logger.info(progress_line(self.epoch, cfg.epochs, done, self.steps_per_epoch, step_loss, lr, per_s,
                                      left * self.global_batch / max(per_s, 1e-9), d.device))
        return int(signum[0]) if signum else 0

    def _stop_non_finite(self, step_loss: float, grad_norm: float, epoch: int, step: int) -> None:
        """Stop without saving: the weights of this step are never written; the last checkpoint (all of whose
        losses were finite: the loop checks every step before it writes a checkpoint) stays as it is. The advice
        names every likely cause it cannot rule out: the teacher's logits where there is one (a pre-trained teacher's
        weights were found finite when it was loaded: methods.load_teacher), the learning rate and clipping, fp16,
        the starting weights and the data."""
        kept = (f'the last good checkpoint is {self.output_dir / "checkpoint.pth"} (epoch {self.last_saved[0]}, '
                f'step {self.last_saved[1]})' if self.output_dir is not None and self.last_saved else
                'no checkpoint was written before it' if self.output_dir is not None else 'no output dir, nothing kept')
        cfg = self.cfg
        causes = []
        if getattr(self.method, 'teacher', None) is not None:  # KD's pre-trained teacher, the mean teacher's EMA
            causes.append(f'the teacher --teacher {cfg.kd.teacher} (its logits)' if cfg.method in ('kd', 'kd_cosub')
                          else f'the teacher of method={cfg.method} (its logits)')
        causes.append(f'the learning rate (lower optimizer.lr={cfg.optimizer.lr}) or the clipping (set or lower '
                      f'optimizer.clip_grad={cfg.optimizer.clip_grad})')
        if self._amp_dtype() == torch.float16:
            causes.append("fp16 overflow (train.amp='bf16')")
        if cfg.get('finetune'):
            causes.append(f'the weights it started from (--finetune {cfg.finetune})')
        causes.append(f'the data (the images of epoch {epoch}, step {step}; data.mean / data.std)')
        advice = f'likely causes: {"; ".join(causes)}; then run again with --resume'
        raise TrainingError(f'non-finite loss ({step_loss}) or gradient norm ({grad_norm}) at epoch {epoch}, step '
                            f'{step}; stopped without saving; {kept}; {advice}')

    def _stop_on_signal(self, signum: int) -> None:
        self.save_checkpoint()
        if self.tb is not None:
            self.tb.flush()
        message = (f'{signal_name(signum)}: stopped at epoch {self.epoch}, step {self.step_in_epoch} of '
                   f'{self.steps_per_epoch}; checkpoint.pth holds this position: run the same command with --resume '
                   f'to continue (exit code {Preempted.exit_code})')
        logger.warning(message)
        flush_logs()
        raise Preempted(message, signum)

    def _check_bad(self, bad: int, seen: int) -> None:
        limit = float(self.cfg.data.max_bad_fraction)
        if bad > limit * max(seen, 1):
            raise TrainingError(f'{bad} unreadable images among {seen} ({bad / seen:.2%} > data.max_bad_fraction='
                                f'{limit}); the first was {self.first_bad}')

    def _start_logs(self, log_path) -> None:
        """Config, TensorBoard and log.jsonl agree with the checkpoint we start from: log records of epochs we are
        about to redo are dropped, TensorBoard events after its step purged, "best" recomputed from the log."""
        from torch.utils.tensorboard import SummaryWriter
        write_atomic(self.output_dir / 'config.py', self.cfg.pretty_text)
        self.tb = SummaryWriter(str(self.output_dir / 'tensorboard'),
                                purge_step=self.global_step if self.resumed else None)
        records = read_log(log_path)
        kept = [r for r in records if r['epoch'] < self.epoch]
        if len(kept) < len(records):
            logger.info('log.jsonl: %d record(s) newer than the checkpoint dropped (those epochs are redone)',
                        len(records) - len(kept))
        write_atomic(log_path, ''.join(json.dumps(r) + '\n' for r in kept))
        tops = [r['val_top1'] for r in kept if r.get('val_top1') is not None]
        self.best_top1 = max(tops) if tops else None

    def fit(self) -> dict:
        with self.stop:
            return self._fit()

    def _fit(self) -> dict:
        cfg, d = self.cfg, self.d
        if self.eval_only:
            record = self.evaluate_all()
            logger.info('evaluation: %s', format_record(record))
            if self.output_dir is not None and d.is_main:
                write_atomic(self.output_dir / 'eval.json', json.dumps(record, indent=1))
            return record
        log_path = self.output_dir / 'log.jsonl' if self.output_dir else None
        if d.is_main and self.output_dir is not None:
            self._start_logs(log_path)
        if d.enabled:  # every rank decides "improved" (a collective save under FSDP) from rank 0's best
            best = [self.best_top1]
            torch.distributed.broadcast_object_list(best, src=0)
            self.best_top1 = best[0]
        logger.info('training %d epochs x %d steps from epoch %d (%d images, %d classes), method %s', cfg.epochs,
                    self.steps_per_epoch, self.epoch, len(self.splits.train), self.num_classes,
                    self.method.describe())
        record = {}
        try:
            while self.epoch < cfg.epochs:
                record = dict(epoch=self.epoch, **self.train_one_epoch())
                last = self.epoch + 1 == cfg.epochs
                if self.val_loaders and (last or (self.epoch + 1) % cfg.train.eval_interval == 0):
                    record.update(self.evaluate_all())
                record['val_top1'] = record.get('val_top1')
                self.epoch, self.step_in_epoch, self.epoch_sums = self.epoch + 1, 0, new_epoch_sums()
                improved = record['val_top1'] is not None and (self.best_top1 is None
                                                               or record['val_top1'] > self.best_top1)
                if improved:
                    self.best_top1 = record['val_top1']
                # The log record first, then the checkpoints: a kill in between redoes this epoch on resume.
                if d.is_main:
                    logger.info('epoch %d/%d  %s', record['epoch'] + 1, cfg.epochs, format_record(record))
                    if log_path is not None:
                        append_line(log_path, json.dumps(record))
                        plot_training_curves(read_log(log_path), self.output_dir / 'training_curves.png',
                                             method=self.method.name, loss=cfg.loss.type)
                        for k, v in record.items():
                            if isinstance(v, (int, float)) and k != 'epoch':
                                self.tb.add_scalar(f'epoch/{k}', v, self.global_step)
                        self.tb.flush()
                if improved and cfg.train.save_best:
                    self._save_best()
                if last or self.epoch % cfg.train.checkpoint_interval == 0:
                    self.save_checkpoint()
                signum = self.stop.agreed(d)
                if signum and not last:  # a signal during evaluation: stop between epochs
                    self._stop_on_signal(signum)
        finally:
            if self.tb is not None:
                self.tb.close()
        return record
