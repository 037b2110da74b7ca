"""The training engine shared by pretraining (pretrain/train.py) and transfer learning (transfer/finetune.py).

Where each concern lives:
  trainer.py        Trainer (builds everything from a config) and run()
  builders.py       model, optimizer + learning rate (eq. A.1/A.2), schedule, mixup, data loaders
  loop.py           the training step, epoch and fit() (evaluation, checkpoints, logs per epoch)
  evaluation.py     top-1/top-5 on every validation set
  checkpointing.py  checkpoint contents, saving and resuming
  distributed.py    torchrun environment, global batch split, DDP/FSDP wrapping, collectives
  rng.py, logs.py   random states for exact resume; train.log and log.jsonl
"""
from .distributed import Dist, split_global_batch
from .errors import TrainingError
from .trainer import Trainer, run

__all__ = ['Dist', 'Trainer', 'TrainingError', 'run', 'split_global_batch']
