"""Datasets, transforms and the sampler of the training engine (pretraining and transfer).

- Datasets are registered by name (`@register_dataset('imagenet')`) and return PIL images with integer labels;
  transfer/data.py registers the transfer datasets the same way.
- ImageNet folders are indexed once and the index is cached (an ImageNet-21k folder holds 14 million files).
  The index lives in numpy arrays, not Python lists, so DataLoader workers share it without copying.
- Augmentation is seeded per sample from (seed, epoch, position), and the sampler fixes the global order of
  an epoch: a run gives the same batches whatever the number of GPUs and workers, and resuming mid-epoch
  continues exactly.
- Unreadable images are skipped and counted (the next image stands in); the engine stops when their share
  exceeds `data.max_bad_fraction`, naming the first bad file.
"""
from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset, Sampler
from torchvision.transforms import InterpolationMode
from torchvision.transforms import v2

logger = logging.getLogger(__name__)

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
IMAGE_EXTENSIONS = ('.jpg', '.jpeg', '.png', '.ppm', '.bmp', '.pgm', '.tif', '.tiff', '.webp')


class DataError(ValueError):
    """Bad or missing data; the message names the path and what was expected."""


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


def load_rgb(path: str | os.PathLike) -> Image.Image:
    with open(path, 'rb') as f:
        img = Image.open(f)
        return img.convert('RGB')


# -- image folders with a cached index --------------------------------------------------------------------------
class PackedPaths:
    """Relative paths as one uint8 blob + int64 offsets: no per-sample Python objects for DataLoader workers
    to copy (their reference counts would touch every page of a list of millions of strings)."""

    def __init__(self, paths: Sequence[str] = (), blob: Optional[np.ndarray] = None,
                 offsets: Optional[np.ndarray] = None):
        if blob is None:
            encoded = [p.encode() for p in paths]
            offsets = np.zeros(len(encoded) + 1, dtype=np.int64)
            np.cumsum([len(p) for p in encoded], out=offsets[1:])
            blob = np.frombuffer(b''.join(encoded), dtype=np.uint8).copy()
        self.blob, self.offsets = blob, offsets

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def __getitem__(self, i: int) -> str:
        return bytes(self.blob[self.offsets[i]:self.offsets[i + 1]]).decode()


class FolderIndex:
    """Files of `root/<class>/<image>`, listed once and cached; paths in one byte blob + offsets."""

    def __init__(self, root: Path, classes: Optional[Sequence[str]] = None, cache_dir: Optional[Path] = None):
        self.root = Path(root)
        if not self.root.is_dir():
            raise DataError(f'{self.root}: no such folder; expected an image folder with one sub-folder per class')
        entries = sorted((e.name, e.stat().st_mtime_ns) for e in os.scandir(self.root) if e.is_dir())
        if not entries:
            raise DataError(f'{self.root}: no class sub-folders; expected {self.root}/<class>/<image>')
        self.classes = list(classes) if classes is not None else [name for name, _ in entries]
        class_to_idx = {c: i for i, c in enumerate(self.classes)}
        unknown = [name for name, _ in entries if name not in class_to_idx]
        if unknown:
            raise DataError(f'{self.root}: class folder {unknown[0]!r} is not among the {len(self.classes)} '
                            'training classes')
        # Folder mtimes change when files are added or removed, so they key the cache.
        key = hashlib.sha1(json.dumps([str(self.root.resolve()), entries, self.classes]).encode()).hexdigest()[:16]
        cache = Path(cache_dir or os.environ.get('COSUB_CACHE', Path.home() / '.cache' / 'cosub')) / f'index-{key}.npz'
        if cache.is_file():
            with np.load(cache) as z:
                self.paths, self.targets = PackedPaths(blob=z['blob'], offsets=z['offsets']), z['targets']
            logger.info('%s: %d images in %d classes (cached index %s)', self.root, len(self), len(entries), cache)
        else:
            self._scan([name for name, _ in entries], class_to_idx)
            self._save(cache)
        if len(self) == 0:
            raise DataError(f'{self.root}: no images with extensions {IMAGE_EXTENSIONS} in its class folders')

    def _scan(self, names: List[str], class_to_idx: Dict[str, int]) -> None:
        from tqdm import tqdm

        def list_class(name: str) -> List[str]:
            return sorted(f'{name}/{e.name}' for e in os.scandir(self.root / name)
                          if e.name.lower().endswith(IMAGE_EXTENSIONS) and e.is_file())

        paths, targets = [], []
        # Listing is I/O bound (network file systems especially): threads overlap the round trips.
        with ThreadPoolExecutor(16) as pool:
            for name, files in tqdm(zip(names, pool.map(list_class, names)), total=len(names),
                                    desc=f'indexing {self.root}', disable=len(names) < 100):
                paths += files
                targets += [class_to_idx[name]] * len(files)
        self.paths = PackedPaths(paths)
        self.targets = np.asarray(targets, dtype=np.int32)

    def _save(self, cache: Path) -> None:
        try:
            cache.parent.mkdir(parents=True, exist_ok=True)
            tmp = cache.with_suffix(f'.{os.getpid()}.tmp.npz')
            np.savez(tmp, blob=self.paths.blob, offsets=self.paths.offsets, targets=self.targets)
            os.replace(tmp, cache)
        except OSError as e:  # a read-only home is no reason to stop; we just index again next time
            logger.warning('could not cache the index of %s in %s: %s', self.root, cache, e)

    def __len__(self) -> int:
        return len(self.targets)

    def relpath(self, i: int) -> str:
        return self.paths[i]

    def path(self, i: int) -> Path:
        return self.root / self.paths[i]


