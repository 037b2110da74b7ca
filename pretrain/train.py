"""Pretrain or fine-tune a backbone with cosub and the DeiT III recipe.

    python pretrain/train.py --cfg vit_l --data-path /datasets/imagenet --output-dir runs/vit_l
    torchrun --nproc_per_node 8 pretrain/train.py --cfg vit_l ...      (multi-GPU / multi-node)
    python -m pretrain.submit --cfg vit_l --nodes 4 --gpus-per-node 8 ...   (SLURM, requeued on preemption)
    python pretrain/train.py --cfg demo                                (digits, CPU, minutes)

Exit codes: 0 done, 1 error (one line), 2 bad command line or an earlier run in --output-dir, 143 stopped on
SIGTERM/SIGUSR1/SIGINT after saving checkpoint.pth (rerun with --resume); see pretrain/engine/command.py.
"""
from pathlib import Path

from pretrain.config import parse
from pretrain.engine.command import run_command


def default_output_dir(cfg) -> None:
    if not cfg.output_dir:
        cfg.output_dir = str(Path('outputs') / Path(cfg.config_file).stem)


def train(argv=None) -> dict:
    """The command line -> the last epoch's record (or the evaluation's); errors end the process."""
    cfg, args = parse(argv, description=__doc__.splitlines()[0], task='pretrain', return_args=True)
    if args.dry_run:
        from pretrain.dry_run import dry_run
        print(dry_run(cfg))
        return {}
    return run_command(cfg, prepare=default_output_dir)


def main(argv=None) -> None:
    """The `cosub-pretrain` console script: exit code 0 on success."""
    train(argv)


if __name__ == '__main__':
    main()
