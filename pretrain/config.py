"""Config files (MMEngine `Config`, Python files under configs/) and the DeiT-style command line.

Every run is described by one config; command-line flags are shortcuts for config keys, and `--cfg-options
key=value ...` sets any other key. The config as run is stored in each checkpoint and in the output folder.
"""
from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Optional, Sequence

from mmengine.config import Config, DictAction

REPO_ROOT = Path(__file__).resolve().parents[1]
CONFIG_DIRS = [Path(os.environ['COSUB_CONFIGS'])] if os.environ.get('COSUB_CONFIGS') else []
CONFIG_DIRS += [REPO_ROOT / 'configs', Path.cwd() / 'configs']

# flag -> config key it sets
FLAG_KEYS = {
    'data_path': 'data.path', 'output_dir': 'output_dir', 'epochs': 'epochs', 'batch_size': 'batch_size',
    'model': 'model.name', 'input_size': 'input_size', 'device': 'device', 'finetune': 'finetune',
    'resume': 'resume', 'seed': 'seed', 'num_workers': 'data.num_workers',
}


def find_config(name: str, subdir: str = '') -> Path:
    """`vit_l` -> configs/vit_l.py (also a path, or a name under COSUB_CONFIGS)."""
    candidates = [Path(name)] if name.endswith('.py') else []
    candidates += [d / subdir / f'{name}.py' for d in CONFIG_DIRS]
    for c in candidates:
        if c.is_file():
            return c
    available = sorted({p.stem for d in CONFIG_DIRS if (d / subdir).is_dir() for p in (d / subdir).glob('*.py')})
    raise FileNotFoundError(f'config {name!r} not found in {[str(d / subdir) for d in CONFIG_DIRS]}; '
                            f'available: {", ".join(available)}')


def add_common_args(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    p = parser
    p.add_argument('--data-path', help='dataset root (config key data.path)')
    p.add_argument('--output-dir', help='where log.jsonl, checkpoints and plots go')
    p.add_argument('--resume', nargs='?', const='auto',
                   help='resume from the latest checkpoint in --output-dir, or from the given checkpoint')
    p.add_argument('--finetune', help='initialise the model from this checkpoint (ours, DeiT III or timm)')
    p.add_argument('--epochs', type=int)
    p.add_argument('--batch-size', type=int, help='global batch size (kept the same on any number of GPUs)')
    p.add_argument('--model', help='architecture name (ours: vit_t ... vit_h, or any timm model)')
    p.add_argument('--input-size', type=int, help='training and evaluation resolution')
    p.add_argument('--device', help="'cuda', 'cpu' or 'auto' (default)")
    p.add_argument('--seed', type=int)
    p.add_argument('--num-workers', type=int)
    p.add_argument('--no-cosub', action='store_true', help='train the DeiT III baseline (no co-training)')
    p.add_argument('--eval', action='store_true', help='only evaluate (--resume or --finetune gives the weights)')
    p.add_argument('--allow-pickle', action='store_true',
                   help='allow checkpoints that need pickled code (only for files you trust)')
    p.add_argument('--cfg-options', nargs='+', action=DictAction, default={},
                   help='override config keys, e.g. optimizer.weight_decay=0.05 model.drop_path_rate=0.3')
    return p


def load_config(path: Path, args: Optional[argparse.Namespace] = None) -> Config:
    cfg = Config.fromfile(str(path))
    if args is not None:
        overrides = {key: getattr(args, flag) for flag, key in FLAG_KEYS.items() if getattr(args, flag, None) is not None}
        if getattr(args, 'no_cosub', False):
            overrides['cosub.enabled'] = False
        if getattr(args, 'eval', False):
            overrides['eval_only'] = True
        if getattr(args, 'allow_pickle', False):
            overrides['allow_pickle'] = True
        overrides.update(args.cfg_options or {})
        cfg.merge_from_dict(overrides)
    if cfg.get('loss') is not None:  # BCE with label smoothing silently trains on all-positive targets
        from pretrain.cosub import check_loss_config
        check_loss_config(cfg.loss.type, cfg.loss.label_smoothing)
    cfg.config_file = str(path)
    return cfg


def parse(argv: Optional[Sequence[str]] = None, description: str = '', subdir: str = '',
          name_flag: str = '--cfg', default: Optional[str] = None) -> Config:
    """Parse the command line of an entry point into a config."""
    parser = argparse.ArgumentParser(description=description)
    dest = name_flag.lstrip('-').replace('-', '_')
    parser.add_argument(name_flag, dest=dest, default=default, required=default is None,
                        help='config name under configs/' + (f'{subdir}/' if subdir else '') + ' or a path')
    args = add_common_args(parser).parse_args(argv)
    try:
        path = find_config(getattr(args, dest), subdir)
    except FileNotFoundError as e:
        parser.error(str(e))
    from pretrain.cosub import LossConfigError
    try:
        return load_config(path, args)
    except LossConfigError as e:  # one line, exit 2, like any other bad command line
        parser.error(str(e))
