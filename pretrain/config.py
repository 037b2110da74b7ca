"""Config files (MMEngine `Config`, Python files under configs/) and the DeiT-style command line.

Every run is described by one config; command-line flags are shortcuts for config keys, and `--cfg-options
key=value ...` sets any other key. The config as run is stored in each checkpoint and in the output folder.
"""
from __future__ import annotations

import argparse
import difflib
import importlib.util
import os
import re
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
    'resume': 'resume', 'seed': 'seed', 'num_workers': 'data.num_workers', 'method': 'method',
    'teacher': 'kd.teacher', 'teacher_model': 'kd.teacher_model',
}


def _flag(*names, **kwargs):
    return names, kwargs


# The flags every entry point shares (pretrain/train.py, transfer/finetune.py, pretrain/submit.py; some of them
# pretrain/analysis.py): each sets a config key (FLAG_KEYS, load_config), so its default is the config's.
COMMON_FLAGS = [
    _flag('--data-path', help='dataset root (config key data.path)'),
    _flag('--output-dir', help='where log.jsonl, checkpoints and plots go'),
    _flag('--resume', nargs='?', const='auto',
          help='resume from the latest checkpoint in --output-dir, or from the given checkpoint'),
    _flag('--finetune', '--pretrained', dest='finetune',
          help='initialise the model from this checkpoint (ours, DeiT III or timm; a file, '
               'hf-hub:<owner>/<repo>[@rev] or local-dir:<folder>)'),
    _flag('--epochs', type=int),
    _flag('--batch-size', type=int, help='global batch size (kept the same on any number of GPUs)'),
    _flag('--model', help='architecture name (ours: vit_t ... vit_h, or any timm model)'),
    _flag('--input-size', type=int, help='training and evaluation resolution'),
    _flag('--device', help="'cuda', 'cpu' or 'auto' (default)"),
    _flag('--seed', type=int),
    _flag('--num-workers', type=int),
    _flag('--no-cosub', action='store_true', help='train the DeiT III baseline (no co-training): --method baseline'),
    _flag('--method', help='the training strategy of cosub Table 4: cosub (default), baseline, kd, mean_teacher, '
                           'cotrain or kd_cosub (pretrain/methods.py)'),
    _flag('--teacher', help='the pre-trained teacher of --method kd / kd_cosub (a file, hf-hub:<owner>/<repo> or '
                            'local-dir:<folder>; ours, official DeiT or timm)'),
    _flag('--teacher-model', help="the teacher's architecture, where its file names none (ours or a timm name)"),
    _flag('--eval', action='store_true', help='only evaluate (--resume or --finetune gives the weights)'),
    _flag('--overwrite', action='store_true',
          help='the output dir holds an earlier run: move its files into <output-dir>/previous-<UTC time>/ '
               'and start afresh (without it, or --resume, such a run is refused)'),
    _flag('--dry-run', action='store_true',
          help='print what the config will do (LR, batches, steps, estimated GPU-hours) and exit'),
    _flag('--allow-pickle', action='store_true',
          help='allow checkpoints that need pickled code (only for files you trust)'),
    _flag('--cfg-options', nargs='+', action=DictAction, default={},
          help='override config keys, e.g. optimizer.weight_decay=0.05 model.drop_path_rate=0.3'),
]


def add_common_args(parser: argparse.ArgumentParser,
                    only: Optional[Sequence[str]] = None) -> argparse.ArgumentParser:
    """Add COMMON_FLAGS to `parser`; `only` adds just the named ones, e.g. ('--data-path', '--cfg-options')."""
    for names, kwargs in COMMON_FLAGS:
        if only is None or names[0] in only:
            parser.add_argument(*names, **kwargs)
    return parser


