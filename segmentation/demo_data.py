"""A small synthetic dataset in the ADE20k layout, for the demo config and the tests.

    python -m segmentation.demo_data data/ade_demo --train 32 --val 8
    -> data/ade_demo/ADEChallengeData2016/{images,annotations}/{training,validation}/ADE_*_000000NN.{jpg,png}

As ADE20k: `.jpg` RGB images, `.png` single-channel labels where 0 is "other" (ignored by the
`reduce_zero_label=True` of MMSeg's ADE20k pipeline) and 1..150 are the classes. Each image is a textured
background class with a few ellipses and rectangles of other classes; every class has its own mean colour, so a
segmentor can learn it within a few dozen iterations. Only `num_classes` distinct classes appear (default 8).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Tuple

import numpy as np
from PIL import Image

ADE_CLASSES = 150
SPLITS = ('training', 'validation')


def _palette(rng: np.random.Generator) -> np.ndarray:
    return rng.integers(30, 226, size=(ADE_CLASSES + 1, 3)).astype(np.float32)


def _sample(rng: np.random.Generator, palette: np.ndarray, classes: np.ndarray, size: Tuple[int, int]
            ) -> Tuple[np.ndarray, np.ndarray]:
    h, w = size
    label = np.full((h, w), rng.choice(classes), dtype=np.uint8)
    yy, xx = np.mgrid[:h, :w]
    for _ in range(rng.integers(2, 5)):
        cls = rng.choice(classes)
        cy, cx = rng.uniform(0, h), rng.uniform(0, w)
        ry, rx = rng.uniform(0.1, 0.35) * h, rng.uniform(0.1, 0.35) * w
        if rng.random() < 0.5:
            mask = ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1.0
        else:
            mask = (abs(yy - cy) <= ry) & (abs(xx - cx) <= rx)
        label[mask] = cls
    label[:2, :] = 0  # an "other" border, as ADE20k has unlabelled pixels
    image = palette[label] + rng.normal(0.0, 12.0, size=(h, w, 3))
    return np.clip(image, 0, 255).astype(np.uint8), label


def make_ade_like(root: str | Path, train: int = 32, val: int = 8, size: Tuple[int, int] = (96, 128),
                  num_classes: int = 8, seed: int = 0) -> Path:
    """Write the dataset under `root`/ADEChallengeData2016 and return that folder (the configs' data_root)."""
    if train < 1 or val < 1:
        raise ValueError(f'make_ade_like: train={train}, val={val}: expected at least one image per split')
    if not 1 <= num_classes <= ADE_CLASSES:
        raise ValueError(f'make_ade_like: num_classes={num_classes}: expected 1..{ADE_CLASSES}')
    if min(size) < 16:
        raise ValueError(f'make_ade_like: size={size}: expected images of at least 16x16 pixels')
    rng = np.random.default_rng(seed)
    palette = _palette(rng)
    classes = rng.choice(np.arange(1, ADE_CLASSES + 1), size=num_classes, replace=False)
    data_root = Path(root) / 'ADEChallengeData2016'
    for split, count in zip(SPLITS, (train, val)):
        img_dir, ann_dir = data_root / 'images' / split, data_root / 'annotations' / split
        img_dir.mkdir(parents=True, exist_ok=True)
        ann_dir.mkdir(parents=True, exist_ok=True)
        tag = 'train' if split == 'training' else 'val'
        for i in range(count):
            # Sizes vary a little, as real photos do (exercises resizing, padding and sliding windows).
            h, w = (int(s * rng.uniform(0.8, 1.25)) for s in size)
            image, label = _sample(rng, palette, classes, (h, w))
            name = f'ADE_{tag}_{i + 1:08d}'
            Image.fromarray(image).save(img_dir / f'{name}.jpg', quality=95)
            Image.fromarray(label).save(ann_dir / f'{name}.png')
    return data_root


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('root', help='output folder; the dataset goes to ROOT/ADEChallengeData2016')
    parser.add_argument('--train', type=int, default=32, help='training images (default 32)')
    parser.add_argument('--val', type=int, default=8, help='validation images (default 8)')
    parser.add_argument('--size', type=int, nargs=2, default=(96, 128), metavar=('H', 'W'),
                        help='typical image size (default 96 128; each image varies by up to 25%%)')
    parser.add_argument('--num-classes', type=int, default=8, help='distinct classes used (default 8)')
    parser.add_argument('--seed', type=int, default=0)
    args = parser.parse_args(argv)
    try:
        data_root = make_ade_like(args.root, args.train, args.val, tuple(args.size), args.num_classes, args.seed)
    except (ValueError, OSError) as e:
        print(f'error: {e}', file=sys.stderr)
        return 2
    print(f'wrote {args.train} training and {args.val} validation images to {data_root}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
