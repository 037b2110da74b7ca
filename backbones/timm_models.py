"""Efficient stochastic depth for timm architectures, by changing the class of their blocks in place.

`adapt_timm_model(model)` gives every supported timm block a subclass of its own class whose `forward` is timm's,
except that each residual branch is written `self.residual(shortcut, branch, *inputs)` (`backbones.esd`), or, for
branches one after the other that each read the tensor they add to, `self.residuals(x, *branches)` (one autograd
function per branch in eager ESD), the kept samples of all of a block's branches drawn at once (`draw_kept`).
Nothing is copied: parameters, buffers, submodules and state-dict keys stay as they are, and in eval mode or in
mode 'none' the output is exactly timm's. What is a branch follows timm's own `DropPath` placement: whatever
DropPath would zero for a dropped sample is computed on the kept samples only; everything else (projection
shortcuts, pre-residual norms) runs on all samples. timm's DropPath modules are bypassed: each block's rate
and mode are its `drop_path_rate` / `drop_path_mode`, set by `backbones.set_stochastic_depth` (which
`create_model` calls).

Supported, the architectures of the cosub paper: ResNet, RegNet, ConvNeXt, Swin, ViT / DeiT / DeiT III / PiT
(all on timm's `vision_transformer.Block`), XCiT and CaiT.
"""
from __future__ import annotations

from functools import partial
from typing import Dict, Optional

import torch
from timm.layers import DropPath
from timm.models import cait, convnext, regnet, resnet, swin_transformer, vision_transformer, xcit
from torch import Tensor, nn

from .esd import StochasticDepthBlock, check_rate


class _TimmAdapter(StochasticDepthBlock):
    @staticmethod
    def has_residual(block: nn.Module) -> bool:
        return True


# -- convolutional networks ---------------------------------------------------------------------------------------
class ESDBasicBlock(_TimmAdapter, resnet.BasicBlock):
    def _branch(self, x: Tensor) -> Tensor:
        x = self.aa(self.act1(self.drop_block(self.bn1(self.conv1(x)))))
        x = self.bn2(self.conv2(x))
        return x if self.se is None else self.se(x)

    def forward(self, x: Tensor) -> Tensor:
        shortcut = x if self.downsample is None else self.downsample(x)
        return self.act2(self.residual(shortcut, self._branch, x))  # post-activation: after the add


class ESDBottleneck(_TimmAdapter, resnet.Bottleneck):
    def _branch(self, x: Tensor) -> Tensor:
        x = self.act1(self.bn1(self.conv1(x)))
        x = self.aa(self.act2(self.drop_block(self.bn2(self.conv2(x)))))
        x = self.bn3(self.conv3(x))
        return x if self.se is None else self.se(x)

    def forward(self, x: Tensor) -> Tensor:
        shortcut = x if self.downsample is None else self.downsample(x)
        return self.act3(self.residual(shortcut, self._branch, x))


class ESDRegNetBottleneck(_TimmAdapter, regnet.Bottleneck):
    @staticmethod
    def has_residual(block: nn.Module) -> bool:
        return block.downsample is not None  # timm's RegNet: downsample None means no shortcut at all

    def _branch(self, x: Tensor) -> Tensor:
        return self.conv3(self.se(self.conv2(self.conv1(x))))

    def forward(self, x: Tensor) -> Tensor:
        return self.act3(self.residual(self.downsample(x), self._branch, x))


class ESDRegNetPreBottleneck(_TimmAdapter, regnet.PreBottleneck):
    has_residual = staticmethod(ESDRegNetBottleneck.has_residual)

    def _branch(self, x: Tensor) -> Tensor:
        return self.conv3(self.norm3(self.se(self.conv2(self.norm2(self.conv1(x))))))

    def forward(self, x: Tensor) -> Tensor:
        x = self.norm1(x)  # pre-activation feeds both the shortcut and the branch
        return self.residual(self.downsample(x), self._branch, x)


