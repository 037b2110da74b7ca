"""Fine-tune a pretrained backbone on a transfer dataset (cosub Table 14) with the pretraining engine.

    python transfer/finetune.py --dataset flowers --data-path /datasets/flowers102 --finetune vit_b/checkpoint.pth
    torchrun --nproc_per_node 8 transfer/finetune.py --dataset inat18 --data-path /datasets/inat2018 --finetune ...
    python transfer/finetune.py --dataset digits --finetune outputs/demo/checkpoint.pth       (the CPU demo)

`--dataset NAME` picks configs/transfer/NAME.py (cifar10, cifar100, flowers, cars, inat18, inat19, digits);
every pretraining flag and `--cfg-options` work the same. Without `--model`, the architecture is the one
stored in our checkpoints; a checkpoint that does not fit the model is refused before training starts. The
classifier always starts fresh on the new classes: a head of another size is replaced by the loader, one of the
same size trained on other classes is re-initialised (`reset_head=False` keeps it).
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional

from pretrain import data as data_lib  # first: the engine sets the CPU threads' wait policy before torch loads
import backbones  # noqa: I100
from backbones import CheckpointError
from pretrain.config import parse
from pretrain.engine import TrainingError
from pretrain.engine.command import run_command
import transfer.data  # noqa: F401  (registers the transfer datasets)

# Constructor arguments that fix the shape of the weights: taken from the checkpoint when the config leaves
# them out, and must agree with it when both give them.
ARCH_KEYS = ('embed_dim', 'depth', 'num_heads', 'patch_size', 'mlp_ratio', 'qkv_bias', 'init_values', 'global_pool',
             'in_chans')


def resolve_model(cfg, ckpt, path) -> None:
    """Fill model.name / shape keys / drop_path_rate from one of our checkpoints; refuse contradictions."""
    m = cfg.model
    if isinstance(ckpt, dict) and ckpt.get('format') == backbones.checkpoint.FORMAT and ckpt.get('model_name'):
        stored = dict((ckpt.get('config') or {}).get('model') or {})
        stored['name'] = ckpt['model_name']
        for key in ('name',) + ARCH_KEYS:
            if stored.get(key) is None:
                continue
            if m.get(key) is None:
                m[key] = stored[key]
            elif m[key] != stored[key]:
                raise CheckpointError(f'{path} holds a {stored["name"]} with {key}={stored[key]!r}, but the config '
                                      f'asks for model.{key}={m[key]!r}; leave model.{key} unset to take the '
                                      "checkpoint's")
        if m.get('drop_path_rate') is None and stored.get('drop_path_rate') is not None:
            m.drop_path_rate = stored['drop_path_rate']
    if m.get('name') is None and path:
        raise TrainingError(f'{path} does not name its architecture; pass --model NAME (e.g. vit_b) and the shape '
                            'keys it was trained with')
    if m.get('name') is None:
        raise TrainingError('nothing to fine-tune: pass --finetune CHECKPOINT (the pretrained model to start from, '
                            'e.g. outputs/demo/pretrain/checkpoint.pth), or --model NAME (e.g. vit_b) to train from '
                            'scratch')
    if m.get('drop_path_rate') is None:
        raise TrainingError(f'model.drop_path_rate=None and {path or "no checkpoint"} does not state its rate; '
                            'set model.drop_path_rate (configs/_base_/transfer.py has 0.05)')


def _resume_path(cfg) -> Optional[str]:
    resume = cfg.resume
    if resume == 'auto':
        path = Path(cfg.output_dir) / 'checkpoint.pth'
        return str(path) if path.is_file() else None
    return resume


def prepare(cfg) -> data_lib.Splits:
    """In the order a user fixes things: the data (read here, returned to the engine), then the architecture
    from the checkpoint we start from (--finetune, else --resume, e.g. `--eval --resume`), and the default output
    folder. The engine then refuses a checkpoint that does not fit and resets a head of the right size trained on
    other classes (`reset_head`)."""
    splits = data_lib.build_splits(cfg.data)
    if not cfg.output_dir:
        cfg.output_dir = str(Path('outputs') / f'transfer_{Path(cfg.config_file).stem}')
    source = cfg.finetune or _resume_path(cfg)
    # memory-mapped: only the few entries we look at are read from disk
    ckpt = backbones.load_file(source, allow_pickle=cfg.allow_pickle, mmap=True) if source else None
    resolve_model(cfg, ckpt, source)
    return splits


def finetune(argv=None) -> dict:
    """The command line -> the last epoch's record (or the evaluation's); errors end the process."""
    cfg, args = parse(argv, description=__doc__.splitlines()[0], task='transfer', name_flag='--dataset',
                      return_args=True)
    if args.dry_run:  # nothing read from disk: the model comes from --model / the config
        from pretrain.dry_run import dry_run
        print(dry_run(cfg))
        return {}
    return run_command(cfg, prepare=prepare)


def main(argv=None) -> None:
    """The `cosub-finetune` console script: exit code 0 on success."""
    finetune(argv)


if __name__ == '__main__':
    main()
