"""Transfer learning: tiny datasets generated in each official on-disk format (CIFAR pickles, Flowers-102 and
Stanford Cars .mat files, iNaturalist JSON), a short CPU fine-tune on each from a checkpoint with another head
size, attention-only fine-tuning, the architecture taken from the checkpoint, the format errors that must give
one clear line, and the summary table."""
from __future__ import annotations

import json
import math
import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import scipy.io
import torch

import backbones
from pretrain.config import find_config, parse
from pretrain.data import DataError, build_splits
import transfer.data  # noqa: F401  (registers the datasets)
from transfer import summary
from transfer.finetune import finetune as main  # the record; the console script's main() returns None

from conftest import ROOT, write_image

TINY_ARCH = dict(name='vit_t', embed_dim=32, depth=2, num_heads=2, patch_size=8)
TINY = [f'model.{k}={v}' for k, v in TINY_ARCH.items()] + ['data.num_workers=0', 'optimizer.lr=1e-3',
                                                         'schedule.warmup_epochs=0']
PRETRAINED_CLASSES = 7  # differs from every dataset below, so the head is always replaced


# -- fixtures in the official formats ---------------------------------------------------------------------------
def _cifar_pickle(path: Path, obj: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    # bytes keys: what the Python 2 originals hold (read with latin1 they come back as str; we accept both)
    with open(path, 'wb') as f:
        pickle.dump({k.encode(): v for k, v in obj.items()}, f, protocol=2)


def _cifar_rows(rng, labels) -> np.ndarray:
    """Channel-major 32x32 rows whose colour depends on the label (learnable)."""
    base = (np.asarray(labels)[:, None] * np.array([67, 131, 29])) % 256
    img = np.clip(base[:, :, None] + rng.normal(0, 30, (len(labels), 3, 1024)), 0, 255)
    return img.astype(np.uint8).reshape(len(labels), 3072)


def make_cifar10(root: Path, per_batch: int = 8, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    base = root / 'cifar-10-batches-py'
    for name in [f'data_batch_{i}' for i in range(1, 6)] + ['test_batch']:
        labels = rng.integers(0, 3, per_batch).tolist()  # 3 of the 10 classes actually occur
        _cifar_pickle(base / name, dict(batch_label=name, labels=labels, data=_cifar_rows(rng, labels),
                                        filenames=[f'{name}_{i}.png' for i in range(per_batch)]))
    names = ['airplane', 'automobile', 'bird', 'cat', 'deer', 'dog', 'frog', 'horse', 'ship', 'truck']
    _cifar_pickle(base / 'batches.meta', dict(num_cases_per_batch=per_batch, label_names=names, num_vis=3072))
    return root


def make_cifar100(root: Path, n_train: int = 24, n_test: int = 8, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    base = root / 'cifar-100-python'
    for name, n in (('train', n_train), ('test', n_test)):
        fine = rng.integers(0, 4, n).tolist()
        _cifar_pickle(base / name, dict(filenames=[f'{i}.png' for i in range(n)], batch_label=name,
                                        fine_labels=fine, coarse_labels=[f // 5 for f in fine],
                                        data=_cifar_rows(rng, fine)))
    _cifar_pickle(base / 'meta', dict(fine_label_names=[f'fine{i}' for i in range(100)],
                                      coarse_label_names=[f'coarse{i}' for i in range(20)]))
    return root


def make_flowers(root: Path, classes: int = 4, seed: int = 0) -> Path:
    """jpg/image_%05d.jpg, imagelabels.mat (labels 1..K), setid.mat (1-based ids): 8 train, 4 val, 8 test."""
    rng = np.random.default_rng(seed)
    n = 20
    labels = np.array([1 + i % classes for i in range(n)], dtype=np.uint8)
    for i, label in enumerate(labels, 1):
        write_image(root / 'jpg' / f'image_{i:05d}.jpg', rng, label=int(label))
    ids = rng.permutation(np.arange(1, n + 1))
    scipy.io.savemat(root / 'imagelabels.mat', {'labels': labels[None]})
    scipy.io.savemat(root / 'setid.mat', {'trnid': ids[None, :8].astype(np.uint16),
                                          'valid': ids[None, 8:12].astype(np.uint16),
                                          'tstid': ids[None, 12:].astype(np.uint16)})
    return root


def _cars_annos(rng, folder: Path, n: int, classes: int) -> np.ndarray:
    fields = ['bbox_x1', 'bbox_y1', 'bbox_x2', 'bbox_y2', 'class', 'fname']
    annos = np.zeros((1, n), dtype=[(f, 'O') for f in fields])
    for i in range(n):
        label, fname = 1 + i % classes, f'{i + 1:05d}.jpg'
        write_image(folder / fname, rng, label=label)
        annos[0, i] = (np.uint8(1), np.uint8(2), np.uint8(30), np.uint8(20), np.uint8(label), fname)
    return annos


def make_cars(root: Path, classes: int = 5, seed: int = 0) -> Path:
    """torchvision's layout: <root>/stanford_cars/{devkit/*.mat, cars_train/, cars_test/, test annotations}."""
    rng = np.random.default_rng(seed)
    base = root / 'stanford_cars'
    (base / 'devkit').mkdir(parents=True)
    names = np.empty((1, classes), dtype=object)
    names[0] = [f'Maker Model {2000 + i}' for i in range(classes)]
    scipy.io.savemat(base / 'devkit' / 'cars_meta.mat', {'class_names': names})
    scipy.io.savemat(base / 'devkit' / 'cars_train_annos.mat',
                     {'annotations': _cars_annos(rng, base / 'cars_train', 16, classes)})
    scipy.io.savemat(base / 'cars_test_annos_withlabels.mat',
                     {'annotations': _cars_annos(rng, base / 'cars_test', 6, classes)})
    return root


INAT_CATEGORY_IDS = [3, 7, 11, 20]  # ids need not start at 0 or be contiguous: classes follow the id order


def make_inat(root: Path, year: int, seed: int = 0) -> Path:
    """train{year}.json / val{year}.json (COCO-like) with file_name relative to the root, as released."""
    rng = np.random.default_rng(seed)
    kingdom = 'Plantae' if year == 2018 else 'Plants'
    categories = [dict(id=c, name=f'species {c}', supercategory=kingdom) for c in INAT_CATEGORY_IDS]
    image_id = 100
    for split, n in (('train', 16), ('val', 8)):
        images, annotations = [], []
        for i in range(n):
            cid = INAT_CATEGORY_IDS[i % len(INAT_CATEGORY_IDS)]
            file_name = f'train_val{year}/{kingdom}/{cid}/{split}_{i:04d}.jpg'
            write_image(root / file_name, rng, label=INAT_CATEGORY_IDS.index(cid))
            images.append(dict(id=image_id, file_name=file_name, width=48, height=40, license=1))
            annotations.append(dict(id=image_id, image_id=image_id, category_id=cid))
            image_id += 1
        (root / f'{split}{year}.json').write_text(json.dumps(
            dict(info={'year': year}, images=images, annotations=annotations[::-1], categories=categories,
                 licenses=[])))
    return root


MAKERS = {'cifar10': make_cifar10, 'cifar100': make_cifar100, 'flowers': make_flowers, 'cars': make_cars,
          'inat18': lambda r: make_inat(r, 2018), 'inat19': lambda r: make_inat(r, 2019)}
# dataset: (classes, train size, eval size)
EXPECTED = {'cifar10': (10, 40, 8), 'cifar100': (100, 24, 8), 'flowers': (4, 12, 8), 'cars': (5, 16, 6),
            'inat18': (4, 16, 8), 'inat19': (4, 16, 8)}


@pytest.fixture(scope='session')
def datasets(tmp_path_factory) -> dict:
    return {name: make(tmp_path_factory.mktemp(name)) for name, make in MAKERS.items()}


@pytest.fixture(scope='session')
def pretrained(tmp_path_factory) -> Path:
    """A tiny ViT checkpoint in our format, with a 7-class head and the architecture in its config."""
    torch.manual_seed(0)
    model = backbones.create_model('vit_t', num_classes=PRETRAINED_CLASSES, img_size=32,
                                   **{k: v for k, v in TINY_ARCH.items() if k != 'name'})
    path = tmp_path_factory.mktemp('pretrained') / 'checkpoint.pth'
    backbones.save_file(dict(format=backbones.checkpoint.FORMAT, version=backbones.checkpoint.VERSION,
                             model_name='vit_t', num_classes=PRETRAINED_CLASSES, img_size=32,
                             model=model.state_dict(),
                             config=dict(model=dict(TINY_ARCH, num_classes=None, drop_path_rate=0.25))), path)
    return path


def finetune_args(dataset, data, out, ckpt, *extra, options=(), tiny=True):
    return ['--dataset', dataset, '--data-path', str(data), '--output-dir', str(out), '--finetune', str(ckpt),
            '--epochs', '1', '--batch-size', '8', '--input-size', '32', *extra,
            '--cfg-options', *(TINY if tiny else TINY[len(TINY_ARCH):]), *options]


def configured(data_cfg: dict = None, **keys) -> dict:
    """The dataset's keys as its config file sets them (every default lives there), updated with the given ones."""
    from mmengine.config import Config
    given = dict(data_cfg or {}, **keys)
    return dict(Config.fromfile(str(ROOT / 'configs' / 'transfer' / f'{given["type"]}.py')).data, **given)


def log_records(out: Path) -> list:
    return [json.loads(line) for line in (out / 'log.jsonl').read_text().splitlines()]


# -- reading the formats ----------------------------------------------------------------------------------------
@pytest.mark.parametrize('name', list(MAKERS))
def test_reads_official_format(name, datasets):
    splits = build_splits(configured(type=name, path=str(datasets[name])))
    classes, n_train, n_eval = EXPECTED[name]
    assert (splits.num_classes, len(splits.train), len(splits.val)) == (classes, n_train, n_eval)
    for ds in (splits.train, splits.val):
        labels = [ds[i][1] for i in range(len(ds))]
        assert all(isinstance(y, int) and 0 <= y < classes for y in labels)
        image = ds[0][0]
        assert image.mode == 'RGB' and image.size[0] > 0
    # per-sample data in numpy arrays, not Python lists (DataLoader workers share them)
    assert isinstance(splits.train.targets, np.ndarray)


def test_label_conventions(datasets):
    # Flowers: train = trnid + valid, eval = tstid; labels 1-based in the .mat
    root = datasets['flowers']
    setid = scipy.io.loadmat(root / 'setid.mat', squeeze_me=True)
    labels = scipy.io.loadmat(root / 'imagelabels.mat', squeeze_me=True)['labels']
    splits = build_splits(configured(type='flowers', path=str(root)))
    tst = setid['tstid']
    assert [splits.val.path(i).name for i in range(len(splits.val))] == [f'image_{i:05d}.jpg' for i in tst]
    assert splits.val.targets.tolist() == (labels[tst - 1] - 1).tolist()
    only_train = build_splits(configured(type='flowers', path=str(root), train_splits=['trnid']))
    assert len(only_train.train) == len(setid['trnid'])
    # Cars: class 1..K in the .mat -> 0..K-1; the data path may be the stanford_cars folder itself
    cars = build_splits(configured(type='cars', path=str(datasets['cars'] / 'stanford_cars')))
    assert cars.train.targets.tolist() == [i % 5 for i in range(16)] and cars.train.classes[0] == 'Maker Model 2000'
    # iNat: class i = i-th category id in increasing order; annotations matched by image_id, not position
    inat = build_splits(configured(type='inat18', path=str(datasets['inat18'])))
    assert inat.train.targets.tolist() == [i % 4 for i in range(16)]
    assert inat.train.path(1).relative_to(datasets['inat18']).parts[:3] == ('train_val2018', 'Plantae', '7')
    # CIFAR: pixels come back as the rows were written (channel-major -> HWC)
    cifar = build_splits(configured(type='cifar10', path=str(datasets['cifar10'])))
    with open(datasets['cifar10'] / 'cifar-10-batches-py' / 'test_batch', 'rb') as f:
        raw = pickle.load(f, encoding='bytes')
    assert np.array_equal(np.asarray(cifar.val[2][0]), raw[b'data'][2].reshape(3, 32, 32).transpose(1, 2, 0))
    assert cifar.val[2][1] == raw[b'labels'][2] and cifar.train.classes[0] == 'airplane'


# -- fine-tuning on each format ---------------------------------------------------------------------------------
@pytest.mark.parametrize('name', list(MAKERS))
def test_finetune_each_dataset(name, datasets, pretrained, tmp_path):
    # the DeiT III baseline path once (deit#45: no stochastic depth); cosub everywhere else
    extra, options = (('--no-cosub',), ('model.drop_path_rate=0.0',)) if name == 'cifar100' else ((), ())
    record = main(finetune_args(name, datasets[name], tmp_path, pretrained, *extra, options=options))
    assert math.isfinite(record['train_loss']) and 0.0 <= record['val_top1'] <= 100.0
    assert record['val_n'] == EXPECTED[name][2]
    log = log_records(tmp_path)
    assert len(log) == 1 and {'epoch', 'train_loss', 'val_top1'} <= log[0].keys()
    classes = EXPECTED[name][0]
    text = (tmp_path / 'train.log').read_text()
    # the 7-class head of the checkpoint is replaced, and the log says so
    assert (f'classifier head.weight replaced: checkpoint ({PRETRAINED_CLASSES}, 32), model ({classes}, 32)'
            in text)
    ckpt = backbones.load_file(tmp_path / 'checkpoint.pth')
    assert ckpt['num_classes'] == classes and ckpt['model']['head.weight'].shape == (classes, 32)
    assert ckpt['config']['method'] == ('baseline' if name == 'cifar100' else 'cosub')


def test_architecture_comes_from_the_checkpoint(datasets, pretrained, tmp_path):
    """No --model and no model.* options: vit_t 32/2/2/8 is read from the checkpoint; tau is the transfer
    recipe's 0.05 (configs/_base_/transfer.py), not the checkpoint's pretraining 0.25."""
    record = main(finetune_args('cars', datasets['cars'], tmp_path, pretrained, tiny=False))
    assert math.isfinite(record['train_loss'])
    cfg = backbones.load_file(tmp_path / 'checkpoint.pth')['config']['model']
    assert {k: cfg[k] for k in TINY_ARCH} == TINY_ARCH and cfg['drop_path_rate'] == 0.05
    ckpt = backbones.load_file(tmp_path / 'checkpoint.pth')['model']
    assert ckpt['blocks.1.mlp.fc1.weight'].shape == (128, 32)
    # evaluating the result later needs neither --finetune nor the architecture
    evaluation = ['--dataset', 'cars', '--data-path', str(datasets['cars']), '--output-dir', str(tmp_path), '--eval',
                  '--resume', '--cfg-options', 'data.num_workers=0']
    with pytest.raises(SystemExit) as e:
        main(evaluation)
    assert 'trained at input size 32' in str(e.value) and '--input-size 32' in str(e.value)
    assert main(evaluation + ['input_size=32'])['val_top1'] == record['val_top1']


def test_attention_only_finetuning_freezes_the_rest(datasets, pretrained, tmp_path):
    """flowers.py trains blocks.N.attn.*, head.* and pos_embed only (DeiT III on Flowers, official --attn-only)."""
    main(finetune_args('flowers', datasets['flowers'], tmp_path, pretrained))
    before = backbones.load_file(pretrained)['model']
    after = backbones.load_file(tmp_path / 'checkpoint.pth')['model']
    trained = [k for k in after if '.attn.' in k or k.startswith(('head.', 'pos_embed'))]
    frozen = [k for k in after if k not in trained]
    assert {'blocks.0.attn.qkv.weight', 'blocks.1.attn.proj.bias', 'pos_embed', 'head.weight'} <= set(trained)
    assert {'patch_embed.proj.weight', 'cls_token', 'blocks.0.mlp.fc1.weight', 'blocks.0.norm1.weight',
            'blocks.0.ls1.gamma', 'norm.weight'} <= set(frozen)
    for k in frozen:
        assert torch.equal(before[k], after[k]), f'{k} changed but should be frozen'
    for k in trained:
        if k in before and before[k].shape == after[k].shape:
            assert not torch.equal(before[k], after[k]), f'{k} did not train'


def test_wrong_architecture_is_refused(datasets, pretrained, tmp_path):
    # the config contradicts what the checkpoint says it holds
    with pytest.raises(SystemExit) as e:
        main(finetune_args('cars', datasets['cars'], tmp_path, pretrained, options=['model.depth=3']))
    assert 'depth=2' in str(e.value) and 'model.depth=3' in str(e.value)
    # weights only (no architecture stored): shapes are compared before training
    bare = tmp_path / 'bare.pth'
    torch.save(backbones.load_file(pretrained)['model'], bare)
    with pytest.raises(SystemExit) as e:
        main(finetune_args('cars', datasets['cars'], tmp_path / 'run', bare, options=['model.embed_dim=64']))
    message = str(e.value)
    assert 'does not fit model vit_t' in message and '\n' not in message
    with pytest.raises(SystemExit) as e:
        main(finetune_args('cars', datasets['cars'], tmp_path / 'run2', bare, tiny=False))
    assert 'does not name its architecture' in str(e.value)


def test_head_of_the_right_size_from_other_classes_is_reset(datasets, pretrained, tmp_path, monkeypatch):
    """digits 0-4 -> 5-9 has 5 classes both times: the old head must not stand in for the new classes."""
    from pretrain import engine
    ckpt = backbones.load_file(pretrained)
    sd = dict(ckpt['model'], **{'head.weight': torch.randn(5, 32), 'head.bias': torch.randn(5)})
    other = tmp_path / 'other.pth'  # a 5-class head trained on another dataset
    backbones.save_file(dict(ckpt, model=sd, num_classes=5, config=dict(ckpt['config'], data=dict(type='inat18'))),
                        other)
    same = tmp_path / 'same.pth'  # a 5-class head trained on these very classes (e.g. a previous cars run)
    backbones.save_file(dict(ckpt, model=sd, num_classes=5, config=dict(ckpt['config'], data=dict(type='cars'))), same)
    heads = []
    monkeypatch.setattr(engine.Trainer, 'fit', lambda self: heads.append(self.model.head.weight.detach().clone()))
    for name, path in (('other', other), ('same', same)):
        main(finetune_args('cars', datasets['cars'], tmp_path / name, path))
    assert not torch.equal(heads[0], sd['head.weight']) and 0.01 < heads[0].std() < 0.03  # a fresh head
    assert torch.equal(heads[1], sd['head.weight'])
    assert 'classifier re-initialised' in (tmp_path / 'other' / 'train.log').read_text()
    assert 'classifier re-initialised' not in (tmp_path / 'same' / 'train.log').read_text()


# -- format errors: one clear line ------------------------------------------------------------------------------
def _copy(src: Path, dst: Path) -> Path:
    import shutil
    shutil.copytree(src, dst)
    return dst


def _error(data_cfg: dict) -> str:
    with pytest.raises(DataError) as e:
        build_splits(configured(data_cfg))
    message = str(e.value)
    assert '\n' not in message
    return message


def test_missing_files_name_the_file(datasets, tmp_path):
    cifar = _copy(datasets['cifar10'], tmp_path / 'cifar10')
    (cifar / 'cifar-10-batches-py' / 'data_batch_3').unlink()
    assert 'cifar-10-batches-py/data_batch_3: no such file' in _error(dict(type='cifar10', path=str(cifar)))
    cars = _copy(datasets['cars'], tmp_path / 'cars')
    (cars / 'stanford_cars' / 'devkit' / 'cars_meta.mat').unlink()
    assert 'devkit/cars_meta.mat: no such file' in _error(dict(type='cars', path=str(cars)))
    inat = _copy(datasets['inat19'], tmp_path / 'inat19')
    (inat / 'val2019.json').unlink()
    assert 'val2019.json: no such file' in _error(dict(type='inat19', path=str(inat)))
    flowers = _copy(datasets['flowers'], tmp_path / 'flowers')
    (flowers / 'setid.mat').unlink()
    assert 'setid.mat: no such file' in _error(dict(type='flowers', path=str(flowers)))
    assert 'no such folder' in _error(dict(type='flowers', path=str(tmp_path / 'nowhere')))
    assert 'pass --data-path' in _error(dict(type='cifar100', path=None))


def test_wrong_keys_name_the_key(datasets, tmp_path):
    cifar = _copy(datasets['cifar100'], tmp_path / 'cifar100')
    _cifar_pickle(cifar / 'cifar-100-python' / 'meta', dict(coarse_label_names=['a']))  # no fine_label_names
    message = _error(dict(type='cifar100', path=str(cifar)))
    assert "meta: no key 'fine_label_names'" in message
    flowers = _copy(datasets['flowers'], tmp_path / 'flowers')
    scipy.io.savemat(flowers / 'setid.mat', {'trnid': np.array([[1, 2]]), 'valid': np.array([[3]])})
    assert "setid.mat: no key 'tstid'" in _error(dict(type='flowers', path=str(flowers)))
    cars = _copy(datasets['cars'], tmp_path / 'cars')
    annos = np.zeros((1, 1), dtype=[('fname', 'O'), ('label', 'O')])
    annos[0, 0] = ('00001.jpg', 1)
    scipy.io.savemat(cars / 'stanford_cars' / 'cars_test_annos_withlabels.mat', {'annotations': annos})
    assert "annotations have no field 'class'" in _error(dict(type='cars', path=str(cars)))
    inat = _copy(datasets['inat18'], tmp_path / 'inat18')
    data = json.loads((inat / 'train2018.json').read_text())
    del data['annotations']
    (inat / 'train2018.json').write_text(json.dumps(data))
    assert "train2018.json: no key 'annotations'" in _error(dict(type='inat18', path=str(inat)))


def test_bad_contents_are_refused(datasets, tmp_path):
    cifar = _copy(datasets['cifar10'], tmp_path / 'cifar10')
    batch = cifar / 'cifar-10-batches-py' / 'data_batch_1'
    batch.write_bytes(b'not a pickle')
    assert 'data_batch_1: not a readable pickle' in _error(dict(type='cifar10', path=str(cifar)))
    with open(batch, 'wb') as f:  # a pickle that would run code when loaded
        pickle.dump(os.getcwd, f)
    assert 'refused pickled global' in _error(dict(type='cifar10', path=str(cifar)))
    _cifar_pickle(batch, dict(data=np.zeros((2, 3072), np.uint8), labels=[0, 10]))
    assert 'data_batch_1: labels value 10 of row 1 is not one of the 10 classes (0..9)' in _error(
        dict(type='cifar10', path=str(cifar)))
    inat = _copy(datasets['inat19'], tmp_path / 'inat19')
    data = json.loads((inat / 'val2019.json').read_text())
    data['annotations'][0]['category_id'] = 999
    (inat / 'val2019.json').write_text(json.dumps(data))
    assert ("val2019.json: category_id 999 of image id 123 is not one of the 4 classes (ids 3..20, not contiguous)"
            in _error(dict(type='inat19', path=str(inat))))
    (inat / 'train2019.json').write_text('{"images": [')  # truncated
    assert 'train2019.json: not readable JSON' in _error(dict(type='inat19', path=str(inat)))
    flowers = _copy(datasets['flowers'], tmp_path / 'flowers')
    (flowers / 'imagelabels.mat').write_bytes(b'MATLAB 5.0 MAT-file, truncated')
    assert 'imagelabels.mat: not a readable .mat file' in _error(dict(type='flowers', path=str(flowers)))


def _edit_json(path: Path, edit) -> None:
    data = json.loads(path.read_text())
    edit(data)
    path.write_text(json.dumps(data))


def _edit_mat(path: Path, key: str, edit) -> None:
    mat = scipy.io.loadmat(path)
    mat[key] = edit(mat[key])
    scipy.io.savemat(path, {k: v for k, v in mat.items() if not k.startswith('__')})


def _cifar_batch_of(data_rows: int, labels: list):
    return lambda root: _cifar_pickle(root / 'cifar-10-batches-py' / 'data_batch_2',
                                      dict(data=np.zeros((data_rows, 3072), np.uint8), labels=labels))


# Issue 21: what every index must satisfy, checked in one place (pretrain/data/index.py) for every reader.
INDEX_FAULTS = {
    'inat image id twice': ('inat18', lambda r: _edit_json(r / 'train2018.json', lambda d: d['images'][1].update(
        id=d['images'][0]['id'])), 'train2018.json: image id 100 is listed twice; expected each image once'),
    'inat annotation twice': ('inat18', lambda r: _edit_json(r / 'train2018.json', lambda d: d['annotations'].append(
        dict(d['annotations'][0]))), 'train2018.json: image id 115 has two labels (17 labels for 16 images)'),
    'inat image without annotation': ('inat18', lambda r: _edit_json(r / 'val2018.json', lambda d: d[
        'annotations'].pop()), 'val2018.json: no label for image id 116 (7 labels for 8 images)'),
    'inat annotation of no image': ('inat18', lambda r: _edit_json(r / 'val2018.json', lambda d: d[
        'annotations'].append(dict(image_id=999, category_id=3))),
        'val2018.json: a label for image id 999, which'),
    'inat category listed twice': ('inat18', lambda r: _edit_json(r / 'train2018.json', lambda d: d[
        'categories'].append(dict(id=7, name='again'))), 'train2018.json: category_id 7 appears twice in the class'),
    'flowers label out of range': ('flowers', lambda r: _edit_mat(r / 'imagelabels.mat', 'labels', lambda v: v - 1),
                                   'imagelabels.mat: label 0 of image number'),
    'flowers id in two splits': ('flowers', lambda r: _edit_mat(r / 'setid.mat', 'tstid', lambda v: np.concatenate(
        [v, scipy.io.loadmat(r / 'setid.mat')['trnid'][:, :1]], axis=1)), 'is listed twice; expected each image once'),
    'flowers more labels than images': ('flowers', lambda r: _edit_mat(r / 'imagelabels.mat', 'labels', lambda v:
        np.concatenate([v, v[:, :1]], axis=1)), 'imagelabels.mat: a label for image number 21, which'),
    'cars annotation of a missing file': ('cars', lambda r: (r / 'stanford_cars' / 'cars_test' / '00002.jpg').unlink(),
                                          "cars_test_annos_withlabels.mat: a label for file '00002.jpg', which"),
    'cars image without annotation': ('cars', lambda r: write_image(r / 'stanford_cars' / 'cars_train' / 'extra.jpg',
        np.random.default_rng(0)), "cars_train_annos.mat: no label for file 'extra.jpg' (16 labels for 17 images)"),
    'cifar more rows than labels': ('cifar10', _cifar_batch_of(3, [0, 1]), 'data_batch_2: no label for row 2'),
    'cifar more labels than rows': ('cifar10', _cifar_batch_of(2, [0, 1, 2]), 'data_batch_2: a label for row 2'),
}


@pytest.mark.parametrize('fault', list(INDEX_FAULTS))
def test_index_invariants_refused_in_one_line(fault, datasets, tmp_path):
    name, damage, expected = INDEX_FAULTS[fault]
    root = _copy(datasets[name], tmp_path / name)
    damage(root)
    assert expected in _error(dict(type=name, path=str(root)))


def test_format_error_through_the_command_line_is_one_line(datasets, pretrained, tmp_path):
    flowers = _copy(datasets['flowers'], tmp_path / 'flowers')
    (flowers / 'imagelabels.mat').unlink()
    with pytest.raises(SystemExit) as e:
        main(finetune_args('flowers', flowers, tmp_path / 'out', pretrained))
    message = str(e.value)
    assert message.startswith('error: ') and 'imagelabels.mat: no such file' in message and '\n' not in message
    with pytest.raises(SystemExit):  # an unknown dataset name lists the available configs (argparse, exit 2)
        main(['--dataset', 'imagenet-sketch'])


# -- configs, demo, summary -------------------------------------------------------------------------------------
def test_configs_follow_the_recipes():
    assert find_config('flowers', 'transfer').parent == ROOT / 'configs' / 'transfer'
    cfgs = {n: parse(['--dataset', n], task='transfer', name_flag='--dataset') for n in list(MAKERS) + ['digits']}
    for name in MAKERS:
        c = cfgs[name]
        assert c.data.type == name and c.input_size == 224 and c.data.eval_crop_ratio == 1.0
        inat = name.startswith('inat')
        assert c.method == 'cosub' and c.loss.type == 'ce' and c.optimizer.type == ('adamw' if inat else 'sgd')
        assert c.epochs == (360 if inat else 1000) and c.batch_size == 768
        # the authors' answers: deit issue 105 for iNat (AdamW 7.5e-5, wd 0.05), issue 45 for the small sets
        # (SGD 0.01, wd 1e-4, no stochastic depth: cosub keeps 0.05, supplement B.1)
        assert (c.optimizer.base_lr, c.optimizer.weight_decay) == ((7.5e-5, 0.05) if inat else (0.01, 1e-4))
        assert c.model.drop_path_rate == (0.1 if inat else 0.05)
        assert c.schedule.min_lr < c.optimizer.base_lr
    assert cfgs['flowers'].optimizer.only and not cfgs['cars'].optimizer.get('only')
    # the demo fine-tunes the demo's backbone: same architecture, input size and normalisation
    demo = parse(['--cfg', 'demo'])
    digits = cfgs['digits']
    assert {k: digits.model[k] for k in ('name', 'embed_dim', 'depth', 'num_heads', 'patch_size')} == \
        {k: demo.model[k] for k in ('name', 'embed_dim', 'depth', 'num_heads', 'patch_size')}
    assert digits.input_size == demo.input_size and tuple(digits.data.mean) == tuple(demo.data.mean)
    assert set(digits.data.classes).isdisjoint(demo.data.get('classes') or [])


def _fake_run(folder: Path, dataset: str, model: str, cosub: bool, accs, epochs=None, config_file='',
              finetune='runs/vit_s_in1k/checkpoint.pth') -> Path:
    folder.mkdir(parents=True)
    (folder / 'log.jsonl').write_text(''.join(json.dumps(dict(epoch=i, train_loss=1.0, val_top1=a)) + '\n'
                                              for i, a in enumerate(accs)))
    (folder / 'config.py').write_text(f"data = dict(type='{dataset}', eval_crop_ratio=1.0)\n"
                                      f"model = dict(name='{model}')\ncosub = dict(enabled={cosub})\n"
                                      f"epochs = {epochs or len(accs)}\nconfig_file = '{config_file}'\n"
                                      f"finetune = {finetune!r}\n")
    return folder


def test_summary_table(tmp_path, capsys):
    runs = tmp_path / 'outputs'
    _fake_run(runs / 'transfer_cifar10', 'cifar10', 'vit_s', True, [97.0, 99.2, 99.1])
    _fake_run(runs / 'transfer_flowers', 'flowers', 'vit_s', True, [90.0, 96.5], epochs=1000)
    _fake_run(runs / 'base_cars', 'cars', 'vit_s', False, [88.0, 89.5, None])
    _fake_run(runs / 'digits', 'digits', 'vit_t', True, [70.0, 95.0], config_file='configs/transfer/digits.py',
              finetune=None)
    _fake_run(runs / 'demo', 'digits', 'vit_t', True, [20.0], config_file='configs/demo.py')  # pretraining: skipped
    found = summary.main([str(runs)])
    out = capsys.readouterr().out
    assert {r.dataset for r in found} == {'cifar10', 'flowers', 'cars', 'digits'}
    lines = out.splitlines()
    header = lines[0].split()
    assert header[:7] == ['model', 'CIFAR-10', 'CIFAR-100', 'Flowers', 'Cars', 'iNat-18', 'iNat-19']
    cosub_row = next(line for line in lines if line.startswith('vit_s from vit_s_in1k, cosub'))
    assert '99.2 / 99.1' in cosub_row and '96.5 / 96.5*' in cosub_row  # flowers stopped at 2 of 1000 epochs
    assert '89.5 / 89.5' in next(line for line in lines if line.startswith('vit_s from vit_s_in1k, no cosub'))
    assert '95.0 / 95.0' in next(line for line in lines if line.startswith('vit_t from scratch, cosub'))
    assert any(line.startswith('paper: ViT-L cosub') and '76.2' in line for line in lines)
    md = (runs / 'transfer_summary.md').read_text()
    assert '| model | CIFAR-10 |' in md and '99.20 (2)' in md and 'demo' not in md
    assert len(summary.main([str(runs / 'demo'), '--markdown', str(tmp_path / 'demo.md')])) == 1  # named: shown
    with pytest.raises(SystemExit) as e:
        summary.main([str(tmp_path / 'empty')])
    assert 'no such folder' in str(e.value)