class ESDConvNeXtBlock(_TimmAdapter, convnext.ConvNeXtBlock):
    def _branch(self, x: Tensor) -> Tensor:
        x = self.conv_dw(x)
        if self.use_conv_mlp:
            x = self.mlp(self.norm(x))
        else:
            x = self.mlp(self.norm(x.permute(0, 2, 3, 1))).permute(0, 3, 1, 2)
        return x if self.gamma is None else x.mul(self.gamma.reshape(1, -1, 1, 1))

    def forward(self, x: Tensor) -> Tensor:
        return self.residual(self.shortcut(x), self._branch, x)


# -- transformers -------------------------------------------------------------------------------------------------
class ESDSwinTransformerBlock(_TimmAdapter, swin_transformer.SwinTransformerBlock):
    def forward(self, x: Tensor) -> Tensor:
        B, H, W, C = x.shape  # window attention on (B, H, W, C), the MLP on (B, HW, C), as timm
        attn_kept, mlp_kept = self.draw_kept(x, 2)
        x = self.residual(x, lambda t: self._attn(self.norm1(t)), kept=attn_kept)
        x = self.residual(x.reshape(B, -1, C), lambda t: self.mlp(self.norm2(t)), kept=mlp_kept)
        return x.reshape(B, H, W, C)


class ESDViTBlock(_TimmAdapter, vision_transformer.Block):
    def _attn_branch(self, x: Tensor, attn_mask: Optional[Tensor] = None, is_causal: bool = False) -> Tensor:
        return self.ls1(self.attn(self.norm1(x), attn_mask=attn_mask, is_causal=is_causal))

    def _mlp_branch(self, x: Tensor) -> Tensor:
        return self.ls2(self.mlp(self.norm2(x)))

    def forward(self, x: Tensor, attn_mask: Optional[Tensor] = None, is_causal: bool = False) -> Tensor:
        if attn_mask is not None and attn_mask.ndim == 4 and attn_mask.shape[0] == x.shape[0] > 1:
            # a per-sample (B, heads, N, N) mask goes with its samples into the kept subset
            attn_kept, mlp_kept = self.draw_kept(x, 2)
            x = self.residual(x, partial(self._attn_branch, is_causal=is_causal), x, attn_mask, kept=attn_kept)
            return self.residual(x, self._mlp_branch, kept=mlp_kept)
        return self.residuals(x, partial(self._attn_branch, attn_mask=attn_mask, is_causal=is_causal),
                              self._mlp_branch)


class ESDXCABlock(_TimmAdapter, xcit.XCABlock):
    def forward(self, x: Tensor, H: int, W: int) -> Tensor:
        return self.residuals(x, lambda t: self.gamma1 * self.attn(self.norm1(t)),
                              lambda t: self.gamma3 * self.local_mp(self.norm3(t), H, W),  # 3 before 2, as timm
                              lambda t: self.gamma2 * self.mlp(self.norm2(t)))


class ESDXCiTClassAttentionBlock(_TimmAdapter, xcit.ClassAttentionBlock):
    """timm (as the official XCiT) adds to the patch tokens too: the first branch adds gamma1 * norm1(patches),
    the second adds the normed patches to themselves. DropPath drops each branch whole, so the patch parts are
    part of the branch and only kept samples get them; norm2, applied before the second residual, is trunk."""
    scheduled = False  # never dropped by a model-wide rate, as in timm and the official XCiT

    def _attn_branch(self, x: Tensor) -> Tensor:
        x_norm1 = self.norm1(x)
        return self.gamma1 * torch.cat([self.attn(x_norm1), x_norm1[:, 1:]], dim=1)

    def _mlp_branch(self, x: Tensor) -> Tensor:
        return torch.cat([self.gamma2 * self.mlp(x[:, 0:1]), x[:, 1:]], dim=1)

    def forward(self, x: Tensor) -> Tensor:
        attn_kept, mlp_kept = self.draw_kept(x, 2)
        x = self.residual(x, self._attn_branch, kept=attn_kept)
        if self.tokens_norm:
            x = self.norm2(x)
        else:
            x = torch.cat([self.norm2(x[:, 0:1]), x[:, 1:]], dim=1)
        return self.residual(x, self._mlp_branch, kept=mlp_kept)


