"""Transfer-learning datasets (cosub supplement Table A.2), each read from its official on-disk format.

    cifar10   <path>/cifar-10-batches-py/{data_batch_1..5, test_batch, batches.meta}   train 50,000 / test 10,000
    cifar100  <path>/cifar-100-python/{train, test, meta} (fine labels)                 train 50,000 / test 10,000
    flowers   <path>/flowers-102/{jpg/image_%05d.jpg, imagelabels.mat, setid.mat}       train+val 2,040 / test 6,149
    cars      <path>/stanford_cars/{devkit/cars_train_annos.mat, devkit/cars_meta.mat,
              cars_train/, cars_test/, cars_test_annos_withlabels.mat}                  train 8,144 / test 8,041
    inat18    <path>/{train2018.json, val2018.json, train_val2018/...}                  train 437,513 / val 24,426
    inat19    <path>/{train2019.json, val2019.json, train_val2019/...}                  train 265,240 / val 3,003

`<path>` may also be the inner folder itself (the layouts torchvision uses, one level up, are accepted too).
The engine evaluates on what each builder returns as `val`: the official test split for CIFAR, Flowers and Cars
and the official val split for iNaturalist, as the DeiT III / cosub transfer tables report.

Why our own readers: torchvision's CIFAR and Flowers102 readers check the MD5 of the official archives (so no
generated test data) and none of torchvision's readers says which file or key is wrong. Each reader states its
format (where ids, labels and file names are) and builds its samples with `pretrain.data.build_index`, which
checks what every index must satisfy (ids once, one label per image, labels among the classes, files under the
data root); any bad input raises `DataError` naming the file and what was expected. Per-sample data lives in
numpy arrays (paths packed in one byte blob): DataLoader workers share them instead of copying hundreds of
thousands of Python objects.
"""
from __future__ import annotations

import json
import logging
import os
import pickle
from pathlib import Path
from typing import List, Sequence

import numpy as np

from pretrain.data import (IMAGE_EXTENSIONS, ArrayDataset, DataError, ImageFileDataset, SampleIndex, Splits,
                           build_index, data_setting, integer_labels, register_dataset)
from pretrain.data.errors import first_line

logger = logging.getLogger(__name__)


# -- helpers ----------------------------------------------------------------------------------------------------
def _base_dir(cfg: dict, dataset: str, inner: str, layout: str) -> Path:
    """`data.path`, or its `inner` sub-folder when there is one (torchvision's roots sit one level up)."""
    if not data_setting(cfg, 'path'):
        raise DataError(f'{dataset}: no data path; pass --data-path pointing at {layout}')
    root = Path(cfg['path'])
    if not root.is_dir():
        raise DataError(f'--data-path {root}: no such folder; expected {layout}')
    return root / inner if (root / inner).is_dir() else root


def _need_file(path: Path, what: str) -> Path:
    if not path.is_file():
        raise DataError(f'{path}: no such file; expected {what}')
    return path


def _need_dir(path: Path, what: str) -> Path:
    if not path.is_dir():
        raise DataError(f'{path}: no such folder; expected {what}')
    return path


class _ArrayUnpickler(pickle.Unpickler):
    """CIFAR files are pickles of dicts, lists and numpy arrays: allow exactly that, never arbitrary code."""
    ALLOWED = {('numpy.core.multiarray', '_reconstruct'), ('numpy._core.multiarray', '_reconstruct'),
               ('numpy.core.multiarray', 'scalar'), ('numpy._core.multiarray', 'scalar'),
               ('numpy', 'ndarray'), ('numpy', 'dtype'), ('_codecs', 'encode')}

    def find_class(self, module: str, name: str):
        if (module, name) in self.ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f'refused pickled global {module}.{name}')


