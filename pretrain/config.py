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
from typing import Any, Callable, Iterable, List, NamedTuple, Optional, Sequence, Union

from mmengine.config import Config, DictAction

from backbones.esd import MODES, SCHEDULES
from backbones.factory import check_model_config, is_model, list_models, model_arguments
from pretrain.cosub import KD_MIXES, KD_TARGETS, LOSSES
from pretrain.data.loader import BACKENDS
from pretrain.data.transforms import CROPS
from pretrain.engine.distributed import COMPILE_MODES
from pretrain.methods import METHODS, MethodError, check_method_config

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
    subdir, belongs = TASKS[task]
    return sorted({p.stem for d in CONFIG_DIRS for p in (d / subdir).glob('*.py') if belongs(p.stem)})


def find_config(name: str, task: str = 'pretrain') -> Path:
    """A config of `task` by name (`vit_l` -> configs/vit_l.py, `flowers` -> configs/transfer/flowers.py) from any
    working directory, in a checkout or an installed wheel; or a path to a .py file."""
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


# -- the settings, described once ---------------------------------------------------------------------------------
# What each key a run reads takes, and what it does. The command-line checks (validate_overrides, check_values),
# the flags' --help and --help-config are read from here; the code that runs trusts the values let through.
class ConfigError(ValueError):
    """A command-line key or value the config does not allow; the message names it and what was expected."""


def _number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


class Rule(NamedTuple):
    """The values of a key: of `type`, and those `fits` accepts; None only where `none` says what it means."""
    type: type
    fits: Callable[[Any], bool]
    expected: Union[str, Callable[[], str]]  # what a refusal says was expected (a function: read when shown)
    none: str = ''
    why: str = ''                            # said first, where the range alone would not say why

    def says(self) -> str:
        return (self.expected() if callable(self.expected) else self.expected) + (
            f' (or None: {self.none})' if self.none else '')


def _range(test, expected: str, whole: bool = False, **kwargs) -> Rule:
    return Rule(int if whole else float, lambda v: _number(v) and (not whole or float(v).is_integer()) and test(v),
                expected, **kwargs)


def _numbers(count: int, test, expected: str) -> Rule:
    return Rule(list, lambda v: isinstance(v, (list, tuple)) and len(v) == count and all(map(_number, v)) and test(v),
                expected)


def one_of(values, show=str) -> Rule:
    """A string among `values`, read when checked (METHODS: the methods registered, each shown with its row)."""
    return Rule(str, lambda v: isinstance(v, str) and v in values, lambda: 'one of ' + ', '.join(map(show, values)))


COUNT = _range(lambda v: v >= 1, 'a whole number >= 1', whole=True)
WHOLE = _range(lambda v: v >= 0, 'a whole number >= 0', whole=True)
POSITIVE = _range(lambda v: v > 0, 'a positive number')
NON_NEGATIVE = _range(lambda v: v >= 0, 'a number >= 0')
PROBABILITY = _range(lambda v: 0 <= v <= 1, 'a probability in [0, 1]')
WEIGHT = _range(lambda v: 0 <= v <= 1, 'a weight in [0, 1] (1: the label alone)')
BELOW_ONE = _range(lambda v: 0 <= v < 1, 'a number in [0, 1)')
FRACTION = _range(lambda v: 0 < v <= 1, 'a number in (0, 1]')
DEVICE = re.compile(r'auto|cpu|cuda(:\d+)?')

