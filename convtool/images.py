"""Images <-> arrays with Pillow: modes, 16-bit, palettes, alpha, EXIF orientation; atomic writes.

Pixels are returned as float32 in their native range (0..255 for 8-bit, 0..65535 for 16-bit), laid out
H,W (gray) or H,W,C (colour); alpha is kept aside so filters never touch it.
"""

from __future__ import annotations

import os
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
from PIL import Image, ImageOps

from convtool.errors import InputError, OutputError

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".gif", ".pgm", ".ppm"})
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

    ``draft(image)`` is called between opening and decoding (e.g. ``image.draft`` for a reduced JPEG).
    The common case costs one Pillow open: files are only examined further when decoding fails.
    """
    path = Path(path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image: Image.Image = Image.open(path)
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
        if path.stat().st_size == 0:
            raise InputError(f"{path}: the file is empty (0 bytes); re-export or re-download it") from None
        raise InputError(f"{path}: not an image Pillow can read (PNG, JPEG, TIFF, BMP, ...)") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise InputError(f"{path}: the image is damaged or truncated ({exc}); re-export it") from None
    if "exif" in image.info or image.format == "TIFF":  # only these can carry an orientation
        image = ImageOps.exif_transpose(image)
    return image


def to_array(image: Image.Image) -> ImageArray:
    """Convert a Pillow image to float32 pixels with alpha split off; palettes and 16-bit handled."""
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
    data = np.asarray(image).astype(np.float32)
    if mode in ("LA", "RGBA"):
        return ImageArray(data[..., :-1].squeeze(-1) if mode == "LA" else data[..., :3], data[..., -1], 8)
    return ImageArray(data, None, 8)


def read_image(path: str | os.PathLike, *, gray: bool = False) -> ImageArray:
    """Read an image file as an ImageArray; ``gray`` converts colour to BT.601 luma."""
    result = to_array(open_image(path))
    if gray and result.pixels.ndim == 3:
        result.pixels = result.pixels @ LUMA_WEIGHTS
    return result


def atomic_write(path: str | os.PathLike, write: Callable[[Path], object]) -> None:
    """Call ``write(tmp)`` on a temporary file beside ``path``, then rename it into place.

    An interruption or error leaves no partial file behind.
    """
    path = Path(path)
    folder = path.parent if str(path.parent) else Path(".")
    if not folder.is_dir():
        raise OutputError(f"{folder}: output folder does not exist; create it or choose another")
    try:
        fd, tmp_name = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=path.suffix + ".part", dir=folder)
    except OSError as exc:
        raise OutputError(f"{folder}: cannot write there ({exc.strerror}); choose another output folder") from None
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def save_image(path: str | os.PathLike, pixels: np.ndarray, *, alpha: np.ndarray | None = None, bit_depth: int = 8) -> None:
    """Write scaled pixels atomically: ``.png`` 8/16-bit, ``.tif(f)`` float32, ``.npy`` raw values.

    PNG pixels must already be in 0..2**bit_depth-1; TIFF and NPY get the values as they are.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".npy":
        def write_npy(tmp: Path) -> None:
            with open(tmp, "wb") as handle:  # a handle: np.save would append .npy to the temp name
                np.save(handle, np.asarray(pixels, dtype=np.float32), allow_pickle=False)

        atomic_write(path, write_npy)
    elif suffix in (".tif", ".tiff"):
        from convtool.tiff import write_float_tiff

        atomic_write(path, lambda tmp: write_float_tiff(tmp, np.asarray(pixels, dtype=np.float32)))
    elif suffix == ".png":
        image = _png_image(pixels, alpha, bit_depth)
        atomic_write(path, lambda tmp: image.save(tmp, format="PNG"))
    elif suffix in (".jpg", ".jpeg", ".bmp", ".webp"):
        image = _png_image(pixels, alpha if suffix != ".jpg" else None, 8)
        fmt = {".jpg": "JPEG", ".jpeg": "JPEG", ".bmp": "BMP", ".webp": "WEBP"}[suffix]
        atomic_write(path, lambda tmp: image.save(tmp, format=fmt))
    else:
        raise OutputError(f"{path}: unknown output type {suffix!r}; use .png, .tif, .npy, .jpg or .bmp")


def _png_image(pixels: np.ndarray, alpha: np.ndarray | None, bit_depth: int) -> Image.Image:
    if bit_depth == 16:
        if pixels.ndim == 3:
            raise OutputError("16-bit PNG output is for gray images; use `gray`, 8-bit PNG, .tif or .npy for colour")
        return Image.fromarray(np.rint(pixels).astype(np.uint16))
    data = np.rint(pixels).astype(np.uint8)
    if alpha is not None and alpha.shape == data.shape[:2]:
        data = np.dstack([data, np.rint(alpha).astype(np.uint8)])
    return Image.fromarray(data)


def list_images(paths: list[str | os.PathLike], *, recursive: bool = False) -> list[Path]:
    """Expand files and folders into image files (folders: image suffixes only, sorted)."""
    found: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            pattern = "**/*" if recursive else "*"
            found.extend(sorted(p for p in path.glob(pattern) if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES))
        else:
            found.append(path)
    return found
