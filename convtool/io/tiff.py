"""A minimal baseline TIFF writer for float32 images (gray or RGB), which Pillow cannot write in colour.

Layout: little-endian header, the pixel data as one uncompressed strip, then one IFD
(TIFF 6.0, with SampleFormat = 3 meaning IEEE float).
"""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np

from convtool.errors import OutputError

_SHORT, _LONG = 3, 4


def write_float_tiff(path: Path, pixels: np.ndarray) -> None:
    """Write H,W or H,W,3 float32 pixels to ``path`` as an uncompressed float TIFF."""
    data = np.ascontiguousarray(pixels, dtype="<f4")
    channels = 1 if data.ndim == 2 else data.shape[2]
    if channels not in (1, 3):
        raise OutputError(f"float TIFF holds 1 or 3 channels, not {channels}; use .npy instead")
    height, width = data.shape[:2]
    pixel_bytes = data.tobytes()
    data_offset = 8
    ifd_offset = data_offset + len(pixel_bytes)
    ifd_offset += ifd_offset % 2  # IFDs start on a word boundary
    entries = 11
    extra_offset = ifd_offset + 2 + entries * 12 + 4  # per-sample arrays for 3 channels live here

    def per_sample(value: int, slot: int) -> tuple[int, int, int, int]:
        if channels == 1:
            return _SHORT, 1, value, 0
        return _SHORT, channels, extra_offset + slot * 6, 0

    tags = [
        (256, _LONG, 1, width),
        (257, _LONG, 1, height),
        (258, *per_sample(32, 0)[:3]),
        (259, _SHORT, 1, 1),  # no compression
        (262, _SHORT, 1, 1 if channels == 1 else 2),  # BlackIsZero or RGB
        (273, _LONG, 1, data_offset),
        (277, _SHORT, 1, channels),
        (278, _LONG, 1, height),
        (279, _LONG, 1, len(pixel_bytes)),
        (284, _SHORT, 1, 1),  # chunky
        (339, *per_sample(3, 1)[:3]),  # IEEE floating point
    ]
    ifd = struct.pack("<H", entries)
    for tag, kind, count, value in tags:
        packed = struct.pack("<HI", value, 0)[:4] if kind == _SHORT and count == 1 else struct.pack("<I", value)
        ifd += struct.pack("<HHI", tag, kind, count) + packed
    ifd += struct.pack("<I", 0)
    extra = b"" if channels == 1 else struct.pack("<3H", 32, 32, 32) + struct.pack("<3H", 3, 3, 3)
    with open(path, "wb") as handle:
        handle.write(b"II*\x00" + struct.pack("<I", ifd_offset))
        handle.write(pixel_bytes)
        handle.write(b"\x00" * (ifd_offset - data_offset - len(pixel_bytes)))
        handle.write(ifd + extra)
