"""DeiT III Vision Transformers (ViT-T/S/M/B/L/H, and ViT-g), with efficient stochastic depth in every block.

Structure as in DeiT III: LayerScale on both branches, a position embedding without a class-token slot (added
to the patches before the class token is prepended), qkv bias, LayerNorm eps 1e-6, fused attention. Parameter
names follow timm's `deit3_*` models, so their state dicts load as they are; the official DeiT III names
(`gamma_1`/`gamma_2`) are mapped by `backbones.checkpoint`. Any input size works: the position embedding is
interpolated to the patch grid of the input (fine-tuning at another resolution, segmentation crops).
"""
from __future__ import annotations

from functools import partial
from typing import List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from timm.layers import LayerScale, Mlp, PatchEmbed, resample_abs_pos_embed, trunc_normal_
from timm.layers import register_notrace_function
from timm.models._features import feature_take_indices
from torch import Tensor, nn

from .esd import StochasticDepthBlock, draw_block_kept, set_grad_checkpointing
from .factory import register_model

LayerNorm = partial(nn.LayerNorm, eps=1e-6)
# timm's pooling names: class token, mean of the patch tokens, '' none (all tokens, timm's num_classes=0, global_pool='')
GLOBAL_POOLS = ('token', 'avg', '')


def _check_pool(global_pool: str) -> str:
    if global_pool not in GLOBAL_POOLS:
        raise ValueError(f"global_pool={global_pool!r}: expected 'token', 'avg' or '' (no pooling)")
    return global_pool


class Attention(nn.Module):
    def __init__(self, dim: int, num_heads: int, qkv_bias: bool = True):
        super().__init__()
        if dim % num_heads:
            raise ValueError(f'embed_dim={dim} is not divisible by num_heads={num_heads}')
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: Tensor) -> Tensor:
        B, N, C = x.shape
        q, k, v = self.qkv(x).reshape(B, N, 3, self.num_heads, C // self.num_heads).permute(2, 0, 3, 1, 4).unbind(0)
        x = F.scaled_dot_product_attention(q, k, v)
        return self.proj(x.transpose(1, 2).reshape(B, N, C))


class Block(StochasticDepthBlock):
    """Pre-norm transformer block; each of its two residual branches has its own stochastic depth draw."""
    branches = 2

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float = 4.0, qkv_bias: bool = True,
                 init_values: Optional[float] = 1e-4):
        super().__init__()
        self.norm1 = LayerNorm(dim)
        self.attn = Attention(dim, num_heads, qkv_bias)
        self.ls1 = LayerScale(dim, init_values) if init_values else nn.Identity()
        self.norm2 = LayerNorm(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))
        self.ls2 = LayerScale(dim, init_values) if init_values else nn.Identity()

    def attn_branch(self, x: Tensor) -> Tensor:
        return self.ls1(self.attn(self.norm1(x)))

    def mlp_branch(self, x: Tensor) -> Tensor:
        return self.ls2(self.mlp(self.norm2(x)))

    def forward(self, x: Tensor, kept: Optional[Sequence[Optional[Tensor]]] = None) -> Tensor:
        # both branches' ESD subsets (None: all samples), from the model's draw for all blocks or drawn here
        return self.residuals(x, self.attn_branch, self.mlp_branch, kept=kept)


