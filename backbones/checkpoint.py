"""One checkpoint format, and one loader that also reads official DeiT III and timm checkpoints.

Our format is a plain `torch.save` dict that loads with `weights_only=True`:
    {'format': 'cosub', 'version': 1, 'model_name': str, 'model': state_dict, ...training state...}
A backbone-only export has the same layout without the classifier head and training state
(`python -m backbones.export_backbone`), or is a `.safetensors` file.

Safety: files are read with `torch.load(weights_only=True)` (plus a small allowlist of plain data types that
old checkpoints carry: argparse.Namespace, numpy scalars and arrays) or with safetensors. A file that needs any
other pickled global is refused with a clear error, unless the caller passes `allow_pickle=True`.
"""
from __future__ import annotations

import argparse
import logging
import math
import os
import pickle
import re
import sys
import tempfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional

import numpy as np
import torch
from torch import Tensor, nn

# CheckpointError is defined in hub.py (the one module below this one) and raised by everything here
from .errors import OS_FAILURES, writing
from .hub import CheckpointError, resolve_source

logger = logging.getLogger(__name__)

FORMAT, VERSION = 'cosub', 1


# -- reading and writing files ---------------------------------------------------------------------------------
def _numpy_data_globals() -> list:
    core = getattr(np, '_core', None) or np.core
    types = [np.ndarray, np.dtype, core.multiarray.scalar, core.multiarray._reconstruct]
    types += [type(np.dtype(t)) for t in ('b', 'i1', 'i2', 'i4', 'i8', 'u1', 'u2', 'u4', 'u8', 'f2', 'f4', 'f8')]
    return types


# Plain data containers found in published checkpoints (the official DeiT ones store `args` and numpy
# scalars). Unpickling them sets attributes or builds arrays; it cannot call arbitrary code.
SAFE_GLOBALS = [argparse.Namespace] + _numpy_data_globals()


def load_file(path: str | os.PathLike, *, allow_pickle: bool = False, map_location: Any = 'cpu',
              mmap: bool = False) -> Any:
    """Read a `.pth`/`.pt`/`.bin` (torch) or `.safetensors` file without executing pickled code.

    mmap: map a zip-format torch file instead of reading it, so that only the tensors used are read from disk.
    `path` may also be 'hf-hub:<owner>/<repo>[@rev]' or 'local-dir:<folder>' (backbones.hub).
    """
    path = Path(resolve_source(path))
    if not path.is_file():
        raise CheckpointError(f'{path}: no such checkpoint file')
    size = path.stat().st_size
    if size == 0:
        raise CheckpointError(f'{path}: empty file (0 bytes); expected a checkpoint (.pth or .safetensors), '
                              'an interrupted copy or download leaves this')
    if path.suffix == '.safetensors':
        from safetensors.torch import load_file as load_safetensors
        try:
            return load_safetensors(str(path), device=str(map_location))
        except Exception as e:  # safetensors raises its own error types
            raise CheckpointError(f'{path}: not a readable safetensors file ({_first_line(e)}; {size} bytes: '
                                  'truncated or damaged?)') from None
    zipped = zipfile.is_zipfile(path)
    with open(path, 'rb') as f:
        if f.read(4) == b'PK\x03\x04' and not zipped:  # a zip (torch's format) whose end record is missing
            raise CheckpointError(f'{path}: truncated torch checkpoint ({size} bytes, the end of the zip archive is '
                                  'missing); copy or download it again')
    mmap = mmap and zipped  # the legacy (non-zip) format cannot be mapped
    try:
        if allow_pickle:
            return torch.load(path, map_location=map_location, weights_only=False, mmap=mmap)
        with torch.serialization.safe_globals(SAFE_GLOBALS):
            return torch.load(path, map_location=map_location, weights_only=True, mmap=mmap)
    except pickle.UnpicklingError as e:
        found = re.search(r'GLOBAL (\S+)', str(e))
        if allow_pickle or not found:  # not a pickle at all, or a damaged one
            detail = re.search(r'WeightsUnpickler error:\s*(.+)', str(e))
            raise CheckpointError(f'{path}: not a readable torch checkpoint '
                                  f'({detail.group(1).strip() if detail else _first_line(e)})') from None
        if not _is_loaded_global(found.group(1)):  # e.g. a name cut short by truncation; refused all the same
            raise CheckpointError(f'{path}: not a readable torch checkpoint (it names the unknown pickled global '
                                  f'{found.group(1)}; truncated or damaged?)') from None
        raise CheckpointError(f'{path}: refused to load, the file needs the pickled global {found.group(1)}; '
                              'weights-only loading allows tensors and plain data. If you trust this file, pass '
                              'allow_pickle=True (--allow-pickle on the command line)') from None
    except OSError as e:
        if e.errno in OS_FAILURES:  # the file system's failure, not the file's (permission, I/O error, ...)
            raise CheckpointError(f'{path}: cannot be read: {OS_FAILURES[e.errno][0]}') from None
        raise CheckpointError(f'{path}: not a readable torch checkpoint ({_first_line(e)}; {size} bytes: '
                              'truncated or damaged?)') from None
    except (RuntimeError, EOFError, ValueError, IndexError, KeyError) as e:
        # EOFError of a truncated legacy file has no message; an unpickler can fail with IndexError/KeyError
        # on damaged opcodes.
        raise CheckpointError(f'{path}: not a readable torch checkpoint ({_first_line(e)}; {size} bytes: '
                              'truncated or damaged?)') from None