# key -> (the values it takes, or None: any of the type of its config value; what it does). Others crash deep in timm
# or torch (epochs -1: timm's `assert t_initial > 0`) or train something else, exit 0 (clip_grad=0 clips nothing).
SETTINGS = {
    'epochs': (COUNT, 'training epochs'),
    'batch_size': (COUNT, 'global batch size (kept the same on any number of GPUs)'),
    'micro_batch_size': (COUNT._replace(none='batch_size / GPUs'), 'batch per device and step (less: accumulation)'),
    'eval_batch_size': (COUNT._replace(none='twice the training micro-batch'), 'evaluation batch per device'),
    'input_size': (_range(lambda v: v >= 1, 'a positive whole number of pixels', whole=True), 'image resolution'),
    'device': (Rule(str, lambda v: isinstance(v, str) and DEVICE.fullmatch(v), 'auto, cpu, cuda or cuda:N (a GPU '
                    'index)'), 'where to run (auto: a GPU when there is one)'),
    'seed': (WHOLE, 'seed of the initialisation, the data order and the augmentations'),
    'output_dir': (None, 'where log.jsonl, checkpoints and plots go'),
    'resume': (None, 'resume from the latest checkpoint in --output-dir, or from the given checkpoint'),
    'finetune': (None, 'initialise the model from this checkpoint (ours, DeiT III or timm; a file, '
                       'hf-hub:<owner>/<repo>[@rev] or local-dir:<folder>)'),
    'eval_only': (None, 'only evaluate (--resume or --finetune gives the weights)'),
    'overwrite': (None, 'the output dir holds an earlier run: move its files into <output-dir>/previous-<UTC time>/ '
                        'and start afresh (without it, or --resume, such a run is refused)'),
    'allow_pickle': (None, 'allow checkpoints that need pickled code (only for files you trust)'),
    'model.name': (None, 'architecture name (ours: vit_t ... vit_h, vit_g, or any timm model)'),
    'model.num_classes': (COUNT._replace(none='from the data'), 'classes of the head'),
    'model.drop_path_rate': (BELOW_ONE._replace(none="the checkpoint's"), 'stochastic depth rate (tau)'),
    'model.drop_path_mode': (one_of(MODES), "'esd': efficient stochastic depth; 'mask': timm-style masking"),
    'model.drop_path_schedule': (one_of(SCHEDULES), 'the drop rate of each block: all the same, or linear'),
    'method': (one_of(METHODS, show=lambda name: f'{name} {METHODS[name].row}'), 'the training strategy'),
    'cosub.num_submodels': (_range(lambda v: v >= 2, 'a whole number >= 2', whole=True, why='co-training needs at '
                                   'least 2 submodels (--method baseline trains without them)'), 'submodels per image'),
    'cosub.lam': (WEIGHT, 'eq. 2 lambda of cosub and kd_cosub'),
    'kd.teacher': (None, 'the pre-trained teacher of --method kd / kd_cosub (a file, hf-hub:<owner>/<repo> or '
                         'local-dir:<folder>; ours, official DeiT or timm)'),
    'kd.teacher_model': (None, "the teacher's architecture, where its file names none (ours or a timm name)"),
    'kd.lam': (WEIGHT, "KD's weight of the label"),
    'kd.target': (one_of(KD_TARGETS), "the teacher's argmax as a label, or its probabilities"),
    'kd.temperature': (POSITIVE, 'temperature of soft targets'),
    'kd.mix': (one_of(KD_MIXES), "kd_cosub: the teacher as one more peer, or mixed into eq. 2's label term"),
    'mean_teacher.lam': (WEIGHT, "the mean teacher's weight of the label"),
    'mean_teacher.decay': (_range(lambda v: 0 <= v < 1, 'a number in [0, 1), e.g. 0.9999'), 'EMA decay per step'),
    'mean_teacher.warmup_gamma': (POSITIVE, 'decay warm-up: min(decay, 1 - (1 + step / gamma)^-power)'),
    'mean_teacher.warmup_power': (POSITIVE, 'decay warm-up power (see warmup_gamma)'),
    'cotrain.lam': (WEIGHT, "co-training's weight of the label"),
    'data.path': (None, 'dataset root'),
    'data.num_workers': (WHOLE, 'loader processes per GPU'),
    'data.backend': (one_of(BACKENDS), "who decodes and crops: 'pil' (loader workers) or 'dali' (the GPU)"),
    'data.repeated_aug': (COUNT, 'augmented copies of each image per epoch'),
    'data.max_bad_fraction': (PROBABILITY, 'share of unreadable images skipped before the run stops'),
    'data.eval_crop_ratio': (FRACTION, 'centre crop kept at evaluation'),
    'data.num_train_images': (COUNT._replace(none='unknown'), "training images (--dry-run's steps per epoch)"),
    'data.mean': (_numbers(3, lambda v: True, '3 numbers, one per RGB channel'), 'normalisation mean'),
    'data.std': (_numbers(3, lambda v: min(v) > 0, '3 positive numbers, one per RGB channel'), 'normalisation std'),
    'data.classes': (Rule(list, lambda v: isinstance(v, (list, tuple)) and 0 < len(set(map(str, v))) == len(v),
                          'a non-empty list, each class once', none='all of them'), 'the classes trained on'),
    'data.train_transform.crop': (one_of(CROPS), "RandomResizedCrop ('rrc') or Simple Random Crop ('src')"),
    'data.train_transform.hflip': (PROBABILITY, 'horizontal flip probability'),
    'data.train_transform.color_jitter': (NON_NEGATIVE, 'colour jitter strength'),
    'data.train_transform.rrc_scale': (_numbers(2, lambda v: 0 < v[0] <= v[1] <= 1, '[low, high] with 0 < low <= '
                                                'high <= 1 (the share of the image kept)'), 'RandomResizedCrop scale'),
    'mixup.mixup_alpha': (NON_NEGATIVE, 'mixup alpha (0: off)'),
    'mixup.cutmix_alpha': (NON_NEGATIVE, 'cutmix alpha (0: off)'),
    'mixup.prob': (PROBABILITY, 'probability of mixing a batch'),
    'mixup.switch_prob': (PROBABILITY, 'probability of cutmix rather than mixup when both are on'),
    'loss.type': (one_of(LOSSES), 'binary cross-entropy (DeiT III on ImageNet-1k) or cross-entropy'),
    'loss.label_smoothing': (BELOW_ONE, 'label smoothing (0 with BCE)'),
    'optimizer.lr': (POSITIVE._replace(none='base_lr scaled with the batch'), 'learning rate'),
    'optimizer.base_lr': (POSITIVE, 'learning rate at base_batch_size (eq. A.1)'),
    'optimizer.base_batch_size': (COUNT, 'the batch size of base_lr'),
    'optimizer.weight_decay': (NON_NEGATIVE, 'weight decay'),
    'optimizer.momentum': (BELOW_ONE._replace(none="the optimizer's default"), 'SGD momentum'),
    'optimizer.eps': (POSITIVE._replace(none="the optimizer's default"), "the optimizer's epsilon"),
    'optimizer.clip_grad': (POSITIVE._replace(expected='a positive gradient norm', none='no clipping'), 'largest '
                            'global gradient norm'),
    'optimizer.layer_decay': (FRACTION._replace(none='off'), 'LayerDecay LD (fine-tuning)'),
    'optimizer.layer_decay_lr_mult': (POSITIVE, 'C_LD of eq. A.2: the LR factor with layer_decay'),
    'optimizer.only': (Rule(list, lambda v: isinstance(v, (list, tuple)), 'a list of parts of parameter names',
                            none='all of them'), 'train only the parameters whose names hold one of these'),
    'schedule.warmup_epochs': (WHOLE, 'linear warm-up epochs'),
    'schedule.warmup_lr': (NON_NEGATIVE, 'learning rate the warm-up starts at'),
    'schedule.min_lr': (NON_NEGATIVE, 'learning rate the cosine ends at'),
    'train.checkpoint_interval': (COUNT, 'epochs between checkpoints'),
    'train.eval_interval': (COUNT, 'epochs between evaluations'),
    'train.checkpoint_steps': (WHOLE, 'steps between mid-epoch checkpoints (0: none)'),
    'train.log_interval': (WHOLE, 'steps between progress lines in train.log (0: none)'),
    'train.compile_mode': (one_of(COMPILE_MODES), "torch.compile's mode"),
    'train.grad_checkpointing': (None, "activation checkpointing per residual block (timm's --grad-checkpointing): "
                                       'less memory, a second forward of each block'),
    'dry_run.gpus': (COUNT, '--dry-run: GPUs to split the batch over'),
}


