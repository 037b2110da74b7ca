"""Our ViTs registered in timm (`cosub_vit_*`, backbones/timm_registry.py) honour timm's model interface.

What timm's own tests/test_models.py checks of a ViT, written as our own checks: the pretrained configs
(test_model_default_cfgs_non_std: num_classes / num_features / head_hidden_size, forward_features and
forward_head(pre_logits=True) widths, reset_classifier(0), num_classes=0 at creation, classifier and first_conv
names), forward_intermediates against forward_features and the feature_info (test_model_forward_intermediates),
timm.create_model(..., features_only=True) (test_model_forward_intermediates_features), set_grad_checkpointing
leaving outputs unchanged (test_model_forward), every parameter receiving a gradient (test_model_backward), and
torch.fx tracing (test_model_forward_fx). Also timm's optimizer helpers: group_matcher and no_weight_decay.

Not covered, on purpose: timm's std test_model_default_cfgs wants 4-D (B, C, H, W) outputs from forward_features,
which no ViT gives (timm files its own vit_*/deit* under NON_STD_FILTERS; our cosub_vit_* names do not match those
filters, so an unmodified timm suite would put them in the std test, as it would any ViT not named so); torchscript
(torch.jit.script is deprecated in this torch, and the ESD autograd functions are not scriptable).

Cost: the configs are checked on every registered name and tag at full size, built on the meta device (no
memory, no init: ViT-H's 632M parameters cost nothing), widths, depths, heads and patches included. The forwards
run on every name through its own timm entry point, reduced: 4 blocks (one more than timm's default of 3 feature
levels, so that pruning shows), 16 channels per head (the name's heads and patch kept: what makes the code paths
of two names differ), 2 x 2 patches (32 px, 28 px at patch 14). At full width the forward tests took 4x longer,
nearly all of it drawing ViT-H's and ViT-L's random weights.
"""
from __future__ import annotations

import copy
import functools

import pytest
import timm
import timm.optim
import torch
from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
from timm.models import FeatureInfo, get_pretrained_cfg, group_parameters
from timm.models._features_fx import create_feature_extractor, get_graph_node_names

import backbones
from backbones import timm_registry
from backbones.vit import VIT_ARCHS

NAMES = timm.list_models('cosub_vit_*')
TAGGED = timm.list_models('cosub_vit_*', include_tags=True)
GRID, DEPTH, HEAD_DIM, BATCH = 2, 4, 16, 2  # the reduced models of the forward checks (module docstring)
SMALLEST = 'cosub_vit_small_patch16_224'

pytestmark = pytest.mark.usefixtures('one_thread')


def arch(name: str) -> tuple:
    """(embed_dim, depth, num_heads, patch_size) of a registered name, from our table (not from the model)."""
    return VIT_ARCHS[timm_registry.arch_of(name)]


def resolution(name: str) -> int:
    return int(name.split('.')[0].rsplit('_', 1)[1])


def img(name: str) -> int:
    """Side of our small inputs: GRID patches (the patch embedding takes multiples of the patch only)."""
    return GRID * arch(name)[3]


def width(name: str) -> int:
    return HEAD_DIM * arch(name)[2]


def reduced(name: str, **kwargs) -> dict:
    """timm.create_model arguments of the reduced `name`: its heads and patch, fewer blocks and channels."""
    return dict(dict(img_size=img(name), depth=DEPTH, embed_dim=width(name)), **kwargs)


@functools.lru_cache(maxsize=None)
def _small(name: str) -> torch.nn.Module:
    torch.manual_seed(0)
    return timm.create_model(name, **reduced(name)).eval()


def small(name: str) -> torch.nn.Module:
    """The reduced `name` (a copy: tests modify it)."""
    return copy.deepcopy(_small(name))


