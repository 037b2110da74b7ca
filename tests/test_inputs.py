"""Bad input ends in one line naming the cause (issue 9): config keys and values, checkpoints, image files and
dataset folders, annotation paths. Every case is generated here; CPU, a few seconds."""
from __future__ import annotations

import json
import logging
import os
import pickle
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import backbones
from backbones import CheckpointError, load_checkpoint, load_file, save_file
from pretrain.config import ConfigError, parse, validate_overrides
from pretrain.data import DataError, FolderIndex, ImageFolderDataset, ImageReadError, build_splits, load_rgb
import transfer.data  # noqa: F401  (registers the transfer datasets)

from conftest import ROOT, write_image


def tiny(**kwargs):
    return backbones.create_model('vit_t', embed_dim=32, depth=2, num_heads=2, patch_size=8, img_size=32,
                                  num_classes=4, **kwargs)


# -- the command line: unknown keys, types, device, input size ----------------------------------------------------
def cli_error(capsys, *argv) -> str:
    """Parse a command line that must be refused: exit code 2 and one line on stderr, the message."""
    with pytest.raises(SystemExit) as e:
        parse(['--cfg', 'vit_s', *argv])
    assert e.value.code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].endswith('(see --help)'), lines
    return lines[0]


def test_unknown_key_is_refused_with_the_closest_valid_key(capsys):
    line = cli_error(capsys, '--cfg-options', 'optimizer.weight_decy=0.1')
    assert 'optimizer.weight_decy=0.1: unknown config key; did you mean optimizer.weight_decay?' in line
    assert 'did you mean optimizer.lr?' in cli_error(capsys, '--cfg-options', 'lr=0.1')  # same name, other group
    assert 'did you mean epochs?' in cli_error(capsys, '--cfg-options', 'epoch=3')
    assert 'unknown config key' in cli_error(capsys, '--cfg-options', 'data.no_such_setting=1')
    assert 'epochs is a value (800), not a group' in cli_error(capsys, '--cfg-options', 'epochs.x=1')
    from transfer.finetune import main as finetune
    with pytest.raises(SystemExit) as e:  # the transfer entry point: its dataset's keys
        finetune(['--dataset', 'flowers', '--cfg-options', 'data.train_split=[trnid]'])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert "data.train_split=['trnid']: unknown config key; did you mean data.train_splits?" in err, err


def test_model_keys_are_the_constructor_arguments(capsys):
    line = cli_error(capsys, '--cfg-options', 'model.patch_sise=8')
    assert "model 'vit_s' takes no argument 'patch_sise'; did you mean model.patch_size?" in line
    assert 'not divisible by num_heads' in cli_error(capsys, '--cfg-options', 'model.embed_dim=31')
    assert "unknown model; did you mean vit_t?" in cli_error(capsys, '--cfg-options', 'model.name=vit_q')
    cfg = parse(['--cfg', 'vit_s', '--input-size', '32', '--cfg-options', 'model.patch_size=8', 'model.depth=2'])
    assert (cfg.model.patch_size, cfg.model.depth) == (8, 2)  # new keys the constructor takes are accepted


def test_wrong_types_name_the_key_and_the_type(capsys):
    assert "optimizer.lr='fast': expected a number" in cli_error(capsys, '--cfg-options', 'optimizer.lr=fast')
    line = cli_error(capsys, '--cfg-options', 'epochs=abc')
    assert "epochs='abc': expected an integer (the config has epochs=800)" in line
    assert 'expected an integer' in cli_error(capsys, '--cfg-options', 'batch_size=2.5')
    assert 'expected true or false' in cli_error(capsys, '--cfg-options', 'cosub.soft=1')
    assert 'expected a list of numbers' in cli_error(capsys, '--cfg-options', 'data.train_transform.rrc_scale=[a,b]')
    assert "invalid int value: 'abc'" in cli_error(capsys, '--epochs', 'abc')  # the flag: argparse's own check


def test_values_that_fit_are_kept():
    cfg = parse(['--cfg', 'vit_s', '--cfg-options', 'optimizer.lr=1', 'optimizer.weight_decay=0', 'data.val_split=None',
                 'train.amp=None', 'data.path=2024', 'data.train_transform.rrc_scale=[0.5,1]', 'epochs=3'])
    assert cfg.optimizer.lr == 1 and cfg.optimizer.weight_decay == 0  # a float key takes an integer
    assert cfg.data.val_split is None and cfg.train.amp is None      # strings take None ("off")
    assert cfg.data.path == '2024' and cfg.epochs == 3                # a number for a string key: its text
    assert tuple(cfg.data.train_transform.rrc_scale) == (0.5, 1)


