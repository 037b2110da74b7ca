"""The device half of the training augmentation: 3-Augment, colour jitter and normalisation on a uint8 batch.

DataLoader workers do only what needs the file (decode, crop, resize, flip: pretrain/data/) and return uint8
images plus, per sample, the random parameters of the rest, drawn from the sample's own seed. This module applies
those parameters to the whole batch on the device with batched tensor ops (no Python loop over samples), so a
sample's augmentation depends only on its seed, never on the batch it lands in or the number of workers/GPUs.

DeiT III's 3-Augment (REFERENCE.md section 3): exactly one of {grayscale, solarize (threshold 128), Gaussian blur
with sigma in [0.1, 2]}, then ColorJitter(brightness, contrast, saturation; no hue) in a random order, then
normalisation. The ops follow torchvision's tensor definitions (ITU-R 601-2 luma for grayscale, contrast around
the mean luma, saturation against the luma image, results clamped to [0, 255] after each op), computed in float32
on the 0-255 scale; mixup/cutmix (timm) then runs on the normalised batch as before.

Same result means: each sample's output equals the same ops applied to that sample alone (up to float rounding in
the blur's convolution, whose algorithm may depend on the batch size; every other op is elementwise and exact),
and a run on a given device reproduces itself bit for bit.
"""
from __future__ import annotations

import functools
from typing import Dict, Sequence, Tuple

import torch
import torch.nn.functional as F

# Which 3-Augment op a sample gets (params['three_augment']).
GRAYSCALE, SOLARIZE, BLUR = 0, 1, 2
# Colour jitter factors (params['jitter'][:, k]) and the order they are applied in (params['jitter_order']).
BRIGHTNESS, CONTRAST, SATURATION = 0, 1, 2
SOLARIZE_THRESHOLD = 128.0  # DeiT III: ImageOps.solarize's default on uint8 images
BLUR_SIGMA = (0.1, 2.0)     # DeiT III's GaussianBlur radius range
LUMA = (0.299, 0.587, 0.114)  # ITU-R 601-2, as PIL's convert('L') and torchvision's rgb_to_grayscale


def blur_kernel_size(input_size: int) -> int:
    """13 taps cover 3 sigma each side at sigma 2; small images need a kernel shorter than the image (reflect
    padding)."""
    return max(1, min(13, (input_size // 2) * 2 - 1))


def _luma(x: torch.Tensor) -> torch.Tensor:
    r, g, b = x.unbind(1)
    return (LUMA[0] * r + LUMA[1] * g + LUMA[2] * b).unsqueeze(1)


def _gaussian_blur(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """Separable Gaussian blur with one sigma per sample: a depthwise convolution over the batch's channels."""
    b, c, h, w = x.shape
    k = blur_kernel_size(min(h, w))
    if k == 1:
        return x
    taps = torch.arange(k, device=x.device, dtype=x.dtype) - (k - 1) / 2
    kernel = torch.exp(-0.5 * (taps[None, :] / sigma[:, None].to(x.dtype)) ** 2)
    kernel = (kernel / kernel.sum(dim=1, keepdim=True)).repeat_interleave(c, dim=0)  # (b*c, k)
    pad = k // 2
    y = F.pad(x.reshape(1, b * c, h, w), (pad, pad, pad, pad), mode='reflect')
    y = F.conv2d(y, kernel[:, None, None, :], groups=b * c)
    y = F.conv2d(y, kernel[:, None, :, None], groups=b * c)
    return y.reshape(b, c, h, w)


def three_augment(x: torch.Tensor, op: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """x: float (B, 3, H, W) on 0-255; op: (B,) in {GRAYSCALE, SOLARIZE, BLUR}; sigma: (B,) blur sigmas."""
    op = op.view(-1, 1, 1, 1)
    gray = _luma(x).expand_as(x)
    solarized = torch.where(x >= SOLARIZE_THRESHOLD, 255.0 - x, x)
    blurred = _gaussian_blur(x, sigma)
    return torch.where(op == GRAYSCALE, gray, torch.where(op == SOLARIZE, solarized, blurred))


def color_jitter(x: torch.Tensor, factors: torch.Tensor, order: torch.Tensor) -> torch.Tensor:
    """Brightness, contrast and saturation with per-sample factors (B, 3) applied in per-sample order (B, 3).

    Each op blends the image with a reference: brightness with black, contrast with the mean luma, saturation
    with the luma image (torchvision's definitions). Step k applies, for every sample at once, the op that sample
    has in position k."""
    for k in range(order.shape[1]):
        which = order[:, k]
        factor = factors.gather(1, which[:, None]).view(-1, 1, 1, 1).to(x.dtype)
        which = which.view(-1, 1, 1, 1)
        gray = _luma(x)
        reference = torch.where(which == SATURATION, gray,
                                torch.where(which == CONTRAST, gray.mean(dim=(2, 3), keepdim=True),
                                            torch.zeros_like(gray)))
        x = (factor * x + (1.0 - factor) * reference).clamp_(0.0, 255.0)
    return x


@functools.lru_cache(maxsize=8)
def _mean_std(mean: Tuple[float, ...], std: Tuple[float, ...], device: torch.device, dtype: torch.dtype):
    """The normalisation constants on the device, on the 0-255 scale; made once, not copied every step."""
    shape = (1, -1, 1, 1)
    return (torch.tensor(mean, dtype=dtype).view(shape).to(device) * 255.0,
            torch.tensor(std, dtype=dtype).view(shape).to(device) * 255.0)


def normalize(x: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """x: float on 0-255 -> (x / 255 - mean) / std."""
    mean, std = _mean_std(tuple(mean), tuple(std), x.device, x.dtype)
    return (x - mean) / std


def augment(images: torch.Tensor, params: Dict[str, torch.Tensor], mean: Sequence[float],
            std: Sequence[float]) -> torch.Tensor:
    """uint8 (B, 3, H, W) batch + the per-sample parameters its workers drew -> normalised float32 batch.

    `params` holds 'three_augment' and 'blur_sigma' when 3-Augment is on and 'jitter' and 'jitter_order' when
    colour jitter is on; evaluation batches carry none of them (normalisation only)."""
    if images.dtype != torch.uint8:
        raise TypeError(f'augment expects the loader\'s uint8 images, got {images.dtype}')
    x = images.float()
    if 'three_augment' in params:
        x = three_augment(x, params['three_augment'], params['blur_sigma'])
    if 'jitter' in params:
        x = color_jitter(x, params['jitter'], params['jitter_order'])
    return normalize(x, mean, std)
