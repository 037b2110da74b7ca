"""The one place where a dataset's sample list is checked (issue 21): every reader states its format (where its
ids, labels and paths come from) and builds its samples with `build_index`, which refuses, in one line naming the
file, the id and what was expected:

- an image listed twice, an image labelled twice or not at all, a label for an image that is not listed (so the
  counts of two files that describe the same images must agree: Flowers' setid.mat and imagelabels.mat, Cars'
  annotations and image folder, iNat's images and annotations, a CIFAR batch's data and labels);
- a label that is not one of the classes (a class listed twice too);
- a file outside the data root: absolute, with a `..`, or in a folder that a symbolic link leads out of the root.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import List, Optional, Sequence, Union

import numpy as np

from .errors import DataError


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


class SampleIndex:
    """The samples of a split: the class of each (numpy, shared by DataLoader workers without copying), the class
    names, and each sample's file under `root` when the images are files."""

    def __init__(self, targets: np.ndarray, classes: List[str], paths: Optional[PackedPaths] = None,
                 root: Optional[Path] = None):
        self.targets, self.classes, self.paths, self.root = targets, classes, paths, root

    def __len__(self) -> int:
        return len(self.targets)

    def relpath(self, i: int) -> str:
        return self.paths[i]

    def path(self, i: int) -> Path:
        return self.root / self.paths[i]

    def take(self, positions: np.ndarray) -> 'SampleIndex':
        """The samples at `positions`, in that order (e.g. the splits of Flowers' setid.mat)."""
        paths = None if self.paths is None else PackedPaths([self.paths[int(i)] for i in positions])
        return SampleIndex(self.targets[positions], self.classes, paths, self.root)


def _show(value) -> str:
    value = value.item() if isinstance(value, np.generic) else value
    return repr(value) if isinstance(value, str) else str(value)


def _first_repeat(values: np.ndarray):
    """The first value (in list order) that occurs more than once, else None."""
    unique, first, counts = np.unique(values, return_index=True, return_counts=True)
    return values[first[counts > 1].min()] if (counts > 1).any() else None


def _lookup(keys: np.ndarray, queries: np.ndarray):
    """For each query: its position in `keys` (unique) and whether it is there at all."""
    if len(keys) == 0:
        return np.zeros(len(queries), dtype=np.int64), np.zeros(len(queries), dtype=bool)
    order = np.argsort(keys, kind='stable')
    at = order[np.minimum(np.searchsorted(keys[order], queries), len(keys) - 1)]
    return at, keys[at] == queries


def integer_labels(values, source, key: str) -> np.ndarray:
    """int64 labels; floats only when they are whole numbers (MATLAB stores numbers as doubles)."""
    try:
        array = np.asarray(values).reshape(-1)
        if array.dtype.kind == 'f' and np.array_equal(array, np.round(array)):
            array = array.astype(np.int64)
        if array.size == 0:
            return np.zeros(0, dtype=np.int64)
        if array.dtype.kind not in 'iu':
            raise TypeError(array.dtype)
    except (TypeError, ValueError):
        raise DataError(f'{source}: {key} is not a list of integer labels') from None
    return array.astype(np.int64)


def _outside(path) -> bool:
    """Not a relative path that stays under the root as written (absolute, empty, a `..` component)."""
    return (not isinstance(path, str) or path == '' or path[0] == '/'
            or ('..' in path and '..' in path.split('/')))  # split only when it may matter: 400k paths


def build_index(source: Union[Path, str], labels, classes: Sequence[str], *, label_values=None,
                images: Union[None, int, Sequence] = None, labelled: Optional[Sequence] = None,
                paths: Optional[Sequence[str]] = None, root: Optional[Path] = None, label_source=None,
                image_key: str = 'entry', label_key: str = 'label') -> SampleIndex:
    """The samples in image order, every invariant checked. `images`: the ids of the images listed in `source`
    (default their positions), or their count; `labels`: as written in `label_source` (default `source`), label n
    for image `labelled[n]` (default: image n); class i is written `label_values[i]` (default i); `paths`: each
    image's file relative to `root`; `image_key`, `label_key`: what the files call an image id and a label."""
    label_source = label_source or source
    labels = integer_labels(labels, label_source, label_key)
    if images is None or isinstance(images, int):
        ids = np.arange(len(paths) if paths is not None else len(labels) if images is None else images)
    else:
        ids = np.asarray(images).reshape(-1)
    owner = np.arange(len(labels)) if labelled is None else np.asarray(labelled).reshape(-1)
    counts = f'({len(labels)} labels for {len(ids)} images); expected exactly one label per image'
    for twice, where, what in ((_first_repeat(ids), source, 'is listed twice; expected each image once'),
                               (_first_repeat(owner), label_source, f'has two labels {counts}')):
        if twice is not None:
            raise DataError(f'{where}: {image_key} {_show(twice)} {what}')
    at, found = _lookup(owner, ids)
    if not found.all():
        raise DataError(f'{label_source}: no label for {image_key} {_show(ids[np.argmin(found)])} {counts}')
    if len(owner) > len(ids):
        stray = owner[np.argmin(np.isin(owner, ids))]
        raise DataError(f'{label_source}: a label for {image_key} {_show(stray)}, which {source} does not list '
                        f'{counts}')
    raw = labels[at]

    values = np.arange(len(classes)) if label_values is None else integer_labels(label_values, source, 'classes')
    twice = _first_repeat(values)
    if twice is not None:
        raise DataError(f'{source}: {label_key} {_show(twice)} appears twice in the class list; expected each class '
                        'once')
    targets, known = _lookup(values, raw)
    if not known.all():
        n, (lo, hi) = int(np.argmin(known)), (values.min(), values.max()) if len(values) else (0, -1)
        span = f'{lo}..{hi}' if hi - lo + 1 == len(values) else f'ids {lo}..{hi}, not contiguous'
        raise DataError(f'{label_source}: {label_key} {raw[n]} of {image_key} {_show(ids[n])} is not one of the '
                        f'{len(values)} classes ({span})')
    if paths is None:
        return SampleIndex(targets.astype(np.int32), list(classes))
    folders = {}
    for n, path in enumerate(paths):
        if _outside(path):
            raise DataError(f'{source}: {image_key} {_show(ids[n])} names the file {path!r}; expected a path '
                            'relative to the data root (not absolute, no ..): every file read stays under the root')
        folders.setdefault(path.rpartition('/')[0], n)
    real_root = os.path.realpath(root)
    for folder, n in folders.items():  # one realpath per folder, not per file: iNat-2018 lists 437k files
        real = os.path.realpath(os.path.join(real_root, folder))
        if not (real + os.sep).startswith(real_root.rstrip(os.sep) + os.sep):
            raise DataError(f'{source}: {image_key} {_show(ids[n])} names the file {paths[n]!r}, whose folder is a '
                            f'symbolic link to {real}, outside the data root {real_root}; expected every file read '
                            'under the data root')
    return SampleIndex(targets.astype(np.int32), list(classes), PackedPaths(paths), Path(root))