def _load_pickle(path: Path, what: str) -> dict:
    _need_file(path, what)
    try:
        with open(path, 'rb') as f:
            # latin1: the official files were written by Python 2; numpy's own advice for reading them.
            obj = _ArrayUnpickler(f, encoding='latin1').load()
    except Exception as e:  # truncated file, not a pickle, refused global
        raise DataError(f'{path}: not a readable pickle ({first_line(e)}); expected {what}') from None
    if not isinstance(obj, dict):
        raise DataError(f'{path}: holds a {type(obj).__name__}; expected {what} (a dict)')
    # Python 3 pickles may carry bytes keys; the official ones read as str with latin1.
    return {k.decode() if isinstance(k, bytes) else k: v for k, v in obj.items()}


def _key(obj: dict, key: str, path: Path, what: str):
    if key not in obj:
        raise DataError(f'{path}: no key {key!r}; expected {what} (found keys {sorted(map(str, obj))[:8]})')
    return obj[key]


def _load_mat(path: Path, what: str) -> dict:
    import scipy.io
    _need_file(path, what)
    try:
        return scipy.io.loadmat(str(path), squeeze_me=True)
    except Exception as e:  # scipy raises ValueError / MatReadError / TypeError for damaged files
        raise DataError(f'{path}: not a readable .mat file ({first_line(e)}); expected {what}') from None


def _load_json(path: Path, what: str) -> dict:
    _need_file(path, what)
    try:
        with open(path) as f:
            obj = json.load(f)
    except (OSError, ValueError) as e:
        raise DataError(f'{path}: not readable JSON ({first_line(e)}); expected {what}') from None
    if not isinstance(obj, dict):
        raise DataError(f'{path}: holds a JSON {type(obj).__name__}; expected {what} (an object)')
    return obj


def _names(values) -> List[str]:
    return [v.decode() if isinstance(v, bytes) else str(v) for v in np.asarray(values, dtype=object).reshape(-1)]


# -- CIFAR ------------------------------------------------------------------------------------------------------
def _cifar_batch(path: Path, label_key: str, classes: List[str], what: str) -> ArrayDataset:
    batch = _load_pickle(path, what)
    data = np.asarray(_key(batch, 'data', path, what))
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
        raise DataError(f'{path}: data is {data.dtype} {data.shape}; expected uint8 rows of 3072 values '
                        '(32x32 RGB, channel-major), one per image')
    index = build_index(path, _key(batch, label_key, path, what), classes, images=len(data), image_key='row',
                        label_key=f'{label_key} value')
    return ArrayDataset(data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1), index)


def _cifar(cfg: dict, name: str, inner: str, train_files: Sequence[str], test_file: str, meta_file: str,
           label_key: str, names_key: str) -> Splits:
    layout = f'a folder with {inner}/ ({", ".join([*train_files, test_file, meta_file])}), the python version'
    base = _base_dir(cfg, name, inner, layout)
    what = f'the {name} python version ({inner}/)'
    meta_path = base / meta_file
    classes = _names(_key(_load_pickle(meta_path, f'{what} {meta_file}'), names_key, meta_path,
                          f'{what} {meta_file} with {names_key}'))

    def read(files: Sequence[str]) -> ArrayDataset:
        parts = [_cifar_batch(base / f, label_key, classes, f'{what} {f} with data and {label_key}') for f in files]
        return ArrayDataset(np.ascontiguousarray(np.concatenate([p.images for p in parts])),
                            SampleIndex(np.concatenate([p.targets for p in parts]), classes))

    train, test = read(train_files), read([test_file])
    logger.info('%s: %d train / %d test images, %d classes (%s)', name, len(train), len(test), len(classes), base)
    return Splits(train, test, len(classes))


@register_dataset('cifar10')
def cifar10(cfg: dict) -> Splits:
    return _cifar(cfg, 'cifar10', 'cifar-10-batches-py', [f'data_batch_{i}' for i in range(1, 6)], 'test_batch',
                  'batches.meta', 'labels', 'label_names')


@register_dataset('cifar100')
def cifar100(cfg: dict) -> Splits:
    return _cifar(cfg, 'cifar100', 'cifar-100-python', ['train'], 'test', 'meta', 'fine_labels', 'fine_label_names')