def load_config(path: Path, args: Optional[argparse.Namespace] = None) -> Config:
    cfg = Config.fromfile(str(path))
    if args is not None:
        overrides = {key: getattr(args, flag) for flag, key in FLAG_KEYS.items() if getattr(args, flag, None) is not None}
        if getattr(args, 'no_cosub', False):
            if overrides.get('method', 'baseline') != 'baseline':
                raise ConfigError(f'--no-cosub with --method {overrides["method"]}: give one of them')
            overrides['method'] = 'baseline'
        if getattr(args, 'eval', False):
            overrides['eval_only'] = True
        if getattr(args, 'allow_pickle', False):
            overrides['allow_pickle'] = True
        if getattr(args, 'overwrite', False):
            overrides['overwrite'] = True
        overrides.update(args.cfg_options or {})
        checked = set(args.cfg_options or {})
        validate_overrides(cfg, overrides, checked=checked)
        cfg.merge_from_dict(overrides)
        check_values(cfg, from_flags=set(overrides) - checked)
    else:
        check_values(cfg)
    if cfg.get('loss') is not None:  # BCE with label smoothing silently trains on all-positive targets
        from pretrain.cosub import check_loss_config
        check_loss_config(cfg.loss.type, cfg.loss.label_smoothing)
    if cfg.get('method') is not None:
        from pretrain.methods import MethodError, check_method_config
        try:
            check_method_config(cfg)
        except MethodError as e:
            raise ConfigError(str(e)) from None
    cfg.config_file = str(path)
    return cfg


class OneLineErrorParser(argparse.ArgumentParser):
    """argparse, but a bad command line ends in one line (exit code 2), not the whole usage block first."""

    def error(self, message: str):
        self.exit(2, f'{self.prog}: error: {message} (see --help)\n')


def check_flag_minimums(parser: argparse.ArgumentParser, args: argparse.Namespace, **least: int) -> None:
    """Refuse (parser.error: one line, exit 2) a whole-number flag below its least value; a flag left at None (not
    given, no default) passes. Keys are the flags' dest names: check_flag_minimums(p, args, draws=1)."""
    for dest, minimum in least.items():
        value = getattr(args, dest)
        if value is not None and value < minimum:
            parser.error(f'--{dest.replace("_", "-")} {value}: expected a whole number >= {minimum}')


def build_parser(description: str = '', task: str = 'pretrain', name_flag: str = '--cfg',
                 default: Optional[str] = None) -> argparse.ArgumentParser:
    """The command line every entry point shares: the config name flag and the common flags."""
    parser = OneLineErrorParser(description=description)
    dest = name_flag.lstrip('-').replace('-', '_')
    subdir = TASKS[task][0]
    parser.add_argument(name_flag, dest=dest, default=default, required=default is None,
                        help=f'a {task} config under configs/{subdir + "/" if subdir else ""} '
                             f'({", ".join(list_configs(task))}), or a path to a .py file')
    return add_common_args(parser)


def parse(argv: Optional[Sequence[str]] = None, description: str = '', task: str = 'pretrain',
          name_flag: str = '--cfg', default: Optional[str] = None, return_args: bool = False):
    """Parse the command line of an entry point into a config (and the parsed flags with return_args=True)."""
    parser = build_parser(description, task, name_flag, default)
    args = parser.parse_args(argv)
    try:
        path = find_config(getattr(args, name_flag.lstrip('-').replace('-', '_')), task)
    except FileNotFoundError as e:
        parser.error(str(e))
    from pretrain.cosub import LossConfigError
    try:
        cfg = load_config(path, args)
    except (LossConfigError, ConfigError) as e:  # one line, exit 2, like any other bad command line
        parser.error(str(e))
    return (cfg, args) if return_args else cfg


# -- validation of the command line's overrides ------------------------------------------------------------------
class ConfigError(ValueError):
    """A command-line key or value the config does not allow; the message names it and what was expected."""


# Keys whose default is None ("computed", "from the data" or "off") and that take a number or a list: they take
# None or a value of this type. Every other key takes values of the type of its value in the config files
# (bool: true/false; int: an integer; float: any number; str: a string, a number is kept as its text;
# list/tuple: a list), None included for strings and lists (e.g. data.val_split=None). Other None-valued keys
# (paths, names) take any value: the code that reads them says what is wrong with it.
OPTIONAL_KEY_TYPES = {
    'model.num_classes': int, 'model.drop_path_rate': float, 'micro_batch_size': int, 'eval_batch_size': int,
    'optimizer.lr': float, 'optimizer.layer_decay': float, 'optimizer.only': list,
    # None in some configs (the optimizer's own default; clip_grad None: no clipping), a number in others
    'optimizer.clip_grad': float, 'optimizer.eps': float, 'optimizer.momentum': float,
}
DEVICE = re.compile(r'auto|cpu|cuda(:\d+)?')
_TYPE_NAMES = {bool: 'true or false', int: 'an integer', float: 'a number', str: 'a string',
               list: 'a list, e.g. key=[a,b]', tuple: 'a list, e.g. key=[a,b]', dict: 'a group of keys'}