def images(size: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(BATCH, 3, size, size, generator=torch.Generator().manual_seed(seed))


def test_every_name_is_registered_with_its_tags():
    assert NAMES == sorted(timm_registry.NAMES)
    assert len(NAMES) == 10
    # every size has the DeiT III weights timm publishes, except those DeiT III never trained (medium at 384, giant)
    untagged = [name for name in NAMES if not any(t.startswith(name + '.') for t in TAGGED)]
    assert untagged == ['cosub_vit_giant_patch14_224', 'cosub_vit_medium_patch16_384']
    assert set(TAGGED) == set(timm.list_pretrained('cosub_vit_*')) | set(untagged)


# -- pretrained configs, on the full-size models ---------------------------------------------------------------
@pytest.mark.parametrize('tagged', TAGGED)
def test_pretrained_cfg(tagged):
    name = tagged.split('.')[0]
    cfg = get_pretrained_cfg(tagged).to_dict()
    assert cfg['architecture'] == name
    assert cfg['input_size'] == (3, resolution(name), resolution(name))
    assert not cfg['fixed_input_size']  # our ViT interpolates pos_embed (test_other_input_size)
    assert cfg['pool_size'] is None  # no spatial output, as timm's ViTs
    assert cfg['num_classes'] == 1000
    if '.' in tagged:  # DeiT III's published weights: their preprocessing and file, as timm gives for deit3_*
        deit3 = get_pretrained_cfg(timm_registry.timm_name(name) + '.' + cfg['tag']).to_dict()
        for key in ('input_size', 'mean', 'std', 'crop_pct', 'crop_mode', 'interpolation', 'num_classes',
                    'first_conv', 'classifier', 'url', 'license'):
            assert cfg[key] == deit3[key], key
        assert cfg['hf_hub_id'] == f'timm/{timm_registry.timm_name(name)}.{cfg["tag"]}'
    else:  # no weights: DeiT III's preprocessing at that resolution (crop 1.0 at 384)
        assert not cfg.get('hf_hub_id') and not cfg.get('url')
        assert (cfg['mean'], cfg['std']) == (IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD)
        assert cfg['crop_pct'] == (1.0 if resolution(name) == 384 else 0.9)

    with torch.device('meta'):
        model = timm.create_model(tagged, pretrained=False)
    assert model.pretrained_cfg == model.default_cfg == cfg
    embed_dim, depth, num_heads, patch_size = arch(name)
    assert model.num_classes == cfg['num_classes']
    assert model.num_features == model.head_hidden_size == embed_dim
    assert len(model.blocks) == depth and model.blocks[0].attn.num_heads == num_heads
    params = dict(model.named_parameters())
    assert params[cfg['classifier'] + '.weight'].shape == (cfg['num_classes'], embed_dim)
    assert params[cfg['first_conv'] + '.weight'].shape == (embed_dim, 3, patch_size, patch_size)
    grid_size = resolution(name) // patch_size
    assert params['pos_embed'].shape == (1, grid_size ** 2, embed_dim)  # DeiT III: no class-token slot
    info = FeatureInfo(model.feature_info, range(depth))
    assert info.channels() == [embed_dim] * depth and info.reduction() == [patch_size] * depth
    assert info.module_name() == [f'blocks.{i}' for i in range(depth)]


def test_vit_g_is_timms_vit_giant_in_the_deit3_block():
    """ViT-g/14 (cosub Table 9; Zhai et al.'s shape): timm's vit_giant_patch14_224 (1408 wide, 40 deep, MLP 6144,
    16 heads) with DeiT III's LayerScale and a position embedding without a class-token slot: the same tensors
    otherwise, about 1.0B parameters. Built on the meta device."""
    with torch.device('meta'):
        ours = timm.create_model('cosub_vit_giant_patch14_224')
        theirs = timm.create_model('vit_giant_patch14_224')
    ours_shapes = {k: v.shape for k, v in ours.state_dict().items()}
    theirs_shapes = {k: v.shape for k, v in theirs.state_dict().items()}
    layer_scales = {f'blocks.{i}.ls{j}.gamma' for i in range(40) for j in (1, 2)}
    assert set(ours_shapes) == set(theirs_shapes) | layer_scales
    assert [k for k in theirs_shapes if ours_shapes[k] != theirs_shapes[k]] == ['pos_embed']
    assert (ours_shapes['pos_embed'], theirs_shapes['pos_embed']) == ((1, 256, 1408), (1, 257, 1408))
    assert ours_shapes['blocks.0.mlp.fc1.weight'] == (6144, 1408) and ours.blocks[0].attn.num_heads == 16
    count = sum(p.numel() for p in ours.parameters())
    assert count == sum(p.numel() for p in theirs.parameters()) + 2 * 40 * 1408 - 1408 == 1_012_722_664
    assert count == sum(p.numel() for p in backbones.factory._build_on_meta('vit_g').parameters())


# -- timm's test_model_default_cfgs_non_std and test_model_backward, reduced ------------------------------------
@pytest.mark.parametrize('name', NAMES)
def test_heads_and_classifier_reset(name):
    model, x = small(name), images(img(name))
    embed_dim = width(name)
    assert model.num_classes == 1000 and model.num_features == model.head_hidden_size == embed_dim
    tokens = model.forward_features(x)
    assert tokens.shape == (BATCH, 1 + GRID ** 2, model.num_features)
    pre_logits = model.forward_head(tokens, pre_logits=True)
    assert pre_logits.shape == (BATCH, model.head_hidden_size)
    torch.testing.assert_close(pre_logits, tokens[:, 0])  # 'token' pooling: the class token
    assert model(x).shape == (BATCH, 1000)

    model.reset_classifier(0)  # no head, pooling kept: forward gives the pre-logits
    assert model.num_classes == 0 and isinstance(model.get_classifier(), torch.nn.Identity)
    torch.testing.assert_close(model(x), pre_logits)
    model.reset_classifier(0, '')  # no pooling either: every token
    torch.testing.assert_close(model(x), tokens)
    model.reset_classifier(7, 'avg')
    assert model.num_classes == 7 and model.get_classifier().weight.shape == (7, embed_dim)
    torch.testing.assert_close(model.forward_head(tokens, pre_logits=True), tokens[:, 1:].mean(1))
    model.reset_classifier(5)  # None keeps the pooling
    assert model.global_pool == 'avg' and model(x).shape == (BATCH, 5)
    with pytest.raises(ValueError, match="global_pool='max'"):
        model.reset_classifier(5, 'max')

    # the same at creation (one block is enough for the widths)
    headless = timm.create_model(name, **reduced(name, depth=1, num_classes=0))
    assert headless.num_classes == 0 and headless(x).shape == (BATCH, headless.num_features)
    unpooled = timm.create_model(name, **reduced(name, depth=1, num_classes=0, global_pool=''))
    assert unpooled(x).shape == tokens.shape
    with pytest.raises(ValueError, match="global_pool='max'"):
        timm.create_model(name, **reduced(name, global_pool='max'))


@pytest.mark.parametrize('name', NAMES)
def test_every_parameter_gets_a_gradient(name):
    model = small(name).train()
    model.reset_classifier(42)
    out = model(images(img(name)))
    assert out.shape == (BATCH, 42)
    out.mean().backward()
    assert [n for n, p in model.named_parameters() if p.grad is None] == []


def test_other_input_size():
    # fixed_input_size is False in our cfgs: 48 px on a model made for 32 px gives the 48 px grid (3 x 3)
    model = small(SMALLEST)
    assert model.forward_features(images(48)).shape == (BATCH, 1 + 3 ** 2, width(SMALLEST))
    assert model(images(48)).shape == (BATCH, 1000)


# -- forward_intermediates, prune_intermediate_layers, features_only ---------------------------------------------
@pytest.mark.parametrize('name', NAMES)
def test_forward_intermediates(name):
    model, x = small(name), images(img(name))
    embed_dim, patch = width(name), arch(name)[3]
    info = FeatureInfo(model.feature_info, range(len(model.feature_info)))
    assert len(info) == DEPTH >= 3  # timm: at least 3 feature levels
    final, maps = model.forward_intermediates(x)
    assert len(maps) == len(info)
    for channels, reduction, y in zip(info.channels(), info.reduction(), maps):
        assert channels == embed_dim and reduction == patch
        assert y.shape == (BATCH, channels, img(name) // reduction, img(name) // reduction)  # the patch grid
    torch.testing.assert_close(final, model.forward_features(x))
    # the same blocks' outputs in every format: (B, HW, C) tokens, the last n, normed, intermediates only
    tokens = model.forward_intermediates(x, output_fmt='NLC', intermediates_only=True)
    for y, t in zip(maps, tokens):
        torch.testing.assert_close(y.flatten(2).transpose(1, 2), t)
    last_two = model.forward_intermediates(x, indices=2, norm=True, intermediates_only=True)
    for y, t in zip(last_two, tokens[-2:]):
        torch.testing.assert_close(y.flatten(2).transpose(1, 2), model.norm(t))
    early = model.forward_intermediates(x, indices=[0], stop_early=True, intermediates_only=True)
    torch.testing.assert_close(early[0], maps[0])

    model.set_grad_checkpointing()
    final2, maps2 = model.forward_intermediates(x)
    torch.testing.assert_close(final2, final)

    taken = model.prune_intermediate_layers([0, 1])  # drops the blocks after 1, and the head
    assert taken == [0, 1] and len(model.blocks) == 2 and model.num_classes == 0
    for y, z in zip(model.forward_intermediates(x, indices=[0, 1], intermediates_only=True), maps[:2]):
        torch.testing.assert_close(y, z)


@pytest.mark.parametrize('name', NAMES)
def test_features_only(name):
    embed_dim, patch = width(name), arch(name)[3]
    torch.manual_seed(1)
    features = timm.create_model(name, **reduced(name, features_only=True)).eval()
    # timm's ViT default: the last 3 blocks (here 1, 2, 3 of 4)
    assert features.feature_info.channels() == [embed_dim] * 3
    assert features.feature_info.reduction() == [patch] * 3
    assert features.feature_info.module_name() == ['blocks.1', 'blocks.2', 'blocks.3']
    x = images(img(name))
    outputs = features(x)
    assert [y.shape for y in outputs] == [(BATCH, embed_dim, GRID, GRID)] * 3
    # the same weights in a whole model give the same maps: the wrapper removed only the final norm and head
    whole = small(name)
    missing, unexpected = whole.load_state_dict(features.model.state_dict(), strict=False)
    assert unexpected == [] and sorted(missing) == ['head.bias', 'head.weight', 'norm.bias', 'norm.weight']
    for y, z in zip(outputs, whole.forward_intermediates(x, indices=3, intermediates_only=True)):
        torch.testing.assert_close(y, z)


def test_features_only_chosen_blocks():
    model = timm.create_model(SMALLEST, **reduced(SMALLEST, features_only=True, feature_cls='getter',
                                                  out_indices=(0, 2)))
    assert model.feature_info.module_name() == ['blocks.0', 'blocks.2']
    assert len(model.model.blocks) == 3  # pruned after the last one asked for
    assert [y.shape for y in model(images(32))] == [(BATCH, width(SMALLEST), GRID, GRID)] * 2


# -- training helpers -----------------------------------------------------------------------------------------
@pytest.mark.parametrize('mode', ['esd', 'mask'])
def test_grad_checkpointing_recomputes_and_changes_nothing(mode):
    torch.manual_seed(0)
    plain = timm.create_model(SMALLEST, **reduced(SMALLEST, drop_path_rate=0.5, drop_path_mode=mode))
    checkpointed = copy.deepcopy(plain)
    checkpointed.set_grad_checkpointing()
    calls = []
    # a pre-hook: checkpoint's recomputation stops early, once it has what backward needs, so a block's
    # forward hook would not run again
    checkpointed.blocks[0].register_forward_pre_hook(lambda *_: calls.append(1))
    grads = []
    for model in (plain, checkpointed):
        torch.manual_seed(1)  # same drops in both
        model(images(32)).logsumexp(1).mean().backward()
        grads.append({n: p.grad for n, p in model.named_parameters()})
    assert len(calls) == 2  # forward, then again in backward: activations really were recomputed
    for key in grads[0]:
        torch.testing.assert_close(grads[1][key], grads[0][key], msg=key)
    checkpointed.set_grad_checkpointing(False)
    calls.clear()
    checkpointed(images(32)).sum().backward()
    assert len(calls) == 1


def test_group_matcher_and_no_weight_decay_in_timms_optimizer():
    model = small(SMALLEST)
    groups = group_parameters(model, model.group_matcher())
    # the groups of timm's own DeiT III ViT (same parameter names): embeddings, one per block (the last with the
    # final norm), the head
    reference = timm.create_model('deit3_small_patch16_224', **reduced(SMALLEST))
    assert groups == group_parameters(reference, reference.group_matcher())
    assert len(groups) == DEPTH + 2
    assert set(groups[0]) == {'cls_token', 'pos_embed', 'patch_embed.proj.weight', 'patch_embed.proj.bias'}
    for i in range(DEPTH):  # our own layer-wise decay (layer_id) agrees on the embeddings and blocks
        assert {model.layer_id(n) for n in groups[i] if not n.startswith('norm.')} == {i}

    optimizer = timm.optim.create_optimizer_v2(model, 'adamw', lr=1e-3, weight_decay=0.05, layer_decay=0.5)
    decay_of = {id(p): (g['weight_decay'], g['lr_scale']) for g in optimizer.param_groups for p in g['params']}
    params = dict(model.named_parameters())
    assert decay_of[id(params['pos_embed'])] == (0.0, 0.5 ** (DEPTH + 1))  # no_weight_decay (not 1-d), layer 0
    assert decay_of[id(params['cls_token'])][0] == 0.0
    assert decay_of[id(params['blocks.0.attn.qkv.weight'])] == (0.05, 0.5 ** DEPTH)
    assert decay_of[id(params['blocks.0.norm1.bias'])][0] == 0.0  # 1-d: timm's rule
    assert decay_of[id(params['head.weight'])] == (0.05, 1.0)


def test_torch_fx_trace_gives_the_same_outputs():
    # timm's fx tests trace with its notrace functions: our pos-embed add is one of them
    model, x = small(SMALLEST), images(32)
    _, eval_nodes = get_graph_node_names(model)
    assert 'add_pos_embed' in eval_nodes
    traced = create_feature_extractor(model, return_nodes=[eval_nodes[-1]])
    with torch.inference_mode():
        expected = model(x)
        (out,) = traced(x).values()
    assert torch.equal(out, expected)
