"""Config files (MMEngine `Config`, Python files under configs/) and the DeiT-style command line.

Every run is described by one config; command-line flags are shortcuts for config keys, and `--cfg-options
key=value ...` sets any other key. The config as run is stored in each checkpoint and in the output folder.
"""
from __future__ import annotations

import argparse
import difflib
import importlib.util
import os
from pathlib import Path
from typing import Iterable, List, Optional, Sequence

from mmengine.config import Config, DictAction

REPO_ROOT = Path(__file__).resolve().parents[1]


def _config_root() -> Path:
    """configs/ of this checkout (an editable install too), else the copy the wheel installs as `cosub_configs`."""
    if (REPO_ROOT / 'setup.py').is_file() and (REPO_ROOT / 'configs').is_dir():
        return REPO_ROOT / 'configs'
    spec = importlib.util.find_spec('cosub_configs')  # setup.py maps configs/ to this package (data only)
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(f'no configs: neither {REPO_ROOT / "configs"} nor an installed cosub_configs package; '
                           'reinstall cosub')
    return Path(list(spec.submodule_search_locations)[0])


# Where config names are looked up, first match wins: $COSUB_CONFIGS (a folder laid out like configs/), then ours.
CONFIG_DIRS = [Path(os.environ['COSUB_CONFIGS'])] if os.environ.get('COSUB_CONFIGS') else []
CONFIG_DIRS += [_config_root()]

# Each entry point's configs: task -> (subfolder of configs/, which file names belong to it). Segmentation configs
# are MMSeg's (`mim train mmseg <file>`); _base_/ holds the shared recipes, never run directly.
TASKS = {
    'pretrain': ('', lambda stem: not stem.startswith('upernet_')),
    'transfer': ('transfer', lambda stem: True),
    'segmentation': ('', lambda stem: stem.startswith('upernet_')),
}


def list_configs(task: str = 'pretrain') -> List[str]:
    """Names of the configs of one task (pretrain: configs/*.py but upernet_*; transfer: configs/transfer/*.py;
    segmentation: configs/upernet_*.py), over CONFIG_DIRS."""
    if task not in TASKS:
        raise ValueError(f'task={task!r}: expected one of {list(TASKS)}')
    subdir, belongs = TASKS[task]
    return sorted({p.stem for d in CONFIG_DIRS for p in (d / subdir).glob('*.py') if belongs(p.stem)})


def find_config(name: str, task: str = 'pretrain') -> Path:
    """A config of `task` by name (`vit_l` -> configs/vit_l.py, `flowers` -> configs/transfer/flowers.py) from any
    working directory, in a checkout or an installed wheel; or a path to a .py file."""
    if task not in TASKS:
        raise ValueError(f'task={task!r}: expected one of {list(TASKS)}')
    if name.endswith('.py') or os.sep in name or '/' in name:
        path = Path(name).expanduser()
        if not path.is_file():
            raise FileNotFoundError(f'config file {name} not found')
        return path
    subdir, belongs = TASKS[task]
    if belongs(name):
        for d in CONFIG_DIRS:
            if (d / subdir / f'{name}.py').is_file():
                return d / subdir / f'{name}.py'
    other = [t for t in TASKS if t != task and name in list_configs(t)]
    hint = f'; {name!r} is a {other[0]} config' if other else ''
    if other == ['segmentation']:
        hint += f' (mim train mmseg {find_config(name, "segmentation")})'
    raise FileNotFoundError(f'unknown {task} config {name!r}{hint}; available: {", ".join(list_configs(task))} '
                            '(or a path to a .py file)')


# flag -> config key it sets
FLAG_KEYS = {
    'data_path': 'data.path', 'output_dir': 'output_dir', 'epochs': 'epochs', 'batch_size': 'batch_size',
    'model': 'model.name', 'input_size': 'input_size', 'device': 'device', 'finetune': 'finetune',
    'resume': 'resume', 'seed': 'seed', 'num_workers': 'data.num_workers',
}


def add_common_args(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    p = parser
    p.add_argument('--data-path', help='dataset root (config key data.path)')
    p.add_argument('--output-dir', help='where log.jsonl, checkpoints and plots go')
    p.add_argument('--resume', nargs='?', const='auto',
                   help='resume from the latest checkpoint in --output-dir, or from the given checkpoint')
    p.add_argument('--finetune', '--pretrained', dest='finetune',
                   help='initialise the model from this checkpoint (ours, DeiT III or timm; a file, '
                        'hf-hub:<owner>/<repo>[@rev] or local-dir:<folder>)')
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
        path = find_config(getattr(args, dest), subdir or 'pretrain')
    except FileNotFoundError as e:
        parser.error(str(e))
    from pretrain.cosub import LossConfigError
    try:
        return load_config(path, args)
    except LossConfigError as e:  # one line, exit 2, like any other bad command line
        parser.error(str(e))