def _first_line(e: BaseException) -> str:
    """A library error's first line (or its type when it has no message): our messages stay on one line."""
    return (str(e).strip().splitlines() or [type(e).__name__])[0]


def _is_loaded_global(name: str) -> bool:
    """Whether a pickled global names an existing object of an already imported module (nothing is imported)."""
    module, _, attr = name.rpartition('.')
    return hasattr(sys.modules.get(module), attr) if module else False


def save_file(obj: Any, path: str | os.PathLike) -> Path:
    """Write atomically: a temporary file in the same folder, fsync, then rename over `path`.

    A crash at any point leaves either the previous file or the new one, never a truncated one. A write that
    fails (full disk, read-only, torch's zip writer failing) ends in a WriteError naming `path` (errors.py).
    """
    path = Path(path)
    with writing(path):  # the file is named here, not where torch or the OS raised
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f'.{path.name}.', suffix='.tmp', dir=path.parent)
        try:
            with os.fdopen(fd, 'wb') as f:
                if path.suffix == '.safetensors':
                    from safetensors.torch import save as save_safetensors
                    f.write(save_safetensors({k: v.contiguous() for k, v in obj.items()}))
                else:
                    torch.save(obj, f)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
            if hasattr(os, 'O_DIRECTORY'):  # make the rename itself durable
                dir_fd = os.open(path.parent, os.O_DIRECTORY)
                try:
                    os.fsync(dir_fd)
                finally:
                    os.close(dir_fd)
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise
    return path


# -- state dict conversion -------------------------------------------------------------------------------------
_STATE_KEYS = ('model', 'state_dict', 'model_ema', 'module', 'net')
_PREFIXES = ('module.', '_orig_mod.', 'backbone.', 'model.', 'encoder.')
_OFFICIAL_RENAMES = [(re.compile(r'\.gamma_1$'), '.ls1.gamma'), (re.compile(r'\.gamma_2$'), '.ls2.gamma')]


def official_to_timm_name(key: str) -> str:
    """Official DeiT III LayerScale names (`blocks.i.gamma_1`) -> ours and timm's (`blocks.i.ls1.gamma`)."""
    for pattern, repl in _OFFICIAL_RENAMES:
        key = pattern.sub(repl, key)
    return key


def extract_state_dict(ckpt: Any, source: str = 'checkpoint') -> Dict[str, Tensor]:
    """The weights inside a loaded checkpoint: under 'model' / 'state_dict' / ..., or the dict itself."""
    if not isinstance(ckpt, dict):
        raise CheckpointError(f'{source}: expected a dict of weights, found {type(ckpt).__name__}')
    for key in _STATE_KEYS:
        if isinstance(ckpt.get(key), dict):
            ckpt = ckpt[key]
            break
    tensors = {k: v for k, v in ckpt.items() if isinstance(v, Tensor)}
    if not tensors:
        raise CheckpointError(f'{source}: no weights found; expected tensors at the top level or under one of '
                              f'the keys {list(_STATE_KEYS)}, found keys {list(ckpt)[:8]}')
    return tensors


