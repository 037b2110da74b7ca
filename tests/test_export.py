"""cosub-export-backbone: which model of a training checkpoint (--weights), what it refuses, the architecture of
files that do not name it (official DeiT III, read from the shapes), and a "backbone" no model loads never written.

Checkpoints are written here the way pretrain/engine/checkpointing.py writes them (model, peer_model / model_ema
beside it, their description saved_weights, model_name, img_size, config), with tiny ViTs.
"""
import json

import pytest
import timm
import torch

import backbones
from backbones import create_model, load_checkpoint, save_file
from backbones.checkpoint import infer_vit_architecture
from backbones.export_backbone import export_backbone, main, timm_architecture
from pretrain import methods

SHAPE = dict(embed_dim=48, depth=2, num_heads=3, patch_size=8)  # a tiny vit_t, as the demo's


def tiny(seed, num_classes=5):
    torch.manual_seed(seed)
    model = create_model('vit_t', num_classes=num_classes, img_size=32, **SHAPE).eval()
    with torch.no_grad():  # LayerScale starts at 1e-4: make the blocks count in the outputs
        for name, p in model.named_parameters():
            if name.endswith('.gamma'):
                p.normal_(0, 0.5)
    return model


def training_checkpoint(path, method='cosub', described=True, **extra):
    """A checkpoint.pth as the engine writes it: the run's model under 'model', the method's beside it, described
    under 'saved_weights' (not `described`: as written before that key existed)."""
    if described:
        extra['saved_weights'] = methods.saved_weights(methods.METHODS[method])
    config = dict(model=dict(name='vit_t', num_classes=None, drop_path_rate=0.1, drop_path_mode='esd',
                             drop_path_schedule='uniform', **SHAPE), input_size=32, method=method)
    save_file(dict(format='cosub', version=1, model_name='vit_t', num_classes=5, img_size=32,
                   model=tiny(0).state_dict(), optimizer={}, epoch=3, config=config, **extra), path)
    return path


def run(argv, capsys):
    """main(argv) in this process: (exit status, stdout, stderr)."""
    try:
        main([str(a) for a in argv])
        code = 0
    except SystemExit as e:
        code = e.code
    out, err = capsys.readouterr()
    return code, out, err


def refused(argv, capsys, *words):
    code, out, err = run(argv, capsys)
    assert code == 2 and out == '' and err.count('\n') == 1 and err.startswith('error: '), (code, out, err)
    for word in words:
        assert word in err, err
    return err


def backbone_of(model):
    return {k: v for k, v in model.state_dict().items() if not k.startswith('head.')}


def same(a, b):
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


# -- --weights ----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize('weights, method', [('peer_model', 'cotrain'), ('model_ema', 'mean_teacher')])
def test_weights_round_trip(tmp_path, capsys, weights, method):
    ckpt = training_checkpoint(tmp_path / 'checkpoint.pth', method, **{weights: tiny(1).state_dict()})
    for name, expected in ((weights, tiny(1)), ('model', tiny(0))):
        out = tmp_path / f'{name}.pth'
        code, printed, _ = run([ckpt, '--weights', name, out], capsys)
        assert code == 0 and f'tensors of vit_t(' in printed and name in printed
        stored = backbones.load_file(out)
        assert stored['weights'] == name and stored['model_name'] == 'vit_t' and 'optimizer' not in stored
        assert same(stored['model'], backbone_of(expected))
        model = create_model('vit_t', num_classes=0, img_size=32, **SHAPE)
        assert load_checkpoint(model, out, strict=True).ok
    # the Python API takes the same name
    info = export_backbone(ckpt, tmp_path / 'api.safetensors', weights=weights)
    assert info['weights'] == weights and same(backbones.load_file(tmp_path / 'api.safetensors'),
                                               backbone_of(tiny(1)))


