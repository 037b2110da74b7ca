"""The dataset readers, registered by name (`@register_dataset('imagenet')`): each returns `Splits` of datasets
of (PIL image, int label). Here ImageNet folders (with ImageNet-v2 and ReaL) and scikit-learn's digits;
transfer/data.py registers the transfer datasets the same way."""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Optional, Tuple

import numpy as np
from PIL import Image
from torch.utils.data import Dataset

from .errors import DataError, first_line
from .folder_index import FolderIndex
from .images import load_rgb, open_image
from .index import SampleIndex, build_index


@dataclass
class Splits:
    """What a dataset builder returns: datasets of (PIL image, int label)."""
    train: Optional[Dataset]
    val: Optional[Dataset]
    num_classes: int
    extra_val: Dict[str, Dataset] = field(default_factory=dict)  # e.g. ImageNet-v2 / ReaL


DATASETS: Dict[str, Callable[[dict], Splits]] = {}


def register_dataset(name: str):
    def wrap(fn):
        DATASETS[name] = fn
        return fn
    return wrap


def build_splits(data_cfg: dict) -> Splits:
    name = data_cfg.get('type')
    if name not in DATASETS:
        raise DataError(f'data.type={name!r}: expected one of {sorted(DATASETS)}')
    return DATASETS[name](data_cfg)



class ImageFileDataset(Dataset):
    """The image files of a checked `SampleIndex`, each read whole (`path(i)` names an unreadable one)."""

    def __init__(self, index: SampleIndex):
        self.index, self.classes, self.targets = index, index.classes, index.targets

    def __len__(self) -> int:
        return len(self.index)

    def path(self, i: int) -> Path:
        return self.index.path(i)

    def __getitem__(self, i: int) -> Tuple[Image.Image, int]:
        return load_rgb(self.index.path(i)), int(self.targets[i])


class ImageFolderDataset(ImageFileDataset):
    """ImageNet-style folders: images handed over undecoded (`open`), ImageNet-ReaL labels when given."""

    def __init__(self, index: FolderIndex):
        super().__init__(index)
        self.real_labels: Optional[List[List[int]]] = None  # ImageNet-ReaL labels per sample, when given

    def open(self, i: int) -> Tuple[Image.Image, int]:
        """The image opened but not decoded: the transform may decode a JPEG at reduced scale (draft)."""
        return open_image(self.index.path(i)), int(self.targets[i])

    def file_name(self, i: int) -> str:
        return self.index.path(i).name


class ImageNetV2Dataset(ImageFolderDataset):
    """ImageNet-v2 as released: class folders named by their ImageNet-1k index ('0' ... '999')."""

    def __init__(self, root: Path, num_classes: int, cache_dir: Optional[Path] = None):
        super().__init__(FolderIndex(root, [str(i) for i in range(num_classes)], cache_dir))


class RealLabels:
    """ImageNet-ReaL: `real.json` holds, for val image n (ILSVRC2012_val_<n>.JPEG), its list of valid labels.

    Why not timm's `RealLabelsImagenet` (it reads the same file): it scores predictions in the order of a list
    of all 50,000 file names (it asserts that count), one process, every row counted. Our evaluation runs on
    any subset of the val folder, on several ranks that each see a strided part of it, and leaves unreadable
    images out; so each sample carries its label list (`ImageFolderDataset.real_labels`) and the engine sums
    hits across ranks.
    """

    def __init__(self, path: Path):
        what = 'the ImageNet-ReaL real.json (a list of 50,000 label lists)'
        try:
            self.labels = json.loads(Path(path).read_text())
        except (OSError, ValueError) as e:
            raise DataError(f'{path}: expected {what}: {first_line(e)}') from None
        if not (isinstance(self.labels, list) and all(isinstance(x, list) and all(isinstance(c, int) for c in x)
                                                       for x in self.labels)):
            raise DataError(f'{path}: holds a JSON {type(self.labels).__name__} of other values; expected {what}')
        self.path = path

    def for_file(self, name: str) -> List[int]:
        try:
            n = int(Path(name).stem.rsplit('_', 1)[-1])
        except ValueError:
            raise DataError(f'{name}: ImageNet-ReaL needs val files named ILSVRC2012_val_<number>') from None
        if not 1 <= n <= len(self.labels):
            raise DataError(f'{name}: image number {n} is not among the {len(self.labels)} entries of {self.path}')
        return self.labels[n - 1]