# What a training checkpoint written before checkpoints described their weights (no 'saved_weights' key) may hold
# beside 'model', as the methods then declared it (pretrain/methods.py `saves`). Newer checkpoints carry their own
# description: a method added since needs no row here.
_LEGACY_SAVED_WEIGHTS = {
    'peer_model': dict(method='cotrain', title="co-training's second model", suffix='_peer'),
    'model_ema': dict(method='mean_teacher', title="the mean teacher's EMA of the weights", suffix='_ema'),
}
_RUN_MODEL = dict(method=None, title='', suffix='')


def trained_weights(ckpt: Any) -> Dict[str, Dict[str, Optional[str]]]:
    """The models a loaded checkpoint holds -> {'method': the --method writing them, 'title': their name in a model
    card, 'suffix': that of their metrics in log.jsonl}: 'model', the run's (also the only weights of any other
    file), then those its 'saved_weights' key describes (written by the trainer from the method's `saves`: plain
    data, so that this package need not import the methods), or in an older checkpoint the legacy ones it holds."""
    ckpt = ckpt if isinstance(ckpt, dict) else {}
    described = ckpt.get('saved_weights', _LEGACY_SAVED_WEIGHTS)
    return {'model': _RUN_MODEL, **{name: about for name, about in described.items()
                                    if isinstance(ckpt.get(name), dict)}}


def weights_held(ckpt: Any) -> List[str]:
    """The names of the trained_weights() a loaded checkpoint holds ('model' for any file with weights)."""
    return list(trained_weights(ckpt))


def select_weights(ckpt: Any, weights: str = 'model', source: str = 'checkpoint') -> Dict[str, Tensor]:
    """The state dict of `weights` (one of weights_held(ckpt)) in a loaded checkpoint; a name it lacks is refused
    naming the ones it holds."""
    if weights == 'model':
        return extract_state_dict(ckpt, source)
    held = weights_held(ckpt)
    if weights not in held:
        writer = _LEGACY_SAVED_WEIGHTS.get(weights, _RUN_MODEL)['method']
        raise CheckpointError(f'{source} holds no {weights}' + (f' (written by --method {writer})' if writer else '')
                              + f'; its weights: {", ".join(held)}')
    return extract_state_dict(ckpt[weights], f'{source} ({weights})')


def _strip_prefixes(sd: Dict[str, Tensor], model_keys: set) -> Dict[str, Tensor]:
    """Remove wrapper prefixes (DDP `module.`, compile `_orig_mod.`, MMSeg `backbone.`) the model lacks."""
    changed = True
    while changed:
        changed = False
        for prefix in _PREFIXES:
            if any(k.startswith(prefix) for k in model_keys):
                continue
            if sum(k.startswith(prefix) for k in sd) > len(sd) // 2:
                sd = {k[len(prefix):]: v for k, v in sd.items() if k.startswith(prefix)}
                changed = True
    return sd


def _grid(n: int) -> Optional[int]:
    side = math.isqrt(n)
    return side if side * side == n else None


def _adapt_pos_embed(sd: Dict[str, Tensor], model: nn.Module, notes: List[str]) -> None:
    """Fit a checkpoint's `pos_embed` to the model: drop a class-token slot, interpolate the grid."""
    from timm.layers import resample_abs_pos_embed
    pos, target = sd.get('pos_embed'), getattr(model, 'pos_embed', None)
    if pos is None or not isinstance(target, Tensor) or pos.shape == target.shape or pos.ndim != 3:
        return
    n, m = pos.shape[1], target.shape[1]
    grid_size = getattr(getattr(model, 'patch_embed', None), 'grid_size', None)
    prefix_model = 0 if grid_size is not None and m == grid_size[0] * grid_size[1] else m - (_grid(m) or 0) ** 2
    if _grid(n - prefix_model) is None and prefix_model == 0 and _grid(n - 1) and 'cls_token' in sd:
        # A timm/mmseg ViT keeps a position for the class token; ours adds none to it. Folding that position
        # into cls_token gives exactly the same activations.
        sd['cls_token'] = sd['cls_token'] + pos[:, :1]
        pos = pos[:, 1:]
        notes.append('pos_embed: class-token slot folded into cls_token')
    old = _grid(pos.shape[1] - prefix_model)
    new = tuple(grid_size) if grid_size is not None else ((_grid(m - prefix_model),) * 2)
    if old is None or None in new:
        return
    if (old, old) != tuple(new):
        pos = resample_abs_pos_embed(pos, list(new), [old, old], num_prefix_tokens=prefix_model)
        notes.append(f'pos_embed: interpolated from a {old}x{old} to a {new[0]}x{new[1]} grid')
    sd['pos_embed'] = pos


