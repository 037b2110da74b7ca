"""Makes mmsegmentation 1.2.2 run on the supported stack (mmcv-lite 2.1, mmengine 0.10.7, torch >= 2.6).

`install()` is idempotent and is called by `import segmentation`. Our configs trigger it at parse time with
`custom_imports = dict(imports=['segmentation'], allow_failed_imports=False)`: `Config.fromfile` runs that import
before the Runner imports `mmseg.models`, which is what must not happen first. It does two things:

1. mmcv ops. mmseg imports `mmcv.ops` unconditionally (point_sample, sigmoid_focal_loss), and mmcv's
   `ops/__init__.py` loads the compiled `mmcv._ext`, which mmcv-lite does not have. With mmcv-lite we put a
   pure-PyTorch `mmcv.ops` module in `sys.modules` first. It serves the ops that are pure PyTorch already
   (`point_sample`, `bilinear_grid_sample`, `rel_roi_point_to_rel_img_point`, from mmcv's own file) and, for every
   other name, a placeholder class: importing it works (mmseg imports e.g. `sigmoid_focal_loss` at module load),
   `isinstance` checks against it are False, and calling or instantiating it raises `MMCVOpUnavailable` naming
   the op and the fix. UperNet / FCN heads, Feature2Pyramid, MultiLevelNeck, training, validation and TTA use
   none of them. With a full mmcv (its `_ext` is importable) nothing is touched.

2. Checkpoint loading. torch >= 2.6 loads with `weights_only=True` by default and mmengine 0.10.7 passes nothing,
   so `load_from`, `--resume` and `init_model(cfg, ckpt)` fail on mmengine's own checkpoints (numpy scalars and
   arrays, `HistoryBuffer` in the message hub). We re-register mmengine's local-file loader to keep
   `weights_only=True` and allow an explicit list of plain data types (`CHECKPOINT_SAFE_GLOBALS`) instead of
   switching to `weights_only=False`: a checkpoint from elsewhere can then never run pickled code on load. A file
   that needs any other global fails with one line naming it; if you trust the file, allow that type with
   `torch.serialization.add_safe_globals([...])` (e.g. in a module listed in `custom_imports`). Before torch 2.5
   (weights_only=False by default) mmengine's loader is left as it is.

A config outside this repository that only names our backbone (`type='backbones.CosubViT'`) works as it is with a
full mmcv. With mmcv-lite it needs one line more, because the Runner imports `mmseg.models` before it ever
resolves the `backbones.` scope: `custom_imports = dict(imports=['segmentation'], allow_failed_imports=False)`.
"""
from __future__ import annotations

import importlib.util
import os
import pickle
import sys
import types
from typing import Any, Dict

from backbones.errors import Refusal  # one line at the end of a mim run (segmentation/errors.py)

# Pure-PyTorch ops served from mmcv's own source file (mmcv/ops/point_sample.py has no compiled dependency).
PURE_OPS = {
    'point_sample': 'point_sample',
    'bilinear_grid_sample': 'point_sample',
    'rel_roi_point_to_rel_img_point': 'point_sample',
}
_MARK = '__cosub_compat__'


class MMCVOpUnavailable(Refusal, RuntimeError):
    """A compiled mmcv op was used while only mmcv-lite (no compiled ops) is installed."""


def full_mmcv_available() -> bool:
    """True when mmcv's compiled extension is installed (a full `mmcv`, not `mmcv-lite`)."""
    try:
        return importlib.util.find_spec('mmcv._ext') is not None
    except (ImportError, ValueError):
        return False


def _unavailable(name: str) -> type:
    def refuse(cls, *args, **kwargs):
        import mmcv
        raise MMCVOpUnavailable(
            f'mmcv.ops.{name} is a compiled mmcv op, and the installed mmcv {mmcv.__version__} is mmcv-lite '
            f'(no compiled ops); segmentation/compat.py provides only {sorted(PURE_OPS)}. Install a full mmcv '
            '(>=2.0.0rc4,<2.2.0, built for your torch) to use it, or pick a config that does not need it')
    # A class, not a function, so that `isinstance(m, (DeformConv2d, ...))` checks keep working (False).
    return type(name, (), {'__new__': refuse, '__module__': 'mmcv.ops', '__doc__': f'unavailable: {name}'})


def _lite_ops_module() -> types.ModuleType:
    import mmcv
    ops_dir = os.path.join(os.path.dirname(mmcv.__file__), 'ops')
    module = types.ModuleType('mmcv.ops', 'Pure-PyTorch stand-in for mmcv.ops (segmentation/compat.py).')
    # Keeping the real folder as __path__ lets `import mmcv.ops.<file>` still reach mmcv's files; those that load
    # the compiled extension raise ModuleNotFoundError there, which mmcv's own optional imports already expect.
    module.__path__ = [ops_dir]
    module.__file__ = __file__
    setattr(module, _MARK, True)
    cache: Dict[str, Any] = {}

    def __getattr__(name: str) -> Any:  # PEP 562: answers `from mmcv.ops import <name>` for the other names
        if name.startswith('__'):
            raise AttributeError(name)
        if name not in cache:
            cache[name] = _unavailable(name)
        return cache[name]

    module.__getattr__ = __getattr__
    return module