def test_weights_a_method_declares_are_exported(tmp_path, capsys, monkeypatch):
    """A method's extra weights are its class's declaration (pretrain/methods.py `Method.saves`): one registered at
    run time is exported by --weights, titled in the model card and read with its metrics, with no other change."""
    monkeypatch.setitem(methods.METHODS, 'swa', None)  # registered for this test only (undone after it)

    @methods.register
    class StochasticWeightAveraging(methods.Method):
        name = 'swa'
        row = 'SWA (an example)'
        figure_2 = None
        saves = {'model_swa': ('the average of the weights', '_swa')}

    (tmp_path / 'run').mkdir()
    ckpt = training_checkpoint(tmp_path / 'run' / 'checkpoint.pth', 'swa', model_swa=tiny(1).state_dict())
    (tmp_path / 'run' / 'log.jsonl').write_text(json.dumps(dict(epoch=0, val_top1=61.25, val_top1_swa=63.5)) + '\n')
    code, printed, err = run([ckpt, '--hub-dir', tmp_path / 'hub', '--weights', 'model_swa'], capsys)
    assert code == 0, err
    assert same(backbones.load_file(tmp_path / 'hub' / 'model.safetensors'), tiny(1).state_dict())
    card = (tmp_path / 'hub' / 'README.md').read_text()
    assert 'the average of the weights' in card and '63.5' in card and '61.25' not in card
    refused([ckpt, '--weights', 'model_ema', tmp_path / 'out.pth'], capsys, 'holds no model_ema',
            'its weights: model, model_swa')


def test_weights_with_hub_dir(tmp_path, capsys):
    (tmp_path / 'run').mkdir()
    ckpt = training_checkpoint(tmp_path / 'run' / 'checkpoint.pth', 'cotrain', peer_model=tiny(1).state_dict())
    (tmp_path / 'run' / 'log.jsonl').write_text(json.dumps(dict(epoch=0, val_top1=61.25, val_top1_peer=58.5)) + '\n')
    code, printed, err = run([ckpt, '--hub-dir', tmp_path / 'hub', '--weights', 'peer_model'], capsys)
    assert code == 0, err
    weights = backbones.load_file(tmp_path / 'hub' / 'model.safetensors')
    assert same(weights, tiny(1).state_dict())  # timm's names are ours
    card = (tmp_path / 'hub' / 'README.md').read_text()
    assert "co-training's second model" in card and '| best val_top1 | 0 | 58.5 |' in card and '61.25' not in card
    theirs = timm.create_model('local-dir:' + str(tmp_path / 'hub'), pretrained=True).eval()
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(theirs(x), tiny(1)(x))


def test_weights_the_checkpoint_lacks_are_refused(tmp_path, capsys):
    ckpt = training_checkpoint(tmp_path / 'checkpoint.pth', 'cotrain', peer_model=tiny(1).state_dict())
    refused([ckpt, '--weights', 'model_ema', tmp_path / 'out.pth'], capsys, 'holds no model_ema',
            '--method mean_teacher', 'its weights: model, peer_model')
    refused([ckpt, '--weights', 'model_ema', '--hub-dir', tmp_path / 'hub'], capsys, 'holds no model_ema')
    assert sorted(p.name for p in tmp_path.iterdir()) == ['checkpoint.pth']  # nothing written
    refused([ckpt, '--weights', 'teacher', tmp_path / 'out.pth'], capsys,
            'holds no teacher; its weights: model, peer_model')


@pytest.mark.parametrize('weights, method, title', [('peer_model', 'cotrain', "co-training's second model"),
                                                    ('model_ema', 'mean_teacher', "the mean teacher's EMA")])
def test_checkpoint_written_before_saved_weights(tmp_path, capsys, weights, method, title):
    """A checkpoint without the 'saved_weights' key (written before it existed): its peer_model / model_ema are
    still found, titled and refused by name (backbones/checkpoint.py's legacy table)."""
    (tmp_path / 'run').mkdir()
    ckpt = training_checkpoint(tmp_path / 'run' / 'checkpoint.pth', method, described=False,
                               **{weights: tiny(1).state_dict()})
    assert 'saved_weights' not in backbones.load_file(ckpt)
    code, _, err = run([ckpt, '--hub-dir', tmp_path / 'hub', '--weights', weights], capsys)
    assert code == 0, err
    assert same(backbones.load_file(tmp_path / 'hub' / 'model.safetensors'), tiny(1).state_dict())
    assert title in (tmp_path / 'hub' / 'README.md').read_text()
    other = 'model_ema' if weights == 'peer_model' else 'peer_model'
    refused([ckpt, '--weights', other, tmp_path / 'out.pth'], capsys, f'holds no {other} (written by --method ',
            f'its weights: model, {weights}')