def describe_config(cfg: Config) -> str:
    """Every key of `cfg`: its value, what it does and the values it takes (--help-config)."""
    keys = {k: (v, *SETTINGS.get(k, (None, ''))) for k, v in _flatten(cfg.to_dict()).items() if not isinstance(v, dict)}
    return '\n'.join(f'{k} = {v!r}' + (f'  # {text}' if text else '') + (f'; takes {rule.says()}' if rule else '')
                     for k, (v, rule, text) in keys.items())


# -- the command line ---------------------------------------------------------------------------------------------
# The flags every entry point shares (pretrain/train.py, transfer/finetune.py, pretrain/submit.py; some of them
# pretrain/analysis.py): (names, the key it sets, argparse arguments). A flag that sets a key is None unless given
# (the key keeps its config value) and takes its help and number type from SETTINGS.
STORE = dict(action='store_true', default=None)
FLAGS = [
    (('--data-path',), 'data.path', {}), (('--output-dir',), 'output_dir', {}),
    (('--resume',), 'resume', dict(nargs='?', const='auto')), (('--finetune', '--pretrained'), 'finetune', {}),
    (('--epochs',), 'epochs', {}), (('--batch-size',), 'batch_size', {}), (('--model',), 'model.name', {}),
    (('--input-size',), 'input_size', {}), (('--device',), 'device', {}), (('--seed',), 'seed', {}),
    (('--num-workers',), 'data.num_workers', {}), (('--method',), 'method', {}),  # before --no-cosub (load_config)
    (('--no-cosub',), 'method', dict(action='store_const', const='baseline', help='train the DeiT III baseline '
                                     '(no co-training): --method baseline')),
    (('--teacher',), 'kd.teacher', {}), (('--teacher-model',), 'kd.teacher_model', {}),
    (('--eval',), 'eval_only', STORE), (('--overwrite',), 'overwrite', STORE),
    (('--allow-pickle',), 'allow_pickle', STORE),
    (('--dry-run',), None, dict(action='store_true', help='print what the config will do (LR, batches, steps, '
                                'estimated GPU-hours) and exit')),
    (('--cfg-options',), None, dict(nargs='+', action=DictAction, default={}, help='override config keys, e.g. '
                                    'optimizer.weight_decay=0.05 model.drop_path_rate=0.3 (--help-config lists them)')),
]
FLAG_KEYS = {names[0][2:].replace('-', '_'): key for names, key, _ in FLAGS if key}  # dest -> config key


