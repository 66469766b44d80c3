"""A fast PNG encoder: NumPy's Sub filter and ISA-L's deflate, about 4x OpenCV's speed at equal size.

Pillow tries every PNG filter on every row (adaptive filtering) and then deflates at the requested
level; at level 1 that costs about 22 ms for a 640x480 RGB photo. Here every row gets the Sub filter
(each byte minus the byte one pixel to its left, one vectorised subtraction). Level 1 (the default)
deflates with ISA-L's level 1 (the ``isal`` package): 3.5 ms for the Sobel magnitude of such a photo,
453 KB, against 16 ms and 450 KB for zlib's level 1 with the run-length strategy (what OpenCV's libpng
default amounts to, and the fallback when ``isal`` is missing). Levels 2-9 use zlib's default strategy
for smaller files; level 0 stores the rows unfiltered and uncompressed.

Large images are deflated in row blocks on several threads (zlib and ISA-L release the GIL): each block but
the last ends with a sync flush, so the blocks join into one valid zlib stream, a little larger
(blocks do not share their history).
"""

from __future__ import annotations

import struct
import zlib
from concurrent.futures import ThreadPoolExecutor

import numpy as np

DEFAULT_LEVEL = 1
PARALLEL_BYTES = 4 << 20  # filtered images larger than this are deflated in blocks on several threads
_COLOUR_TYPES = {1: 0, 2: 4, 3: 2, 4: 6}  # channels -> PNG colour type: gray, gray+alpha, RGB, RGBA


def encode_png(pixels: np.ndarray, *, level: int = DEFAULT_LEVEL, threads: int = 1) -> bytes:
    """PNG file bytes for H,W or H,W,C (C = 1-4) pixels of uint8 or uint16 (16-bit, big-endian in the file)."""
    if pixels.dtype not in (np.uint8, np.uint16):
        raise ValueError(f"PNG pixels must be uint8 or uint16, not {pixels.dtype}")
    if not 0 <= level <= 9:
        raise ValueError(f"PNG compression level {level}: use 0 (none, fastest) to 9 (smallest)")
    height, width = pixels.shape[:2]
    channels = 1 if pixels.ndim == 2 else pixels.shape[2]
    if pixels.ndim not in (2, 3) or channels not in _COLOUR_TYPES or 0 in pixels.shape:
        raise ValueError(f"PNG pixels must be H,W or H,W,C with 1-4 channels, not shape {pixels.shape}")
    depth = pixels.dtype.itemsize * 8
    rows = np.ascontiguousarray(pixels, dtype=pixels.dtype.newbyteorder(">")).view(np.uint8).reshape(height, -1)
    filtered = _filter_rows(rows, channels * pixels.dtype.itemsize, sub=level > 0)
    header = struct.pack(">IIBBBBB", width, height, depth, _COLOUR_TYPES[channels], 0, 0, 0)
    return b"".join([b"\x89PNG\r\n\x1a\n", _chunk(b"IHDR", header), _chunk(b"IDAT", _deflate(filtered, level, threads)),
                     _chunk(b"IEND", b"")])


def _filter_rows(rows: np.ndarray, bpp: int, *, sub: bool) -> np.ndarray:
    """Each row prefixed by its filter byte: 1 (Sub: byte minus the byte ``bpp`` to its left) or 0 (None)."""
    out = np.empty((rows.shape[0], rows.shape[1] + 1), dtype=np.uint8)
    out[:, 0] = 1 if sub else 0
    if sub:
        out[:, 1 : bpp + 1] = rows[:, :bpp]
        np.subtract(rows[:, bpp:], rows[:, :-bpp], out=out[:, bpp + 1 :])  # wraps modulo 256, as PNG wants
    else:
        out[:, 1:] = rows
    return out


def _compressobj(level: int, wbits: int):
    """A deflate compressor: ISA-L's level 1 for level 1 when ``isal`` is installed, else zlib's."""
    if level == 1:
        try:
            from isal import isal_zlib

            return isal_zlib.compressobj(1, isal_zlib.DEFLATED, wbits, 9)
        except ImportError:
            return zlib.compressobj(1, zlib.DEFLATED, wbits, 9, zlib.Z_RLE)
    return zlib.compressobj(level, zlib.DEFLATED, wbits, 9, zlib.Z_DEFAULT_STRATEGY)


def _deflate(filtered: np.ndarray, level: int, threads: int) -> bytes:
    """A zlib stream of the filtered rows, in row blocks on ``threads`` threads when the image is large."""
    if threads <= 1 or filtered.nbytes < PARALLEL_BYTES:
        compressor = _compressobj(level, 15)
        return compressor.compress(filtered.data) + compressor.flush()
    bounds = np.linspace(0, len(filtered), threads * 2 + 1).astype(int)
    blocks = [filtered[a:b] for a, b in zip(bounds[:-1], bounds[1:], strict=False)]

    def raw_deflate(index: int) -> bytes:
        compressor = _compressobj(level, -15)
        last = index == len(blocks) - 1
        return compressor.compress(blocks[index].data) + compressor.flush(zlib.Z_FINISH if last else zlib.Z_SYNC_FLUSH)

    with ThreadPoolExecutor(threads) as pool:
        body = b"".join(pool.map(raw_deflate, range(len(blocks))))
    return b"\x78\x01" + body + struct.pack(">I", zlib.adler32(filtered.data))


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(data, zlib.crc32(kind)))
