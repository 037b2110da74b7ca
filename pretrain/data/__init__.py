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

import errno
import hashlib
import json
import logging
import math
import os
import random
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch.utils.data import Dataset, Sampler

from .. import augment

logger = logging.getLogger(__name__)

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


class ImageReadError(DataError):
    """An image file that cannot be read or is refused; the message names the file and the reason."""


def open_image(path: str | os.PathLike) -> Image.Image:
    """Open an image lazily (header only: a JPEG may then be decoded at reduced scale, `Image.draft`).

    Refuses a decompression bomb: PIL's own check raises past twice `Image.MAX_IMAGE_PIXELS` and only warns
    between once and twice; here anything over the limit is refused, so a bomb is never decoded.
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter('error', Image.DecompressionBombWarning)
            return Image.open(path)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise ImageReadError(f'{path}: refused as a decompression bomb ({_first_line(e)})') from None
    except (OSError, SyntaxError, ValueError) as e:  # missing, unidentified or damaged file
        raise ImageReadError(f'{path}: unreadable image ({_first_line(e)})') from None


def to_rgb(img: Image.Image, path: str | os.PathLike = '') -> Image.Image:
    """Decode `img` (if not yet: a lazily opened image decodes here, at its draft scale) and convert it to RGB.

    - 16-bit greyscale ('I;16*', and 'I' as PNG gives it): scaled to 8 bits (v / 257). PIL's own
      convert('RGB') clips such values at 255, turning a 16-bit image white.
    - Alpha ('RGBA', 'LA', 'PA', palette with a transparent colour, premultiplied 'RGBa'/'La'): composited on
      white, as the image shows on a white page. Dropping alpha instead would show whatever colour the file
      keeps under transparent pixels (often black or left-over content).
    - CMYK: PIL's conversion (Adobe-inverted JPEGs are read as such), as torchvision and timm do.
    - Palette, greyscale, 1-bit: PIL's conversion.
    """
    limit = Image.MAX_IMAGE_PIXELS
    if limit and img.width * img.height > limit:  # also for images opened elsewhere (PIL only warns up to 2x)
        raise ImageReadError(f'{path}: refused as a decompression bomb ({img.width}x{img.height} = '
                             f'{img.width * img.height} pixels, over PIL.Image.MAX_IMAGE_PIXELS={limit})')
    try:
        img.load()
        if img.mode == 'RGB':
            return img
        if img.mode.startswith('I'):  # 'I;16', 'I;16B', 'I;16L', 'I;16N', 'I'
            values = np.asarray(img, dtype=np.int64)
            grey = ((np.clip(values, 0, 65535) + 128) // 257).astype(np.uint8)
            return Image.fromarray(grey, 'L').convert('RGB')
        if img.mode == 'P':
            img = img.convert('RGBA' if 'transparency' in img.info else 'RGB')
        elif img.mode in ('LA', 'PA', 'La', 'RGBa'):
            img = img.convert('RGBA')
        elif img.mode == 'L' and 'transparency' in img.info:
            img = img.convert('RGBA')
        if img.mode == 'RGBA':
            white = Image.new('RGBA', img.size, (255, 255, 255, 255))
            return Image.alpha_composite(white, img).convert('RGB')
        return img.convert('RGB')
    except (OSError, SyntaxError, ValueError) as e:  # truncated or damaged data, a mode PIL cannot convert
        raise ImageReadError(f'{path}: unreadable image ({_first_line(e)})') from None


def load_rgb(path: str | os.PathLike) -> Image.Image:
    """Read an image file as RGB (ImageReadError naming the file when it is unreadable or refused)."""
    return to_rgb(open_image(path), path)  # PIL closes the file once the image is loaded


def _first_line(e: BaseException) -> str:
    return (str(e).strip().splitlines() or [type(e).__name__])[0]


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


def _broken_link(entry: os.DirEntry) -> Optional[str]:
    """Why a directory entry is a symbolic link that cannot be followed (a loop, a dangling link), else None."""
    if not entry.is_symlink():
        return None
    try:
        os.stat(entry.path)
    except OSError as e:
        if e.errno == errno.ELOOP:
            return 'a symbolic link loop'
        return f'a symbolic link that cannot be followed ({e.strerror})'
    return None


class FolderIndex:
    """Files of `root/<class>/<image>`, listed once and cached; paths in one byte blob + offsets.

    Refused, naming the path: a class folder without images (it would silently become a class nobody can
    predict), a symbolic link loop or dangling link in place of a class folder or an image, a folder that
    cannot be listed. A cache that cannot be read back is rebuilt, with one warning.
    """

    def __init__(self, root: Path, classes: Optional[Sequence[str]] = None, cache_dir: Optional[Path] = None):
        self.root = Path(root)
        if not self.root.is_dir():
            raise DataError(f'{self.root}: no such folder; expected an image folder with one sub-folder per class')
        entries = []
        try:
            for e in os.scandir(self.root):
                broken = _broken_link(e)
                if broken:
                    raise DataError(f'{e.path}: {broken}; expected a class folder of images')
                if e.is_dir():
                    entries.append((e.name, e.stat().st_mtime_ns))
        except OSError as e:
            raise DataError(f'{self.root}: cannot list the folder ({e.strerror or e})') from None
        entries.sort()
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
        if not (cache.is_file() and self._load(cache)):
            self._scan([name for name, _ in entries], class_to_idx)
            self._save(cache)
        if len(self) == 0:
            raise DataError(f'{self.root}: no images with extensions {IMAGE_EXTENSIONS} in its class folders')
        counts = np.bincount(self.targets, minlength=len(self.classes))
        empty = [name for name, _ in entries if counts[class_to_idx[name]] == 0]
        if empty:
            raise DataError(f'{self.root / empty[0]}: empty class folder (no files with extensions '
                            f'{", ".join(IMAGE_EXTENSIONS)}); remove it or add its images'
                            + (f' ({len(empty)} empty class folders in all)' if len(empty) > 1 else ''))

    def _load(self, cache: Path) -> bool:
        """Read a cached index; False (after one warning) when it is damaged: it is then rebuilt."""
        try:
            with np.load(cache) as z:  # allow_pickle=False: arrays only
                blob, offsets, targets = z['blob'], z['offsets'], z['targets']
            consistent = (blob.ndim == offsets.ndim == targets.ndim == 1 and len(offsets) == len(targets) + 1
                          and offsets[0] == 0 and offsets[-1] == len(blob) and bool(np.all(np.diff(offsets) >= 0))
                          and (len(targets) == 0 or 0 <= targets.min() <= targets.max() < len(self.classes)))
            if not consistent:
                raise ValueError('inconsistent arrays')
        except Exception as e:  # zipfile.BadZipFile, EOFError, KeyError, ValueError, OSError, ...
            logger.warning('%s: damaged index cache (%s); indexing %s again',
                           cache, (str(e).strip().splitlines() or [type(e).__name__])[0], self.root)
            return False
        self.paths, self.targets = PackedPaths(blob=blob, offsets=offsets), targets
        logger.info('%s: %d images in %d classes (cached index %s)', self.root, len(self), len(self.classes), cache)
        return True

    def _scan(self, names: List[str], class_to_idx: Dict[str, int]) -> None:
        from tqdm import tqdm

        def list_class(name: str) -> List[str]:
            files = []
            try:
                for e in os.scandir(self.root / name):
                    if not e.name.lower().endswith(IMAGE_EXTENSIONS):
                        continue
                    broken = _broken_link(e)
                    if broken:
                        raise DataError(f'{e.path}: {broken}; expected an image file')
                    if e.is_file():
                        files.append(f'{name}/{e.name}')
            except OSError as e:
                raise DataError(f'{self.root / name}: cannot list the class folder ({e.strerror or e})') from None
            return sorted(files)

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

    def open(self, i: int) -> Tuple[Image.Image, int]:
        """The image opened but not decoded: the transform may decode a JPEG at reduced scale (draft)."""
        return open_image(self.index.path(i)), int(self.index.targets[i])


class ImageNetV2Dataset(ImageFolderDataset):
    """ImageNet-v2 as released: class folders named by their ImageNet-1k index ('0' ... '999')."""

    def __init__(self, root: Path, num_classes: int, cache_dir: Optional[Path] = None):
        names = [str(i) for i in range(num_classes)]
        present = {e.name for e in os.scandir(root) if e.is_dir()} if Path(root).is_dir() else set()
        if not present or not present <= set(names):
            raise DataError(f'{root}: expected ImageNet-v2 class folders named 0..{num_classes - 1}')
        super().__init__(FolderIndex(root, names, cache_dir))


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
            raise DataError(f'{path}: expected {what}: {_first_line(e)}') from None
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
    extra = {}
    if data_setting(cfg, 'v2_path'):
        extra['v2'] = ImageNetV2Dataset(Path(cfg['v2_path']), len(train.classes), cache)
    if data_setting(cfg, 'real_path'):
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
    return Splits(ArrayDataset(tr_x, tr_y), ArrayDataset(va_x, va_y), len(classes))


# -- transforms -------------------------------------------------------------------------------------------------
# Workers do the part that needs the file: decode (at reduced scale when the crop allows), crop, resize, flip,
# and return uint8 CHW tensors. Each sample's random draws come from `random.Random(seed)` with its seed from
# `sample_seed`: first the crop, then the flip, then the parameters of the device half (pretrain/augment.py:
# 3-Augment, colour jitter), which ship with the batch as small tensors.
RRC_RATIO = (3.0 / 4.0, 4.0 / 3.0)  # torchvision's and DeiT's RandomResizedCrop aspect-ratio range
SRC_PADDING = 4                     # Simple Random Crop: reflect padding (DeiT III, IN-21k)
DRAFT_SCALES = (8, 4, 2)            # the JPEG decoder's DCT scalings (libjpeg: 1/2, 1/4, 1/8)


def rrc_box(rng: random.Random, width: int, height: int, scale: Sequence[float],
            ratio: Sequence[float] = RRC_RATIO) -> Tuple[int, int, int, int]:
    """RandomResizedCrop's box (left, top, width, height), torchvision's algorithm: 10 tries at a random area
    and log-uniform aspect ratio, else the largest central crop within the ratio range."""
    area = width * height
    log_ratio = (math.log(ratio[0]), math.log(ratio[1]))
    for _ in range(10):
        target_area = area * rng.uniform(scale[0], scale[1])
        aspect = math.exp(rng.uniform(*log_ratio))
        w = int(round(math.sqrt(target_area * aspect)))
        h = int(round(math.sqrt(target_area / aspect)))
        if 0 < w <= width and 0 < h <= height:
            return rng.randint(0, width - w), rng.randint(0, height - h), w, h
    in_ratio = width / height
    if in_ratio < min(ratio):
        w, h = width, int(round(width / min(ratio)))
    elif in_ratio > max(ratio):
        w, h = int(round(height * max(ratio))), height
    else:
        w, h = width, height
    return (width - w) // 2, (height - h) // 2, w, h


def draft_scale(img: Image.Image, shrink: float) -> int:
    """Ask the JPEG decoder to decode at 1/s of the size (s in 8, 4, 2) when the image will be shrunk by at least s
    anyway; returns the s it will use (1: full decode, e.g. not a JPEG, or too little shrinking)."""
    want = next((s for s in DRAFT_SCALES if shrink >= s), 1)
    if want == 1:
        return 1
    width, height = img.size
    # PIL picks the largest DCT scale s with s <= min(W // w, H // h); W // (W // s) is exactly s for W > 2s.
    drafted = img.draft('RGB', (width // want, height // want))
    if drafted is None:
        return 1
    return int(round(width / drafted[1][2]))


def snap_box(box: Tuple[int, int, int, int], scale: int) -> Tuple[int, int, int, int]:
    """A box (left, top, right, bottom) in full-size pixels -> the same box on an image decoded at 1/scale:
    edges rounded to the nearest multiple of `scale`, so the reduced pixels cover the full-size box exactly."""
    return tuple(int(round(v / scale)) for v in box)


def _tensor(img: Image.Image) -> torch.Tensor:
    """PIL RGB image -> uint8 (1, 3, H, W) tensor in channels-last memory (a view of the HWC pixels)."""
    with warnings.catch_warnings():  # read-only pixels: nothing downstream writes into them in place
        warnings.simplefilter('ignore', UserWarning)
        return torch.from_numpy(np.asarray(img)).permute(2, 0, 1).unsqueeze(0)


def _resize(x: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Bicubic, antialiased (PIL's filter; torch's uint8 channels-last kernel is several times faster than PIL's)."""
    if x.shape[-2:] == (height, width):
        return x
    return F.interpolate(x, size=(height, width), mode='bicubic', antialias=True, align_corners=False)