def test_none_valued_keys_follow_the_documented_rule():
    cfg = parse(['--cfg', 'vit_s'])
    for key, value in [('optimizer.lr', 0.5), ('micro_batch_size', 16), ('data.v2_path', '/x'), ('finetune', 'a.pth')]:
        validate_overrides(cfg, {key: value}, {key})
    with pytest.raises(ConfigError, match="micro_batch_size='auto': expected an integer"):
        validate_overrides(cfg, {'micro_batch_size': 'auto'}, {'micro_batch_size'})
    with pytest.raises(ConfigError, match='epochs=None: expected an integer'):  # numbers take no None
        validate_overrides(cfg, {'epochs': None}, {'epochs'})


def test_device_and_input_size(capsys):
    assert '--device tpu: expected auto, cpu, cuda or cuda:N' in cli_error(capsys, '--device', 'tpu')
    line = cli_error(capsys, '--input-size', '17')
    assert '--input-size 17: input size 17 is not a multiple of the patch size 16 of vit_s; use 16 or 32' in line
    assert 'positive' in cli_error(capsys, '--input-size', '0')
    for device in ('auto', 'cpu', 'cuda', 'cuda:1'):
        assert parse(['--cfg', 'vit_s', '--device', device]).device == device
    with pytest.raises(ValueError, match='not a multiple of the patch size 8'):  # also when built directly
        backbones.create_model('vit_t', patch_size=8, img_size=20)


def test_compile_mode(capsys):
    line = cli_error(capsys, '--cfg-options', 'train.compile_mode=fast')
    assert "train.compile_mode='fast': expected one of default, reduce-overhead, max-autotune" in line
    assert parse(['--cfg', 'vit_s', '--cfg-options', 'train.compile_mode=default']).train.compile_mode == 'default'