def add_common_args(parser: argparse.ArgumentParser,
                    only: Optional[Sequence[str]] = None) -> argparse.ArgumentParser:
    """Add FLAGS to `parser`; `only` adds just the named ones, e.g. ('--data-path', '--cfg-options')."""
    for names, key, kwargs in FLAGS:
        if only is None or names[0] in only:
            rule, text = SETTINGS.get(key, (None, ''))
            derived = dict(help=f'{text} (config key {key}{": " + rule.says() if rule else ""})'.replace('%', '%%'))
            if rule and rule.type in (int, float) and 'action' not in kwargs:
                derived['type'] = rule.type
            parser.add_argument(*names, dest=names[0][2:].replace('-', '_'), **{**derived, **kwargs})
    return parser


def load_config(path: Path, args: Optional[argparse.Namespace] = None) -> Config:
    """The config file `path` with the flags and --cfg-options of `args`, checked (ConfigError: one line)."""
    cfg = Config.fromfile(str(path))
    overrides, set_by, options = {}, {}, getattr(args, 'cfg_options', None) or {}  # set_by: key -> its flag
    for dest, key in FLAG_KEYS.items() if args is not None else ():
        value = getattr(args, dest, None)
        if value is not None and overrides.get(key, value) != value:
            raise ConfigError(f'--{dest.replace("_", "-")} with --{set_by[key].replace("_", "-")} {overrides[key]}: '
                              'give one of them')
        if value is not None:
            overrides[key], set_by[key] = value, dest
    overrides.update(options)
    validate_overrides(cfg, overrides, checked=options)
    cfg.merge_from_dict(overrides)
    check_values(cfg, from_flags=set(set_by) - set(options))
    try:  # what a range cannot say: the teacher --method kd needs
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
    parser.add_argument('--help-config', action='store_true',
                        help="list the config's keys (value, what each does, the values it takes) and exit")
    return add_common_args(parser)


