"""Build any backbone by name: ours (registered with `@register_model`) or any timm architecture.

Every model comes out with its residual branches routed through `backbones.esd.drop_add_residual`, so the
same `drop_path_rate` / `drop_path_mode` / `drop_path_schedule` arguments work for all of them.
"""
from __future__ import annotations

from typing import Callable, Dict, List, Optional

import timm
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
    if img_size is not None:
        kwargs['img_size'] = img_size
    if name in _ENTRYPOINTS:
        model = _ENTRYPOINTS[name](num_classes=num_classes, **kwargs)
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
    set_stochastic_depth(model, drop_path_rate, drop_path_mode, drop_path_schedule)
    model.model_name = name
    return model