def test_command_line_error_has_no_traceback(tmp_path):
    out = subprocess.run([sys.executable, '-m', 'pretrain.train', '--cfg', 'vit_s', '--output-dir', str(tmp_path),
                          '--cfg-options', 'optimizer.weight_decy=0.1'], cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 2 and len(out.stderr.strip().splitlines()) == 1, out.stderr
    assert 'did you mean optimizer.weight_decay?' in out.stderr
    assert not any(tmp_path.iterdir())  # refused before anything is written


# -- checkpoints ----------------------------------------------------------------------------------------------
def test_zero_byte_and_truncated_checkpoints_name_the_file(tmp_path):
    good_pth, good_st = tmp_path / 'good.pth', tmp_path / 'good.safetensors'
    save_file({'model': tiny().state_dict()}, good_pth)
    save_file(tiny().state_dict(), good_st)
    torch.save({'model': tiny().state_dict()}, tmp_path / 'legacy.pth', _use_new_zipfile_serialization=False)
    cases = {'empty.pth': b'', 'empty.safetensors': b'',
             'cut.pth': good_pth.read_bytes()[:5000], 'cut.safetensors': good_st.read_bytes()[:5000],
             'cut_legacy.pth': (tmp_path / 'legacy.pth').read_bytes()[:3000],
             'cut_early.pth': (tmp_path / 'legacy.pth').read_bytes()[:10]}
    expected = {'empty.pth': 'empty file (0 bytes)', 'empty.safetensors': 'empty file (0 bytes)',
                'cut.pth': 'truncated torch checkpoint', 'cut.safetensors': 'truncated or damaged',
                'cut_legacy.pth': 'truncated or damaged', 'cut_early.pth': 'truncated or damaged'}
    for name, data in cases.items():
        (tmp_path / name).write_bytes(data)
        for allow_pickle in (False, True):
            with pytest.raises(CheckpointError) as e:
                load_checkpoint(tiny(), tmp_path / name, allow_pickle=allow_pickle)
            message = str(e.value)
            assert message.startswith(f'{tmp_path / name}: ') and '\n' not in message, message
            assert expected[name] in message or (allow_pickle and 'not a readable' in message), message


class Exploit:
    def __reduce__(self):
        return (os.system, ('echo pwned > /dev/null',))


def test_malicious_pickle_is_still_refused(tmp_path):
    for name, legacy in (('evil.pth', False), ('evil_legacy.pth', True)):
        torch.save({'model': tiny().state_dict(), 'payload': Exploit()}, tmp_path / name,
                   _use_new_zipfile_serialization=not legacy)
        for mmap in (False, True):
            with pytest.raises(CheckpointError, match=r'refused to load.*(posix|os)\.system'):
                load_file(tmp_path / name, mmap=mmap)
    # a pickle naming a global that is not loaded (or cut short) is refused just the same
    (tmp_path / 'odd.pth').write_bytes(pickle.dumps(Exploit()).replace(b'posix', b'nosuchmod'))
    with pytest.raises(CheckpointError, match='odd.pth: not a readable torch checkpoint'):
        load_file(tmp_path / 'odd.pth')


def test_strict_loading_refuses_what_does_not_fit(tmp_path):
    model = tiny()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    deeper = backbones.create_model('vit_t', embed_dim=32, depth=3, num_heads=2, patch_size=8, img_size=32,
                                    num_classes=4)
    save_file({'model': deeper.state_dict()}, tmp_path / 'deeper.pth')
    with pytest.raises(CheckpointError) as e:
        load_checkpoint(model, tmp_path / 'deeper.pth', strict=True)
    message = str(e.value)
    assert message.startswith(f'{tmp_path / "deeper.pth"}: does not fit model vit_t strictly: ')
    assert re.search(r'0 missing, \d+ unexpected, 0 misshaped tensors; unexpected: blocks\.2\.', message)
    assert '\n' not in message
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # nothing was copied
    wider = backbones.create_model('vit_t', embed_dim=48, depth=2, num_heads=2, patch_size=8, img_size=32,
                                   num_classes=4)
    save_file({'model': wider.state_dict()}, tmp_path / 'wider.pth')
    with pytest.raises(CheckpointError, match=r'misshaped tensors; misshaped: '):
        load_checkpoint(model, tmp_path / 'wider.pth', strict=True)
    other_head = backbones.create_model('vit_t', embed_dim=32, depth=2, num_heads=2, patch_size=8, img_size=32,
                                        num_classes=10)
    save_file({'model': other_head.state_dict()}, tmp_path / 'head10.pth')
    with pytest.raises(CheckpointError, match=r'2 misshaped tensors; misshaped: head.weight \(classifier'):
        load_checkpoint(model, tmp_path / 'head10.pth', strict=True)
    assert load_checkpoint(model, tmp_path / 'head10.pth').replaced == ['head.weight', 'head.bias']  # non-strict


def test_nothing_fits_is_refused_even_when_not_strict(tmp_path):
    resnet = backbones.create_model('resnet18', num_classes=4)
    save_file({'model': resnet.state_dict()}, tmp_path / 'resnet.pth')
    with pytest.raises(CheckpointError, match=r'resnet.pth: does not fit model vit_t at all, none of its tensors'):
        load_checkpoint(tiny(), tmp_path / 'resnet.pth')
    save_file({'step': torch.tensor(3), 'optimizer_state': torch.zeros(2)}, tmp_path / 'state_only.pth')
    with pytest.raises(CheckpointError, match=r'state_only.pth: does not fit model vit_t at all.*unexpected: '):
        load_checkpoint(tiny(), tmp_path / 'state_only.pth')


# -- image files ----------------------------------------------------------------------------------------------
def pixels(path) -> np.ndarray:
    image = load_rgb(path)
    assert image.mode == 'RGB'
    return np.asarray(image)


def test_16_bit_png_is_scaled_not_white(tmp_path):
    ramp = (np.arange(16, dtype=np.uint16).reshape(4, 4) * 4369)  # 0 ... 65535
    Image.fromarray(ramp).save(tmp_path / 'grey16.png')
    assert Image.open(tmp_path / 'grey16.png').mode == 'I;16'
    rgb = pixels(tmp_path / 'grey16.png')
    assert rgb[..., 0].tolist() == (np.arange(16).reshape(4, 4) * 17).tolist()  # 4369 / 257 = 17
    assert (rgb[..., 0] == rgb[..., 1]).all() and (rgb[..., 1] == rgb[..., 2]).all()
    from pretrain.data import to_rgb
    as_int = to_rgb(Image.fromarray(ramp.astype(np.int32), 'I'), 'grey.tif')  # mode 'I', as 16-bit TIFFs may give
    assert np.asarray(as_int)[..., 0].tolist() == rgb[..., 0].tolist()


def test_palette_cmyk_and_alpha_convert(tmp_path):
    palette = Image.new('P', (2, 1))
    palette.putpalette([200, 10, 20, 0, 0, 255] + [0] * 762)
    palette.putpixel((1, 0), 1)
    palette.save(tmp_path / 'palette.png', transparency=1)  # colour 1 is transparent
    assert pixels(tmp_path / 'palette.png').tolist() == [[[200, 10, 20], [255, 255, 255]]]
    palette.save(tmp_path / 'palette_opaque.png')
    assert pixels(tmp_path / 'palette_opaque.png').tolist() == [[[200, 10, 20], [0, 0, 255]]]
    Image.new('CMYK', (1, 1), (255, 0, 0, 0)).save(tmp_path / 'cyan.tif')
    Image.new('CMYK', (1, 1), (0, 0, 0, 255)).save(tmp_path / 'black.tif')
    assert pixels(tmp_path / 'cyan.tif').tolist() == [[[0, 255, 255]]]
    assert pixels(tmp_path / 'black.tif').tolist() == [[[0, 0, 0]]]
    Image.new('RGBA', (2, 1), (255, 0, 0, 0)).save(tmp_path / 'rgba.png')  # fully transparent red
    Image.new('RGBA', (1, 1), (0, 0, 255, 255)).save(tmp_path / 'opaque.png')
    Image.new('RGBA', (1, 1), (0, 0, 0, 128)).save(tmp_path / 'half.png')
    assert pixels(tmp_path / 'rgba.png').tolist() == [[[255, 255, 255]] * 2]  # composited on white
    assert pixels(tmp_path / 'opaque.png').tolist() == [[[0, 0, 255]]]
    assert pixels(tmp_path / 'half.png').tolist() == [[[127, 127, 127]]]
    Image.new('LA', (1, 1), (0, 0)).save(tmp_path / 'la.png')
    assert pixels(tmp_path / 'la.png').tolist() == [[[255, 255, 255]]]


def test_decompression_bomb_is_refused_naming_the_file(tmp_path, monkeypatch):
    monkeypatch.setattr(Image, 'MAX_IMAGE_PIXELS', 1000)
    Image.new('RGB', (40, 40)).save(tmp_path / 'warns.png')    # 1600 pixels: PIL itself only warns (< 2x)
    Image.new('RGB', (100, 100)).save(tmp_path / 'raises.png')  # 10000: PIL raises
    for name in ('warns.png', 'raises.png'):
        with pytest.raises(ImageReadError, match=f'{name}: refused as a decompression bomb'):
            load_rgb(tmp_path / name)
    # an image opened lazily elsewhere (draft decoding) is refused at conversion too
    from pretrain.data import to_rgb
    with pytest.raises(ImageReadError, match='lazy.png: refused as a decompression bomb'):
        to_rgb(Image.new('RGB', (40, 40)), 'lazy.png')
    assert isinstance(ImageReadError('x'), ValueError)  # what the training loader counts as a bad image


def test_unreadable_image_raises_naming_the_file(tmp_path):
    write_image(tmp_path / 'good.jpg', np.random.default_rng(0))
    (tmp_path / 'cut.jpg').write_bytes((tmp_path / 'good.jpg').read_bytes()[:200])
    (tmp_path / 'text.png').write_text('not an image')
    for name in ('cut.jpg', 'text.png', 'missing.jpg'):
        with pytest.raises(ImageReadError, match=f'{name}: unreadable image'):
            load_rgb(tmp_path / name)


# -- image folders and the index cache ----------------------------------------------------------------------------
def folder(root: Path, classes=('a', 'b'), per_class=2) -> Path:
    rng = np.random.default_rng(0)
    for c in classes:
        for j in range(per_class):
            write_image(root / c / f'{j}.jpg', rng, size=(8, 8))
    return root


def test_empty_class_folder_is_refused(tmp_path):
    root = folder(tmp_path / 'train')
    (root / 'empty').mkdir()
    with pytest.raises(DataError, match=f'{root / "empty"}: empty class folder'):
        FolderIndex(root)
    (root / 'empty' / 'notes.txt').write_text('no image here')
    with pytest.raises(DataError, match='empty class folder'):
        FolderIndex(root)
    data = tmp_path / 'imagenet'
    folder(data / 'train'), folder(data / 'val')
    (data / 'val' / 'b' / '0.jpg').unlink(), (data / 'val' / 'b' / '1.jpg').unlink()
    cfg = parse(['--cfg', 'vit_s']).data.to_dict()
    with pytest.raises(DataError, match=f'{data / "val" / "b"}: empty class folder'):
        build_splits(dict(cfg, path=str(data)))


def test_symlink_loops_name_the_link(tmp_path):
    root = folder(tmp_path / 'train')
    (root / 'loop').symlink_to(root / 'loop')
    with pytest.raises(DataError, match=f'{root / "loop"}: a symbolic link loop'):
        FolderIndex(root)
    (root / 'loop').unlink()
    (root / 'a' / 'self.jpg').symlink_to(root / 'a' / 'self.jpg')
    with pytest.raises(DataError, match=f'{root / "a" / "self.jpg"}: a symbolic link loop'):
        FolderIndex(root)
    (root / 'a' / 'self.jpg').unlink()
    (root / 'a' / 'dangling.jpg').symlink_to(tmp_path / 'nowhere.jpg')
    with pytest.raises(DataError, match='dangling.jpg: a symbolic link that cannot be followed'):
        FolderIndex(root)


def test_corrupt_index_cache_is_rebuilt_with_one_warning(tmp_path, caplog):
    root = folder(tmp_path / 'train')
    cache = tmp_path / 'cache'
    first = FolderIndex(root, cache_dir=cache)
    [path] = cache.glob('index-*.npz')
    for damage in (b'garbage', path.read_bytes()[:100]):
        path.write_bytes(damage)
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger='pretrain.data'):
            again = FolderIndex(root, cache_dir=cache)
        warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
        assert len(warnings) == 1 and 'damaged index cache' in warnings[0].getMessage()
        assert str(path) in warnings[0].getMessage() and str(root) in warnings[0].getMessage()
        assert [again.relpath(i) for i in range(len(again))] == [first.relpath(i) for i in range(len(first))]
        np.load(path).close()  # rewritten, readable again
    ds = ImageFolderDataset(FolderIndex(root, cache_dir=cache))
    assert len(ds) == 4 and ds[3][1] == 1


