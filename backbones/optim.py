"""Parameter groups: weight decay exclusions and layer-wise learning-rate decay (LayerDecay).

Shared by pretraining, transfer and the MMSeg optimizer constructor, so that every task decays the same way.
Convention (cosub supplement A.1): block l of L gets LD^(L - l), the final block, final norm and head get 1,
the embeddings LD^L. No weight decay on biases, norms, LayerScale (all 1-D) and on the model's
`no_weight_decay()` names (pos_embed, cls_token).
"""
from __future__ import annotations

from typing import Dict, Iterable, List, Optional

from torch import nn


def param_layer_ids(model: nn.Module) -> Dict[str, int]:
    """Layer id of each parameter: 0 embeddings ... depth for the last block, depth + 1 for norm/head."""
    if hasattr(model, 'layer_id'):
        return {name: model.layer_id(name) for name, _ in model.named_parameters()}
    if hasattr(model, 'group_matcher'):  # timm architectures
        from timm.models import group_parameters
        ids = group_parameters(model, model.group_matcher(coarse=False), reverse=True)
        top = max(ids.values(), default=0)
        return {name: ids.get(name, top) for name, _ in model.named_parameters()}
    return {name: 0 for name, _ in model.named_parameters()}


def _last_block_layer(model: nn.Module, ids: Dict[str, int]) -> int:
    """Layer id of the last residual block (scale 1); read from the blocks, since timm's grouping may merge
    the final norm into the last block or give the head a group of its own."""
    from .esd import StochasticDepthBlock
    prefixes = tuple(f'{name}.' for name, m in model.named_modules() if isinstance(m, StochasticDepthBlock) and name)
    block_ids = [i for name, i in ids.items() if name.startswith(prefixes)] if prefixes else []
    return max(block_ids) if block_ids else max(max(ids.values(), default=0) - 1, 0)


def no_weight_decay_names(model: nn.Module) -> set:
    fn = getattr(model, 'no_weight_decay', None)
    return set(fn()) if callable(fn) else set()


def layer_decay_param_groups(model: nn.Module, weight_decay: float, layer_decay: Optional[float] = None,
                             no_weight_decay: Iterable[str] = (), only: Optional[Iterable[str]] = None
                             ) -> List[dict]:
    """Optimizer parameter groups with `weight_decay`, `lr_scale` (read by timm's schedulers) and names.

    only: if given, substrings of parameter names to train (others are frozen), e.g. ('.attn.', 'head.',
    'pos_embed') to fine-tune only the attention layers (and the new head) as DeiT III does for Flowers-102.
    """
    skip_wd = no_weight_decay_names(model) | set(no_weight_decay)
    ids = param_layer_ids(model)
    last_block = _last_block_layer(model, ids)
    groups: Dict[tuple, dict] = {}
    only = tuple(only) if only else None
    for name, param in model.named_parameters():
        if only is not None and not any(part in name for part in only):
            param.requires_grad_(False)
        if not param.requires_grad:
            continue
        no_wd = param.ndim <= 1 or name.endswith('.bias') or name in skip_wd
        layer = ids[name]
        scale = layer_decay ** max(last_block - layer, 0) if layer_decay else 1.0
        key = (layer if layer_decay else 0, no_wd)
        group = groups.setdefault(key, dict(params=[], names=[], lr_scale=scale,
                                            weight_decay=0.0 if no_wd else weight_decay))
        group['params'].append(param)
        group['names'].append(name)
    if not groups:
        raise ValueError('no trainable parameters (check the `only` filter)')
    return list(groups.values())
