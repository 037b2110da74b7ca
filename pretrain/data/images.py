"""Reading one image file: opened lazily (a JPEG may then decode at reduced scale), refused when it is a
decompression bomb, converted to RGB (16-bit greyscale scaled, alpha composited on white)."""
from __future__ import annotations

import os
import warnings
from typing import BinaryIO

import numpy as np
from PIL import Image

from .errors import ImageReadError, first_line


def open_image(path: str | os.PathLike | BinaryIO, name: str = '') -> Image.Image:
    """Open an image lazily (header only: a JPEG may then be decoded at reduced scale, `Image.draft`) from a
    file or from bytes in memory (`name` then names it in errors).

    Refuses a decompression bomb: PIL's own check raises past twice `Image.MAX_IMAGE_PIXELS` and only warns
    between once and twice; here anything over the limit is refused, so a bomb is never decoded.
    """
    name = name or path
    try:
        with warnings.catch_warnings():
            warnings.simplefilter('error', Image.DecompressionBombWarning)
            return Image.open(path)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise ImageReadError(f'{name}: refused as a decompression bomb ({first_line(e)})') from None
    except (OSError, SyntaxError, ValueError) as e:  # missing, unidentified or damaged file
        raise ImageReadError(f'{name}: unreadable image ({first_line(e)})') from None


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
        raise ImageReadError(f'{path}: unreadable image ({first_line(e)})') from None


def load_rgb(path: str | os.PathLike) -> Image.Image:
    """Read an image file as RGB (ImageReadError naming the file when it is unreadable or refused)."""
    return to_rgb(open_image(path), path)  # PIL closes the file once the image is loaded