def _label(key: str, value, from_flag: bool) -> str:
    """How a message names a setting: as the flag the user typed (`--epochs -1`), else as `key=value`."""
    flag = {key: '--' + flag.replace('_', '-') for flag, key in FLAG_KEYS.items()}.get(key)
    return f'{flag} {value}' if flag and from_flag else f'{key}={value!r}'


def _flatten(tree: dict, prefix: str = '') -> dict:
    out = {}
    for k, v in tree.items():
        out[prefix + k] = v
        if isinstance(v, dict):
            out.update(_flatten(v, f'{prefix}{k}.'))
    return out


def _suggestion(key: str, known: Sequence[str]) -> str:
    """The closest valid key: the same name in another group, a close name in the same group, else the
    closest spelling of the whole key."""
    parent, _, leaf = key.rpartition('.')
    same_leaf = [k for k in known if k.rpartition('.')[2] == leaf]
    siblings = {k.rpartition('.')[2]: k for k in known if k.rpartition('.')[0] == parent}
    close = (same_leaf or [siblings[m] for m in difflib.get_close_matches(leaf, list(siblings), n=1, cutoff=0.6)]
             or difflib.get_close_matches(key, known, n=1, cutoff=0.8))
    return f'; did you mean {close[0]}?' if close else ''


def _type_error(value, default, key: str):
    """(None, value to use) when `value` fits the type of `default`, else (what was expected, None)."""
    expected = OPTIONAL_KEY_TYPES.get(key) if default is None else type(default)
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    if expected is None:  # a None-valued key outside OPTIONAL_KEY_TYPES: anything
        return None, value
    if value is None and (default is None or key in OPTIONAL_KEY_TYPES or expected in (str, list, tuple)):
        return None, value
    if expected is bool:
        return (None, value) if isinstance(value, bool) else (_TYPE_NAMES[bool], None)
    if expected is int:
        return (None, value) if number and isinstance(value, int) else (_TYPE_NAMES[int], None)
    if expected is float:
        return (None, value) if number else (_TYPE_NAMES[float], None)
    if expected is str:
        return (None, value) if isinstance(value, str) else (None, str(value)) if number else (_TYPE_NAMES[str], None)
    if expected in (list, tuple):
        if not isinstance(value, (list, tuple)):
            return _TYPE_NAMES[list], None
        items = [v for v in (default or []) if v is not None]
        numeric = items and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in items)
        if numeric and not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value):
            return 'a list of numbers', None
        return None, type(default)(value) if default is not None else value
    if expected is dict:
        return _TYPE_NAMES[dict] + f' (set its keys, e.g. {key}.<name>=...)', None
    return None, value


