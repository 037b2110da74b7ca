"""MMSegmentation integration: configs, backbone, layer decay, pretrained init, compatibility layer, and the
real `mim train` / `mim test` path (train + IoU validation, --resume, load_from, single-scale and TTA test).

Everything runs on CPU; the whole file takes a few minutes on 2 cores (mostly the `mim` subprocesses).
"""
from __future__ import annotations

import os
import pickle
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

import segmentation  # installs the compatibility layer before mmseg.models is imported
from segmentation import compat

from mmengine.config import Config
from mmengine.optim import build_optim_wrapper
from mmengine.registry import MODELS, init_default_scope

from backbones import CheckpointError, create_model, save_file
from backbones.mmseg_backbone import CosubViT, TimmBackbone, default_out_indices
from segmentation.demo_data import make_ade_like, main as demo_data_main

ROOT = Path(__file__).resolve().parents[1]

DEMO = ROOT / 'configs/upernet_demo.py'
# default recipe (XCiT's UperNet, thesis 6.3.5.2): no layer decay; drop-path XCiT-S12 / XCiT-M24 / BEiT-L
SIZES = {'s': ('vit_s', 384, 1.0, 0.05), 'b': ('vit_b', 768, 1.0, 0.15), 'l': ('vit_l', 1024, 1.0, 0.2)}
# named variants: (lr, weight decay, layer decay, convention, drop-path, inference)
VARIANTS = {('b', 'beit'): (3e-5, 0.05, 0.9, 'beit', 0.1, 'slide'), ('l', 'beit'): (2e-5, 0.05, 0.95, 'beit', 0.2, 'slide'),
            ('s', 'ld'): (1.2e-4, 0.01, 0.7, 'cosub', 0.05, 'whole'), ('b', 'ld'): (1.2e-4, 0.01, 0.75, 'cosub', 0.1, 'whole'),
            ('l', 'ld'): (1.2e-4, 0.01, 0.8, 'cosub', 0.3, 'whole')}


def env() -> dict:
    # The repository on the path of every subprocess, whether or not it is pip-installed.
    return dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get('PYTHONPATH', '')]),
                PYTHONWARNINGS='ignore')


def run(cmd, cwd=ROOT, timeout=300) -> str:
    proc = subprocess.run(cmd, cwd=cwd, env=env(), capture_output=True, text=True, timeout=timeout)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, f'{" ".join(map(str, cmd))} failed ({proc.returncode}):\n{out[-4000:]}'
    return out


def build_demo_segmentor(**backbone):
    cfg = Config.fromfile(str(DEMO))
    cfg.model.backbone.update(backbone)
    init_default_scope('mmseg')
    return MODELS.build(cfg.model), cfg


