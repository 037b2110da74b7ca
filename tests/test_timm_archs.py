"""timm architectures of the cosub paper through `backbones.create_model`: their blocks are adapted in place
(`backbones.timm_models`), give timm's outputs exactly when nothing is dropped, drop exactly what timm's
DropPath drops, and train with efficient stochastic depth at a lower cost."""
from __future__ import annotations

import copy
import functools

import pytest
import timm
import torch
import torch.nn.functional as F
from timm.layers import DropPath
from timm.models import cait, vision_transformer, xcit
from torch import nn

from backbones import StochasticDepthBlock, create_model, set_stochastic_depth, stochastic_depth_blocks
from backbones.esd import set_grad_checkpointing
from backbones.timm_models import TIMM_ADAPTERS, adapt_timm_model
from benchmarks.common import flop_counter

IMG, BATCH = 64, 8

RESNET_OPTIONS = dict(block_args=dict(attn_layer='se'), aa_layer=nn.AvgPool2d, drop_block_rate=0.2)
# test id: (timm model, constructor kwargs making it small or switching on optional parts, adapters expected)
ARCHS = {
    'resnet18': ('resnet18', {}, {'ESDBasicBlock'}),
    'resnet18-se-aa-dropblock': ('resnet18', RESNET_OPTIONS, {'ESDBasicBlock'}),
    'resnet26-se-aa-dropblock': ('resnet26', RESNET_OPTIONS, {'ESDBottleneck'}),
    'regnety_002': ('regnety_002', {}, {'ESDRegNetBottleneck'}),
    'regnety_002-preact': ('regnety_002', dict(preact=True), {'ESDRegNetPreBottleneck'}),
    'convnext_atto': ('convnext_atto', {}, {'ESDConvNeXtBlock'}),  # 1x1-conv MLP
    'convnext_atto-linear-mlp': ('convnext_atto', dict(conv_mlp=False), {'ESDConvNeXtBlock'}),
    'swin': ('swin_tiny_patch4_window7_224', dict(img_size=IMG, window_size=4, embed_dim=32, depths=(2, 2, 2, 2),
                                                  num_heads=(1, 2, 4, 8)), {'ESDSwinTransformerBlock'}),
    'pit_ti_224': ('pit_ti_224', dict(img_size=IMG), {'ESDViTBlock'}),
    'deit3-layerscale': ('deit3_small_patch16_224', dict(img_size=IMG, depth=2), {'ESDViTBlock'}),
    'xcit_nano_12_p16_224': ('xcit_nano_12_p16_224', dict(img_size=IMG, depth=2),
                             {'ESDXCABlock', 'ESDXCiTClassAttentionBlock'}),
    'cait_xxs24_224': ('cait_xxs24_224', dict(img_size=IMG, depth=2),
                       {'ESDLayerScaleBlock', 'ESDLayerScaleBlockClassAttn'}),
}


pytestmark = pytest.mark.usefixtures('one_thread')


@functools.lru_cache(maxsize=None)
def _build(arch: str) -> tuple:
    name, arch_kwargs, _ = ARCHS[arch]
    torch.manual_seed(0)
    ours = create_model(name, num_classes=10, **arch_kwargs)
    # Zero-initialised last norms (ResNet, RegNet) and tiny LayerScale (ConvNeXt, CaiT) make branches add
    # (almost) nothing at init, which would hide a wrong branch: give every norm, gamma and bias a real value.
    with torch.no_grad():
        for param_name, param in ours.named_parameters():
            if param.ndim == 1:
                param.normal_(0.0, 0.2) if param_name.endswith('bias') else param.uniform_(0.5, 1.5)
    # timm's own DropPath off (some models, e.g. Swin, default to a nonzero rate)
    plain = timm.create_model(name, num_classes=10, drop_path_rate=0.0, **arch_kwargs)
    plain.load_state_dict(ours.state_dict())
    return ours, plain


def build(arch: str, drop_path_rate: float = 0.0) -> tuple:
    """Our adapted model (ESD at `drop_path_rate`) and a plain timm model holding the same weights (copies)."""
    ours, plain = (copy.deepcopy(m) for m in _build(arch))
    set_stochastic_depth(ours, drop_path_rate, 'esd')
    return ours, plain


