"""Build any backbone by name: ours (registered with `@register_model`) or any timm architecture.

Every model comes out with its residual branches routed through `backbones.esd.drop_add_residual`, so the
same `drop_path_rate` / `drop_path_mode` / `drop_path_schedule` arguments work for all of them.
"""
from __future__ import annotations

import difflib
import functools
import inspect
from typing import Callable, Dict, List, Optional, Set

import timm
import torch
from torch import nn

from .esd import MODES, SCHEDULES, set_stochastic_depth, stochastic_depth_blocks

_ENTRYPOINTS: Dict[str, Callable[..., nn.Module]] = {}


def register_model(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
    if fn.__name__ in _ENTRYPOINTS:
        raise ValueError(f'model {fn.__name__!r} is registered twice')
    _ENTRYPOINTS[fn.__name__] = fn
    return fn


def list_models() -> List[str]:
    """Our own architectures (timm's are listed by `timm.list_models()`)."""
    return sorted(_ENTRYPOINTS)


def is_model(name: str) -> bool:
    return name in _ENTRYPOINTS or timm.is_model(name)


def create_model(name: str, *, num_classes: int = 1000, img_size: Optional[int] = None,
                 drop_path_rate: float = 0.0, drop_path_mode: str = 'esd', drop_path_schedule: str = 'uniform',
                 **kwargs) -> nn.Module:
    """Create `name` with fresh weights (load weights with `backbones.load_checkpoint`).

    drop_path_mode: 'esd' (efficient stochastic depth), 'mask' (timm-style per-sample masking) or 'none'.
    drop_path_schedule: 'uniform' over depth (DeiT III, cosub) or 'linear' (rising to `drop_path_rate`).
    Other keyword arguments go to the architecture's constructor.
    """
    if kwargs.pop('pretrained', False):
        raise ValueError(f'create_model({name!r}, pretrained=True): nothing is downloaded here; '
                         'create the model, then backbones.load_checkpoint(model, path)')
    if drop_path_mode not in MODES:
        raise ValueError(f'drop_path_mode={drop_path_mode!r}: expected one of {MODES}')
    if drop_path_schedule not in SCHEDULES:
        raise ValueError(f'drop_path_schedule={drop_path_schedule!r}: expected one of {SCHEDULES}')
    check_model_arguments(name, kwargs)
    if img_size is not None and takes_img_size(name):
        kwargs['img_size'] = img_size  # CNNs (ResNet, RegNet, ConvNeXt) take any input size and no such argument
    if name in _ENTRYPOINTS:
        try:
            model = _ENTRYPOINTS[name](num_classes=num_classes, **kwargs)
        except (TypeError, ValueError, AssertionError) as e:  # a value the constructor refuses, in one line
            raise ValueError(f'create_model({name!r}, {_show(kwargs)}): {e}') from None
    elif timm.is_model(name):
        from .timm_models import adapt_timm_model
        # timm's own DropPath stays off (rate 0); our adapters apply stochastic depth instead.
        try:
            model = timm.create_model(name, pretrained=False, num_classes=num_classes, drop_path_rate=0.0, **kwargs)
        except TypeError as e:  # an argument this architecture's constructor does not take (e.g. img_size for a CNN)
            raise ValueError(f'create_model({name!r}): {e}') from None
        if not stochastic_depth_blocks(model):  # our cosub_vit_* names in timm's registry are ESD models already
            adapt_timm_model(model)
    else:
        raise ValueError(f'unknown model {name!r}: expected one of {list_models()} or a timm model name')
    if not stochastic_depth_blocks(model):
        raise ValueError(f'model {name!r} has no residual block that efficient stochastic depth supports')
    check_input_size(model, name, img_size)
    set_stochastic_depth(model, drop_path_rate, drop_path_mode, drop_path_schedule)
    model.model_name = name
    return model


# -- argument checks (also run on the config before anything is built: pretrain.config) -------------------------
CREATE_ARGUMENTS = ('num_classes', 'img_size', 'drop_path_rate', 'drop_path_mode', 'drop_path_schedule')


def _show(kwargs: dict) -> str:
    return ', '.join(f'{k}={v!r}' for k, v in kwargs.items())


def _build_on_meta(name: str, **kwargs) -> nn.Module:
    """The architecture alone, on the meta device: no memory, no initialisation, a fraction of a second."""
    with torch.device('meta'):
        return _ENTRYPOINTS[name](**kwargs) if name in _ENTRYPOINTS else \
            timm.create_model(name, pretrained=False, **kwargs)


@functools.lru_cache(maxsize=None)
def _default_model(name: str) -> Optional[nn.Module]:
    try:
        return _build_on_meta(name)
    except Exception:  # unknown name, or an architecture the meta device cannot build: not checked here
        return None


def _architecture(name: str) -> Optional[type]:
    """The class `name` builds (None when it cannot be built on the meta device)."""
    model = _default_model(name)
    return None if model is None else type(model)


def model_arguments(name: str) -> Optional[Set[str]]:
    """The keyword arguments `create_model(name, ...)` accepts: ours plus the architecture constructor's.
    None when they cannot be listed (a constructor taking **kwargs, or an unknown name)."""
    cls = _architecture(name)
    if cls is None:
        return None
    params = inspect.signature(cls.__init__).parameters
    if any(p.kind is p.VAR_KEYWORD for p in params.values()):
        return None
    return (set(params) - {'self'}) | set(CREATE_ARGUMENTS)


def takes_img_size(name: str) -> bool:
    """Whether the constructor of `name` has an `img_size` argument (ViTs, Swin, PiT, XCiT, CaiT do; CNNs don't).
    Ours always do; an architecture that cannot be inspected gets it and its constructor decides."""
    if name in _ENTRYPOINTS:
        return True
    cls = _architecture(name)
    return cls is None or 'img_size' in inspect.signature(cls.__init__).parameters


def check_model_arguments(name: str, kwargs: dict) -> None:
    """Refuse, in one line, a keyword argument that the constructor of `name` does not take."""
    allowed = model_arguments(name)
    unknown = sorted(set(kwargs) - (allowed or set(kwargs)) - {'img_size'})  # img_size: checked by the constructor
    if unknown:
        close = difflib.get_close_matches(unknown[0], sorted(allowed), n=1)
        hint = f' (did you mean {close[0]!r}?)' if close else ''
        raise ValueError(f'model {name!r} ({_architecture(name).__name__}) takes no argument {unknown[0]!r}{hint}; '
                         f'its arguments: {", ".join(sorted(allowed))}')


def patch_size(model: nn.Module) -> Optional[tuple]:
    """The (height, width) of a patch for patch-embedding models (ViTs), else None."""
    size = getattr(getattr(model, 'patch_embed', None), 'patch_size', None)
    if size is None:
        return None
    return tuple(size) if isinstance(size, (tuple, list)) else (int(size), int(size))


def check_input_size(model: nn.Module, name: str, img_size) -> None:
    """A ViT input must be a whole number of patches: 17 pixels with 16-pixel patches would silently drop one."""
    patch = patch_size(model)
    if img_size is None or patch is None:
        return
    sizes = tuple(img_size) if isinstance(img_size, (tuple, list)) else (img_size, img_size)
    for size, p in zip(sizes, patch):
        if size % p:
            lower, upper = size // p * p, (size // p + 1) * p
            raise ValueError(f'input size {size} is not a multiple of the patch size {p} of {name}; use '
                             + (f'{lower} or {upper}' if lower else f'{upper}'))


def check_model_config(name: str, kwargs: dict, img_size) -> None:
    """What `create_model(name, img_size=img_size, **kwargs)` would refuse, found without building the model:
    unknown arguments, values the constructor refuses, an input size that is not a whole number of patches."""
    check_model_arguments(name, kwargs)
    if _architecture(name) is None:  # not built on the meta device: create_model checks it when it builds it
        return
    build_args = {k: v for k, v in kwargs.items() if k not in CREATE_ARGUMENTS}
    try:
        model = _build_on_meta(name, **build_args) if build_args else _default_model(name)
    except (TypeError, ValueError, AssertionError) as e:  # the default build worked: these values are refused
        raise ValueError(f'model {name!r} with {_show(build_args)}: {e}') from None
    except Exception:  # e.g. an operation the meta device lacks; create_model checks when it builds the model
        return
    check_input_size(model, name, img_size)