# -- configs ------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize('size', sorted(SIZES))
@pytest.mark.parametrize('suffix', ['', '_in21k'])
def test_configs_state_the_recipe(size, suffix):
    cfg = Config.fromfile(str(ROOT / f'configs/upernet_vit_{size}_cosub{suffix}.py'))
    arch, dim, ld, dpr = SIZES[size]
    bb = cfg.model.backbone
    assert (bb.type, bb.arch, bb.drop_path_rate, bb.img_size) == ('backbones.CosubViT', arch, dpr, 512)
    assert bb.init_cfg.checkpoint.endswith(f'cosub_vit_{size}_{"in21k" if suffix else "in1k"}.pth')
    assert cfg.model.neck.type == 'Feature2Pyramid' and cfg.model.neck.embed_dim == dim
    assert cfg.model.decode_head.type == 'UPerHead' and cfg.model.decode_head.in_channels == [dim] * 4
    assert cfg.model.decode_head.channels == (384 if size == 's' else 512)
    assert cfg.model.auxiliary_head.type == 'FCNHead' and cfg.model.decode_head.num_classes == 150
    assert cfg.optim_wrapper.constructor == 'segmentation.LayerDecayOptimWrapperConstructor'
    assert cfg.optim_wrapper.paramwise_cfg.layer_decay_rate == ld
    assert cfg.optim_wrapper.optimizer.type == 'AdamW'
    assert (cfg.optim_wrapper.optimizer.lr, cfg.optim_wrapper.optimizer.weight_decay) == (6e-5, 0.01)
    assert cfg.model.test_cfg.mode == 'whole'
    # multi-scale test relative to 2048x512 (MMSeg 0.x), not to the image's own size
    scales = [t['scale'] for t in cfg.tta_pipeline[1].transforms[0]]
    assert scales == [(1024, 256), (1536, 384), (2048, 512), (2560, 640), (3072, 768), (3584, 896)]
    warmup, poly = cfg.param_scheduler
    assert (warmup.type, warmup.end, poly.type, poly.begin, poly.end) == ('LinearLR', 1500, 'PolyLR', 1500, 160000)
    assert cfg.train_cfg.max_iters == 160000 and cfg.train_dataloader.batch_size == 2  # x 8 GPUs = 16
    # Inherited from MMSeg, not rewritten: ADE20k dataset, IoU metric, TTA pipeline and model.
    assert cfg.train_dataloader.dataset.type == 'ADE20KDataset' and cfg.val_evaluator.type == 'IoUMetric'
    assert cfg.tta_model.type == 'SegTTAModel' and cfg.tta_pipeline[1].type == 'TestTimeAug'
    assert 'segmentation' in cfg.custom_imports.imports


@pytest.mark.parametrize('size,variant', sorted(VARIANTS))
def test_named_variants(size, variant):
    cfg = Config.fromfile(str(ROOT / f'configs/upernet_vit_{size}_cosub_{variant}.py'))
    lr, wd, ld, convention, dpr, mode = VARIANTS[size, variant]
    o = cfg.optim_wrapper
    assert (o.optimizer.lr, o.optimizer.weight_decay) == (lr, wd)
    assert (o.paramwise_cfg.layer_decay_rate, o.paramwise_cfg.layer_decay_convention) == (ld, convention)
    assert (cfg.model.backbone.drop_path_rate, cfg.model.test_cfg.mode) == (dpr, mode)


def test_default_out_indices():
    assert default_out_indices(12) == (3, 5, 7, 11) and default_out_indices(24) == (7, 11, 15, 23)
    assert default_out_indices(4) == (0, 1, 2, 3)
    with pytest.raises(ValueError, match='at least 4 blocks'):
        default_out_indices(3)


# -- backbones ------------------------------------------------------------------------------------------------------
def test_cosub_vit_features_and_bad_arguments():
    with torch.device('meta'):
        large = CosubViT(arch='vit_l')
    assert large.out_indices == (7, 11, 15, 23) and len(large.blocks) == 24
    bb = CosubViT(arch='vit_t', img_size=64, drop_path_rate=0.1, drop_path_mode='mask')
    outs = bb(torch.randn(2, 3, 72, 88))  # not a multiple of 16: padded to whole patches
    assert [tuple(o.shape) for o in outs] == [(2, 192, 5, 6)] * 4
    assert not any('norm.' == n[:5] for n, _ in bb.named_parameters())  # no unused final norm (DDP)
    with pytest.raises(ValueError, match="arch='vit_x'"):
        CosubViT(arch='vit_x')
    with pytest.raises(ValueError, match=r'out_indices=\(3, 12\)'):
        CosubViT(arch='vit_t', out_indices=(3, 12))
    shallow = CosubViT(arch='vit_t', img_size=64, out_indices=(1, 3, 5, 7))
    assert len(shallow.blocks) == 8  # blocks after the last output would get no gradient


def test_cosub_vit_pyramid_in_the_backbone():
    bb = CosubViT(arch='vit_t', img_size=64, pyramid=True)
    outs = bb(torch.randn(2, 3, 64, 64))
    assert [tuple(o.shape) for o in outs] == [(2, 192, 16, 16), (2, 192, 8, 8), (2, 192, 4, 4), (2, 192, 2, 2)]
    assert bb.get_layer_id('backbone.fpn.0.0.weight') == bb.depth + 1  # like a neck: no layer decay
    sum(o.sum() for o in outs).backward()
    assert all(p.grad is not None for p in bb.parameters())