class TrainTransform:
    """DeiT III training augmentation, CPU half: RandomResizedCrop ('rrc') or Simple Random Crop ('src': resize
    the short side, reflect-pad 4, random square crop), horizontal flip. (image, seed) -> (uint8 (3, S, S) tensor,
    parameters of the device half). The crop is drawn on the full-size image (its size comes from the header),
    then the JPEG is decoded at 1/2, 1/4 or 1/8 scale when the crop is shrunk at least that much, with the box
    rounded to that grid."""

    def __init__(self, t: dict, input_size: int):
        self.input_size = int(input_size)
        self.crop, self.rrc_scale = t['crop'], tuple(t['rrc_scale'])
        if self.crop not in ('rrc', 'src'):
            raise DataError(f"data.train_transform.crop={self.crop!r}: expected 'rrc' or 'src'")
        self.hflip, self.three_augment = float(t['hflip']), bool(t['three_augment'])
        self.color_jitter = float(t['color_jitter'])

    def __call__(self, img: Image.Image, seed: int, path: str = '') -> Tuple[torch.Tensor, Dict[str, torch.Tensor]]:
        rng, size = random.Random(seed), self.input_size
        width, height = img.size
        if self.crop == 'rrc':
            left, top, w, h = rrc_box(rng, width, height, self.rrc_scale)
            scale = draft_scale(img, min(w, h) / size)
            box = snap_box((left, top, left + w, top + h), scale)
            x = _resize(_tensor(to_rgb(img, path).crop(box)), size, size)  # crop first: fewer pixels to copy
        else:
            short = min(width, height)
            out_h, out_w = (size, int(size * width / height)) if height == short else (int(size * height / width), size)
            scale = draft_scale(img, short / size)
            x = _tensor(to_rgb(img, path))[:, :, :height // scale, :width // scale]  # whole 1/scale pixels only
            x = F.pad(_resize(x, out_h, out_w), (SRC_PADDING,) * 4, mode='reflect')
            top = rng.randint(0, x.shape[2] - size)
            left = rng.randint(0, x.shape[3] - size)
            x = x[:, :, top:top + size, left:left + size]
        if self.hflip and rng.random() < self.hflip:
            x = x.flip(-1)
        return x[0], self.device_params(rng)

    def device_params(self, rng: random.Random) -> Dict[str, torch.Tensor]:
        """The random choices pretrain/augment.py applies on the device, drawn after the crop and flip."""
        params = {}
        if self.three_augment:
            params['three_augment'] = torch.tensor(rng.randrange(3))  # augment.GRAYSCALE, SOLARIZE or BLUR
            params['blur_sigma'] = torch.tensor(rng.uniform(*augment.BLUR_SIGMA), dtype=torch.float32)
        if self.color_jitter:
            cj = self.color_jitter  # ColorJitter(cj, cj, cj): factors uniform in [max(0, 1 - cj), 1 + cj]
            params['jitter'] = torch.tensor([rng.uniform(max(0.0, 1.0 - cj), 1.0 + cj) for _ in range(3)],
                                            dtype=torch.float32)
            order = [augment.BRIGHTNESS, augment.CONTRAST, augment.SATURATION]
            rng.shuffle(order)
            params['jitter_order'] = torch.tensor(order)
        return params


class EvalTransform:
    """Resize the short side to input_size / crop_ratio (bicubic), center crop input_size; uint8 out. JPEGs are
    decoded at reduced scale when the resize shrinks them at least 2x (whole reduced pixels only: the image loses
    less than `scale` full-size pixels at its right and bottom edges)."""

    def __init__(self, input_size: int, crop_ratio: float):
        if not 0.0 < crop_ratio <= 1.0:
            raise DataError(f'eval crop ratio {crop_ratio}: expected a value in (0, 1]')
        self.input_size, self.resize_to = int(input_size), int(math.floor(input_size / crop_ratio))

    def __call__(self, img: Image.Image, seed: int = 0, path: str = '') -> Tuple[torch.Tensor, dict]:
        width, height = img.size
        size, short = self.input_size, min(width, height)
        # torchvision's Resize(int): the short side becomes resize_to, the long side int(resize_to * long / short)
        out_h, out_w = ((self.resize_to, int(self.resize_to * width / height)) if height == short
                        else (int(self.resize_to * height / width), self.resize_to))
        scale = draft_scale(img, short / self.resize_to)
        x = _tensor(to_rgb(img, path))[:, :, :height // scale, :width // scale]
        x = _resize(x, out_h, out_w)
        top, left = int(round((out_h - size) / 2.0)), int(round((out_w - size) / 2.0))  # torchvision's CenterCrop
        return x[0, :, top:top + size, left:left + size], {}


def build_train_transform(t: dict, input_size: int) -> TrainTransform:
    """DeiT III training augmentation: the worker half here, the device half in pretrain/augment.py."""
    return TrainTransform(t, input_size)


def build_eval_transform(input_size: int, crop_ratio: float) -> EvalTransform:
    return EvalTransform(input_size, crop_ratio)


BACKENDS = ('pil', 'dali')


def dali_available() -> Tuple[bool, str]:
    """(True, '') when NVIDIA DALI can run here: the package imports and a CUDA GPU is visible."""
    try:
        import nvidia.dali  # noqa: F401
    except ImportError:
        return False, 'nvidia.dali is not installed (pip install nvidia-dali-cuda120)'
    if not torch.cuda.is_available():
        return False, 'no CUDA GPU is visible'
    return True, ''


def check_backend(data_cfg: dict) -> None:
    """Refuse a data.backend this machine cannot run, in one line."""
    backend = data_cfg['backend']
    if backend not in BACKENDS:
        raise DataError(f'data.backend={backend!r}: expected one of {BACKENDS}')
    if backend == 'dali':
        ok, why = dali_available()
        if not ok:
            raise DataError(f"data.backend='dali' needs NVIDIA DALI and a GPU: {why}; use data.backend='pil'")


class TransformedDataset(Dataset):
    """Applies a transform with a per-sample seed; indexes are (index, seed) pairs from `GlobalOrderSampler`.

    Returns (uint8 image, label, index, bad, params): `bad` is the path of an unreadable image ('' when the image
    was fine) and `params` the per-sample parameters of the device half (pretrain/augment.py; {} for evaluation).
    Training (`substitute_bad=True`) replaces an unreadable image by the next one; evaluation returns a zero image
    and label 0 in its place, which the evaluation leaves out of every metric.
    Datasets with an `open(i)` method hand over images opened but not decoded, so the transform can decode JPEGs
    at reduced scale.
    """

    def __init__(self, base: Dataset, transform: Callable, substitute_bad: bool = True, max_retries: int = 10):
        self.base, self.transform, self.max_retries = base, transform, max_retries
        self.substitute_bad = substitute_bad
        self._open = getattr(base, 'open', None)

    def __len__(self) -> int:
        return len(self.base)

    def _path(self, i: int) -> str:
        return str(self.base.path(i)) if hasattr(self.base, 'path') else f'sample {i}'

    def __getitem__(self, key):
        index, seed = key if isinstance(key, tuple) else (key, key)
        bad = ''
        for attempt in range(self.max_retries if self.substitute_bad else 1):
            i = (index + attempt) % len(self.base)
            try:
                img, target = self._open(i) if self._open else self.base[i]
                with img:  # closes the file of a lazily opened image whatever happens
                    image, params = self.transform(img, seed, self._path(i) if self._open else '')
                return image, target, index, bad, params
            except (OSError, ValueError, SyntaxError) as e:  # what PIL raises for truncated/corrupt files
                bad = bad or self._path(i)
                warnings.warn(f'skipping unreadable image {self._path(i)}: {e}')
        if not self.substitute_bad:
            size = self.transform.input_size
            return torch.zeros(3, size, size, dtype=torch.uint8), 0, index, bad, {}
        raise DataError(f'{bad}: {self.max_retries} consecutive unreadable images from here')


class NormalisedBatches:
    """A DataLoader collate_fn for tools that evaluate on the CPU side (pretrain/analysis.py): collates
    TransformedDataset samples of an EvalTransform and normalises them (all the device half does for evaluation),
    giving (float images, labels, index, bad_paths)."""

    def __init__(self, mean: Sequence[float], std: Sequence[float]):
        self.mean, self.std = tuple(mean), tuple(std)

    def __call__(self, samples):
        images, labels, index, bad, params = torch.utils.data.default_collate(samples)
        return augment.augment(images, params, self.mean, self.std), labels, index, bad


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
