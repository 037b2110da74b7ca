"""Launch fine-tuning on SLURM with submitit, requeued on preemption or time-out: pretrain/submit.py's launcher
(same flags, same requeue) with transfer/finetune.py's configs and preparation (the architecture from the
checkpoint it starts from).

    python -m transfer.submit --dataset inat18 --nodes 1 --gpus-per-node 8 --partition P --timeout-min 4320 \\
        --finetune outputs/vit_l/checkpoint.pth --data-path /datasets/inat2018 --output-dir runs/inat18
"""
from __future__ import annotations

from typing import List, Optional

from pretrain import submit
from transfer.finetune import prepare


def main(argv: Optional[List[str]] = None) -> None:
    submit.main(argv, task='transfer', prepare=prepare, description=__doc__.splitlines()[0])


if __name__ == '__main__':
    main()