def convert_state_dict(sd: Dict[str, Tensor], model: nn.Module, notes: Optional[List[str]] = None
                       ) -> Dict[str, Tensor]:
    """Map official DeiT III / timm / wrapped checkpoints onto `model`'s parameter names and shapes."""
    notes = [] if notes is None else notes
    own = model.state_dict()
    sd = _strip_prefixes(dict(sd), set(own))
    renamed = {official_to_timm_name(k): v for k, v in sd.items()}
    if renamed.keys() != sd.keys():
        notes.append('official DeiT III names (gamma_1/gamma_2) mapped to ls1.gamma/ls2.gamma')
    sd = renamed
    if not hasattr(model, 'layer_id'):  # a timm architecture: its own filter reads its official releases
        filter_fn = getattr(sys.modules.get(type(model).__module__), 'checkpoint_filter_fn', None)
        if filter_fn is not None:
            try:
                sd = filter_fn(sd, model)
            except Exception as e:  # a filter meant for another release layout; keep the dict as it is
                logger.debug('timm checkpoint filter skipped: %s', e)
    _adapt_pos_embed(sd, model, notes)
    return sd


@dataclass
class LoadReport:
    path: str
    missing: List[str] = field(default_factory=list)
    unexpected: List[str] = field(default_factory=list)
    mismatched: List[str] = field(default_factory=list)
    replaced: List[str] = field(default_factory=list)  # classifier tensors of another size, left at init
    notes: List[str] = field(default_factory=list)
    meta: Dict[str, Any] = field(default_factory=dict)  # model_name, num_classes, img_size, config if stored

    @property
    def ok(self) -> bool:
        return not (self.missing or self.unexpected or self.mismatched)

    def __str__(self) -> str:
        def show(keys: List[str]) -> str:
            return ', '.join(keys[:6]) + (f' (+{len(keys) - 6} more)' if len(keys) > 6 else '')
        parts = [f'loaded {self.path}']
        if self.notes:
            parts.append('; '.join(self.notes))
        if self.mismatched:
            parts.append(f'{len(self.mismatched)} skipped for shape: {show(self.mismatched)}')
        if self.missing:
            parts.append(f'{len(self.missing)} missing (kept at init): {show(self.missing)}')
        if self.unexpected:
            parts.append(f'{len(self.unexpected)} unexpected (ignored): {show(self.unexpected)}')
        if self.ok:
            parts.append('all keys matched')
        return ' | '.join(parts)


HEAD_KEYS = re.compile(r'^(head|fc|classifier|head\.fc|last_linear)\.(weight|bias)$')


def load_checkpoint(model: nn.Module, path: str | os.PathLike, *, strict: bool = False,
                    allow_pickle: bool = False) -> LoadReport:
    """Load weights from our checkpoints, official DeiT III files or timm state dicts (.pth / .safetensors).

    Position embeddings are interpolated to the model's size; a classifier head of another size is left at its
    initialisation (reported). With `strict=True` (--resume, --eval) any missing, unexpected or misshaped tensor,
    a replaced classifier included, raises CheckpointError; in any mode a checkpoint none of whose tensors fit
    the model (another architecture) is refused rather than leaving the model at its initialisation.
    """
    return load_into(model, load_file(path, allow_pickle=allow_pickle), str(path), strict=strict)


def load_into(model: nn.Module, ckpt: Any, source: str, *, strict: bool = False) -> LoadReport:
    """`load_checkpoint` for a checkpoint already read with `load_file` (`source` names it in messages): --resume
    reads the file once for both the weights and the training state."""
    report, sd = fit_report(model, ckpt, source)
    # Both refusals come before anything is copied: the model is left as it was.
    name = getattr(model, 'model_name', type(model).__name__)
    if strict and not (report.ok and not report.replaced):
        raise CheckpointError(f'{source}: does not fit model {name} strictly: {fit_summary(report)}')
    if len(report.unexpected) == len(sd):  # e.g. another architecture: nothing would be loaded at all
        raise CheckpointError(f'{source}: does not fit model {name} at all, none of its tensors would load '
                              f'(another architecture?): {fit_summary(report)}')
    model.load_state_dict(sd, strict=False)
    logger.info('%s', report)
    return report


