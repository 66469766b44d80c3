"""Open images with every guard and turn them into arrays: bombs, EXIF, modes, 16-bit, palettes, alpha, frames.

Pixels are returned as float32 in their native range (0..255 for 8-bit, 0..65535 for 16-bit), laid out
H,W (gray) or H,W,C (colour); alpha is kept aside so filters never touch it. With ``native=True`` 8-bit
pixels stay uint8 (the convolution core reads them directly: no float32 copy of every image).
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from typing import Callable

import numpy as np
from PIL import Image, ImageOps

from convtool.errors import InputError, Notice

LUMA_WEIGHTS = np.array([0.299, 0.587, 0.114], dtype=np.float32)  # ITU-R BT.601, as Pillow's "L"


@dataclass
class ImageArray:
    """Decoded pixels (float32, native range), optional alpha (H,W), and the source bit depth."""

    pixels: np.ndarray
    alpha: np.ndarray | None
    bit_depth: int

    @property
    def max_value(self) -> float:
        return float(2**self.bit_depth - 1)


def open_image(path: str | os.PathLike, *, draft: Callable[[Image.Image], None] | None = None) -> Image.Image:
    """Open, fully decode and EXIF-orient an image; every failure is a one-line InputError.

    Images above Pillow's pixel limit are refused as possible decompression bombs. An animated GIF,
    PNG or WebP or a multi-page TIFF gives its first frame, with a :class:`Notice` warning saying so.
    ``draft(image)`` is called between opening and decoding (e.g. ``image.draft`` for a reduced JPEG).
    The common case costs one Pillow open: files are only examined further when decoding fails.
    """
    path = os.fspath(path)  # a string: Pillow opens one 7 us sooner than a Path, and making a Path costs 4 us
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image: Image.Image = Image.open(path)
            _notice_frames(path, image)
            if draft is not None:
                draft(image)
            image.load()
    except FileNotFoundError:
        raise InputError(f"{path}: no such file; check the path") from None
    except IsADirectoryError:
        raise InputError(f"{path}: is a folder, not an image") from None
    except (Image.DecompressionBombWarning, Image.DecompressionBombError):
        raise InputError(
            f"{path}: refused as a possible decompression bomb (more than {Image.MAX_IMAGE_PIXELS:,} "
            "pixels); shrink the image first"
        ) from None
    except Image.UnidentifiedImageError:
        if os.stat(path).st_size == 0:
            raise InputError(f"{path}: the file is empty (0 bytes); re-export or re-download it") from None
        raise InputError(f"{path}: not an image Pillow can read (PNG, JPEG, TIFF, BMP, ...)") from None
    except OSError as exc:
        if exc.errno is not None:  # the system refused (permissions, a symlink loop, ...), not the decoder
            raise InputError(f"{path}: cannot read the file ({exc.strerror})") from None
        raise InputError(f"{path}: the image is damaged or truncated ({exc}); re-export it") from None
    except (SyntaxError, ValueError) as exc:
        raise InputError(f"{path}: the image is damaged or truncated ({exc}); re-export it") from None
    if "exif" in image.info or image.format == "TIFF":  # only these can carry an orientation
        image = ImageOps.exif_transpose(image)
    return image


def _notice_frames(path: str, image: Image.Image) -> None:
    if getattr(image, "is_animated", False):
        frames = getattr(image, "n_frames", 2)
        warnings.warn(Notice(f"{path}: has {frames} frames; only the first is used"), stacklevel=3)
        image.seek(0)


def to_array(image: Image.Image, *, native: bool = False) -> ImageArray:
    """Convert a Pillow image to float32 pixels with alpha split off; palettes and 16-bit handled.

    ``native``: 8-bit pixels and alpha stay uint8 (same values).
    """
    mode = image.mode
    if mode == "P":
        image = image.convert("RGBA" if "transparency" in image.info else "RGB")
    elif mode == "PA":
        image = image.convert("RGBA")
    elif mode in ("1", "CMYK", "YCbCr", "LAB", "HSV"):
        image = image.convert("L" if mode == "1" else "RGB")
    mode = image.mode
    if mode.startswith("I;16") or mode == "I":
        data = np.asarray(image).astype(np.float32)
        return ImageArray(np.clip(data, 0, 65535), None, 16)
    if mode == "F":
        return ImageArray(np.asarray(image, dtype=np.float32), None, 16)
    data = np.asarray(image) if native else np.asarray(image).astype(np.float32)
    if mode in ("LA", "RGBA"):
        return ImageArray(data[..., :-1].squeeze(-1) if mode == "LA" else data[..., :3], data[..., -1], 8)
    return ImageArray(data, None, 8)


def read_image(path: str | os.PathLike, *, gray: bool = False, native: bool = False) -> ImageArray:
    """Read an image file as an ImageArray; ``gray`` converts colour to BT.601 luma (float32).

    ``native``: 8-bit pixels stay uint8 (see :func:`to_array`).
    """
    result = to_array(open_image(path), native=native)
    if gray and result.pixels.ndim == 3:
        result.pixels = result.pixels.astype(np.float32, copy=False) @ LUMA_WEIGHTS
    return result