def validate_overrides(cfg: Config, overrides: dict, checked: Iterable[str] = ()) -> None:
    """Refuse, before they are merged, command-line overrides the loaded config does not allow (ConfigError).

    - Keys in `checked` (the --cfg-options) must exist in the config: every key a run reads has its default in
      the config files, so an unknown key is a typo (the closest valid key is suggested). One group takes new
      keys: `model.`, whose keys go to the architecture's constructor; a new `model.X` must be an argument of
      the constructor of the model named (backbones.factory.model_arguments). Dataset keys (`data.`) take no
      new names: each dataset's keys are in its config. Keys set by flags (e.g. --eval) need not be in it.
    - Values must fit the type of the key's value in the config (rule above OPTIONAL_KEY_TYPES).
    - `device` must be auto, cpu, cuda or cuda:N; the model must accept its arguments and the input size must
      be a whole number of patches (backbones.factory.check_model_config), all checked without building it.
    Values are converted in place where the type rule allows (a number for a string key).
    """
    from backbones.factory import check_model_config, is_model, list_models, model_arguments

    checked = set(checked)
    tree = cfg.to_dict()
    flat = _flatten(tree)

    def label(key: str, value) -> str:
        return _label(key, value, from_flag=key not in checked)

    model_name = overrides.get('model.name', flat.get('model.name'))
    for key in list(overrides):
        value = overrides[key]
        if key not in flat:
            parent = key.rsplit('.', 1)[0] if '.' in key else ''
            if parent and parent in flat and not isinstance(flat[parent], dict):
                raise ConfigError(f'{label(key, value)}: {parent} is a value ({flat[parent]!r}), not a group of keys')
            if key not in checked:
                continue
            if parent == 'model' and isinstance(model_name, str):
                allowed = model_arguments(model_name)
                if allowed is None or key.split('.', 1)[1] in allowed:
                    continue
                known = sorted(f'model.{a}' for a in allowed)
                raise ConfigError(f'{label(key, value)}: model {model_name!r} takes no argument '
                                  f'{key.split(".", 1)[1]!r}{_suggestion(key, known)}')
            if parent == 'model' and model_name is None:  # the architecture comes from the checkpoint:
                continue  # create_model refuses an argument its constructor does not take, when it builds it
            leaves = sorted(k for k, v in flat.items() if not isinstance(v, dict))
            raise ConfigError(f'{label(key, value)}: unknown config key{_suggestion(key, leaves)} '
                              f'(the keys are those of {Path(cfg.filename).name} and the files it inherits)')
        problem, converted = _type_error(value, flat[key], key)
        if problem:
            shown = '' if flat[key] is None or isinstance(flat[key], dict) else f' (the config has {key}={flat[key]!r})'
            raise ConfigError(f'{label(key, value)}: expected {problem}{shown}')
        overrides[key] = converted

    def merged(key: str):
        return overrides.get(key, flat.get(key))

    device = merged('device')
    if not (isinstance(device, str) and DEVICE.fullmatch(device)):
        raise ConfigError(f"{label('device', device)}: expected auto, cpu, cuda or cuda:N (a GPU index)")
    from pretrain.engine.distributed import COMPILE_MODES
    mode = merged('train.compile_mode')
    if 'train.compile_mode' in flat and mode not in COMPILE_MODES:
        raise ConfigError(f"{label('train.compile_mode', mode)}: expected one of {', '.join(COMPILE_MODES)}")
    size = merged('input_size')
    if isinstance(size, bool) or not isinstance(size, int) or size <= 0:
        raise ConfigError(f'{label("input_size", size)}: expected a positive whole number of pixels')
    if isinstance(model_name, str):
        if not is_model(model_name):
            close = difflib.get_close_matches(model_name, list_models(), n=1)
            hint = f'did you mean {close[0]}? ' if close else ''
            raise ConfigError(f'{label("model.name", model_name)}: unknown model; {hint}expected one of '
                              f'{", ".join(list_models())} or a timm model name')
        model = {k: v for k, v in tree.get('model', {}).items() if k not in ('name', 'num_classes')}
        model.update({k.split('.', 1)[1]: v for k, v in overrides.items() if k.startswith('model.')
                      and k.count('.') == 1 and k not in ('model.name', 'model.num_classes')})
        try:
            check_model_config(model_name, model, size)
        except ValueError as e:
            raise ConfigError(f'{label("input_size", size) if "input size" in str(e) else "model"}: {e}') from None


# -- the values a run can use --------------------------------------------------------------------------------------
def _number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _rule(test, expected: str, whole: bool = False):
    return (lambda v: _number(v) and (not whole or v == int(v)) and test(v)), expected


COUNT = _rule(lambda v: v >= 1, 'a whole number >= 1', whole=True)
WHOLE = _rule(lambda v: v >= 0, 'a whole number >= 0', whole=True)
POSITIVE = _rule(lambda v: v > 0, 'a positive number')
NON_NEGATIVE = _rule(lambda v: v >= 0, 'a number >= 0')
PROBABILITY = _rule(lambda v: 0 <= v <= 1, 'a probability in [0, 1]')
BELOW_ONE = _rule(lambda v: 0 <= v < 1, 'a number in [0, 1)')
FRACTION = _rule(lambda v: 0 < v <= 1, 'a number in (0, 1]')