def fit_report(model: nn.Module, ckpt: Any, source: str) -> tuple:
    """(LoadReport, converted state dict) of loading `ckpt` into `model`, without loading anything: `model` may
    be on the meta device."""
    sd = extract_state_dict(ckpt, source)
    report = LoadReport(source, meta={k: ckpt[k] for k in ('model_name', 'num_classes', 'img_size', 'config')
                                         if k in ckpt})
    sd = convert_state_dict(sd, model, report.notes)
    own = model.state_dict()
    for k in list(sd):
        if k in own and sd[k].shape != own[k].shape:
            if HEAD_KEYS.match(k):
                report.replaced.append(k)
                report.notes.append(f'classifier {k} replaced: checkpoint {tuple(sd[k].shape)}, '
                                    f'model {tuple(own[k].shape)}')
            else:
                report.mismatched.append(f'{k} {tuple(sd[k].shape)}->{tuple(own[k].shape)}')
            del sd[k]
    misshaped = set(report.replaced) | {m.split(' ', 1)[0] for m in report.mismatched}
    report.missing = [k for k in own if k not in sd and k not in misshaped]
    report.unexpected = [k for k in sd if k not in own]
    return report, sd


def fit_summary(report: LoadReport) -> str:
    """Counts of missing / unexpected / misshaped tensors, then the first names of each, on one line."""
    def first(keys: List[str]) -> str:
        return ', '.join(keys[:3]) + (', ...' if len(keys) > 3 else '')
    misshaped = report.mismatched + [f'{k} (classifier of another size)' for k in report.replaced]
    kinds = [('missing', report.missing), ('unexpected', report.unexpected), ('misshaped', misshaped)]
    counts = ', '.join(f'{len(keys)} {kind}' for kind, keys in kinds)
    return f'{counts} tensors; ' + '; '.join(f'{kind}: {first(keys)}' for kind, keys in kinds if keys)


# -- which architecture a checkpoint holds -----------------------------------------------------------------------
_BLOCK = re.compile(r'^blocks\.(\d+)\.')


def _normalized(sd: Dict[str, Tensor]) -> Dict[str, Tensor]:
    """Wrapper prefixes (module., backbone., ...) removed, official DeiT III names mapped to ours."""
    return {official_to_timm_name(k): v for k, v in _strip_prefixes(dict(sd), set()).items()}


def _trained_img_size(sd: Dict[str, Tensor]) -> Optional[int]:
    """The input size a ViT was trained at: its pos_embed grid (a timm ViT keeps a class-token slot in it, ours has
    none) times its patch size; None for other models."""
    pos, proj = sd.get('pos_embed'), sd.get('patch_embed.proj.weight')
    if pos is None or pos.ndim != 3 or proj is None or proj.ndim != 4:
        return None
    grid = _grid(pos.shape[1]) or _grid(pos.shape[1] - 1)
    return grid * int(proj.shape[-1]) if grid else None


def infer_vit_architecture(sd: Dict[str, Tensor], source: str = 'checkpoint', name: Optional[str] = None
                           ) -> Optional[tuple]:
    """(name, create_model arguments) of the ViT whose weights `sd` are, read from the tensor shapes; None when
    `sd` holds no ViT (no patch_embed.proj.weight and blocks.N.*).

    Width, depth, patch size, input channels, MLP ratio, qkv bias, LayerScale and the input size (the pos_embed
    grid) are in the shapes; the number of heads is not. It is that of `name` (one of VIT_ARCHS, --model) when
    given, else that of the one architecture of VIT_ARCHS (ViT-Ti ... ViT-H) with the same width and depth; a ViT
    of another width and depth without `name` is refused.
    """
    from .vit import VIT_ARCHS
    sd = _normalized(sd)
    proj = sd.get('patch_embed.proj.weight')
    depth = 1 + max((int(m.group(1)) for m in map(_BLOCK.match, sd) if m), default=-1)
    if proj is None or proj.ndim != 4 or depth == 0:
        return None
    width, in_chans, patch = int(proj.shape[0]), int(proj.shape[1]), int(proj.shape[2])
    name = name or next((n for n, (w, d, _, _) in VIT_ARCHS.items() if (w, d) == (width, depth)), None)
    if name is None or proj.shape[2] != proj.shape[3]:
        known = ', '.join(f'{n} {w}/{d}' for n, (w, d, _, _) in VIT_ARCHS.items())
        raise CheckpointError(f'{source}: a ViT of width {width}, depth {depth}, patch {tuple(proj.shape[2:])} is '
                              f'none of the known architectures (width/depth: {known}); its number of heads is '
                              'not in the weights: pass --model NAME, the architecture with its number of heads '
                              '(its other sizes are read from the weights)')
    args = {}
    for key, value, default in (('embed_dim', width, VIT_ARCHS[name][0]), ('depth', depth, VIT_ARCHS[name][1]),
                                ('patch_size', patch, VIT_ARCHS[name][3]), ('in_chans', in_chans, 3)):
        if value != default:
            args[key] = value
    fc1 = sd.get('blocks.0.mlp.fc1.weight')
    if fc1 is not None and fc1.shape[0] != 4 * width:
        args['mlp_ratio'] = fc1.shape[0] / width
    if 'blocks.0.attn.qkv.bias' not in sd:
        args['qkv_bias'] = False
    if 'blocks.0.ls1.gamma' not in sd:
        args['init_values'] = None  # no LayerScale (a ViT before DeiT III)
    img_size = _trained_img_size(sd)
    if img_size:
        args['img_size'] = img_size
    head = sd.get('head.weight')
    args['num_classes'] = int(head.shape[0]) if head is not None and head.ndim == 2 else 0
    return name, args


