"""Arrays -> image files, published atomically: PNG 8/16-bit, float32 TIFF, raw NPY, JPEG, BMP, WebP."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from convtool.errors import OutputError
from convtool.io.publish import publish_with

SAVE_SUFFIXES = (".png", ".tif", ".tiff", ".npy", ".jpg", ".jpeg", ".bmp", ".webp")
_PILLOW_FORMATS = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".bmp": "BMP", ".webp": "WEBP"}


def save_image(path: str | os.PathLike, pixels: np.ndarray, *, alpha: np.ndarray | None = None, bit_depth: int = 8,
               overwrite: bool = False) -> None:
    """Write scaled pixels: ``.png`` 8/16-bit, ``.tif(f)`` float32, ``.npy`` raw values, ``.jpg/.bmp/.webp`` 8-bit.

    PNG pixels must already be in 0..2**bit_depth-1; TIFF and NPY get the values as they are.
    An existing ``path`` is replaced only with ``overwrite``.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".npy":
        def write_npy(tmp: Path) -> None:
            with open(tmp, "wb") as handle:  # a handle: np.save would append .npy to the temp name
                np.save(handle, np.asarray(pixels, dtype=np.float32), allow_pickle=False)

        publish_with(path, write_npy, overwrite=overwrite)
    elif suffix in (".tif", ".tiff"):
        from convtool.io.tiff import write_float_tiff

        publish_with(path, lambda tmp: write_float_tiff(tmp, np.asarray(pixels, dtype=np.float32)), overwrite=overwrite)
    elif suffix in _PILLOW_FORMATS:
        keep_alpha = alpha if suffix not in (".jpg", ".jpeg") else None
        image = _pillow_image(pixels, keep_alpha, bit_depth if suffix == ".png" else 8)
        publish_with(path, lambda tmp: image.save(tmp, format=_PILLOW_FORMATS[suffix]), overwrite=overwrite)
    else:
        raise OutputError(f"{path}: unknown output type {suffix!r}; use one of {', '.join(SAVE_SUFFIXES)}")


def _pillow_image(pixels: np.ndarray, alpha: np.ndarray | None, bit_depth: int):
    from PIL import Image

    if bit_depth == 16:
        if pixels.ndim == 3:
            raise OutputError("16-bit PNG output is for gray images; use `gray`, 8-bit PNG, .tif or .npy for colour")
        return Image.fromarray(np.rint(pixels).astype(np.uint16))
    data = np.rint(pixels).astype(np.uint8)
    if alpha is not None and alpha.shape == data.shape[:2]:
        data = np.dstack([data, np.rint(alpha).astype(np.uint8)])
    return Image.fromarray(data)