def _add_pure_ops(module: types.ModuleType) -> None:
    # Loaded eagerly, and after the submodule import: importing `mmcv.ops.point_sample` binds the *module* to the
    # parent's `point_sample` attribute, which must then be replaced by the function of the same name.
    for name, source in PURE_OPS.items():
        setattr(module, name, getattr(importlib.import_module(f'mmcv.ops.{source}'), name))


def install_mmcv_ops() -> str:
    """Provide `mmcv.ops` when mmcv-lite is installed. Returns what was done ('full', 'installed', 'present')."""
    if full_mmcv_available():
        return 'full'
    existing = sys.modules.get('mmcv.ops')
    if existing is not None:
        return 'present' if getattr(existing, _MARK, False) else 'full'
    import mmcv
    module = _lite_ops_module()
    sys.modules['mmcv.ops'] = module
    mmcv.ops = module
    _add_pure_ops(module)
    return 'installed'


# -- checkpoints -------------------------------------------------------------------------------------------------
def _history_buffer_method(owner: Any, name: str) -> Any:
    """Stands in for `getattr` while unpickling. HistoryBuffer pickles its statistics methods (min, max, ...) as
    `getattr(HistoryBuffer, 'min')`; a general `getattr` could reach any attribute, so only those are served."""
    from mmengine.logging import HistoryBuffer
    if owner is HistoryBuffer and (name in ('min', 'max', 'current', 'mean')
                                   or name in HistoryBuffer._statistics_methods):
        return getattr(HistoryBuffer, name)
    raise pickle.UnpicklingError(f'getattr({getattr(owner, "__name__", type(owner).__name__)}, {name!r}) is not '
                                 'allowed in a checkpoint (only HistoryBuffer statistics methods are)')


def checkpoint_safe_globals() -> list:
    """Plain data types found in mmengine checkpoints; unpickling them builds data, it cannot call code."""
    from backbones.checkpoint import SAFE_GLOBALS  # numpy scalars / arrays / dtypes, argparse.Namespace
    from mmengine.logging import HistoryBuffer  # message hub log scalars: two numpy arrays and an int
    return list(SAFE_GLOBALS) + [HistoryBuffer, (_history_buffer_method, 'builtins.getattr')]


class RefusedCheckpoint(Refusal, pickle.UnpicklingError):
    """A checkpoint the weights-only loader refuses: it needs globals outside the allowlist."""


class MissingCheckpoint(Refusal, FileNotFoundError):
    """`load_from` / `mim test --checkpoint` names no file (a FileNotFoundError, as mmengine's loader raises)."""


def load_from_local_weights_only(filename: str, map_location: Any = None) -> Any:
    """mmengine's local-file loader, with `weights_only=True` and the allowlist above."""
    import torch
    filename = os.path.expanduser(filename)
    if not os.path.isfile(filename):
        raise MissingCheckpoint(f'{filename}: no such checkpoint file (load_from, --checkpoint)')
    try:
        with torch.serialization.safe_globals(checkpoint_safe_globals()):
            return torch.load(filename, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError:
        try:
            unsafe = torch.serialization.get_unsafe_globals_in_checkpoint(filename)
        except Exception:  # not a zip checkpoint; no list to give
            unsafe = []
        allowed = {g[1] if isinstance(g, tuple) else f'{g.__module__}.{g.__qualname__}'
                   for g in checkpoint_safe_globals()}
        unsafe = [g for g in unsafe if g not in allowed] or ['pickled code']
        raise RefusedCheckpoint(
            f'{filename}: refused to load, the checkpoint needs {", ".join(unsafe)}, which weights-only loading '
            'does not allow (segmentation/compat.py). If you trust this file, allow the type with '
            'torch.serialization.add_safe_globals([...]) in a module listed in custom_imports') from None


def install_checkpoint_loader() -> str:
    import torch
    from mmengine.runner.checkpoint import CheckpointLoader
    if not hasattr(torch.serialization, 'safe_globals'):  # torch < 2.5: loads as mmengine expects; left alone
        return 'mmengine default'
    if CheckpointLoader._schemes.get('') is not load_from_local_weights_only:
        CheckpointLoader.register_scheme(prefixes='', loader=load_from_local_weights_only, force=True)
    return 'weights_only+allowlist'


def install() -> Dict[str, str]:
    """Install both parts; safe to call more than once. Returns what each part did."""
    return {'mmcv.ops': install_mmcv_ops(), 'checkpoint_loader': install_checkpoint_loader()}