# -- Oxford Flowers-102 -----------------------------------------------------------------------------------------
FLOWERS_SPLITS = ('trnid', 'valid', 'tstid')


@register_dataset('flowers')
def flowers(cfg: dict) -> Splits:
    """Train on `train_splits` (default trnid + valid, 2,040 images, as DeiT III), evaluate on `val_splits`
    (default tstid, 6,149). Labels 1..102 in imagelabels.mat; the class count is the largest label."""
    layout = 'the Flowers-102 folder (jpg/image_%05d.jpg, imagelabels.mat, setid.mat)'
    base = _base_dir(cfg, 'flowers', 'flowers-102', layout)
    _need_dir(base / 'jpg', 'the Flowers-102 images jpg/image_00001.jpg ...')
    labels_path, setid_path = base / 'imagelabels.mat', base / 'setid.mat'
    labels_mat = _load_mat(labels_path, 'the Flowers-102 imagelabels.mat with a labels array')
    labels = integer_labels(_key(labels_mat, 'labels', labels_path, 'the Flowers-102 labels array (1..102)'),
                            labels_path, 'labels')
    num_classes = int(labels.max()) if labels.size else 0
    setid = _load_mat(setid_path, 'the Flowers-102 setid.mat with trnid, valid, tstid')
    what = 'the Flowers-102 split ids trnid, valid, tstid (1-based image numbers)'
    split_ids = [integer_labels(_key(setid, s, setid_path, what), setid_path, s) for s in FLOWERS_SPLITS]
    ids = np.concatenate(split_ids)
    # The three splits together list every image of imagelabels.mat once: image n is the n-th label.
    index = build_index(setid_path, labels, [str(c) for c in range(1, num_classes + 1)],
                        label_values=range(1, num_classes + 1), images=ids, labelled=np.arange(1, len(labels) + 1),
                        paths=[f'jpg/image_{i:05d}.jpg' for i in ids], root=base, label_source=labels_path,
                        image_key='image number')
    starts = dict(zip(FLOWERS_SPLITS, np.cumsum([0] + [len(i) for i in split_ids])))
    sizes = dict(zip(FLOWERS_SPLITS, map(len, split_ids)))

    def subset(splits: Sequence[str]) -> ImageFileDataset:
        for s in splits:
            if s not in FLOWERS_SPLITS:
                raise DataError(f'flowers split {s!r}: expected one of {FLOWERS_SPLITS}')
        return ImageFileDataset(index.take(np.concatenate(
            [np.arange(starts[s], starts[s] + sizes[s]) for s in splits] + [np.zeros(0, dtype=np.int64)])))

    train = subset(data_setting(cfg, 'train_splits'))
    val = subset(data_setting(cfg, 'val_splits'))
    logger.info('flowers: %d train / %d eval images, %d classes (%s)', len(train), len(val), num_classes, base)
    return Splits(train, val, num_classes)