class ImageFolderDataset(Dataset):
    def __init__(self, index: FolderIndex):
        self.index = index
        self.classes = index.classes
        self.real_labels: Optional[List[List[int]]] = None  # ImageNet-ReaL labels per sample, when given

    def __len__(self) -> int:
        return len(self.index)

    def path(self, i: int) -> Path:
        return self.index.path(i)

    def __getitem__(self, i: int) -> Tuple[Image.Image, int]:
        return load_rgb(self.index.path(i)), int(self.index.targets[i])


class ImageNetV2Dataset(ImageFolderDataset):
    """ImageNet-v2 as released: class folders named by their ImageNet-1k index ('0' ... '999')."""

    def __init__(self, root: Path, num_classes: int, cache_dir: Optional[Path] = None):
        names = [str(i) for i in range(num_classes)]
        present = {e.name for e in os.scandir(root) if e.is_dir()} if Path(root).is_dir() else set()
        if not present or not present <= set(names):
            raise DataError(f'{root}: expected ImageNet-v2 class folders named 0..{num_classes - 1}')
        super().__init__(FolderIndex(root, names, cache_dir))


class RealLabels:
    """ImageNet-ReaL: `real.json` holds, for val image n (ILSVRC2012_val_<n>.JPEG), its list of valid labels."""

    def __init__(self, path: Path):
        try:
            self.labels = json.loads(Path(path).read_text())
        except (OSError, ValueError) as e:
            raise DataError(f'{path}: expected the ImageNet-ReaL real.json (a list of label lists): {e}') from None

    def for_file(self, name: str) -> List[int]:
        try:
            n = int(Path(name).stem.rsplit('_', 1)[-1])
        except ValueError:
            raise DataError(f'{name}: ImageNet-ReaL needs val files named ILSVRC2012_val_<number>') from None
        return self.labels[n - 1]