class ESDLayerScaleBlock(_TimmAdapter, cait.LayerScaleBlock):
    def forward(self, x: Tensor) -> Tensor:
        return self.residuals(x, lambda t: self.gamma_1 * self.attn(self.norm1(t)),
                              lambda t: self.gamma_2 * self.mlp(self.norm2(t)))


class ESDLayerScaleBlockClassAttn(_TimmAdapter, cait.LayerScaleBlockClassAttn):
    scheduled = False  # never dropped by a model-wide rate, as in timm and the official CaiT
    def _attn_branch(self, x_cls: Tensor, x: Tensor) -> Tensor:
        return self.gamma_1 * self.attn(self.norm1(torch.cat((x_cls, x), dim=1)))

    def forward(self, x: Tensor, x_cls: Tensor) -> Tensor:
        # the residual is the class token; the attention reads [class token, patches] of the same kept samples
        attn_kept, mlp_kept = self.draw_kept(x_cls, 2)
        x_cls = self.residual(x_cls, self._attn_branch, x_cls, x, kept=attn_kept)
        return self.residual(x_cls, lambda t: self.gamma_2 * self.mlp(self.norm2(t)), kept=mlp_kept)


# Exact timm class -> adapter. Matched by exact type, so that a timm subclass with another forward is never
# silently given this one.
TIMM_ADAPTERS: Dict[type, type] = {
    resnet.BasicBlock: ESDBasicBlock,
    resnet.Bottleneck: ESDBottleneck,
    regnet.Bottleneck: ESDRegNetBottleneck,
    regnet.PreBottleneck: ESDRegNetPreBottleneck,
    convnext.ConvNeXtBlock: ESDConvNeXtBlock,
    swin_transformer.SwinTransformerBlock: ESDSwinTransformerBlock,
    vision_transformer.Block: ESDViTBlock,
    xcit.XCABlock: ESDXCABlock,
    xcit.ClassAttentionBlock: ESDXCiTClassAttentionBlock,
    cait.LayerScaleBlock: ESDLayerScaleBlock,
    cait.LayerScaleBlockClassAttn: ESDLayerScaleBlockClassAttn,
}


def adapt_timm_model(model: nn.Module) -> int:
    """Route the residual branches of `model`'s supported timm blocks through `drop_add_residual`, in place.

    A block built with a timm drop-path rate keeps it as its `drop_path_rate` (mode 'esd' by default), so
    `timm.create_model(name, drop_path_rate=r)` then `adapt_timm_model` trains with timm's per-block rates.
    Returns the number of blocks adapted by this call (blocks adapted before are left as they are); raises
    ValueError if the model has no supported block.
    """
    model_name = type(model).__name__
    adapted = already = 0
    for block in model.modules():
        if isinstance(block, _TimmAdapter):
            already += 1
            continue
        adapter = TIMM_ADAPTERS.get(type(block))
        if adapter is None or not adapter.has_residual(block):
            continue
        timm_rates = [m.drop_prob for m in block.modules() if isinstance(m, DropPath)]
        block.__class__ = adapter
        if timm_rates:  # the block's branches share one rate in every supported architecture
            block.drop_path_rate = check_rate(max(timm_rates))
        adapted += 1
    if not adapted and not already:
        names = ', '.join(f'{c.__module__.rsplit(".", 1)[-1]}.{c.__name__}' for c in TIMM_ADAPTERS)
        raise ValueError(f'{model_name}: no residual block that efficient stochastic depth supports '
                         f'(supported timm blocks: {names})')
    return adapted