# create_model arguments of a training config's `model` that do not change the architecture
_NOT_ARCHITECTURE = ('name', 'num_classes', 'img_size', 'drop_path_rate', 'drop_path_mode', 'drop_path_schedule')


def architecture_of(ckpt: Any, sd: Dict[str, Tensor], source: str = 'checkpoint',
                    model_name: Optional[str] = None) -> tuple:
    """(name, create_model arguments) that `sd` (the weights of the loaded `ckpt`) are the weights of.

    The name is `model_name` (--model), else the one our training checkpoints store, else that of the ViT read
    from the shapes (`infer_vit_architecture`); a file that holds no ViT and names no architecture is refused,
    naming what it holds. The arguments: for one of our ViTs the sizes in the shapes (the name gives the number of
    heads), then for our checkpoints the shape arguments of their config (which win), the input size they were
    trained at, and the classes of the head.
    """
    from .vit import VIT_ARCHS
    ours = ckpt if isinstance(ckpt, dict) else {}
    stored = ours.get('model_name')
    name = model_name or stored
    timm_name = name and name not in VIT_ARCHS  # a timm architecture: its arguments are in no shape we read
    found = None if timm_name else infer_vit_architecture(sd, source, name)
    if not name and found is None:
        keys = list(sd)
        raise CheckpointError(f'{source}: holds no ViT (no patch_embed.proj.weight and blocks.N.*) and names no '
                              f'architecture (no model_name); found {len(keys)} tensors: '
                              f'{", ".join(keys[:4])}{", ..." if len(keys) > 4 else ""}; pass --model NAME')
    name, args = found or (name, {})
    config = ours.get('config') or {}
    if name == stored:  # ours: the shape it was trained with
        args.update({k: v for k, v in (config.get('model') or {}).items() if k not in _NOT_ARCHITECTURE
                     and v is not None})
    img_size = ours.get('img_size') or config.get('input_size') or args.get('img_size') \
        or _trained_img_size(_normalized(sd))
    if img_size:
        args['img_size'] = int(img_size)
    head = next((v for k, v in sd.items() if HEAD_KEYS.match(k) and k.endswith('weight') and v.ndim == 2), None)
    args['num_classes'] = int(head.shape[0]) if head is not None else 0
    return name, args


def check_fits(sd: Dict[str, Tensor], name: str, args: dict, source: str = 'checkpoint') -> None:
    """Refuse weights that `create_model(name, **args)` does not load strictly (built on the meta device: no
    memory, no initialisation)."""
    from .factory import create_model
    try:
        with torch.device('meta'):
            model = create_model(name, **args)
    except ValueError as e:
        raise CheckpointError(f'{source}: {_first_line(e)}') from None
    report, _ = fit_report(model, sd, source)
    if not report.ok or report.replaced:
        shown = ', '.join(f'{k}={v!r}' for k, v in args.items())
        raise CheckpointError(f'{source}: the weights are not those of {name}({shown}): {fit_summary(report)}')
