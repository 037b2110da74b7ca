"""Our DeiT III ViTs in timm's model registry, with timm's conventions (imported by `import backbones`).

    import backbones, timm
    timm.list_models('cosub_*')
    model = timm.create_model('cosub_vit_large_patch16_224', drop_path_rate=0.45)          # our ESD ViT
    model = timm.create_model('cosub_vit_base_patch16_224.fb_in1k', pretrained=True)       # DeiT III weights

The pretrained tags are the DeiT III baselines that timm publishes on the Hugging Face Hub (`timm/deit3_*`):
our parameter names are timm's, so those files load as they are. No cosub weights were ever published; once you
have trained your own, `cosub-export-backbone` writes them in the layout `timm.create_model('hf-hub:...')` reads.
"""
from __future__ import annotations

from typing import Dict

import timm
from timm.models import build_model_with_cfg, generate_default_cfgs, register_model

from .checkpoint import convert_state_dict
from .esd import set_stochastic_depth
from .vit import VisionTransformer, vit_shape

# timm's size names -> ours (backbones.vit.VIT_ARCHS); the patch size is part of timm's name.
SIZES = {'small': 'vit_s', 'medium': 'vit_m', 'base': 'vit_b', 'large': 'vit_l', 'huge': 'vit_h', 'giant': 'vit_g'}
# The names the issue asks for: every size at 224 and 384, the huge one (patch 14) at 224 only, as DeiT III; the
# giant one (patch 14, timm's vit_giant_patch14_224 shape) at 224, the only resolution of cosub Table 9's ViT-g.
NAMES = [f'cosub_vit_{size}_patch16_{res}' for size in ('small', 'medium', 'base', 'large') for res in (224, 384)]
NAMES += ['cosub_vit_huge_patch14_224', 'cosub_vit_giant_patch14_224']
# Published DeiT III weights in timm (timm/models/deit.py default_cfgs): ImageNet-1k, and 21k fine-tuned on 1k.
TAGS = ('fb_in1k', 'fb_in22k_ft_in1k')
# Our own weights, once trained and uploaded (`cosub-export-backbone ... --hub-dir`, then upload_folder):
# '<name>.<tag>': '<owner>/<repo>', e.g. 'cosub_vit_base_patch16_224.cosub_in1k': '<you>/cosub_vit_base_in1k'.
# None were ever published by the paper's authors, so this is empty.
COSUB_WEIGHTS: Dict[str, str] = {}


def timm_name(name: str) -> str:
    """cosub_vit_base_patch16_224 -> deit3_base_patch16_224: the timm architecture with the same weights (timm
    has no DeiT III giant: deit3_giant_patch14_224 names no timm model, and ours gets no published weights)."""
    return 'deit3_' + name.removeprefix('cosub_vit_')


def arch_of(name: str) -> str:
    """cosub_vit_base_patch16_224 -> vit_b (our architecture name)."""
    return SIZES[name.removeprefix('cosub_vit_').split('_')[0]]


def _cfg(name: str) -> Dict[str, dict]:
    """Pretrained configs of `name`: DeiT III's own from timm, one per published tag, pointing at its Hub repo.

    A size without published weights (medium at 384, giant) gets DeiT III's preprocessing for its resolution
    (timm's deit.py `_cfg`, with crop_pct 1.0 at 384 as all of DeiT III's 384 configs) and no weights.
    """
    deit3 = timm_name(name)
    cfgs = {}
    for tag in TAGS:
        if f'{deit3}.{tag}' in timm.list_pretrained(f'{deit3}.{tag}'):
            cfg = timm.models.get_pretrained_cfg(f'{deit3}.{tag}').to_dict()
            cfg['hf_hub_id'] = f'timm/{deit3}.{tag}'  # timm's repo for that tag (timm expands 'timm/' so)
            cfg['architecture'], cfg['tag'] = name, tag
            cfg['fixed_input_size'] = False  # unlike timm's deit3 ViTs, ours resizes pos_embed to any input grid
            cfgs[f'{name}.{tag}'] = cfg
    for key, repo in COSUB_WEIGHTS.items():  # preprocessing as DeiT III at that size (the export writes it too)
        if key.split('.')[0] == name and cfgs:
            cfgs[key] = dict(next(iter(cfgs.values())), hf_hub_id=repo, url='', tag=key.split('.', 1)[1])
    if not cfgs:
        res = int(name.rsplit('_', 1)[1])
        reference = timm.models.get_pretrained_cfg('deit3_small_patch16_384' if res == 384 else 'deit3_small_patch16_224')
        cfgs[name] = dict(url='', hf_hub_id=None, num_classes=1000, input_size=(3, res, res), pool_size=None,
                          crop_pct=reference.crop_pct, interpolation=reference.interpolation, fixed_input_size=False,
                          mean=reference.mean, std=reference.std, first_conv='patch_embed.proj', classifier='head',
                          license='apache-2.0')
    return cfgs


default_cfgs = generate_default_cfgs({key: cfg for name in NAMES for key, cfg in _cfg(name).items()})


def _filter(state_dict: dict, model: VisionTransformer) -> dict:
    # Our loader's conversion: official DeiT III names, wrapper prefixes, pos_embed resized to the model's grid.
    return convert_state_dict(state_dict, model)


def _create(name: str, pretrained: bool = False, **kwargs) -> VisionTransformer:
    """Build our ViT through timm's builder (pretrained_cfg, weights, features_only) and set its stochastic depth.

    drop_path_rate / drop_path_mode ('esd' | 'mask' | 'none') / drop_path_schedule ('uniform' | 'linear') as in
    `backbones.create_model`; other keyword arguments go to `backbones.vit.VisionTransformer`.
    """
    rate = kwargs.pop('drop_path_rate', 0.0)
    mode = kwargs.pop('drop_path_mode', 'esd')
    schedule = kwargs.pop('drop_path_schedule', 'uniform')
    # features_only=True: the last 3 blocks by default, as timm's ViTs (timm's builder would take blocks 0-4)
    out_indices = kwargs.pop('out_indices', 3)
    # the resolution in the name is the model's (pos_embed grid), as timm's deit3_*_384 entry points set img_size
    args = dict(vit_shape(arch_of(name)), img_size=int(name.rsplit('_', 1)[1]))
    model = build_model_with_cfg(VisionTransformer, name, pretrained, pretrained_filter_fn=_filter,
                                 feature_cfg=dict(feature_cls='getter', out_indices=out_indices),
                                 **dict(args, **kwargs))
    set_stochastic_depth(model, rate, mode, schedule)
    model.model_name = arch_of(name)
    return model


def _register(name: str) -> None:
    def entrypoint(pretrained: bool = False, **kwargs) -> VisionTransformer:
        return _create(name, pretrained, **kwargs)

    entrypoint.__name__ = entrypoint.__qualname__ = name
    entrypoint.__module__ = __name__  # timm finds default_cfgs in the entry point's module
    entrypoint.__doc__ = f'Our {arch_of(name)} (efficient stochastic depth) with the weights and preprocessing of ' \
                         f'timm\'s {timm_name(name)} where timm publishes them.'
    globals()[name] = register_model(entrypoint)


for _name in NAMES:
    _register(_name)
