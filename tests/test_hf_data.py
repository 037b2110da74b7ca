"""data.type='hf' (issue 23): ImageNet as a Hugging Face dataset, in the Hub's Parquet layout and in save_to_disk's,
built here from a generated ImageNet folder (JPEG and PNG images). The same images give the same batches as the
folder (order, augmented tensors, labels), training resumes exactly; bad datasets end in one
line. Offline, CPU, about a minute."""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

from pretrain import data as D, engine
from pretrain.config import parse
from pretrain.data import transforms as T
from pretrain.train import train as main

from conftest import make_imagenet
from test_pretrain import Crash, assert_same_weights, weights

os.environ.setdefault('HF_DATASETS_OFFLINE', '1')  # before datasets is imported: nothing may download
os.environ.setdefault('HF_HUB_OFFLINE', '1')
datasets = pytest.importorskip('datasets')

TRAIN = dict(crop='rrc', rrc_scale=(0.08, 1.0), hflip=0.5, three_augment=True, color_jitter=0.3)


def hf_dataset(index: D.FolderIndex):
    """The rows of a folder split, in the folder index's order: image bytes as stored, ClassLabel names."""
    features = datasets.Features({'image': datasets.Image(), 'label': datasets.ClassLabel(names=index.classes)})
    rows = {'image': [{'bytes': index.path(i).read_bytes(), 'path': index.relpath(i)} for i in range(len(index))],
            'label': index.targets.tolist()}
    return datasets.Dataset.from_dict(rows, features=features)


@pytest.fixture(scope='module')
def data(tmp_path_factory):
    """{'folder', 'hub', 'disk'}: one ImageNet folder (3 classes, 8 + 2 images each, two of them PNG) and the same
    images as a Hub-layout Parquet dataset (train in two shards) and as a save_to_disk folder."""
    cache = datasets.config.HF_DATASETS_CACHE
    root = tmp_path_factory.mktemp('hf')
    datasets.config.HF_DATASETS_CACHE = root / 'hf-cache'  # the Arrow files datasets converts the Parquet to
    folder = make_imagenet(root / 'folder', classes=3)
    for jpeg in sorted((folder / 'train').rglob('*_3.JPEG')):
        Image.open(jpeg).save(jpeg.with_suffix('.png'))
        jpeg.unlink()
    splits = {name: hf_dataset(D.FolderIndex(folder / split, cache_dir=root / 'index'))
              for split, name in (('train', 'train'), ('val', 'validation'))}
    (root / 'hub' / 'data').mkdir(parents=True)
    half = len(splits['train']) // 2
    for n, part in enumerate((range(half), range(half, len(splits['train'])))):
        splits['train'].select(part).to_parquet(str(root / 'hub' / 'data' / f'train-0000{n}-of-00002.parquet'))
    splits['validation'].to_parquet(str(root / 'hub' / 'data' / 'validation-00000-of-00001.parquet'))
    datasets.DatasetDict(splits).save_to_disk(str(root / 'disk'))
    yield {'folder': folder, 'hub': root / 'hub', 'disk': root / 'disk', 'root': root}
    datasets.config.HF_DATASETS_CACHE = cache


def data_cfg(path: Path, kind: str) -> dict:
    return dict(parse(['--cfg', 'vit_s']).data.to_dict(), path=str(path), type=kind)


def batches(dataset, transform, workers: int) -> list:
    sampler = D.GlobalOrderSampler(len(dataset), seed=3, global_batch=8)
    sampler.set_epoch(1)
    return list(DataLoader(D.TransformedDataset(dataset, transform, isinstance(transform, D.TrainTransform)),
                           batch_size=4, sampler=sampler, num_workers=workers))


