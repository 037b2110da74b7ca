"""MMEngine backbones for dense prediction (MMSegmentation and other OpenMMLab 2.x projects).

    backbone=dict(type='backbones.CosubViT', arch='vit_b', drop_path_rate=0.1,
                  init_cfg=dict(type='Pretrained', checkpoint='cosub_vit_b.pth'))

Both return a tuple of 4 feature maps (B, C, H, W). `CosubViT` is our DeiT III ViT: maps after 4 blocks, all at
stride 16 (MMSeg's `Feature2Pyramid` neck makes them strides 4/8/16/32). `TimmBackbone` is any timm model with
`forward_intermediates` (residual blocks adapted to efficient stochastic depth). Pretrained weights come from
`backbones.load_checkpoint`, so our checkpoints (classifier or backbone-only), official DeiT III and timm files and
.safetensors all load; `get_layer_id(name)` / `num_layers` give the layer-wise LR decay ids.

This module imports mmengine and our backbones only, never mmseg.
"""
from __future__ import annotations

import copy
import logging
from typing import Dict, Optional, Sequence, Tuple

import timm
import torch.nn.functional as F
from mmengine.logging import print_log
from mmengine.model import BaseModule
from torch import Tensor, nn

from .checkpoint import CheckpointError, LoadReport, load_checkpoint
from .esd import set_stochastic_depth
from .factory import create_model
from .optim import param_layer_ids
from .registry import MODELS
from .vit import VIT_ARCHS, VisionTransformer, vit_shape