def images(seed: int = 0) -> torch.Tensor:
    return torch.randn(BATCH, 3, IMG, IMG, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize('arch', ARCHS)
def test_blocks_adapted_in_place(arch):
    name, arch_kwargs, expected = ARCHS[arch]
    ours = create_model(name, num_classes=10, **arch_kwargs)
    plain = timm.create_model(name, num_classes=10, **arch_kwargs)
    assert {type(m).__name__ for m in ours.modules() if isinstance(m, StochasticDepthBlock)} == expected
    assert not any(type(m) in TIMM_ADAPTERS for m in ours.modules())  # none left behind
    assert list(ours.state_dict()) == list(plain.state_dict())
    assert adapt_timm_model(ours) == 0  # adapting again changes nothing


@pytest.mark.parametrize('arch', ARCHS)
def test_same_output_as_timm_when_nothing_is_dropped(arch):
    ours, plain = build(arch, drop_path_rate=0.5)
    x = images()
    with torch.no_grad():
        assert torch.equal(ours.eval()(x), plain.eval()(x))
        # training mode (batch statistics; DropBlock draws from the same random stream) with mode 'none'
        set_stochastic_depth(ours, mode='none')
        torch.manual_seed(1)
        expected = plain.train()(x)
        torch.manual_seed(1)
        assert torch.equal(ours.train()(x), expected)


@pytest.mark.parametrize('arch', ARCHS)
def test_mask_mode_drops_exactly_what_timm_drop_path_drops(arch):
    """With the same per-block rates and random stream, masking through our adapters reproduces a timm model
    built with drop_path_rate bit for bit: each of our branches is exactly what timm's DropPath scales."""
    name, arch_kwargs, _ = ARCHS[arch]
    timm_dropping = timm.create_model(name, num_classes=10, drop_path_rate=0.3, **arch_kwargs)
    timm_dropping.load_state_dict(_build(arch)[0].state_dict())  # the weights with nonzero branches
    ours = copy.deepcopy(timm_dropping)
    adapt_timm_model(ours)  # keeps timm's per-block rates (linear over depth for most of these)
    set_stochastic_depth(ours, mode='mask')
    assert max(b.drop_path_rate for b in stochastic_depth_blocks(ours)) == pytest.approx(0.3)
    x = images()
    torch.manual_seed(1)
    expected = timm_dropping.train()(x)
    torch.manual_seed(1)
    assert torch.equal(ours.train()(x), expected)


def train_step_flops(model: nn.Module, x: torch.Tensor) -> int:
    model.zero_grad(set_to_none=True)
    with flop_counter() as counter:
        F.cross_entropy(model(x), torch.arange(len(x)) % 10).backward()
    return counter.get_total_flops()


@pytest.mark.parametrize('arch', ARCHS)
def test_esd_trains_with_fewer_flops(arch):
    ours, _ = build(arch, drop_path_rate=0.5)
    ours.train()
    x = images()
    esd_flops = train_step_flops(ours, x)
    grads = [p.grad for p in ours.parameters() if p.requires_grad]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    set_stochastic_depth(ours, 0.0)
    full_flops = train_step_flops(ours, x)
    # branches run on 4 of 8 samples; the stem, projection shortcuts and head still see all 8
    assert 0.5 <= esd_flops / full_flops < 0.75, f'{arch}: {esd_flops / full_flops:.3f}'


@pytest.mark.parametrize('make_block', [
    lambda: xcit.ClassAttentionBlock(16, num_heads=2, drop_path=0.3, eta=0.5),
    lambda: xcit.ClassAttentionBlock(16, num_heads=2, drop_path=0.3, eta=0.5, tokens_norm=True),
    lambda: cait.LayerScaleBlockClassAttn(16, num_heads=2, drop_path=0.3, init_values=0.5),
], ids=['xcit', 'xcit-tokens-norm', 'cait'])
def test_class_attention_blocks_drop_what_drop_path_drops(make_block):
    """timm never drops its class-attention blocks (rate 0), so the whole-model test above cannot see them."""
    torch.manual_seed(3)
    timm_block = make_block().train()
    ours = copy.deepcopy(timm_block)
    adapt_timm_model(ours)
    assert ours.drop_path_rate == 0.3
    set_stochastic_depth(ours, mode='mask')
    inputs = [torch.randn(8, 5, 16)]
    if isinstance(timm_block, cait.LayerScaleBlockClassAttn):
        inputs.append(torch.randn(8, 1, 16))  # forward(patches, class token)
    torch.manual_seed(4)
    expected = timm_block(*inputs)
    torch.manual_seed(4)
    assert torch.equal(ours(*inputs), expected)


def test_cait_class_attention_reads_the_kept_samples_patches():
    torch.manual_seed(5)
    batch = 6
    block = cait.LayerScaleBlockClassAttn(16, num_heads=2, init_values=0.5)
    nn.init.zeros_(block.gamma_2)  # the MLP branch adds nothing: the output is the attention residual alone
    adapt_timm_model(block)
    patches, cls = torch.randn(batch, 5, 16), torch.randn(batch, 1, 16)
    set_stochastic_depth(block, mode='none')
    plain = block.train()(patches, cls)
    set_stochastic_depth(block, [0.5], 'esd')  # an explicit per-block rate: a model-wide one leaves it at 0
    out = block(patches, cls)
    kept = (out != cls).any(dim=(1, 2))
    assert kept.sum() == 3
    torch.testing.assert_close((out - cls)[kept] / 2, (plain - cls)[kept])  # scaled by B / keep = 2
    assert torch.equal(out[~kept], cls[~kept])


def test_regnet_block_without_shortcut_stays_plain():
    model = create_model('regnetx_002', num_classes=10, downsample='')  # no projection: no residual either
    without = [m for m in model.modules() if getattr(m, 'downsample', 0) is None]
    assert without and all(type(m) is timm.models.regnet.Bottleneck for m in without)
    assert all(type(m).__name__ == 'ESDRegNetBottleneck' for m in model.modules()
               if getattr(m, 'downsample', None) is not None and hasattr(m, 'conv3'))


def test_vit_block_per_sample_attention_mask_follows_the_kept_samples():
    torch.manual_seed(2)
    batch, tokens, dim = 6, 5, 16
    block = vision_transformer.Block(dim, num_heads=2, init_values=0.5)
    nn.init.zeros_(block.ls2.gamma)  # the MLP branch adds nothing: the output is the attention residual alone
    adapt_timm_model(block)
    x = torch.randn(batch, tokens, dim)
    # sample i attends to its first i + 1 tokens only: a different mask for every sample
    visible = torch.arange(tokens) <= torch.arange(batch)[:, None]
    mask = visible[:, None, None, :].expand(batch, 1, tokens, tokens)
    set_stochastic_depth(block, mode='none')
    plain = block.train()(x, attn_mask=mask)
    set_stochastic_depth(block, 0.5, 'esd')
    out = block(x, attn_mask=mask)
    kept = (out != x).any(dim=(1, 2))
    assert kept.sum() == 3
    torch.testing.assert_close((out - x)[kept] / 2, (plain - x)[kept])  # scaled by B / keep = 2
    assert torch.equal(out[~kept], x[~kept])


@pytest.mark.parametrize('mode', ['esd', 'mask'])
@pytest.mark.parametrize('arch', ARCHS)
def test_grad_checkpointing_recomputes_every_block_and_changes_nothing(arch, mode):
    """train.grad_checkpointing on every timm family (PiT too, whose timm model refuses timm's own): each
    block's forward runs again in backward, drawing the same subsets / masks (the RNG state is restored for the
    recomputation, and left as without checkpointing), so the gradients are bit for bit those without it."""
    plain = build(arch, 0.4)[0]
    set_stochastic_depth(plain, mode=mode)
    checkpointed = copy.deepcopy(plain)
    blocks = stochastic_depth_blocks(checkpointed)
    assert set_grad_checkpointing(checkpointed) == len(blocks)
    calls = []  # a pre-hook: the recomputation stops once it has what backward needs, so a forward hook may not run
    for block in blocks:
        block.register_forward_pre_hook(lambda *_: calls.append(1))
    grads = []
    for model in (plain, checkpointed):
        torch.manual_seed(1)
        model.train()(images()).logsumexp(1).mean().backward()
        grads.append({n: p.grad for n, p in model.named_parameters() if p.grad is not None})
        grads[-1]['rng'] = torch.get_rng_state()  # the draws after the step are the same too
    assert len(calls) == 2 * len(blocks)
    assert grads[0].keys() == grads[1].keys()
    for key in grads[0]:
        assert torch.equal(grads[0][key], grads[1][key]), key


def test_unsupported_models_raise():
    with pytest.raises(ValueError, match=r'Sequential: no residual block that efficient stochastic depth supports'):
        adapt_timm_model(nn.Sequential(nn.Linear(2, 2)))
    with pytest.raises(ValueError, match='MobileNetV3'):
        create_model('mobilenetv3_small_050', num_classes=10)


def test_class_attention_blocks_are_not_dropped_by_a_model_wide_rate():
    """As in timm and the official CaiT/XCiT: only the patch blocks get the rate."""
    model = create_model('cait_xxs24_224', depth=2, img_size=32, patch_size=8, num_classes=5, drop_path_rate=0.3)
    rates = {type(b).__name__: b.drop_path_rate for b in stochastic_depth_blocks(model)}
    assert rates == {'ESDLayerScaleBlock': 0.3, 'ESDLayerScaleBlockClassAttn': 0.0}