@register_dataset('imagenet')
def imagenet(cfg: dict) -> Splits:
    """ImageNet-1k/21k folders: <path>/<train_split>/<wnid>/*.JPEG and <path>/<val_split>/<wnid>/*.JPEG."""
    root = Path(cfg['path'])
    if not root.is_dir():
        raise DataError(f'--data-path {root}: no such folder; expected an ImageNet folder with '
                        f'{cfg.get("train_split", "train")}/ and {cfg.get("val_split", "val")}/ class sub-folders')
    cache = cfg.get('index_cache')
    train = ImageFolderDataset(FolderIndex(root / cfg.get('train_split', 'train'), cache_dir=cache))
    val = None
    if cfg.get('val_split'):
        val_root = root / cfg['val_split']
        if val_root.is_dir():
            val = ImageFolderDataset(FolderIndex(val_root, train.classes, cache))
        elif cfg.get('require_val', True):
            raise DataError(f'{val_root}: no such folder; expected the validation class sub-folders '
                            '(or set data.val_split=None to train without evaluation)')
    extra = {}
    if cfg.get('v2_path'):
        extra['v2'] = ImageNetV2Dataset(Path(cfg['v2_path']), len(train.classes), cache)
    if cfg.get('real_path'):
        if val is None:
            raise DataError('data.real_path is set but there is no validation folder to attach ReaL labels to')
        real = RealLabels(Path(cfg['real_path']))
        val.real_labels = [real.for_file(val.path(i).name) for i in range(len(val))]
    return Splits(train, val, len(train.classes), extra)


class ArrayDataset(Dataset):
    """Images held in one uint8 array, (N, H, W) grey or (N, H, W, 3) RGB: digits, CIFAR."""

    def __init__(self, images: np.ndarray, targets: np.ndarray, classes: Optional[List[str]] = None):
        self.images, self.classes = images, classes
        self.targets = np.asarray(targets, dtype=np.int32)

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, i: int) -> Tuple[Image.Image, int]:
        return Image.fromarray(self.images[i]).convert('RGB'), int(self.targets[i])