def default_out_indices(depth: int) -> Tuple[int, ...]:
    """Blocks whose outputs feed the pyramid: (3, 5, 7, 11) for 12 blocks, (7, 11, 15, 23) for 24 (XCiT, BEiT,
    DeiT III); the same thirds/half rule for other depths, or evenly spaced blocks where that rule repeats one."""
    if depth < 4:
        raise ValueError(f'depth={depth}: a 4-level pyramid needs at least 4 blocks; give out_indices explicitly')
    indices = (depth // 3 - 1, depth // 2 - 1, 2 * depth // 3 - 1, depth - 1)
    if len(set(indices)) < 4 or indices[0] < 0:
        indices = tuple(round((k + 1) * depth / 4) - 1 for k in range(4))
    return indices


def _init_cfg(owner: str, pretrained: Optional[str], init_cfg) -> Optional[dict]:
    if pretrained is not None:  # MMSeg's EncoderDecoder passes `model.pretrained` this way
        if init_cfg is not None:
            raise ValueError(f'{owner}: give either pretrained={pretrained!r} or init_cfg, not both')
        return dict(type='Pretrained', checkpoint=pretrained)
    return copy.deepcopy(init_cfg)


def _load_pretrained(owner: str, model: nn.Module, init_cfg: dict) -> LoadReport:
    """init_cfg=dict(type='Pretrained', checkpoint=PATH[, allow_pickle=False]) through our loader.

    Refuses a checkpoint that loads nothing or has other shapes (another architecture): MMEngine's own
    `Pretrained` init would silently load nothing from a file that keeps its weights under 'model'.
    """
    path = init_cfg.get('checkpoint')
    if not path:
        raise ValueError(f"{owner}: init_cfg=dict(type='Pretrained') needs checkpoint=PATH "
                         "(--cfg-options model.backbone.init_cfg.checkpoint=PATH)")
    try:
        report = load_checkpoint(model, path, allow_pickle=bool(init_cfg.get('allow_pickle', False)))
    except CheckpointError as e:
        raise CheckpointError(f'{owner} init_cfg.checkpoint: {e}. Set another file with --cfg-options '
                              'model.backbone.init_cfg.checkpoint=PATH, or init_cfg=None for random weights') from None
    n_loaded = len(model.state_dict()) - len(report.missing)
    if report.mismatched or n_loaded == 0:
        raise CheckpointError(f'{owner}: {path} does not fit the backbone (another architecture?): {report}')
    print_log(f'{owner}: {report}', logger='current', level=logging.WARNING if report.missing else logging.INFO)
    return report


@MODELS.register_module()
class CosubViT(VisionTransformer, BaseModule):
    """Our DeiT III ViT as an MMEngine backbone: parameter names stay timm-style (`blocks.<i>....`).

    arch: one of backbones.vit.VIT_ARCHS ('vit_t' ... 'vit_g'); other keyword arguments go to the ViT.
    out_indices: 0-based blocks whose outputs are returned (default `default_out_indices(depth)`).
    drop_path_mode: 'esd', 'mask' or 'none' (see backbones.esd). With 2 images per GPU, ESD can only drop 0 or
    1 of them, so segmentation configs use 'mask' for exact rates.
    pyramid: False returns the 4 maps at the patch stride, for MMSeg's `Feature2Pyramid` neck (our configs);
    True turns them into a stride 4/8/16/32 pyramid in the backbone (DeiT III / XCiT's fpn1-4: 2 deconvolutions
    with BatchNorm + GELU between, 1 deconvolution, identity, max-pool), for decode heads used without a neck.
    """

    def __init__(self, arch: str = 'vit_b', img_size: int | Tuple[int, int] = 512,
                 out_indices: Optional[Sequence[int]] = None, drop_path_rate: float = 0.0,
                 drop_path_mode: str = 'esd', drop_path_schedule: str = 'uniform', pyramid: bool = False,
                 pretrained: Optional[str] = None, init_cfg: Optional[dict] = None, **kwargs):
        if arch not in VIT_ARCHS:
            raise ValueError(f'CosubViT: arch={arch!r}: expected one of {sorted(VIT_ARCHS)} '
                             "(timm models: type='backbones.TimmBackbone')")
        args = dict(vit_shape(arch), **kwargs)
        VisionTransformer.__init__(self, img_size=img_size, num_classes=0, **args)  # also runs BaseModule.__init__
        depth = self.depth
        out_indices = tuple(default_out_indices(depth) if out_indices is None else out_indices)
        if not out_indices or list(out_indices) != sorted(set(out_indices)) or not 0 <= out_indices[0] \
                or out_indices[-1] >= depth:
            raise ValueError(f'CosubViT: out_indices={out_indices}: expected increasing block indices in '
                             f'[0, {depth - 1}] for {arch}')
        # Blocks after the last output would get no gradient (DDP errors); features are taken before the final
        # norm (as BEiT / XCiT / DeiT III UperNet), so it goes too: no parameter is left unused.
        self.prune_intermediate_layers(list(out_indices), prune_norm=True, prune_head=True)
        self.out_indices = out_indices
        d = self.embed_dim
        self.fpn = nn.ModuleList([
            nn.Sequential(nn.ConvTranspose2d(d, d, 2, 2), nn.BatchNorm2d(d), nn.GELU(), nn.ConvTranspose2d(d, d, 2, 2)),
            nn.ConvTranspose2d(d, d, 2, 2), nn.Identity(), nn.MaxPool2d(2)]) if pyramid else None
        set_stochastic_depth(self, drop_path_rate, drop_path_mode, drop_path_schedule)
        self.model_name = arch
        self.init_cfg = _init_cfg('CosubViT', pretrained, init_cfg)

    def init_weights(self) -> None:
        if isinstance(self.init_cfg, dict) and self.init_cfg.get('type') == 'Pretrained':
            _load_pretrained('CosubViT', self, self.init_cfg)
            self._is_init = True
        else:
            super().init_weights()

    def forward(self, x: Tensor) -> Tuple[Tensor, ...]:
        # Pad bottom/right to whole patches, as MMSeg's own ViT does, so that any image size works. (Our configs
        # also pad at test time in the data preprocessor, which crops the padding off the prediction.)
        (ph, pw), (h, w) = self.patch_size, x.shape[-2:]
        if h % ph or w % pw:
            x = F.pad(x, (0, -w % pw, 0, -h % ph))
        features = self.forward_intermediates(x, list(self.out_indices), norm=False, intermediates_only=True)
        if self.fpn is not None:
            features = [level(f) for level, f in zip(self.fpn, features)]
        return tuple(features)

    def get_layer_id(self, name: str) -> int:
        """Layer id of a parameter (name relative to the backbone or the segmentor): 0 embeddings, i + 1 block i."""
        return self.layer_id(name.removeprefix('backbone.'))


@MODELS.register_module()
class TimmBackbone(BaseModule):
    """Any timm model with `forward_intermediates` (ConvNeXt, Swin, ResNet, ViT, XCiT, CaiT, ...), built by
    `backbones.create_model` so its residual blocks use efficient stochastic depth.

    out_indices: stages of a hierarchical model (default all 4) or blocks of a plain one (default as CosubViT);
    plain models give stride-16 maps, so pair them with a Feature2Pyramid neck. Parameter names are timm's,
    under `model.`; the head and the final norm are removed.
    """

    def __init__(self, model_name: str, out_indices: Optional[Sequence[int]] = None,
                 img_size: Optional[int] = None, drop_path_rate: float = 0.0, drop_path_mode: str = 'esd',
                 drop_path_schedule: str = 'uniform', pretrained: Optional[str] = None,
                 init_cfg: Optional[dict] = None, **kwargs):
        super().__init__(init_cfg=_init_cfg('TimmBackbone', pretrained, init_cfg))
        model = create_model(model_name, num_classes=0, img_size=img_size, drop_path_rate=drop_path_rate,
                             drop_path_mode=drop_path_mode, drop_path_schedule=drop_path_schedule, **kwargs)
        if not hasattr(model, 'forward_intermediates'):
            raise ValueError(f'TimmBackbone: model_name={model_name!r} has no forward_intermediates in timm '
                             f'{timm.__version__}; expected a timm model that has it')
        n = len(getattr(model, 'feature_info', [])) or 4
        out_indices = tuple((0, 1, 2, 3) if n == 4 else default_out_indices(n)) if out_indices is None \
            else tuple(out_indices)
        if not out_indices or any(not -n <= i < n for i in out_indices):
            raise ValueError(f'TimmBackbone: out_indices={out_indices}: expected indices in [0, {n - 1}] '
                             f'for {model_name} ({n} feature levels)')
        ids = param_layer_ids(model)  # timm's group ordinals, taken before pruning changes the groups
        model.prune_intermediate_layers(list(out_indices), prune_norm=True, prune_head=True)
        self._layer_ids: Dict[str, int] = {name: ids[name] for name, _ in model.named_parameters()}
        # The last kept block has the highest id; neck and heads get the next one (LD^0), as for CosubViT.
        self.num_layers = max(self._layer_ids.values(), default=0) + 2
        self.model = model
        self.out_indices = out_indices
        self.model_name = model_name

    def init_weights(self) -> None:
        if isinstance(self.init_cfg, dict) and self.init_cfg.get('type') == 'Pretrained':
            _load_pretrained(f'TimmBackbone({self.model_name})', self.model, self.init_cfg)
            self._is_init = True
        else:
            super().init_weights()

    def forward(self, x: Tensor) -> Tuple[Tensor, ...]:
        return tuple(self.model.forward_intermediates(x, indices=list(self.out_indices), intermediates_only=True))

    def get_layer_id(self, name: str) -> int:
        name = name.removeprefix('backbone.').removeprefix('model.')
        return self._layer_ids.get(name, self.num_layers - 1)

    def no_weight_decay(self) -> set:
        fn = getattr(self.model, 'no_weight_decay', None)
        return {f'model.{n}' for n in fn()} if callable(fn) else set()
