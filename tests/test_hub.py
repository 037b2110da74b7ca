"""timm registry, forward_intermediates, Hub / local-dir checkpoint sources, the Hub export, torch.hub and the README.

Offline always: a Hugging Face cache is built in a temporary HF_HOME with the layout the Hub client writes
(hub/models--timm--deit3_small_patch16_224.fb_in1k/{refs/main, snapshots/<rev>/...}) holding the weights of timm's
own randomly initialised model, and HF_HUB_OFFLINE=1. DeiT III small stands for all sizes: it is the smallest
architecture timm publishes DeiT III weights for, and every size shares the code paths tested here.
"""
import hashlib
import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import safetensors.torch
import timm
import torch
from huggingface_hub import constants
from timm.models._hub import save_config_for_hf

import backbones
from backbones import CheckpointError, load_checkpoint, save_file
from backbones.export_backbone import main as export_main
from backbones.timm_registry import NAMES
from backbones.vit import VisionTransformer

ROOT = Path(__file__).resolve().parents[1]
REPO = 'timm/deit3_small_patch16_224.fb_in1k'
X = torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(0))


def add_to_cache(hf_home: Path, repo: str, model: torch.nn.Module, weights: str = 'model.safetensors') -> str:
    """Put `model` into the Hub cache under `repo` as huggingface_hub lays it out; returns the revision."""
    folder = hf_home / 'hub' / ('models--' + repo.replace('/', '--'))
    revision = hashlib.sha1(repo.encode()).hexdigest()
    snapshot = folder / 'snapshots' / revision
    snapshot.mkdir(parents=True)
    (folder / 'refs').mkdir()
    (folder / 'refs' / 'main').write_text(revision)
    if weights.endswith('.safetensors'):
        safetensors.torch.save_file(model.state_dict(), snapshot / weights)
    else:
        torch.save(model.state_dict(), snapshot / weights)
    save_config_for_hf(model, snapshot / 'config.json')
    return revision


_WEIGHTS = {}


def random_deit3(**kwargs) -> torch.nn.Module:
    """timm's DeiT III small with the same random weights at every call (initialised once, then assigned)."""
    if not _WEIGHTS:
        torch.manual_seed(0)
        model = timm.create_model('deit3_small_patch16_224')
        with torch.no_grad():  # LayerScale starts at 1e-6: give the blocks a visible effect on the logits
            for name, p in model.named_parameters():
                if name.endswith('.gamma'):
                    p.normal_(0, 0.2)
        _WEIGHTS.update(model.state_dict())
    with torch.device('meta'):
        model = timm.create_model('deit3_small_patch16_224', **kwargs)
    model.load_state_dict(_WEIGHTS, assign=True)
    return model.eval()


@pytest.fixture(scope='module')
def hf_home(tmp_path_factory):
    home = tmp_path_factory.mktemp('hf_home')
    model = random_deit3()
    revision = add_to_cache(home, REPO, model)
    with torch.no_grad():
        logits = model(X)
    add_to_cache(home, 'someone/deit3_small_bin', model, weights='pytorch_model.bin')
    return home, revision, logits


@pytest.fixture
def offline(hf_home, monkeypatch):
    """The fake cache as the Hub client's cache, offline (also for subprocesses, through the environment)."""
    home, revision, logits = hf_home
    monkeypatch.setenv('HF_HOME', str(home))
    monkeypatch.setenv('HF_HUB_OFFLINE', '1')
    monkeypatch.setattr(constants, 'HF_HUB_CACHE', str(home / 'hub'))
    monkeypatch.setattr(constants, 'HF_HUB_OFFLINE', True)
    return revision, logits


@pytest.mark.parametrize('name', ['vit_t', 'vit_h', 'vit_g'])
def test_hub_export_architecture_has_our_shapes(name):
    """A Hub export names timm's nearest DeiT III with our shape in model_args (ViT-g: DeiT III huge, width 1408,
    depth 40, MLP 6144): timm builds a model whose every parameter has our shape."""
    from backbones.export_backbone import timm_architecture
    timm_name, args = timm_architecture(name, {}, 224)
    with torch.device('meta'):
        theirs = timm.create_model(timm_name, **args)
        ours = backbones.create_model(name)
    assert {k: v.shape for k, v in theirs.state_dict().items()} == {k: v.shape for k, v in ours.state_dict().items()}


