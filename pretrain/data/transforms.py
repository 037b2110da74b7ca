"""The worker half of the augmentation: decode (a JPEG at reduced scale when the crop allows), crop, resize,
flip, as uint8 tensors; the device half (3-Augment, colour jitter, normalisation) is pretrain/augment.py."""
from __future__ import annotations

import math
import random
import warnings
from typing import Dict, Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from .. import augment
from .images import to_rgb


# Workers do the part that needs the file: decode (at reduced scale when the crop allows), crop, resize, flip,
# and return uint8 CHW tensors. Each sample's random draws come from `random.Random(seed)` with its seed from
# `loader.sample_seed`: first the crop, then the flip, then the parameters of the device half (pretrain/augment.py:
# 3-Augment, colour jitter), which ship with the batch as small tensors.
RRC_RATIO = (3.0 / 4.0, 4.0 / 3.0)  # torchvision's and DeiT's RandomResizedCrop aspect-ratio range
SRC_PADDING = 4                     # Simple Random Crop: reflect padding (DeiT III, IN-21k)
DRAFT_SCALES = (8, 4, 2)            # the JPEG decoder's DCT scalings (libjpeg: 1/2, 1/4, 1/8)
CROPS = ('rrc', 'src')              # data.train_transform.crop: RandomResizedCrop, Simple Random Crop


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
