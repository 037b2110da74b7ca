"""Pretrain or fine-tune a backbone with cosub and the DeiT III recipe.

    python pretrain/train.py --cfg vit_l --data-path /datasets/imagenet --output-dir runs/vit_l
    torchrun --nproc_per_node 8 pretrain/train.py --cfg vit_l ...      (multi-GPU / multi-node)
    python pretrain/train.py --cfg demo                                (digits, CPU, minutes)
"""
import sys
from pathlib import Path

if __package__ in (None, ''):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pretrain.config import parse  # noqa: E402
from pretrain.engine import TrainingError, run  # noqa: E402
from pretrain.data import DataError  # noqa: E402
from backbones import CheckpointError  # noqa: E402


def main(argv=None) -> dict:
    cfg = parse(argv, description=__doc__.splitlines()[0])
    if not cfg.get('output_dir'):
        cfg.output_dir = str(Path('outputs') / Path(cfg.config_file).stem)
    try:
        return run(cfg)
    except (TrainingError, DataError, CheckpointError, ValueError) as e:
        sys.exit(f'error: {e}')


if __name__ == '__main__':
    main()