# Every number a run reads, and the values it can use (None, where a key allows it, is left to the type rule
# above OPTIONAL_KEY_TYPES). A value outside them would crash deep inside timm / torch (epochs -1: timm's
# `assert t_initial > 0`; eval_interval 0: a division by zero after the first epoch) or, worse, train something
# else than asked with exit 0 (optimizer.lr=0 falls back to the computed LR; clip_grad=0 clips nothing).
VALUE_RULES = {
    'epochs': COUNT, 'batch_size': COUNT, 'micro_batch_size': COUNT, 'eval_batch_size': COUNT,
    'schedule.warmup_epochs': WHOLE, 'schedule.warmup_lr': NON_NEGATIVE, 'schedule.min_lr': NON_NEGATIVE,
    'optimizer.lr': _rule(lambda v: v > 0, 'a positive number (or None: base_lr scaled with the batch)'),
    'optimizer.base_lr': POSITIVE, 'optimizer.base_batch_size': COUNT, 'optimizer.weight_decay': NON_NEGATIVE,
    'optimizer.momentum': BELOW_ONE, 'optimizer.eps': POSITIVE,
    'optimizer.clip_grad': _rule(lambda v: v > 0, 'a positive gradient norm (or None: no clipping)'),
    'optimizer.layer_decay': FRACTION, 'optimizer.layer_decay_lr_mult': POSITIVE,
    'data.num_workers': WHOLE, 'data.repeated_aug': COUNT, 'data.max_bad_fraction': PROBABILITY,
    'data.eval_crop_ratio': FRACTION, 'data.num_train_images': COUNT,
    'data.train_transform.hflip': PROBABILITY, 'data.train_transform.color_jitter': NON_NEGATIVE,
    'mixup.mixup_alpha': NON_NEGATIVE, 'mixup.cutmix_alpha': NON_NEGATIVE, 'mixup.prob': PROBABILITY,
    'mixup.switch_prob': PROBABILITY,
    'loss.label_smoothing': BELOW_ONE, 'model.drop_path_rate': BELOW_ONE,
    'train.checkpoint_interval': COUNT, 'train.eval_interval': COUNT, 'train.checkpoint_steps': WHOLE,
    'train.log_interval': WHOLE, 'seed': WHOLE, 'dry_run.gpus': COUNT,
}
DIGIT_CLASSES = range(10)  # scikit-learn's digits


def check_values(cfg: Config, from_flags: Iterable[str] = ()) -> None:
    """Refuse (ConfigError, one line naming the key or flag and what was expected) a config, as merged with the
    command line, holding a value no run can use: the ranges of VALUE_RULES, and the keys that go together."""
    from_flags = set(from_flags)
    flat = _flatten(cfg.to_dict())

    def refuse(key: str, expected: str):
        raise ConfigError(f'{_label(key, flat[key], key in from_flags)}: expected {expected}')

    for key, (fits, expected) in VALUE_RULES.items():
        if flat.get(key) is not None and not fits(flat[key]):
            refuse(key, expected)
    batch, micro = flat.get('batch_size'), flat.get('micro_batch_size')
    if batch is not None and micro is not None and (micro > batch or batch % micro):
        refuse('micro_batch_size', f'a divisor of batch_size={batch} (batch_size = devices x micro_batch_size x '
                                   'accumulation steps, each at least 1)')
    for key, positive in (('data.mean', False), ('data.std', True)):
        v = flat.get(key)
        if v is not None and not (isinstance(v, (list, tuple)) and len(v) == 3 and all(map(_number, v))
                                  and (not positive or all(x > 0 for x in v))):
            refuse(key, f'3 {"positive " if positive else ""}numbers, one per RGB channel')
    scale = flat.get('data.train_transform.rrc_scale')
    if scale is not None and not (isinstance(scale, (list, tuple)) and len(scale) == 2 and all(map(_number, scale))
                                  and 0 < scale[0] <= scale[1] <= 1):
        refuse('data.train_transform.rrc_scale', '[low, high] with 0 < low <= high <= 1 (the share of the image kept)')
    classes = flat.get('data.classes')
    if classes is not None:
        if not isinstance(classes, (list, tuple)) or not classes:
            refuse('data.classes', 'a non-empty list of classes, or None for all of them')
        if len(set(map(str, classes))) < len(classes):
            refuse('data.classes', 'each class once')
        if flat.get('data.type') == 'digits' and not all(isinstance(c, int) and not isinstance(c, bool)
                                                        and c in DIGIT_CLASSES for c in classes):
            refuse('data.classes', 'digits among 0-9 (scikit-learn digits has ten classes)')