def parse(argv: Optional[Sequence[str]] = None, description: str = '', task: str = 'pretrain',
          name_flag: str = '--cfg', default: Optional[str] = None, return_args: bool = False):
    """Parse the command line of an entry point into a config (and the parsed flags with return_args=True)."""
    parser = build_parser(description, task, name_flag, default)
    args = parser.parse_args(argv)
    try:
        path = find_config(getattr(args, name_flag.lstrip('-').replace('-', '_')), task)
        cfg = load_config(path, args)
    except (FileNotFoundError, ConfigError) as e:  # one line, exit 2, like any other bad command line
        parser.error(str(e))
    if args.help_config:
        print(describe_config(cfg))
        parser.exit()
    return (cfg, args) if return_args else cfg


# -- the checks, read from SETTINGS --------------------------------------------------------------------------------
def _label(key: str, value, from_flags: Iterable[str] = ()) -> str:
    """How a message names a setting: as the flag the user typed (`--epochs -1`), else as `key=value` (also a key
    that two flags set: method, by --method and --no-cosub)."""
    flags = [dest for dest, k in FLAG_KEYS.items() if k == key]
    return f'--{flags[0].replace("_", "-")} {value}' if key in from_flags and len(flags) == 1 else f'{key}={value!r}'


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


_TYPES = {bool: ('true or false', lambda v: isinstance(v, bool)), int: ('an integer', lambda v: type(v) is int),
          float: ('a number', _number), str: ('a string', lambda v: isinstance(v, str)),
          list: ('a list, e.g. key=[a,b]', lambda v: False), tuple: ('a list, e.g. key=[a,b]', lambda v: False)}


def _converted(key: str, value, default, label: str):
    """`value` as `key` takes it (the type of its rule, else of its config value; a number for a string: its text)
    or ConfigError. None where the rule says what it means, the config has None, or for a string or a list."""
    rule = SETTINGS.get(key, (None,))[0]
    kind = rule.type if rule else type(default) if default is not None else None
    if kind is None or value is None and (default is None or (rule and rule.none) or kind in (str, list, tuple)):
        return value
    if kind is str and _number(value):
        return str(value)
    expected = _TYPES.get(kind, ('', None))[0]
    if kind in (list, tuple) and isinstance(value, (list, tuple)):
        numbers = [v for v in default or [] if v is not None]  # where the config has numbers, numbers only
        if not (numbers and all(map(_number, numbers))) or all(map(_number, value)):
            return type(default)(value) if default is not None else value
        expected = 'a list of numbers'
    elif kind is dict:
        expected = f'a group of keys (set its keys, e.g. {key}.<name>=...)'
    elif kind not in _TYPES or _TYPES[kind][1](value):
        return value
    shown = '' if default is None or isinstance(default, dict) else f' (the config has {key}={default!r})'
    raise ConfigError(f'{label}: expected {expected}{shown}')


