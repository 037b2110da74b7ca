"""Image folders `root/<class>/<image>`, listed once and the listing cached (an ImageNet-21k folder holds 14
million files). The index lives in numpy arrays, not Python lists, so DataLoader workers share it without copying."""
from __future__ import annotations

import errno
import hashlib
import json
import logging
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import numpy as np

from .errors import DataError
from .index import PackedPaths, SampleIndex, build_index

logger = logging.getLogger(__name__)

IMAGE_EXTENSIONS = ('.jpg', '.jpeg', '.png', '.ppm', '.bmp', '.pgm', '.tif', '.tiff', '.webp')


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


class FolderIndex(SampleIndex):
    """Files of `root/<class>/<image>`, listed once and cached; paths in one byte blob + offsets.

    Refused, naming the path: a class folder without images (it would silently become a class nobody can
    predict), a symbolic link loop or dangling link in place of a class folder or an image, a folder that
    cannot be listed; the listing then goes through `build_index` (a class folder that is a symbolic link out of
    the root is refused there). A cache that cannot be read back is rebuilt, with one warning.
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
        checked = build_index(self.root, targets, self.classes, paths=paths, root=self.root)
        self.paths, self.targets = checked.paths, checked.targets

    def _save(self, cache: Path) -> None:
        try:
            cache.parent.mkdir(parents=True, exist_ok=True)
            tmp = cache.with_suffix(f'.{os.getpid()}.tmp.npz')
            np.savez(tmp, blob=self.paths.blob, offsets=self.paths.offsets, targets=self.targets)
            os.replace(tmp, cache)
        except OSError as e:  # a read-only home is no reason to stop; we just index again next time
            logger.warning('could not cache the index of %s in %s: %s', self.root, cache, e)
