"""Vision backbones with efficient stochastic depth: DeiT III ViTs and timm architectures.

    from backbones import create_model, load_checkpoint
    model = create_model('vit_l', drop_path_rate=0.45)          # ESD by default
    load_checkpoint(model, 'deit_3_large_224_1k.pth')            # ours, official DeiT III or timm files
"""
from .checkpoint import CheckpointError, LoadReport, load_checkpoint, load_file, save_file
from .esd import (drop_add_residual, effective_drop_rate, esd_report, keep_count, set_grad_checkpointing,
                  set_stochastic_depth, stochastic_depth_blocks, StochasticDepthBlock)
from .factory import create_model, is_model, list_models, register_model
from . import vit  # noqa: F401  (registers vit_t ... vit_g)
from . import timm_registry  # noqa: F401  (registers cosub_vit_* in timm: timm.create_model('cosub_vit_base_patch16_224'))
from .optim import layer_decay_param_groups, param_layer_ids

__all__ = [
    'create_model', 'list_models', 'is_model', 'register_model', 'load_checkpoint', 'load_file', 'save_file',
    'CheckpointError', 'LoadReport', 'drop_add_residual', 'effective_drop_rate', 'keep_count', 'esd_report',
    'set_stochastic_depth', 'set_grad_checkpointing', 'stochastic_depth_blocks', 'StochasticDepthBlock', 'layer_decay_param_groups',
    'param_layer_ids',
]