@register_dataset('digits')
def digits(cfg: dict) -> Splits:
    """Stratified split of sklearn's digits; `classes` keeps a subset (relabelled 0..n-1)."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split
    bunch = load_digits()
    images = np.clip(bunch.images * 16, 0, 255).astype(np.uint8)
    labels = bunch.target
    classes = list(cfg.get('classes') or range(10))
    keep = np.isin(labels, classes)
    images, labels = images[keep], np.searchsorted(np.asarray(sorted(classes)), labels[keep])
    tr_x, va_x, tr_y, va_y = train_test_split(images, labels, test_size=cfg.get('val_fraction', 0.2),
                                              stratify=labels, random_state=0)
    # scikit-learn's 8x8 handwritten digits (1797 images, shipped inside the package): the demo's data
    return Splits(ArrayDataset(tr_x, tr_y), ArrayDataset(va_x, va_y), len(classes))


# -- transforms -------------------------------------------------------------------------------------------------
def build_train_transform(t: dict, input_size: int, mean=IMAGENET_MEAN, std=IMAGENET_STD) -> v2.Compose:
    """DeiT III training augmentation: RandomResizedCrop ('rrc') or Simple Random Crop ('src'), flip,
    3-Augment (one of grayscale, solarization, Gaussian blur), colour jitter."""
    bicubic = InterpolationMode.BICUBIC
    crop = t.get('crop', 'rrc')
    if crop == 'rrc':
        ops = [v2.RandomResizedCrop(input_size, scale=tuple(t.get('rrc_scale', (0.08, 1.0))), interpolation=bicubic,
                                    antialias=True)]
    elif crop == 'src':  # resize the short side, reflect-pad 4, random square crop
        ops = [v2.Resize(input_size, interpolation=bicubic, antialias=True),
               v2.RandomCrop(input_size, padding=4, padding_mode='reflect')]
    else:
        raise DataError(f"data.train_transform.crop={crop!r}: expected 'rrc' or 'src'")
    if t.get('hflip', 0.5):
        ops.append(v2.RandomHorizontalFlip(t.get('hflip', 0.5)))
    if t.get('three_augment', True):
        kernel = min(13, (input_size // 2) * 2 - 1)  # covers sigma up to 2 (3 sigma each side) when it fits
        ops.append(v2.RandomChoice([v2.Grayscale(num_output_channels=3), v2.RandomSolarize(128, p=1.0),
                                    v2.GaussianBlur(kernel, sigma=(0.1, 2.0))]))
    if t.get('color_jitter', 0.3):
        cj = t.get('color_jitter', 0.3)
        ops.append(v2.ColorJitter(cj, cj, cj))
    ops += [v2.ToImage(), v2.ToDtype(torch.float32, scale=True), v2.Normalize(mean, std)]
    return v2.Compose(ops)


def build_eval_transform(input_size: int, crop_ratio: float = 1.0, mean=IMAGENET_MEAN, std=IMAGENET_STD
                         ) -> v2.Compose:
    if not 0.0 < crop_ratio <= 1.0:
        raise DataError(f'eval crop ratio {crop_ratio}: expected a value in (0, 1]')
    return v2.Compose([
        v2.Resize(int(math.floor(input_size / crop_ratio)), interpolation=InterpolationMode.BICUBIC, antialias=True),
        v2.CenterCrop(input_size), v2.ToImage(), v2.ToDtype(torch.float32, scale=True), v2.Normalize(mean, std)])


class TransformedDataset(Dataset):
    """Applies a transform with a per-sample seed; indexes are (index, seed) pairs from `GlobalOrderSampler`.

    Returns (image, label, index, bad) where `bad` is the path of an unreadable image replaced by the next
    one ('' when the image was fine).
    """

    def __init__(self, base: Dataset, transform: Callable, max_retries: int = 10):
        self.base, self.transform, self.max_retries = base, transform, max_retries

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, key):
        index, seed = key if isinstance(key, tuple) else (key, key)
        bad = ''
        for attempt in range(self.max_retries):
            i = (index + attempt) % len(self.base)
            try:
                img, target = self.base[i]
                break
            except (OSError, ValueError, SyntaxError) as e:  # what PIL raises for truncated/corrupt files
                path = self.base.path(i) if hasattr(self.base, 'path') else f'sample {i}'
                bad = bad or str(path)
                warnings.warn(f'skipping unreadable image {path}: {e}')
        else:
            raise DataError(f'{bad}: {self.max_retries} consecutive unreadable images from here')
        with torch.random.fork_rng(devices=[]):  # leaves the caller's RNG untouched
            torch.manual_seed(seed)
            img = self.transform(img)
        return img, target, index, bad


# -- sampling ---------------------------------------------------------------------------------------------------
def sample_seed(seed: int, epoch: int, position: int) -> int:
    return ((seed * 1_000_003 + epoch) * 1_000_000_007 + position) % (2 ** 63)


class GlobalOrderSampler(Sampler):
    """The epoch's order depends only on (seed, epoch); rank r takes positions r, r + W, r + 2W, ...

    So global step s always covers positions [s*G, (s+1)*G) of that order, for any world size W and any
    split of the global batch G into per-device micro-batches. With `repeats` > 1 (repeated augmentation,
    DeiT) each image appears `repeats` times in a row, the epoch keeping its length. `set_epoch(epoch, start)`
    starts at global position `start` (resume). Yields (index, augmentation seed).
    """

    def __init__(self, size: int, *, rank: int = 0, world_size: int = 1, shuffle: bool = True, seed: int = 0,
                 repeats: int = 1, global_batch: Optional[int] = None):
        self.size, self.rank, self.world_size = size, rank, world_size
        self.shuffle, self.seed, self.repeats = shuffle, seed, max(1, int(repeats))
        # Training drops the last incomplete global batch; evaluation (global_batch None) keeps every sample.
        self.total = size - size % global_batch if global_batch else size
        self.epoch, self.start = 0, 0

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        self.epoch, self.start = epoch, start

    def order(self) -> torch.Tensor:
        if not self.shuffle:
            return torch.arange(self.size)
        g = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
        order = torch.randperm(self.size, generator=g)
        return order.repeat_interleave(self.repeats)[:self.size] if self.repeats > 1 else order

    def __iter__(self) -> Iterator[Tuple[int, int]]:
        order = self.order()
        for pos in range(self.start + self.rank, self.total, self.world_size):
            yield int(order[pos]), sample_seed(self.seed, self.epoch, pos)

    def __len__(self) -> int:
        return len(range(self.start + self.rank, self.total, self.world_size))