# -- annotation paths stay under the data root --------------------------------------------------------------------
def inat(root: Path, val_name: str) -> Path:
    rng = np.random.default_rng(0)
    for split, name in (('train2018.json', 'train_val2018/Plantae/0/a.jpg'), ('val2018.json', val_name)):
        if name and not name.startswith('/') and '..' not in name:
            write_image(root / name, rng, size=(8, 8))
        (root / split).write_text(json.dumps({
            'images': [{'id': 1, 'file_name': name}], 'annotations': [{'image_id': 1, 'category_id': 0}],
            'categories': [{'id': 0, 'name': 'plant'}]}))
    return root


def test_inat_paths_outside_the_root_are_refused(tmp_path):
    cfg = dict(type='inat18', path=None)
    ok = build_splits(dict(cfg, path=str(inat(tmp_path / 'ok', 'train_val2018/Plantae/0/b.jpg'))))
    assert ok.val.path(0) == tmp_path / 'ok' / 'train_val2018/Plantae/0/b.jpg'
    for bad in ('../secret.jpg', 'train_val2018/../../secret.jpg', '/etc/passwd', ''):
        root = inat(tmp_path / f'bad{len(bad)}', bad)
        with pytest.raises(DataError) as e:
            build_splits(dict(cfg, path=str(root)))
        message = str(e.value)
        assert message.startswith(f'{root / "val2018.json"}: image id 1 names the file {bad!r}; expected a path '
                                  'relative to the data root'), message


