"""What the training DataLoader is built from: the backend check, the dataset that applies a transform with a
per-sample seed (unreadable images skipped and counted), a collate for CPU-side evaluation, and the sampler.

Augmentation is seeded per sample from (seed, epoch, position), and the sampler fixes the global order of an epoch:
a run gives the same batches whatever the number of GPUs and workers, and resuming mid-epoch continues exactly."""
from __future__ import annotations

import warnings
from typing import Callable, Iterator, Optional, Sequence, Tuple

import torch
from torch.utils.data import Dataset, Sampler

from .. import augment
from .errors import DataError


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
        # what names an unreadable sample: its file, or e.g. a Parquet row (hf.py)
        self._name = getattr(base, 'sample_name', None) or getattr(base, 'path', None)

    def __len__(self) -> int:
        return len(self.base)

    def _path(self, i: int) -> str:
        return str(self._name(i)) if self._name else f'sample {i}'

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