# -- outputs ------------------------------------------------------------------------------------------------------
def test_existing_output_refused_unless_overwrite(tmp_path, capsys):
    ckpt = training_checkpoint(tmp_path / 'checkpoint.pth')
    out = tmp_path / 'bb.pth'
    out.write_bytes(b'an earlier export')
    refused([ckpt, out], capsys, str(out), 'exists', '--overwrite')
    assert out.read_bytes() == b'an earlier export'
    assert run([ckpt, out, '--overwrite'], capsys)[0] == 0
    assert same(backbones.load_file(out)['model'], backbone_of(tiny(0)))

    (tmp_path / 'folder').mkdir()
    refused([ckpt, tmp_path / 'folder'], capsys, 'is a folder', '--hub-dir')

    hub = tmp_path / 'hub'
    hub.mkdir()
    (hub / '.gitattributes').write_text('*.safetensors filter=lfs\n')  # a clone of a Hub repository
    (hub / 'README.md').write_text('old card')
    refused([ckpt, '--hub-dir', hub], capsys, 'not an empty folder', '--overwrite')
    assert run([ckpt, '--hub-dir', hub, '--overwrite'], capsys)[0] == 0
    assert sorted(p.name for p in hub.iterdir()) == ['.gitattributes', 'README.md', 'config.json',
                                                     'model.safetensors']
    assert 'old card' not in (hub / 'README.md').read_text()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith('.')] == []  # no temporary folder left


# -- what the weights are -------------------------------------------------------------------------------------------
def test_no_vit_and_no_name_refused(tmp_path, capsys):
    save_file({'model': {'conv.weight': torch.zeros(8, 3, 3, 3), 'conv.bias': torch.zeros(8)}}, tmp_path / 'c.pth')
    refused([tmp_path / 'c.pth', tmp_path / 'out.pth'], capsys, 'holds no ViT', 'found 2 tensors: conv.weight',
            '--model')
    refused([tmp_path / 'c.pth', '--hub-dir', tmp_path / 'hub'], capsys, 'holds no ViT')
    # a name that the weights are not those of
    refused([tmp_path / 'c.pth', tmp_path / 'out.pth', '--model', 'vit_t'], capsys, 'not those of vit_t',
            'missing')
    assert sorted(p.name for p in tmp_path.iterdir()) == ['c.pth']


def test_timm_architecture_exported_as_itself(tmp_path, capsys):
    torch.manual_seed(0)
    cnn = create_model('resnet10t', num_classes=5)
    save_file(dict(format='cosub', version=1, model_name='resnet10t', num_classes=5, img_size=32,
                   model=cnn.state_dict(), config=dict(model=dict(name='resnet10t', drop_path_rate=0.05))),
              tmp_path / 'checkpoint.pth')
    code, printed, err = run([tmp_path / 'checkpoint.pth', tmp_path / 'bb.pth'], capsys)
    assert code == 0 and 'of resnet10t(' in printed and '(2 head tensors dropped)' in printed, err
    assert backbones.load_file(tmp_path / 'bb.pth')['model_name'] == 'resnet10t'
    backbone = create_model('resnet10t', num_classes=0)
    assert load_checkpoint(backbone, tmp_path / 'bb.pth', strict=True).ok
    assert same(backbone.state_dict(), {k: v for k, v in cnn.state_dict().items() if not k.startswith('fc.')})


def official_layout(model):
    """A state dict as facebookresearch/deit publishes DeiT III (models_v2.py): LayerScale as gamma_1/gamma_2."""
    return {k.replace('.ls1.gamma', '.gamma_1').replace('.ls2.gamma', '.gamma_2'): v
            for k, v in model.state_dict().items()}