class VisionTransformer(nn.Module):
    def __init__(self, img_size: int | Tuple[int, int] = 224, patch_size: int = 16, in_chans: int = 3,
                 num_classes: int = 1000, embed_dim: int = 768, depth: int = 12, num_heads: int = 12,
                 mlp_ratio: float = 4.0, qkv_bias: bool = True, init_values: Optional[float] = 1e-4,
                 global_pool: str = 'token'):
        super().__init__()
        self.num_classes, self.embed_dim, self.depth = num_classes, embed_dim, depth
        self.global_pool = _check_pool(global_pool)
        # timm's names: width of forward_features' tokens, and of forward_head(pre_logits=True) (no pre-logits layer)
        self.num_features = self.head_hidden_size = embed_dim
        self.grad_checkpointing = False  # timm's attribute; the blocks checkpoint themselves (set_grad_checkpointing)
        self.patch_embed = PatchEmbed(img_size, patch_size, in_chans, embed_dim, output_fmt='NHWC',
                                      strict_img_size=False)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, self.patch_embed.num_patches, embed_dim))
        self.blocks = nn.ModuleList(Block(embed_dim, num_heads, mlp_ratio, qkv_bias, init_values) for _ in range(depth))
        self.norm = LayerNorm(embed_dim)
        self.head = nn.Linear(embed_dim, num_classes) if num_classes > 0 else nn.Identity()
        # timm's feature metadata (features_only=True, FeatureGetterNet): every block, at the patch stride
        self.feature_info = [dict(module=f'blocks.{i}', num_chs=embed_dim, reduction=self.patch_embed.patch_size[0])
                             for i in range(depth)]
        trunc_normal_(self.pos_embed, std=0.02)
        trunc_normal_(self.cls_token, std=0.02)
        self.apply(_init_weights)

    # -- embedding -------------------------------------------------------------------------------------------
    @property
    def patch_size(self) -> Tuple[int, int]:
        return self.patch_embed.patch_size

    def _pos_embed(self, x: Tensor) -> Tensor:
        return add_pos_embed(x, self.pos_embed, self.cls_token, self.patch_embed.grid_size)

    # -- forward ---------------------------------------------------------------------------------------------
    def forward_features(self, x: Tensor) -> Tensor:
        x = self._pos_embed(self.patch_embed(x))
        # every block's ESD indices drawn here, before the blocks: under activation checkpointing they are inputs
        # of each block's checkpointed call, so its recomputation uses them as they are
        for block, kept in zip(self.blocks, draw_block_kept(self.blocks, x)):
            x = block(x, kept)
        return self.norm(x)

    def forward_head(self, x: Tensor, pre_logits: bool = False) -> Tensor:
        if self.global_pool == 'avg':
            x = x[:, 1:].mean(dim=1)
        elif self.global_pool == 'token':
            x = x[:, 0]
        return x if pre_logits else self.head(x)  # '': every token, classified one by one as timm's ViTs

    def forward(self, x: Tensor) -> Tensor:
        return self.forward_head(self.forward_features(x))

    # -- dense features (timm's interface: timm.models.vision_transformer.VisionTransformer) ---------------------
    def forward_intermediates(self, x: Tensor, indices: Optional[int | List[int]] = None, norm: bool = False,
                              stop_early: bool = False, output_fmt: str = 'NCHW', intermediates_only: bool = False
                              ) -> List[Tensor] | Tuple[Tensor, List[Tensor]]:
        """Outputs of the blocks `indices` (the last n blocks for an int, all for None), as timm's ViTs.

        Returns the patch tokens of each (class token removed) as (B, C, H, W) maps ('NCHW') or (B, HW, C)
        ('NLC'), after the final norm when `norm`; with `intermediates_only=False`, `(norm(final tokens), maps)`.
        """
        if output_fmt not in ('NCHW', 'NLC'):
            raise ValueError(f"output_fmt={output_fmt!r}: expected 'NCHW' or 'NLC'")
        take_indices, max_index = feature_take_indices(len(self.blocks), indices)
        x = self.patch_embed(x)
        B, H, W, _ = x.shape
        x = self._pos_embed(x)
        intermediates = []
        blocks = self.blocks[:max_index + 1] if stop_early else self.blocks
        for i, (block, kept) in enumerate(zip(blocks, draw_block_kept(blocks, x))):
            x = block(x, kept)
            if i in take_indices:
                intermediates.append((self.norm(x) if norm else x)[:, 1:])
        if output_fmt == 'NCHW':
            intermediates = [y.reshape(B, H, W, -1).permute(0, 3, 1, 2).contiguous() for y in intermediates]
        return intermediates if intermediates_only else (self.norm(x), intermediates)

    def prune_intermediate_layers(self, indices: int | List[int] = 1, prune_norm: bool = False,
                                  prune_head: bool = True) -> List[int]:
        """Remove the blocks after the last of `indices` (and the final norm / head): nothing goes unused."""
        take_indices, max_index = feature_take_indices(len(self.blocks), indices)
        del self.blocks[max_index + 1:]
        self.depth = len(self.blocks)
        if prune_norm:
            self.norm = nn.Identity()
        if prune_head:
            self.reset_classifier(0)
        return take_indices

    # -- training helpers ------------------------------------------------------------------------------------
    def reset_classifier(self, num_classes: int, global_pool: Optional[str] = None) -> None:
        if global_pool is not None:  # timm's signature: None keeps the pooling, '' removes it
            self.global_pool = _check_pool(global_pool)
        self.num_classes = num_classes
        self.head = nn.Linear(self.embed_dim, num_classes) if num_classes > 0 else nn.Identity()
        if num_classes > 0:
            _init_weights(self.head)

    def get_classifier(self) -> nn.Module:
        return self.head

    @torch.jit.ignore
    def set_grad_checkpointing(self, enable: bool = True) -> None:
        """Recompute each block's activations in backward instead of storing them (timm's interface)."""
        self.grad_checkpointing = enable
        set_grad_checkpointing(self, enable)

    @torch.jit.ignore
    def no_weight_decay(self) -> set:
        return {'pos_embed', 'cls_token'}

    def layer_id(self, name: str) -> int:
        """Layer index for layer-wise LR decay: 0 embeddings, i + 1 for block i, depth + 1 final norm and head."""
        name = name.removeprefix('module.')
        if name.startswith(('cls_token', 'pos_embed', 'patch_embed')):
            return 0
        if name.startswith('blocks.'):
            return int(name.split('.')[1]) + 1
        return self.depth + 1

    @property
    def num_layers(self) -> int:
        return self.depth + 2

    @torch.jit.ignore
    def group_matcher(self, coarse: bool = False) -> dict:  # timm's interface (timm.optim layer decay)
        return dict(stem=r'^cls_token|pos_embed|patch_embed',
                    blocks=[(r'^blocks\.(\d+)', None), (r'^norm', (99999,))])


