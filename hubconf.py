"""torch.hub entry points: our DeiT III ViTs with efficient stochastic depth, by their timm names.

    model = torch.hub.load('<owner>/cosub', 'cosub_vit_base_patch16_224', drop_path_rate=0.1)
    model = torch.hub.load('path/to/cosub', 'cosub_vit_base_patch16_224', source='local')
    model = torch.hub.load('path/to/cosub', 'cosub_vit_base_patch16_224', source='local', pretrained=True,
                           pretrained_tag='fb_in1k')   # DeiT III's published weights, through timm's Hub repos

Keyword arguments are `timm.create_model`'s (drop_path_rate, drop_path_mode, num_classes, img_size, ...).
"""
import timm

import backbones  # noqa: F401  (registers the cosub_vit_* models in timm)
from backbones.timm_registry import NAMES

dependencies = ['torch', 'timm']


def _entrypoint(name: str):
    def load(pretrained: bool = False, pretrained_tag: str = '', **kwargs):
        return timm.create_model(f'{name}.{pretrained_tag}' if pretrained_tag else name, pretrained=pretrained,
                                 **kwargs)

    load.__name__ = name
    load.__doc__ = f'{name}: our {backbones.timm_registry.arch_of(name)} (timm.create_model({name!r}, ...)).'
    return load


for _name in NAMES:
    globals()[_name] = _entrypoint(_name)