def test_timm_backbone():
    bb = TimmBackbone(model_name='convnext_atto', drop_path_rate=0.1)
    outs = bb(torch.randn(2, 3, 64, 64))
    assert [o.shape[1] for o in outs] == [40, 80, 160, 320] and outs[0].shape[-1] == 16
    assert bb.get_layer_id('backbone.model.stem.0.weight') == 0
    assert bb.get_layer_id('model.stages.3.blocks.1.conv_dw.weight') == bb.num_layers - 2  # last block
    vit = MODELS.build(dict(type='backbones.TimmBackbone', model_name='vit_tiny_patch16_224', img_size=64))
    assert vit.out_indices == (3, 5, 7, 11)
    assert vit.get_layer_id('model.blocks.11.mlp.fc1.weight') == vit.num_layers - 2
    assert vit.get_layer_id('model.blocks.0.mlp.fc1.weight') == 1
    with pytest.raises(ValueError, match='out_indices'):
        TimmBackbone(model_name='convnext_atto', out_indices=(0, 9))


# -- layer decay ----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize('convention', ['cosub', 'beit'])
def test_layer_decay_groups(convention):
    model, cfg = build_demo_segmentor()
    cfg.optim_wrapper.paramwise_cfg = dict(layer_decay_rate=0.75, layer_decay_convention=convention)
    wrapper = build_optim_wrapper(model, cfg.optim_wrapper)
    lr, wd, ld = cfg.optim_wrapper.optimizer.lr, cfg.optim_wrapper.optimizer.weight_decay, 0.75
    # BEiT / MMSeg ids put every backbone layer one step lower: the final block gets LD, not 1
    extra = ld if convention == 'beit' else 1.0
    group_of = {}
    for group in wrapper.optimizer.param_groups:
        for name in group['names']:
            assert name not in group_of
            group_of[name] = group
    assert set(group_of) == {n for n, p in model.named_parameters() if p.requires_grad}

    def check(name, scale, decay):
        g = group_of[name]
        if name.startswith('backbone.'):
            scale *= extra
        assert g['lr'] == pytest.approx(lr * scale), name
        assert g['weight_decay'] == (wd if decay else 0.0), name

    depth = 12
    check('backbone.pos_embed', ld ** depth, False)
    check('backbone.cls_token', ld ** depth, False)
    check('backbone.patch_embed.proj.weight', ld ** depth, True)
    check('backbone.patch_embed.proj.bias', ld ** depth, False)
    check('backbone.blocks.0.attn.qkv.weight', ld ** (depth - 1), True)
    check('backbone.blocks.5.norm1.weight', ld ** (depth - 6), False)
    check('backbone.blocks.5.attn.qkv.bias', ld ** (depth - 6), False)
    check('backbone.blocks.10.ls1.gamma', ld, False)
    check('backbone.blocks.11.mlp.fc1.weight', 1.0, True)
    check('backbone.blocks.11.ls2.gamma', 1.0, False)
    check('neck.upsample_4x.0.weight', 1.0, True)
    check('decode_head.conv_seg.weight', 1.0, True)
    check('decode_head.bottleneck.bn.weight', 1.0, False)
    check('auxiliary_head.convs.0.conv.weight', 1.0, True)


def test_every_parameter_gets_a_gradient():
    """No unused parameter (DDP with find_unused_parameters=False, i.e. `mim train -l pytorch -G 8`, needs it)."""
    model, _ = build_demo_segmentor(img_size=64, drop_path_rate=0.2)
    model.train()
    from mmengine.structures import PixelData
    from mmseg.structures import SegDataSample
    samples = []
    for _ in range(2):
        sample = SegDataSample(gt_sem_seg=PixelData(data=torch.randint(0, 150, (1, 64, 64))))
        sample.set_metainfo(dict(img_shape=(64, 64), ori_shape=(64, 64), pad_shape=(64, 64)))
        samples.append(sample)
    losses = model.loss(torch.randn(2, 3, 64, 64), samples)
    sum(v for k, v in losses.items() if 'loss' in k).backward()
    unused = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert not unused