@register_notrace_function  # torch.fx keeps this as one call: the grid test below is not traceable
def add_pos_embed(x: Tensor, pos_embed: Tensor, cls_token: Tensor, grid_size: Sequence[int]) -> Tensor:
    """(B, H, W, C) patches -> (B, 1 + HW, C) tokens, interpolating pos_embed when the grid differs."""
    B, H, W, C = x.shape
    if (H, W) != tuple(grid_size):
        pos_embed = resample_abs_pos_embed(pos_embed, [H, W], list(grid_size), num_prefix_tokens=0)
    x = x.reshape(B, H * W, C) + pos_embed
    return torch.cat([cls_token.expand(B, -1, -1), x], dim=1)


def _init_weights(m: nn.Module) -> None:
    if isinstance(m, nn.Linear):
        trunc_normal_(m.weight, std=0.02)
        if m.bias is not None:
            nn.init.zeros_(m.bias)
    elif isinstance(m, nn.LayerNorm):
        nn.init.ones_(m.weight)
        nn.init.zeros_(m.bias)


# name: (embed_dim, depth, num_heads, patch_size). Widths/depths/heads of DeiT III (vit_t as DeiT-Ti). ViT-g/14
# (cosub Table 9) is Zhai et al.'s "Scaling Vision Transformers" ViT-g/14 (their Table 2: width 1408, depth 40,
# MLP 6144, 16 heads, 1.0B parameters), as timm's vit_giant_patch14_224, in the DeiT III block (LayerScale).
VIT_ARCHS = {
    'vit_t': (192, 12, 3, 16),
    'vit_s': (384, 12, 6, 16),
    'vit_m': (512, 12, 8, 16),
    'vit_b': (768, 12, 12, 16),
    'vit_l': (1024, 24, 16, 16),
    'vit_h': (1280, 32, 16, 14),
    'vit_g': (1408, 40, 16, 14),
}
# MLP width / embed_dim where it is not VisionTransformer's 4: ViT-g's MLP is 6144 = 1408 x 48 / 11 (timm's
# vit_giant_patch14_224 passes mlp_ratio=48 / 11; int(1408 * 48 / 11) is exactly 6144).
MLP_RATIOS = {'vit_g': 48 / 11}


def vit_shape(name: str) -> dict:
    """The constructor arguments that make `name` (one of VIT_ARCHS) what it is: width, depth, heads, patch and,
    where it is not the default 4, the MLP ratio. Every builder of our named ViTs reads its shape here."""
    embed_dim, depth, num_heads, patch_size = VIT_ARCHS[name]
    shape = dict(embed_dim=embed_dim, depth=depth, num_heads=num_heads, patch_size=patch_size)
    if name in MLP_RATIOS:
        shape['mlp_ratio'] = MLP_RATIOS[name]
    return shape


def _make(name: str):
    shape = vit_shape(name)

    def build(**kwargs) -> VisionTransformer:
        return VisionTransformer(**dict(shape, **kwargs))

    build.__name__ = name
    build.__doc__ = (f'DeiT III {name}: {shape["embed_dim"]} wide, {shape["depth"]} deep, {shape["num_heads"]} heads, '
                     f'MLP {int(shape["embed_dim"] * shape.get("mlp_ratio", 4.0))}, patch {shape["patch_size"]}.')
    return register_model(build)


for _name in VIT_ARCHS:
    _make(_name)
