"""The training engine shared by pretraining (pretrain/train.py) and transfer learning (transfer/finetune.py).

Where each concern lives:
  trainer.py        Trainer (builds everything from a config) and run()
  builders.py       model, optimizer + learning rate (eq. A.1/A.2), schedule, mixup, data loaders
  loop.py           the training step, epoch and fit() (evaluation, checkpoints, logs per epoch)
  evaluation.py     top-1/top-5 on every validation set
  checkpointing.py  checkpoint contents, saving and resuming
  distributed.py    torchrun environment, global batch split, DDP/FSDP wrapping, collectives
  rng.py, logs.py   random states for exact resume; train.log and log.jsonl
  threads.py        the main process's CPU threads beside the loader's workers

The settings arrive checked, once, where they enter (pretrain/config.py SETTINGS: each key's type, range and help,
from which the command-line checks, --help and --help-config are derived); the engine trusts them.
"""
from .threads import set_wait_policy

set_wait_policy()  # first: torch's OpenMP reads OMP_WAIT_POLICY once, when torch loads (threads.py)

from .distributed import Dist, split_global_batch  # noqa: E402  (after the wait policy)
from .errors import TrainingError  # noqa: E402
from .trainer import Trainer, run  # noqa: E402

__all__ = ['Dist', 'Trainer', 'TrainingError', 'run', 'split_global_batch']