def validate_overrides(cfg: Config, overrides: dict, checked: Iterable[str] = ()) -> None:
    """Refuse, before the merge, command-line overrides of another type than their key's (_converted, which converts
    them in place) and --cfg-options (`checked`) keys the config lacks: every key a run reads has its default in the
    config files, so an unknown key is a typo. New keys `model.X` must be arguments of the model's constructor."""
    checked = set(checked)
    flat = _flatten(cfg.to_dict())
    model_name = overrides.get('model.name', flat.get('model.name'))
    for key, value in overrides.items():
        label = _label(key, value, set(overrides) - checked)
        if key in flat:
            overrides[key] = _converted(key, value, flat[key], label)
            continue
        parent = key.rpartition('.')[0]
        if parent in flat and not isinstance(flat[parent], dict):
            raise ConfigError(f'{label}: {parent} is a value ({flat[parent]!r}), not a group of keys')
        if key not in checked or parent == 'model' and model_name is None:  # the architecture from the checkpoint:
            continue  # create_model refuses an argument its constructor does not take, when it builds it
        if parent == 'model':
            allowed = model_arguments(model_name)
            if allowed is None or key[6:] in allowed:
                continue
            raise ConfigError(f'{label}: model {model_name!r} takes no argument {key[6:]!r}'
                              f'{_suggestion(key, sorted(f"model.{a}" for a in allowed))}')
        leaves = sorted(k for k, v in flat.items() if not isinstance(v, dict))
        raise ConfigError(f'{label}: unknown config key{_suggestion(key, leaves)} (the keys are those of '
                          f'{Path(cfg.filename).name} and the files it inherits)')


def check_values(cfg: Config, from_flags: Iterable[str] = ()) -> None:
    """Refuse (ConfigError naming the key or its flag) a value no run can use: outside its rule in SETTINGS, keys that
    do not go together, a model whose arguments or input size (whole patches) its constructor refuses."""
    flat = _flatten(cfg.to_dict())

    def refuse(key: str, expected: str):
        raise ConfigError(f'{_label(key, flat[key], from_flags)}: {expected}')

    for key, (rule, _) in SETTINGS.items():
        if rule and key in flat and not (rule.none if flat[key] is None else rule.fits(flat[key])):
            refuse(key, (f'{rule.why}; ' if rule.why else '') + f'expected {rule.says()}')
    batch, micro = flat.get('batch_size'), flat.get('micro_batch_size')
    if batch and micro and batch % micro:
        refuse('micro_batch_size', f'expected a divisor of batch_size={batch} (batch_size = devices x '
                                   'micro_batch_size x accumulation steps, each at least 1)')
    if flat.get('loss.type') == 'bce' and flat.get('loss.label_smoothing'):  # BCE's targets are binarised (> 0)
        raise ConfigError(f"loss.type='bce' with loss.label_smoothing={flat['loss.label_smoothing']}: BCE binarises "
                          "its targets, so smoothing would make every class positive; set loss.label_smoothing=0 "
                          "(DeiT III's BCE recipe) or loss.type='ce'")
    digits = flat.get('data.classes') if flat.get('data.type') == 'digits' else None
    if digits and not all(type(c) is int and 0 <= c <= 9 for c in digits):  # scikit-learn's digits
        refuse('data.classes', 'expected digits among 0-9 (scikit-learn digits has ten classes)')
    name = flat.get('model.name')
    if not isinstance(name, str):  # the architecture comes from the checkpoint
        return
    if not is_model(name):
        close = difflib.get_close_matches(name, list_models(), n=1)
        refuse('model.name', f'unknown model; {f"did you mean {close[0]}? " if close else ""}expected one of '
                             f'{", ".join(list_models())} or a timm model name')
    try:
        check_model_config(name, {k: v for k, v in cfg.model.items() if k not in ('name', 'num_classes')},
                           flat.get('input_size'))
    except ValueError as e:
        if 'input size' in str(e):
            refuse('input_size', str(e))
        raise ConfigError(f'model: {e}') from None
