"""Parameter groups: weight decay exclusions and layer-wise learning-rate decay (LayerDecay).

Shared by pretraining, transfer and the MMSeg optimizer constructor, so that every task decays the same way.
Two conventions for the LayerDecay exponents (`convention`):
- 'cosub' (default; cosub supplement A.1, "LR(l) = LD^(l-L) ... the LR of all layers is affected, except those
  in the final block"): block l of L (1-based) gets LD^(L - l), so the final block, the final norm and the head
  get 1 and the embeddings LD^L.
- 'beit' (BEiT's and MMSeg's LayerDecayOptimizerConstructor: num_layers = L + 2, embeddings id 0, block i id
  i + 1, the rest id L + 1, scale LD^(L + 1 - id)): block l gets LD^(L - l + 1), the final block LD, the
  embeddings LD^(L + 1); head/neck 1. Every backbone LR is LD times the 'cosub' one, i.e. ours are 1/LD higher
  (1.33x at LD 0.75 on ViT-B). Use it to run a BEiT/MMSeg recipe with its own LD value.
No weight decay on biases, norms, LayerScale (all 1-D) and on the model's `no_weight_decay()` names
(pos_embed, cls_token).
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


CONVENTIONS = ('cosub', 'beit')


class ParamFilterError(ValueError):
    """An `only` filter that cannot select what it names."""


def check_only(model: nn.Module, only: Iterable[str]) -> tuple:
    """The `only` filter as a tuple, each entry checked: one that matches no parameter name is a typo that would
    silently freeze what it meant to train (['.attn.', 'haed.'] would leave a new head at its random init)."""
    if isinstance(only, str) or not all(isinstance(part, str) and part for part in only):
        raise ParamFilterError(f'{only!r}: expected a list of parameter-name substrings, e.g. '
                         "['.attn.', 'head.'] (or None: train every parameter)")
    names = [n for n, _ in model.named_parameters()]
    unmatched = [part for part in only if not any(part in n for n in names)]
    if unmatched:
        raise ParamFilterError(f'{", ".join(map(repr, unmatched))} matches no parameter of the model (its names look '
                         f'like {names[0]!r}, {names[len(names) // 2]!r}, {names[-1]!r})')
    return tuple(only)


def layer_decay_param_groups(model: nn.Module, weight_decay: float, layer_decay: Optional[float] = None,
                             no_weight_decay: Iterable[str] = (), only: Optional[Iterable[str]] = None,
                             convention: str = 'cosub') -> List[dict]:
    """Optimizer parameter groups with `weight_decay`, `lr_scale` (read by timm's schedulers) and names.

    only: if given, substrings of parameter names to train (others are frozen), e.g. ('.attn.', 'head.',
    'pos_embed') to fine-tune only the attention layers (and the new head) as DeiT III does for Flowers-102.
    convention: 'cosub' or 'beit' layer ids (see the module docstring).
    """
    if convention not in CONVENTIONS:
        raise ValueError(f'layer decay convention {convention!r}: expected one of {CONVENTIONS}')
    offset = 1 if convention == 'beit' else 0  # BEiT counts the final block one layer below the head
    skip_wd = no_weight_decay_names(model) | set(no_weight_decay)
    ids = param_layer_ids(model)
    last_block = _last_block_layer(model, ids)
    groups: Dict[tuple, dict] = {}
    only = check_only(model, only) if only else None
    for name, param in model.named_parameters():
        if only is not None and not any(part in name for part in only):
            param.requires_grad_(False)
        if not param.requires_grad:
            continue
        no_wd = param.ndim <= 1 or name.endswith('.bias') or name in skip_wd
        layer = ids[name]
        scale = layer_decay ** (last_block - layer + offset) if layer_decay and layer <= last_block else 1.0
        key = (layer if layer_decay else 0, no_wd)
        group = groups.setdefault(key, dict(params=[], names=[], lr_scale=scale,
                                            weight_decay=0.0 if no_wd else weight_decay))
        group['params'].append(param)
        group['names'].append(name)
    if not groups:
        raise ValueError('no trainable parameters (check the `only` filter)')
    return list(groups.values())