def test_symbolic_links_out_of_the_root_are_refused(tmp_path):
    outside = folder(tmp_path / 'elsewhere', classes=('x',))
    root = inat(tmp_path / 'inat', 'train_val2018/Plantae/link/0.jpg')
    shutil.rmtree(root / 'train_val2018' / 'Plantae' / 'link')  # the folder becomes a link to one outside
    (root / 'train_val2018' / 'Plantae' / 'link').symlink_to(outside / 'x')
    with pytest.raises(DataError) as e:
        build_splits(dict(type='inat18', path=str(root)))
    assert str(e.value).startswith(f"{root / 'val2018.json'}: image id 1 names the file "
                                   f"'train_val2018/Plantae/link/0.jpg', whose folder is a symbolic link to "
                                   f"{outside / 'x'}, outside the data root {root}")
    train = folder(tmp_path / 'train')
    (train / 'c').symlink_to(outside / 'x')  # a class folder leading out of the root
    with pytest.raises(DataError, match=f"{train}: entry 4 names the file 'c/0.jpg', whose folder is a symbolic"):
        FolderIndex(train)
    inside = folder(tmp_path / 'inside')  # a link that stays inside the root is followed
    (inside / 'c').symlink_to(inside / 'a')
    assert len(FolderIndex(inside)) == 6