# -- timm registry -------------------------------------------------------------------------------------------------
def test_registry_names_tags_and_pretrained_cfgs():
    assert timm.list_models('cosub_*') == sorted(NAMES) and len(NAMES) == 10  # 4 sizes x 224, 384; huge and giant at 224
    for name in NAMES:
        deit3 = name.replace('cosub_vit_', 'deit3_')
        ours = {t.split('.', 1)[1] for t in timm.list_pretrained(f'{name}.*')}
        assert ours == {t.split('.', 1)[1] for t in timm.list_pretrained(f'{deit3}.*')}  # only tags timm has
        for tag in ours:
            cfg, ref = (timm.models.get_pretrained_cfg(f'{n}.{tag}') for n in (name, deit3))
            assert cfg.hf_hub_id == f'timm/{deit3}.{tag}'
            for key in ('input_size', 'mean', 'std', 'crop_pct', 'interpolation', 'num_classes'):
                assert getattr(cfg, key) == getattr(ref, key), (name, tag, key)
    cfg = timm.models.get_pretrained_cfg('cosub_vit_medium_patch16_384')  # no DeiT III weights at this size
    assert not cfg.hf_hub_id and cfg.input_size == (3, 384, 384) and cfg.crop_pct == 1.0
    with torch.device('meta'):
        model = timm.create_model('cosub_vit_large_patch16_224', drop_path_rate=0.45)
        hub = torch.hub.load(str(ROOT), 'cosub_vit_large_patch16_224', source='local', drop_path_mode='mask')
    assert type(model) is VisionTransformer and len(model.blocks) == 24 and model.embed_dim == 1024
    assert {(b.drop_path_rate, b.drop_path_mode) for b in backbones.stochastic_depth_blocks(model)} == {(0.45, 'esd')}
    assert type(hub) is VisionTransformer and hub.blocks[0].drop_path_mode == 'mask'


def test_pretrained_tag_equals_timm_and_torch_hub(offline):
    _, logits = offline
    ours = timm.create_model('cosub_vit_small_patch16_224.fb_in1k', pretrained=True).eval()
    theirs = timm.create_model('deit3_small_patch16_224.fb_in1k', pretrained=True).eval()
    hub = torch.hub.load(str(ROOT), 'cosub_vit_small_patch16_224', source='local', pretrained=True,
                         pretrained_tag='fb_in1k').eval()
    assert type(ours) is VisionTransformer and type(hub) is VisionTransformer
    with torch.no_grad():
        torch.testing.assert_close(theirs(X), logits)
        torch.testing.assert_close(ours(X), logits)
        torch.testing.assert_close(hub(X), logits)
    # another head size: the classifier is left out, as timm does for its own models
    five = timm.create_model('cosub_vit_small_patch16_224.fb_in1k', pretrained=True, num_classes=5)
    assert five.head.out_features == 5


def test_forward_intermediates_equal_timm():
    theirs = random_deit3(dynamic_img_size=True)  # timm's ViTs take other input sizes only so; ours always
    ours = timm.create_model('cosub_vit_small_patch16_224').eval()
    ours.load_state_dict(theirs.state_dict())
    x = X[:1, :, :160, :192]  # another input size: position embeddings interpolated by both
    with torch.no_grad():
        for kwargs in (dict(), dict(indices=[3, 5, 7, 11], norm=True), dict(indices=2, output_fmt='NLC'),
                       dict(indices=[0, -1], intermediates_only=True, stop_early=True)):
            a, b = theirs.forward_intermediates(x, **kwargs), ours.forward_intermediates(x, **kwargs)
            if not kwargs.get('intermediates_only'):
                torch.testing.assert_close(b[0], a[0])
                a, b = a[1], b[1]
            assert len(a) == len(b)
            for u, v in zip(a, b):
                torch.testing.assert_close(v, u)
    assert ours.feature_info == theirs.feature_info
    assert ours.prune_intermediate_layers([3, 5], prune_norm=True) == theirs.prune_intermediate_layers(
        [3, 5], prune_norm=True)
    assert len(ours.blocks) == 6 and isinstance(ours.norm, torch.nn.Identity) and ours.num_classes == 0
    features = timm.create_model('cosub_vit_small_patch16_224', features_only=True, out_indices=(3, 11))
    assert [f.shape for f in features(x)] == [(1, 384, 10, 12)] * 2 and features.feature_info.reduction() == [16, 16]