def test_official_deit3_file_architecture_from_shapes(tmp_path, capsys):
    with torch.device('meta'):
        model = create_model('vit_t', num_classes=5, img_size=32).eval()  # 192 wide, 12 deep: DeiT-Ti's shape
    model.to_empty(device='cpu')  # random weights without the (slow) truncated-normal initialisation
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, p in model.named_parameters():
            p.normal_(1.0 if 'norm' in name and name.endswith('weight') else 0.0, 0.5 if 'gamma' in name else 0.05,
                      generator=generator)
    save_file({'model': official_layout(model)}, tmp_path / 'deit_3_tiny.pth')  # no model_name, no config

    code, printed, err = run([tmp_path / 'deit_3_tiny.pth', '--hub-dir', tmp_path / 'hub'], capsys)
    assert code == 0, err
    config = json.loads((tmp_path / 'hub' / 'config.json').read_text())
    assert config['architecture'] == 'deit3_small_patch16_224' and config['num_classes'] == 5
    assert config['model_args']['embed_dim'] == 192 and config['model_args']['num_heads'] == 3
    assert config['model_args']['img_size'] in (32, [32, 32])
    theirs = timm.create_model('local-dir:' + str(tmp_path / 'hub'), pretrained=True).eval()
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(theirs(x), model(x))

    assert run([tmp_path / 'deit_3_tiny.pth', tmp_path / 'bb.pth'], capsys)[0] == 0
    stored = backbones.load_file(tmp_path / 'bb.pth')
    assert stored['model_name'] == 'vit_t' and stored['img_size'] == 32
    assert same(stored['model'], backbone_of(model))  # gamma_1 -> ls1.gamma


def test_architecture_inference_reads_every_shape():
    with torch.device('meta'):  # shapes only
        deit3 = create_model('vit_t', num_classes=7, img_size=48)
        plain = create_model('vit_s', num_classes=0, patch_size=8, mlp_ratio=3.0, qkv_bias=False, init_values=None,
                             in_chans=1, img_size=64)
        timm_vit = timm.create_model('vit_small_patch16_224', num_classes=3)  # pos_embed with a class-token slot
    assert infer_vit_architecture(official_layout(deit3)) == ('vit_t', dict(img_size=48, num_classes=7))
    assert infer_vit_architecture({f'module.{k}': v for k, v in plain.state_dict().items()}) == \
        ('vit_s', dict(patch_size=8, in_chans=1, mlp_ratio=3.0, qkv_bias=False, init_values=None, img_size=64,
                       num_classes=0))
    assert infer_vit_architecture(timm_vit.state_dict()) == ('vit_s', dict(init_values=None, img_size=224,
                                                                           num_classes=3))
    assert infer_vit_architecture({'conv.weight': torch.zeros(8, 3, 3, 3)}) is None


def test_vit_of_unknown_shape_refused_then_named(tmp_path, capsys):
    save_file({'model': official_layout(tiny(0))}, tmp_path / 'w.pth')  # 48 wide, 2 deep: heads unknown
    refused([tmp_path / 'w.pth', '--hub-dir', tmp_path / 'hub'], capsys, 'width 48, depth 2, patch (8, 8)',
            '--model')
    refused([tmp_path / 'w.pth', tmp_path / 'bb.pth'], capsys, 'width 48, depth 2')
    code, printed, err = run([tmp_path / 'w.pth', tmp_path / 'bb.pth', '--model', 'vit_t'], capsys)
    assert code == 0 and 'embed_dim=48' in printed, err
    model = create_model('vit_t', num_classes=0, img_size=32, **SHAPE)
    assert load_checkpoint(model, tmp_path / 'bb.pth', strict=True).ok


def test_vit_without_layerscale_is_named_so_for_timm():
    # timm.create_model drops None arguments: "no LayerScale" must reach timm's ViT as init_values=0
    name, args = timm_architecture('vit_s', dict(init_values=None), 224)
    assert (name, args) == ('deit3_small_patch16_224', dict(init_values=0))
    with torch.device('meta'):
        theirs = timm.create_model(name, **args)
        ours = create_model('vit_s', init_values=None)
    assert theirs.state_dict().keys() == ours.state_dict().keys()
    assert timm_architecture('vit_s', dict(init_values=1e-5), 224) == ('deit3_small_patch16_224', {})