def test_layer_decay_bad_config():
    model, cfg = build_demo_segmentor()
    bad = cfg.optim_wrapper.copy()
    bad.paramwise_cfg = dict(layer_decay_rate=0.75, custom_keys={'norm': dict(decay_mult=0.0)})
    with pytest.raises(ValueError, match=r"unsupported keys \['custom_keys'\]"):
        build_optim_wrapper(model, bad)
    bad.paramwise_cfg = dict(layer_decay_rate=1.5)
    with pytest.raises(ValueError, match='layer_decay_rate=1.5'):
        build_optim_wrapper(model, bad)
    bad.paramwise_cfg = dict(layer_decay_rate=0.75, layer_decay_convention='mmseg')
    with pytest.raises(ValueError, match="layer_decay_convention='mmseg'"):
        build_optim_wrapper(model, bad)

    class Plain(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.backbone = torch.nn.Linear(2, 2)
    with pytest.raises(TypeError, match='has no get_layer_id'):
        build_optim_wrapper(Plain(), cfg.optim_wrapper)


# -- pretrained initialisation through our loader --------------------------------------------------------------------
@pytest.fixture(scope='module')
def vit_t_checkpoints(tmp_path_factory):
    tmp = tmp_path_factory.mktemp('ckpt')
    torch.manual_seed(0)
    classifier = create_model('vit_t', num_classes=10)  # 224: pos_embed 14x14
    cls_path = save_file({'format': 'cosub', 'version': 1, 'model_name': 'vit_t', 'model': classifier.state_dict(),
                          'epoch': 3}, tmp / 'cosub_vit_t.pth')
    backbone_sd = {k: v for k, v in classifier.state_dict().items() if not k.startswith('head.')}
    bb_path = save_file(backbone_sd, tmp / 'cosub_vit_t_backbone.safetensors')
    small = save_file({'model': create_model('vit_s', num_classes=0).state_dict()}, tmp / 'vit_s.pth')
    return classifier, cls_path, bb_path, small


@pytest.mark.parametrize('which', ['classifier', 'backbone_only'])
def test_pretrained_init(vit_t_checkpoints, which):
    classifier, cls_path, bb_path, _ = vit_t_checkpoints
    path = cls_path if which == 'classifier' else bb_path
    model, _ = build_demo_segmentor(img_size=64, init_cfg=dict(type='Pretrained', checkpoint=str(path)))
    model.init_weights()  # what the Runner calls before training
    bb, ref = model.backbone, classifier.state_dict()
    assert torch.equal(bb.blocks[7].attn.qkv.weight, ref['blocks.7.attn.qkv.weight'])
    assert torch.equal(bb.blocks[11].ls2.gamma, ref['blocks.11.ls2.gamma'])
    assert torch.equal(bb.cls_token, ref['cls_token'])
    assert bb.pos_embed.shape == (1, 16, 192)  # 14x14 interpolated to the 4x4 grid of 64x64 crops
    # MMSeg's `model.pretrained` key goes the same way
    via_pretrained = CosubViT(arch='vit_t', img_size=64, pretrained=str(path))
    via_pretrained.init_weights()
    assert torch.equal(via_pretrained.blocks[0].mlp.fc2.weight, ref['blocks.0.mlp.fc2.weight'])


def test_pretrained_init_errors(vit_t_checkpoints, tmp_path):
    *_, other_arch = vit_t_checkpoints
    with pytest.raises(CheckpointError, match='does not fit model vit_t'):
        CosubViT(arch='vit_t', init_cfg=dict(type='Pretrained', checkpoint=str(other_arch))).init_weights()
    with pytest.raises(CheckpointError, match=r'no such checkpoint file.*model\.backbone\.init_cfg\.checkpoint'):
        CosubViT(arch='vit_t', init_cfg=dict(type='Pretrained', checkpoint=str(tmp_path / 'nope.pth'))).init_weights()
    with pytest.raises(ValueError, match='not both'):
        CosubViT(arch='vit_t', pretrained='a.pth', init_cfg=dict(type='Pretrained', checkpoint='b.pth'))


# -- compatibility layer ---------------------------------------------------------------------------------------------
@pytest.mark.skipif(compat.full_mmcv_available(), reason='a full mmcv is installed: its ops are left alone')
def test_compat_lite_ops():
    import mmseg.models  # noqa: F401  (fails with mmcv-lite without the compatibility layer)
    from mmcv.ops import DeformConv2d, point_sample, sigmoid_focal_loss
    feats = torch.arange(16.0).reshape(1, 1, 4, 4)
    centre = point_sample(feats, torch.tensor([[[0.5, 0.5]]]), align_corners=False)
    assert centre.item() == pytest.approx(7.5)  # the mean of the 4 middle pixels
    assert not isinstance(torch.nn.Conv2d(1, 1, 1), DeformConv2d)
    with pytest.raises(compat.MMCVOpUnavailable, match=r'mmcv\.ops\.sigmoid_focal_loss .*mmcv-lite.*full mmcv'):
        sigmoid_focal_loss(torch.zeros(2, 3), torch.zeros(2, dtype=torch.long), 2.0, 0.25)
    with pytest.raises(compat.MMCVOpUnavailable, match='CrissCrossAttention'):
        from mmcv.ops import CrissCrossAttention
        CrissCrossAttention(8)
    assert compat.install()['mmcv.ops'] == 'present'  # idempotent


class _NotData:
    pass


def test_compat_checkpoint_loader_refuses_code(tmp_path):
    path = tmp_path / 'evil.pth'
    torch.save({'state_dict': {}, 'meta': {'x': _NotData()}}, path)
    with pytest.raises(pickle.UnpicklingError, match=r'evil\.pth: refused to load.*_NotData'):
        compat.load_from_local_weights_only(str(path))


def test_config_outside_repo_names_only_our_backbone(tmp_path, vit_t_checkpoints):
    """What another MMSeg project writes: our registry type name + a checkpoint (+ one import line for mmcv-lite)."""
    _, cls_path, _, _ = vit_t_checkpoints
    (tmp_path / 'my_upernet.py').write_text(textwrap.dedent(f'''\
        _base_ = ['mmseg::_base_/models/upernet_mae.py']
        custom_imports = dict(imports=['segmentation'], allow_failed_imports=False)  # only with mmcv-lite
        model = dict(
            backbone=dict(_delete_=True, type='backbones.CosubViT', arch='vit_t', img_size=64,
                          init_cfg=dict(type='Pretrained', checkpoint={str(cls_path)!r})),
            neck=dict(embed_dim=192),
            decode_head=dict(in_channels=[192] * 4, num_classes=5),
            auxiliary_head=dict(in_channels=192, num_classes=5))
        '''))
    script = textwrap.dedent('''\
        import torch
        from mmengine.config import Config
        from mmengine.registry import MODELS, init_default_scope
        cfg = Config.fromfile('my_upernet.py')
        init_default_scope('mmseg')
        model = MODELS.build(cfg.model)
        model.init_weights()
        model.eval()
        out = model(torch.randn(1, 3, 64, 64), mode='tensor')
        print(type(model).__name__, type(model.backbone).__name__, tuple(out.shape))
        ''')
    out = run([sys.executable, '-c', script], cwd=tmp_path, timeout=180)
    assert 'EncoderDecoder CosubViT (1, 5, 16, 16)' in out
    assert f'CosubViT: loaded {cls_path}' in out


# -- demo data -------------------------------------------------------------------------------------------------------
def test_demo_data_layout(tmp_path, capsys):
    import numpy as np
    from PIL import Image
    root = make_ade_like(tmp_path, train=3, val=2, size=(40, 48), num_classes=4)
    assert root == tmp_path / 'ADEChallengeData2016'
    images = sorted((root / 'images/training').glob('*.jpg'))
    labels = sorted((root / 'annotations/training').glob('*.png'))
    assert [p.stem for p in images] == [p.stem for p in labels] == [f'ADE_train_0000000{i}' for i in (1, 2, 3)]
    assert len(list((root / 'annotations/validation').glob('ADE_val_*.png'))) == 2
    label = np.array(Image.open(labels[0]))
    assert label.ndim == 2 and label.dtype == np.uint8 and (label == 0).any() and label.max() <= 150
    assert Image.open(images[0]).mode == 'RGB' and Image.open(images[0]).size == label.shape[::-1]
    assert demo_data_main([str(tmp_path / 'x'), '--train', '0']) == 2
    assert 'expected at least one image per split' in capsys.readouterr().err


# -- complexity vs. Table 13 -----------------------------------------------------------------------------------------
def test_complexity_matches_table13():
    from segmentation.complexity import measure
    rows = measure([str(ROOT / f'configs/upernet_vit_{s}_cosub.py') for s in 'sb'], sizes=[(512, 2048)])
    for row, (params, gmacs) in zip(rows, [(41.7, 588), (127.7, 1283)]):
        assert row['params_m']['total'] == pytest.approx(params, abs=0.05)
        assert row['gmacs_without_attention']['512x2048'] == pytest.approx(gmacs, rel=0.005)


def mim_tools() -> Path:
    """mmseg's tools/{train,test}.py, the scripts `mim train` / `mim test` run."""
    import mmseg
    return Path(mmseg.__file__).parent / '.mim' / 'tools'


def data_roots(data: Path) -> list:
    """--cfg-options pointing the three dataloaders at a generated ADE20k-layout folder."""
    return [f'{k}_dataloader.dataset.data_root={data}' for k in ('train', 'val', 'test')]


# -- the real path: mim train / mim test -----------------------------------------------------------------------------
@pytest.mark.e2e
def test_mim_train_resume_test(tmp_path, vit_t_checkpoints):
    """`mim train` / `mim test` run mmseg/.mim/tools/{train,test}.py in a new process, as users do; the resume
    calls that same script directly (mim adds a `-h` probe process per call, about 10 s). `mim test --tta` runs in
    the demo's test (tests/test_pretrain.py::test_demo_runs_end_to_end), on the demo's own checkpoint."""
    tools = mim_tools()
    data = make_ade_like(tmp_path / 'data', train=8, val=2, size=(64, 80))
    work = tmp_path / 'work'
    roots = data_roots(data)
    short = ['param_scheduler.0.end=2', 'param_scheduler.1.begin=2', 'param_scheduler.1.end=6',
             'default_hooks.checkpoint.interval=2', 'default_hooks.logger.interval=1']
    _, cls_path, _, _ = vit_t_checkpoints
    pretrained = [f'model.pretrained={cls_path}']  # MMSeg's key; CosubViT turns it into init_cfg (our loader)
    out = run(['mim', 'train', 'mmseg', str(DEMO), '--work-dir', str(work), '--cfg-options', *roots, *short,
               *pretrained, 'train_cfg.max_iters=4', 'train_cfg.val_interval=4'])
    assert 'CosubViT: loaded' in out and 'Iter(train) [4/4]' in out
    assert re.search(r'Iter\(val\) \[2/2\].*mIoU: \d', out)
    assert (work / 'iter_2.pth').is_file() and (work / 'iter_4.pth').is_file()

    out = run([sys.executable, tools / 'train.py', str(DEMO), '--work-dir', str(work), '--resume',
               '--cfg-options', *roots, *short, 'train_cfg.max_iters=6', 'train_cfg.val_interval=100'])
    assert 'resumed epoch: 0, iter: 4' in out and 'Iter(train) [6/6]' in out

    ckpt = work / 'iter_6.pth'
    out = run(['mim', 'test', 'mmseg', str(DEMO), '--checkpoint', str(ckpt), '--work-dir', str(tmp_path / 't'),
               '--cfg-options', *roots])
    assert f'Load checkpoint from {ckpt}' in out  # `mim test` loads the checkpoint through `load_from`
    miou = float(re.search(r'Iter\(test\) \[2/2\].*?mIoU: ([\d.]+)', out).group(1))
    assert 0.0 <= miou <= 100.0

    # load_from in a fresh model: the weights of the checkpoint, through the weights-only loader
    from mmengine.runner import load_checkpoint
    model, _ = build_demo_segmentor()
    load_checkpoint(model, str(ckpt), map_location='cpu')
    saved = compat.load_from_local_weights_only(str(ckpt))['state_dict']
    assert torch.equal(model.backbone.blocks[3].attn.proj.weight, saved['backbone.blocks.3.attn.proj.weight'])


# -- our errors end a mim run in one line -----------------------------------------------------------------------------
def test_our_errors_end_in_one_line_other_errors_keep_their_traceback(capsys):
    import sys as system
    from segmentation import errors
    assert errors.install() and getattr(system.excepthook, 'one_line_errors', False)
    hook = system.excepthook
    errors.install()
    assert system.excepthook is hook  # chained once
    hook(CheckpointError, CheckpointError('x.pth: no such checkpoint file'), None)
    assert capsys.readouterr().err == 'error: x.pth: no such checkpoint file\n'
    # the boundary of every entry point (backbones/errors.py): mmseg's FileNotFoundError for a data_root that does
    # not exist (as mmengine's list_dir_or_file raises it), a full work_dir, torch's failed write
    missing = FileNotFoundError(2, 'No such file or directory', '/data/ade/images/training')
    hook(FileNotFoundError, missing, None)
    assert capsys.readouterr().err == 'error: /data/ade/images/training: no such file or folder; check the path\n'
    hook(OSError, OSError(28, 'No space left on device', 'work_dirs/x/iter_8000.pth'), None)
    assert capsys.readouterr().err.startswith('error: work_dirs/x/iter_8000.pth: no space left on the device')
    hook(RuntimeError, RuntimeError('PytorchStreamWriter failed writing file data/0: file write failed'), None)
    assert capsys.readouterr().err.startswith('error: a file could not be written (torch: PytorchStreamWriter')
    try:
        raise KeyError('not ours')
    except KeyError as e:
        hook(KeyError, e, e.__traceback__)
    err = capsys.readouterr().err
    assert 'Traceback' in err and "KeyError: 'not ours'" in err


@pytest.mark.e2e
def test_mim_train_with_a_missing_data_root_is_one_line(tmp_path):
    proc = subprocess.run([sys.executable, str(mim_tools() / 'train.py'), str(DEMO), '--work-dir', str(tmp_path / 'w'),
                           '--cfg-options', *data_roots(tmp_path / 'nowhere')], cwd=ROOT, env=env(),
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1 and 'Traceback' not in proc.stderr, proc.stderr[-3000:]
    assert proc.stderr.strip().splitlines()[-1] == (f'error: {tmp_path / "nowhere" / "images" / "training"}: no such '
                                                    'file or folder; check the path')


def test_mim_test_of_a_missing_checkpoint_is_one_line(tmp_path):
    data = make_ade_like(tmp_path / 'data', train=2, val=1, size=(32, 40))
    proc = subprocess.run([sys.executable, str(mim_tools() / 'test.py'), str(DEMO), str(tmp_path / 'nowhere.pth'),
                           '--work-dir', str(tmp_path / 'w'), '--cfg-options', *data_roots(data)], cwd=ROOT, env=env(),
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1 and 'Traceback' not in proc.stderr, proc.stderr[-3000:]
    assert proc.stderr.strip().splitlines()[-1] == (f'error: {tmp_path / "nowhere.pth"}: no such checkpoint file '
                                                    '(load_from, --checkpoint)')
