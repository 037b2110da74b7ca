"""Shared fixtures: tiny datasets generated in the real on-disk formats (nothing is downloaded)."""
import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]  # the checkout; the package itself is imported installed (pip install -e .)
os.environ.setdefault('OMP_NUM_THREADS', '2')


def write_image(path: Path, rng: np.random.Generator, size=(40, 48), label: int = 0) -> None:
    """A random image whose mean colour depends on the label, so a model can learn something."""
    path.parent.mkdir(parents=True, exist_ok=True)
    base = np.array([(label * 67) % 256, (label * 131) % 256, (label * 29) % 256], dtype=np.float32)
    pixels = np.clip(base + rng.normal(0, 40, size + (3,)), 0, 255).astype(np.uint8)
    Image.fromarray(pixels).save(path, quality=90)


def make_imagenet(root: Path, classes: int = 4, train_per_class: int = 8, val_per_class: int = 2,
                  seed: int = 0) -> Path:
    """ImageNet layout: train/<wnid>/<wnid>_<n>.JPEG, val/<wnid>/ILSVRC2012_val_<n>.JPEG."""
    rng = np.random.default_rng(seed)
    wnids = [f'n{10000000 + i:08d}' for i in range(classes)]
    n_val = 0
    for c, wnid in enumerate(wnids):
        for j in range(train_per_class):
            write_image(root / 'train' / wnid / f'{wnid}_{j}.JPEG', rng, label=c)
        for j in range(val_per_class):
            n_val += 1
            write_image(root / 'val' / wnid / f'ILSVRC2012_val_{n_val:08d}.JPEG', rng, label=c)
    return root


@pytest.fixture(scope='session')
def imagenet_dir(tmp_path_factory) -> Path:
    return make_imagenet(tmp_path_factory.mktemp('imagenet'))


@pytest.fixture(autouse=True)
def index_cache(tmp_path, monkeypatch):
    """Keep the folder-index cache out of the home directory."""
    monkeypatch.setenv('COSUB_CACHE', str(tmp_path / 'index-cache'))


@pytest.fixture(scope='module')
def one_thread():
    """For modules of tiny models: on 2 shared cores a second thread mostly waits on the other processes."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