# -- the settings, described once (pretrain.config.SETTINGS) ------------------------------------------------------
@pytest.mark.parametrize('option,words', [
    ('cosub.lam=1.5', 'cosub.lam=1.5: expected a weight in [0, 1]'), ('kd.lam=-0.1', 'kd.lam=-0.1: expected a weight'),
    ('mean_teacher.lam=2', 'mean_teacher.lam=2'), ('cotrain.lam=1.01', 'cotrain.lam=1.01'),
    ('kd.temperature=0', 'kd.temperature=0: expected a positive number'),
    ('kd.target=argmax', "kd.target='argmax': expected one of hard, soft"),
    ('kd.mix=lable', "kd.mix='lable': expected one of peer, label"),  # would have trained 'peer', exit 0
    ('mean_teacher.warmup_gamma=0', 'mean_teacher.warmup_gamma=0: expected a positive number'),
    ('mean_teacher.decay=1', 'mean_teacher.decay=1: expected a number in [0, 1)'),
    ('cosub.num_submodels=2.5', 'cosub.num_submodels=2.5: expected an integer'),
    ('method=distill', "method='distill': expected one of baseline (a) supervised baseline, cosub (e) cosub"),
    ('loss.type=mse', "loss.type='mse': expected one of bce, ce"),
    ('model.drop_path_mode=dropout', "model.drop_path_mode='dropout': expected one of esd, mask, none"),
    ('data.backend=opencv', "data.backend='opencv': expected one of pil, dali"),
    ('device=None', 'device=None: expected auto, cpu, cuda or cuda:N'),  # None only where a key says what it means
])
def test_method_and_named_values_are_checked_at_the_edge(capsys, option, words):
    """The ranges of the method groups and the names a key allows are refused before anything is built, whatever the
    method (the losses and the blocks' forward trust them)."""
    assert words in cli_error(capsys, '--method', 'baseline', '--cfg-options', option)


def test_help_is_derived_from_the_settings(capsys):
    from pretrain.config import FLAG_KEYS, SETTINGS
    from pretrain.methods import METHODS
    assert set(FLAG_KEYS.values()) <= set(SETTINGS)  # every flag's key is described
    with pytest.raises(SystemExit) as e:
        parse(['--help'])
    assert e.value.code == 0
    text = ' '.join(capsys.readouterr().out.split())
    assert '--epochs EPOCHS training epochs (config key epochs: a whole number >= 1)' in text
    for name, cls in METHODS.items():  # read from the registered classes
        assert f'{name} {cls.row}' in text, name
    with pytest.raises(SystemExit) as e:
        parse(['--cfg', 'demo', '--epochs', '3', '--help-config'])
    assert e.value.code == 0
    lines = capsys.readouterr().out.splitlines()
    assert 'epochs = 3  # training epochs; takes a whole number >= 1' in lines
    assert ("optimizer.clip_grad = 1.0  # largest global gradient norm; takes a positive gradient norm "
            "(or None: no clipping)") in lines


def test_every_described_key_is_in_the_configs():
    """A key renamed in the configs but not in SETTINGS would go unchecked: each one is in a config."""
    from pretrain.config import SETTINGS, _flatten, find_config, load_config
    keys = set()
    for name, task in (('vit_b', 'pretrain'), ('demo', 'pretrain'), ('vit_b_ft_in1k', 'pretrain'),
                       ('flowers', 'transfer')):
        keys |= set(_flatten(load_config(find_config(name, task)).to_dict()))
    assert set(SETTINGS) - keys == set()