# -- Stanford Cars ----------------------------------------------------------------------------------------------
@register_dataset('cars')
def cars(cfg: dict) -> Splits:
    """The devkit layout torchvision's StanfordCars reads; classes 1..196 in the .mat files (0-based here)."""
    layout = ('the Stanford Cars folder (devkit/cars_train_annos.mat, devkit/cars_meta.mat, cars_train/, '
              'cars_test/, cars_test_annos_withlabels.mat)')
    base = _base_dir(cfg, 'cars', 'stanford_cars', layout)
    meta_path = base / 'devkit' / 'cars_meta.mat'
    classes = _names(_key(_load_mat(meta_path, 'the Stanford Cars devkit cars_meta.mat'), 'class_names', meta_path,
                          'the Stanford Cars class names (196 on the real set)'))

    def split(annos: Path, images: str) -> ImageFileDataset:
        what = 'Stanford Cars annotations (a struct array with fname and class)'
        records = np.atleast_1d(_key(_load_mat(annos, what), 'annotations', annos, what))
        fields = records.dtype.names or ()
        for f in ('fname', 'class'):
            if f not in fields:
                raise DataError(f'{annos}: annotations have no field {f!r}; expected {what} (found {list(fields)})')
        folder = _need_dir(base / images, f'the Stanford Cars images {images}/')
        files = sorted(e.name for e in os.scandir(folder) if e.name.lower().endswith(IMAGE_EXTENSIONS))
        # the annotations label the images of the folder, each once
        return ImageFileDataset(build_index(
            folder, [r['class'] for r in records], classes, label_values=range(1, len(classes) + 1), images=files,
            labelled=[str(r['fname']) for r in records], paths=files, root=folder, label_source=annos,
            image_key='file', label_key='class'))

    train = split(base / 'devkit' / 'cars_train_annos.mat', 'cars_train')
    test = split(base / 'cars_test_annos_withlabels.mat', 'cars_test')
    logger.info('cars: %d train / %d test images, %d classes (%s)', len(train), len(test), len(classes), base)
    return Splits(train, test, len(classes))


# -- iNaturalist 2018 / 2019 ------------------------------------------------------------------------------------
def _inat_split(root: Path, path: Path, category_ids: List[int], classes: List[str], data: dict
                ) -> ImageFileDataset:
    what = 'an iNaturalist annotation file (COCO-like images, annotations, categories)'
    images, annotations = _key(data, 'images', path, what), _key(data, 'annotations', path, what)
    try:
        ids, names = [int(image['id']) for image in images], [image['file_name'] for image in images]
        owners = [int(a['image_id']) for a in annotations]
        categories = [int(a['category_id']) for a in annotations]
    except (KeyError, TypeError, ValueError) as e:
        raise DataError(f'{path}: malformed entry (missing or bad {first_line(e)}); expected images with id and '
                        'file_name, annotations with image_id and category_id') from None
    return ImageFileDataset(build_index(path, categories, classes, label_values=category_ids, images=ids,
                                        labelled=owners, paths=names, root=root, image_key='image id',
                                        label_key='category_id'))


def _inat(cfg: dict, year: int) -> Splits:
    """Train on train{year}.json, evaluate on val{year}.json; file_name paths are relative to `data.path`.
    Class i is the i-th category id in increasing order (ids run 0..8141 / 0..1009 on the real sets)."""
    name = f'inat{year % 100}'
    layout = f'the iNaturalist {year} folder (train{year}.json, val{year}.json and the image folders they list)'
    root = _base_dir(cfg, name, '', layout)
    train_path, val_path = root / f'train{year}.json', root / f'val{year}.json'
    train_data = _load_json(train_path, f'the iNaturalist {year} training annotations')
    what = 'an iNaturalist annotation file (categories with id and name)'
    listed = _key(train_data, 'categories', train_path, what)
    try:
        categories = sorted((int(c['id']), str(c.get('name', c['id']))) for c in listed)
    except (KeyError, TypeError, ValueError):
        raise DataError(f'{train_path}: malformed categories; expected {what}') from None
    category_ids, classes = [c for c, _ in categories], [n for _, n in categories]
    train = _inat_split(root, train_path, category_ids, classes, train_data)
    del train_data  # the parsed JSON is large; only the packed arrays stay
    val = _inat_split(root, val_path, category_ids, classes,
                      _load_json(val_path, f'the iNaturalist {year} validation annotations'))
    logger.info('%s: %d train / %d val images, %d classes (%s)', name, len(train), len(val), len(classes), root)
    return Splits(train, val, len(classes))


@register_dataset('inat18')
def inat18(cfg: dict) -> Splits:
    return _inat(cfg, 2018)


@register_dataset('inat19')
def inat19(cfg: dict) -> Splits:
    return _inat(cfg, 2019)


TRANSFER_DATASETS = ('cifar10', 'cifar100', 'flowers', 'cars', 'inat18', 'inat19')