@pytest.mark.parametrize('layout', ['hub', 'disk'])
def test_same_batches_as_the_folder(data, layout, monkeypatch):
    folder = D.build_splits(data_cfg(data['folder'], 'imagenet'))
    hf = D.build_splits(data_cfg(data[layout], 'hf'))
    assert (hf.num_classes, hf.train.classes, len(hf.train), len(hf.val)) == (3, folder.train.classes, 24, 6)
    assert np.array_equal(hf.train.targets, folder.train.targets)
    for a, b, transform in ((folder.train, hf.train, D.build_train_transform(TRAIN, 16)),
                            (folder.val, hf.val, D.build_eval_transform(16, 0.875))):
        for x, y in zip(batches(a, transform, 0), batches(b, transform, 2), strict=True):  # workers for the Arrow rows
            assert all(torch.equal(x[k], y[k]) for k in (0, 1, 2)) and list(y[3]) == [''] * 4
            assert all(torch.equal(x[4][k], y[4][k]) for k in x[4])
    drafted = []  # the JPEG rows decode at reduced scale, as files do
    real_draft = T.draft_scale
    monkeypatch.setattr(T, 'draft_scale', lambda img, shrink: drafted.append(real_draft(img, shrink)) or drafted[-1])
    batches(hf.train, D.build_train_transform(TRAIN, 16), 0)
    assert max(drafted) > 1


def demo(data_path, out, kind, *extra, options=()):
    """The demo's model and recipe, one epoch of 3 steps on the 24 training images."""
    return ['--cfg', 'demo', '--data-path', str(data_path), '--output-dir', str(out), '--epochs', '1',
            '--batch-size', '8', *extra, '--cfg-options', f'data.type={kind}', 'data.num_workers=0',
            'schedule.warmup_epochs=0', *options]


def test_training_resumes_exactly(data, tmp_path, monkeypatch):
    options = ('train.checkpoint_steps=1',)
    hub = main(demo(data['hub'], tmp_path / 'hub', 'hf', options=options))
    assert hub['val_n'] == 6 and np.isfinite(hub['train_loss']) and 0 <= hub['val_top1'] <= 100
    saves = []
    real_save = engine.Trainer.save_checkpoint

    def crash_after_second_save(self, *a):
        real_save(self, *a)
        saves.append(self.step_in_epoch)
        if len(saves) == 2:  # two of the epoch's three steps done
            raise Crash
    broken = tmp_path / 'broken'
    with monkeypatch.context() as m, pytest.raises(Crash):
        m.setattr(engine.Trainer, 'save_checkpoint', crash_after_second_save)
        main(demo(data['disk'], broken, 'hf', options=options))
    main(demo(data['disk'], broken, 'hf', '--resume', str(broken / 'checkpoint.pth'), options=options))
    assert_same_weights(weights(tmp_path / 'hub' / 'checkpoint.pth'), weights(broken / 'checkpoint.pth'))


def one_line(cfg: dict) -> str:
    with pytest.raises(D.DataError) as e:
        D.build_splits(cfg)
    assert '\n' not in str(e.value)
    return str(e.value)


def test_bad_datasets_are_refused_in_one_line(data, tmp_path):
    empty = tmp_path / 'empty'
    (empty / 'data').mkdir(parents=True)
    assert one_line(data_cfg(empty, 'hf')).startswith(f"{empty}: no Parquet shards data/train-*.parquet and no "
                                                      "save_to_disk folder train/")
    rows = datasets.load_from_disk(str(data['disk'] / 'train'))
    no_label = tmp_path / 'no-label'
    rows.remove_columns('label').save_to_disk(str(no_label / 'train'))
    assert f"{no_label / 'train'}: column 'label' is missing; expected 'label' as a ClassLabel" in one_line(
        dict(data_cfg(no_label, 'hf'), val_split=None))
    unlabelled = tmp_path / 'unlabelled'  # as ImageNet's test split on the Hub: label -1
    rows.map(lambda row, i: dict(label=-1 if i == 5 else row['label']), with_indices=True).save_to_disk(
        str(unlabelled / 'train'))
    assert f"{unlabelled / 'train'}: label -1 of row 5 is not one of the 3 classes (0..2)" in one_line(
        dict(data_cfg(unlabelled, 'hf'), val_split=None))
    renamed = tmp_path / 'renamed'
    shutil.copytree(data['disk'], renamed)
    shutil.rmtree(renamed / 'validation')
    rows.cast_column('label', datasets.ClassLabel(names=['x', 'y', 'z'])).save_to_disk(str(renamed / 'validation'))
    assert "ClassLabel names differ from the training split's ('x' where training has" in one_line(
        data_cfg(renamed, 'hf'))