# -- checkpoint sources --------------------------------------------------------------------------------------------
def test_load_checkpoint_hf_hub_and_local_dir(offline, tmp_path):
    revision, logits = offline
    model = backbones.create_model('vit_s').eval()
    for source in (f'hf-hub:{REPO}', f'hf-hub:{REPO}@{revision}', 'hf-hub:someone/deit3_small_bin'):
        with torch.no_grad():
            model.head.weight.zero_()
        report = load_checkpoint(model, source, strict=True)
        assert report.ok and report.path == source
        with torch.no_grad():
            torch.testing.assert_close(model(X), logits)
    local = tmp_path / 'folder'
    local.mkdir()
    save_file(model.state_dict(), local / 'model.safetensors')
    fresh = backbones.create_model('vit_s').eval()
    load_checkpoint(fresh, f'local-dir:{local}', strict=True)
    with torch.no_grad():
        torch.testing.assert_close(fresh(X), logits)
    errors = {f'hf-hub:{REPO}@0123456789abcdef0123456789abcdef01234567': 'HF_HUB_OFFLINE',
              'hf-hub:nobody/nothing': 'neither model.safetensors nor pytorch_model.bin',
              'hf-hub:no-owner': r'expected hf-hub:<owner>/<repo>',
              f'local-dir:{tmp_path / "missing"}': 'is not a folder',
              f'local-dir:{tmp_path}': 'holds neither model.safetensors'}
    for source, message in errors.items():
        with pytest.raises(CheckpointError, match=re.escape(message) if '<' not in message else message) as e:
            load_checkpoint(model, source)
        assert '\n' not in str(e.value) and source.split('@')[0] in str(e.value)


def test_mmseg_config_init_cfg_from_hub_and_local_dir(offline, tmp_path):
    from mmengine.config import Config
    from backbones.registry import MODELS
    theirs = random_deit3()
    local = tmp_path / 'local'
    local.mkdir()
    safetensors.torch.save_file(theirs.state_dict(), local / 'model.safetensors')
    for checkpoint in (f'hf-hub:{REPO}', f'local-dir:{local}'):
        config = tmp_path / 'upernet_small.py'
        config.write_text(textwrap.dedent(f"""\
            model = dict(backbone=dict(type='backbones.CosubViT', arch='vit_s', img_size=224, out_indices=[3, 11],
                                       init_cfg=dict(type='Pretrained', checkpoint='{checkpoint}')))
            """))
        backbone = MODELS.build(Config.fromfile(str(config)).model.backbone)
        backbone.init_weights()
        with torch.no_grad():
            ours = backbone.eval()(X[:1])
            expected = theirs.forward_intermediates(X[:1], indices=[3, 11], intermediates_only=True)
        for u, v in zip(ours, expected):
            torch.testing.assert_close(u, v)


# -- export to a Hub folder ----------------------------------------------------------------------------------------
BLOCKED = ('backbones', 'pretrain', 'transfer', 'segmentation', 'cosub_configs')
WITHOUT_OUR_PACKAGE = f"""
import sys
class Blocker:  # this Python has no cosub: our packages cannot be imported (editable install or not)
    def find_spec(self, name, path=None, target=None):
        if name.split('.')[0] in {BLOCKED!r}:
            raise ModuleNotFoundError(name)
sys.meta_path.insert(0, Blocker())
try:
    import backbones
    sys.exit('backbones is importable')
except ModuleNotFoundError:
    pass
import timm, torch
x, out = torch.load(sys.argv[1]), {{}}
for folder in sys.argv[3:]:
    model = timm.create_model('local-dir:' + folder, pretrained=True).eval()
    with torch.no_grad():
        out[folder] = (type(model).__module__, model(x[:, :, :model.pretrained_cfg['input_size'][1],
                                                      :model.pretrained_cfg['input_size'][2]]))
torch.save(out, sys.argv[2])
"""


def training_run(folder: Path, name: str, num_classes: int, input_size: int, eval_crop_ratio: float = 1.0,
                 **model_args) -> tuple:
    """A checkpoint in our format with its config and log.jsonl, as a training run leaves them."""
    torch.manual_seed(1)
    model = backbones.create_model(name, num_classes=num_classes, img_size=input_size, **model_args).eval()
    with torch.no_grad():
        for n, p in model.named_parameters():
            if n.endswith('.gamma'):
                p.normal_(0, 0.2)
    config = dict(model=dict(name=name, num_classes=None, drop_path_rate=0.1, **model_args), input_size=input_size,
                  data=dict(type='digits', mean=[0.5] * 3, std=[0.5] * 3,
                                                eval_crop_ratio=eval_crop_ratio), epochs=2)
    save_file(dict(format='cosub', version=1, model_name=name, num_classes=num_classes, img_size=input_size,
                   model=model.state_dict(), config=config), folder / 'checkpoint.pth')
    (folder / 'log.jsonl').write_text(''.join(json.dumps(dict(epoch=e, train_loss=1.0 - e / 4, val_top1=top1,
                                                              val_top5=100.0)) + '\n'
                                              for e, top1 in enumerate([81.5, 93.75])))
    return model, folder / 'checkpoint.pth'


