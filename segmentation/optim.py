"""Layer-wise LR decay for MMSegmentation models whose backbone gives layer ids (ours: CosubViT, TimmBackbone).

    optim_wrapper = dict(type='OptimWrapper', optimizer=dict(type='AdamW', lr=1e-4, weight_decay=0.05),
                         constructor='segmentation.LayerDecayOptimWrapperConstructor',
                         paramwise_cfg=dict(layer_decay_rate=0.75))

The groups come from `backbones.optim.layer_decay_param_groups`, the code pretraining and transfer use. Two
conventions (paramwise_cfg `layer_decay_convention`): 'cosub' (default; supplement A.1) gives block l of L
lr * LD^(L - l) (final block 1, embeddings LD^L); 'beit' (BEiT's / MMSeg's constructor) gives lr * LD^(L - l + 1)
(final block LD, embeddings LD^(L + 1)), so a BEiT recipe's LD means the same here as there: with 'cosub' every
backbone LR is 1/LD higher (1.33x at 0.75 on ViT-B). Neck and heads get lr; no weight decay on 1-D parameters
(norms, LayerScale), biases and the backbone's `no_weight_decay()` names (pos_embed, cls_token). MMSeg's own LayerDecayOptimizerConstructor only knows BEiT/MAE/ConvNeXt names (`layers.<i>`), so
timm-style `blocks.<i>` would get no decay there, and it decays pos_embed / cls_token.
"""
from __future__ import annotations

from collections import Counter

from mmengine.logging import print_log
from mmengine.optim import DefaultOptimWrapperConstructor, OptimWrapper
from mmengine.registry import OPTIM_WRAPPERS, OPTIMIZERS
from torch import nn

from backbones.optim import CONVENTIONS, layer_decay_param_groups, no_weight_decay_names

from .registry import OPTIM_WRAPPER_CONSTRUCTORS

_KEYS = {'layer_decay_rate', 'layer_decay_convention'}


class _SegmentorLayers:
    """A segmentor seen by `layer_decay_param_groups`: backbone ids from the backbone, the rest at the top id."""

    def __init__(self, model: nn.Module):
        self.model, self.backbone = model, model.backbone

    def named_parameters(self):
        return self.model.named_parameters()

    def named_modules(self):  # finds the residual blocks, whose last one gets scale 1
        return self.model.named_modules()

    def layer_id(self, name: str) -> int:
        if name.startswith('backbone.'):
            return self.backbone.get_layer_id(name[len('backbone.'):])
        return self.backbone.num_layers - 1  # neck and heads: like the classifier head, no decay

    def no_weight_decay(self) -> set:
        return {f'backbone.{n}' for n in no_weight_decay_names(self.backbone)}


@OPTIM_WRAPPER_CONSTRUCTORS.register_module()
class LayerDecayOptimWrapperConstructor(DefaultOptimWrapperConstructor):
    """paramwise_cfg: `layer_decay_rate` (LD, default 1.0 = no decay) and `layer_decay_convention` ('cosub' or
    'beit', default 'cosub'). Other paramwise options are refused."""

    def __call__(self, model: nn.Module) -> OptimWrapper:
        model = getattr(model, 'module', model)
        backbone = getattr(model, 'backbone', None)
        if not (hasattr(backbone, 'get_layer_id') and hasattr(backbone, 'num_layers')):
            raise TypeError('segmentation.LayerDecayOptimWrapperConstructor: model.backbone '
                            f'({type(backbone).__name__}) has no get_layer_id(name) / num_layers; expected a '
                            "backbone such as 'backbones.CosubViT' or 'backbones.TimmBackbone'")
        unknown = set(self.paramwise_cfg) - _KEYS
        if unknown:
            raise ValueError(f'optim_wrapper.paramwise_cfg: unsupported keys {sorted(unknown)} for '
                             f'segmentation.LayerDecayOptimWrapperConstructor; expected {sorted(_KEYS)}')
        decay = float(self.paramwise_cfg.get('layer_decay_rate', 1.0))
        if not 0.0 < decay <= 1.0:
            raise ValueError(f'optim_wrapper.paramwise_cfg.layer_decay_rate={decay}: expected a value in (0, 1]')
        convention = self.paramwise_cfg.get('layer_decay_convention', 'cosub')
        if convention not in CONVENTIONS:
            raise ValueError(f'optim_wrapper.paramwise_cfg.layer_decay_convention={convention!r}: expected one of '
                             f'{CONVENTIONS}')
        weight_decay = self.base_wd or 0.0
        groups = layer_decay_param_groups(_SegmentorLayers(model), weight_decay=weight_decay, layer_decay=decay,
                                          convention=convention)
        for group in groups:
            group['lr'] = self.base_lr * group['lr_scale']
        scales = Counter(round(g['lr_scale'], 6) for g in groups for _ in g['params'])
        print_log(f'layer decay {decay} ({convention} ids): {len(groups)} parameter groups, base lr {self.base_lr:g}, weight decay '
                  f'{weight_decay:g}; lr scales (tensors): '
                  + ', '.join(f'{s:.4g} ({n})' for s, n in sorted(scales.items())), logger='current')
        optimizer = OPTIMIZERS.build(dict(self.optimizer_cfg, params=groups))
        return OPTIM_WRAPPERS.build(self.optim_wrapper_cfg.copy(), default_args=dict(optimizer=optimizer))