def data_setting(cfg: dict, key: str):
    """A dataset's config key. Its default lives in the config files, never in code: a missing key is an error."""
    if key not in cfg:
        raise DataError(f'data.{key} is not set; the {cfg["type"]!r} dataset reads it (see its config file)')
    return cfg[key]


@register_dataset('imagenet')
def imagenet(cfg: dict) -> Splits:
    """ImageNet-1k/21k folders: <path>/<train_split>/<wnid>/*.JPEG and <path>/<val_split>/<wnid>/*.JPEG."""
    root = Path(data_setting(cfg, 'path'))
    train_split, val_split = data_setting(cfg, 'train_split'), data_setting(cfg, 'val_split')
    if not root.is_dir():
        raise DataError(f'--data-path {root}: no such folder; expected an ImageNet folder with '
                        f'{train_split}/' + (f' and {val_split}/' if val_split else '') + ' class sub-folders')
    cache = data_setting(cfg, 'index_cache')
    train = ImageFolderDataset(FolderIndex(root / train_split, cache_dir=cache))
    val = None
    if val_split:
        val_root = root / val_split
        if not val_root.is_dir():
            raise DataError(f'{val_root}: no such folder; expected the validation class sub-folders '
                            '(or set data.val_split=None to train without evaluation)')
        val = ImageFolderDataset(FolderIndex(val_root, train.classes, cache))
    return attach_imagenet_extras(cfg, train, val)


def attach_imagenet_extras(cfg: dict, train: Dataset, val: Optional[Dataset]) -> Splits:
    """The ImageNet splits with ImageNet-v2 (data.v2_path) and ImageNet-ReaL labels on val (data.real_path)."""
    extra = {}
    if data_setting(cfg, 'v2_path'):
        extra['v2'] = ImageNetV2Dataset(Path(cfg['v2_path']), len(train.classes), data_setting(cfg, 'index_cache'))
    if data_setting(cfg, 'real_path'):
        if val is None:
            raise DataError('data.real_path is set but there is no validation folder to attach ReaL labels to')
        real = RealLabels(Path(cfg['real_path']))
        val.real_labels = [real.for_file(val.file_name(i)) for i in range(len(val))]
    return Splits(train, val, len(train.classes), extra)


class ArrayDataset(Dataset):
    """Images held in one uint8 array, (N, H, W) grey or (N, H, W, 3) RGB, with a checked index: digits, CIFAR."""

    def __init__(self, images: np.ndarray, index: SampleIndex):
        self.images, self.classes, self.targets = images, index.classes, index.targets

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, i: int) -> Tuple[Image.Image, int]:
        return Image.fromarray(self.images[i]).convert('RGB'), int(self.targets[i])


# The digits dataset's fixed split (a part of its definition, as CIFAR's test batch is of CIFAR): the demo's
# measured numbers are on it.
DIGITS_VAL_FRACTION = 0.2


@register_dataset('digits')
def digits(cfg: dict) -> Splits:
    """Stratified split of sklearn's digits; `classes` keeps a subset (relabelled 0..n-1)."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split
    bunch = load_digits()
    images = np.clip(bunch.images * 16, 0, 255).astype(np.uint8)
    labels = bunch.target
    classes = list(data_setting(cfg, 'classes') or range(10))  # None: all ten
    keep = np.isin(labels, classes)
    images, labels = images[keep], np.searchsorted(np.asarray(sorted(classes)), labels[keep])
    tr_x, va_x, tr_y, va_y = train_test_split(images, labels, test_size=DIGITS_VAL_FRACTION,
                                              stratify=labels, random_state=0)
    # scikit-learn's 8x8 handwritten digits (1797 images, shipped inside the package): the demo's data
    names = [str(c) for c in sorted(classes)]
    return Splits(ArrayDataset(tr_x, build_index('scikit-learn digits', tr_y, names)),
                  ArrayDataset(va_x, build_index('scikit-learn digits', va_y, names)), len(classes))