def test_export_loads_in_timm_without_our_package(tmp_path, capsys):
    (tmp_path / 'run_s').mkdir()
    (tmp_path / 'run_t').mkdir()
    standard, ckpt_s = training_run(tmp_path / 'run_s', 'vit_s', 10, 224)
    demo, ckpt_t = training_run(tmp_path / 'run_t', 'vit_t', 5, 16, embed_dim=96, depth=6, num_heads=3, patch_size=4)
    for ckpt, hub in ((ckpt_s, tmp_path / 'hub_s'), (ckpt_t, tmp_path / 'hub_t')):
        assert export_main([str(ckpt), '--hub-dir', str(hub)]) is None  # exit status 0
        assert sorted(p.name for p in hub.iterdir()) == ['README.md', 'config.json', 'model.safetensors']
    config = json.loads((tmp_path / 'hub_s' / 'config.json').read_text())
    assert config['architecture'] == 'deit3_small_patch16_224' and config['num_classes'] == 10
    assert config['pretrained_cfg']['mean'] == [0.5] * 3 and config['pretrained_cfg']['crop_pct'] == 1.0
    assert set(config.get('model_args', {})) <= {'num_classes', 'img_size', 'in_chans', 'global_pool'}
    config_t = json.loads((tmp_path / 'hub_t' / 'config.json').read_text())
    assert config_t['architecture'] == 'deit3_small_patch16_224'
    assert config_t['model_args']['embed_dim'] == 96 and config_t['model_args']['patch_size'] == 4
    card = (tmp_path / 'hub_s' / 'README.md').read_text()
    assert '| best val_top1 | 1 | 93.75 | 100 |' in card and 'Co-training $2^L$ Submodels' in card
    assert '"drop_path_rate": 0.1' in card and 'library_name: timm' in card

    torch.save(X, tmp_path / 'x.pt')
    env = {k: v for k, v in os.environ.items() if k != 'PYTHONPATH'}
    env['HF_HUB_OFFLINE'] = '1'
    result = subprocess.run([sys.executable, '-I', '-c', WITHOUT_OUR_PACKAGE, str(tmp_path / 'x.pt'),
                             str(tmp_path / 'out.pt'), str(tmp_path / 'hub_s'), str(tmp_path / 'hub_t')],
                            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    out = torch.load(tmp_path / 'out.pt')
    with torch.no_grad():
        for model, hub, x in ((standard, 'hub_s', X), (demo, 'hub_t', X[:, :, :16, :16])):
            module, logits = out[str(tmp_path / hub)]
            assert module == 'timm.models.vision_transformer'
            torch.testing.assert_close(logits, model(x))

    # nothing is overwritten; a file that is not a checkpoint is one line
    with pytest.raises(SystemExit) as refused:
        export_main([str(ckpt_s), '--hub-dir', str(tmp_path / 'hub_s')])
    assert refused.value.code == 2 and 'exists and is not an empty folder' in capsys.readouterr().err
    with pytest.raises(SystemExit):
        export_main([str(ckpt_s)])
    assert 'give either DST' in capsys.readouterr().err


def test_export_loads_in_transformers(offline, tmp_path):
    """transformers' TimmWrapper (AutoModel*, AutoImageProcessor) reads the exported folder as timm does: the same
    logits, features and preprocessing. Offline (the `offline` fixture): the folder is made here."""
    from PIL import Image
    from transformers import AutoImageProcessor, AutoModel, AutoModelForImageClassification
    model, ckpt = training_run(tmp_path, 'vit_t', 5, 16, eval_crop_ratio=0.875, embed_dim=96, depth=6, num_heads=3,
                               patch_size=4)
    export_main([str(ckpt), '--hub-dir', str(tmp_path / 'hub')])
    folder = str(tmp_path / 'hub')
    assert 'num_classes' not in json.loads((tmp_path / 'hub' / 'config.json').read_text())['model_args']
    theirs = timm.create_model('local-dir:' + folder, pretrained=True).eval()
    classifier = AutoModelForImageClassification.from_pretrained(folder).eval()
    backbone = AutoModel.from_pretrained(folder).eval()  # no head: features and the pooled (pre-logits) output
    x = X[:, :, :16, :16]
    with torch.no_grad():
        logits = model(x)
        torch.testing.assert_close(theirs(x), logits)
        torch.testing.assert_close(classifier(pixel_values=x).logits, logits)
        features = theirs.forward_features(x)
        out = backbone(pixel_values=x)
        torch.testing.assert_close(out.last_hidden_state, features)
        torch.testing.assert_close(out.pooler_output, theirs.forward_head(features, pre_logits=True))
    assert classifier.config.num_labels == 5
    # the image processor: timm's evaluation transform of the exported data config (resize to 16 / 0.875, centre
    # crop 16, the run's mean and std), on an image of another size and aspect
    image = Image.fromarray(torch.randint(0, 256, (23, 37, 3), generator=torch.Generator().manual_seed(0),
                                          dtype=torch.uint8).numpy())
    transform = timm.data.create_transform(**timm.data.resolve_data_config({}, model=theirs))
    pixels = AutoImageProcessor.from_pretrained(folder)(image)['pixel_values']
    assert pixels.shape == (1, 3, 16, 16)
    torch.testing.assert_close(pixels, transform(image)[None])


# -- the README section --------------------------------------------------------------------------------------------
def readme_snippets() -> list:
    text = (ROOT / 'README.md').read_text()
    section = text.split('## Use with timm, the Hub and MMSeg', 1)[1].split('\n## ', 1)[0]
    return re.findall(r'```python\n(.*?)```', section, flags=re.S)


def test_readme_snippets_run(offline, tmp_path):
    snippets = readme_snippets()
    assert len(snippets) == 3
    run = tmp_path / 'outputs' / 'demo' / 'pretrain'  # where `python -m pretrain.demo` leaves its cosub run
    run.mkdir(parents=True)
    training_run(run, 'vit_t', 5, 16, embed_dim=96, depth=6, num_heads=3, patch_size=4)
    # one Python for the three (imports take most of the time), each snippet in its own namespace
    runner = 'import sys, json\nfor i, code in enumerate(json.loads(sys.argv[1])):\n' \
             '    print(f"snippet {i + 1}", flush=True)\n    exec(compile(code, f"README snippet {i + 1}", "exec"), {})\n'
    result = subprocess.run([sys.executable, '-c', runner, json.dumps(snippets)], cwd=tmp_path, capture_output=True,
                            env=dict(os.environ, PYTHONPATH=str(ROOT)), text=True, timeout=300)
    assert result.returncode == 0, f'{result.stdout}\n{result.stderr[-3000:]}'
    assert (tmp_path / 'hub' / 'demo' / 'config.json').is_file()


# -- configs of each entry point, from any folder ------------------------------------------------------------------
def test_find_config_by_task_from_any_folder(tmp_path, monkeypatch):
    import argparse
    from pretrain.config import add_common_args, find_config, list_configs
    monkeypatch.chdir(tmp_path)
    pretrain, transfer, segmentation = (set(list_configs(t)) for t in ('pretrain', 'transfer', 'segmentation'))
    assert {'demo', 'vit_l'} <= pretrain and {'digits', 'flowers'} <= transfer and 'upernet_demo' in segmentation
    assert not pretrain & segmentation and not any(n.startswith('upernet_') for n in pretrain | transfer)
    assert find_config('vit_l') == ROOT / 'configs' / 'vit_l.py'
    assert find_config('digits', 'transfer') == ROOT / 'configs' / 'transfer' / 'digits.py'
    assert find_config('upernet_demo', 'segmentation') == ROOT / 'configs' / 'upernet_demo.py'
    with pytest.raises(FileNotFoundError) as e:
        find_config('upernet_demo', 'pretrain')
    message = str(e.value)
    assert "'upernet_demo' is a segmentation config (mim train mmseg" in message and 'vit_l' in message
    assert 'upernet_vit_l_cosub,' not in message and 'flowers' not in message.split('available:')[1]
    (tmp_path / 'mine.py').write_text("_base_ = ['%s']\n" % (ROOT / 'configs' / 'demo.py'))
    assert find_config('mine.py', 'transfer') == Path('mine.py')  # a path: any task's file
    with pytest.raises(FileNotFoundError, match='config file missing.py not found'):
        find_config('missing.py')
    args = add_common_args(argparse.ArgumentParser()).parse_args(['--pretrained', 'hf-hub:timm/x'])
    assert args.finetune == 'hf-hub:timm/x'  # transfer/finetune.py --pretrained is --finetune
