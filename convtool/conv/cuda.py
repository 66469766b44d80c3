"""Numba CUDA kernels: direct correlation (shared-memory tiles), separable passes and pooling.

Same host signatures as :mod:`convtool.conv.cpu`. The host pads the stack (``reference.pad``), copies it
to the device, launches one thread per output pixel and copies the result back into ``out``.
Threads per block live in ``THREADS`` (rows, columns); tests pass small blocks so multi-block and edge
paths run under ``NUMBA_ENABLE_CUDASIM=1``.
"""

from __future__ import annotations

import math

import numpy as np
from numba import cuda, float32

from convtool.conv import reference

THREADS = (16, 16)  # threads per block: (rows, columns)
SHARED_FLOATS = 6144  # 24 KiB tile of padded input per block; larger tiles read global memory
MAX_GRID_Z = 65535  # images per launch


@cuda.jit
def _direct_kernel(padded, kernel, sh, sw, dh, dw, tile_h, tile_w, use_shared, out):  # pragma: no cover
    """out[b, y, x] = sum_ij kernel[i, j] * padded[b, y*sh + i*dh, x*sw + j*dw], one thread per pixel."""
    tile = cuda.shared.array(SHARED_FLOATS, float32)
    b = cuda.blockIdx.z
    ty, tx = cuda.threadIdx.y, cuda.threadIdx.x
    y0, x0 = cuda.blockIdx.y * cuda.blockDim.y, cuda.blockIdx.x * cuda.blockDim.x
    y, x = y0 + ty, x0 + tx
    kh, kw = kernel.shape
    if use_shared:
        r0, c0 = y0 * sh, x0 * sw
        t = ty * cuda.blockDim.x + tx
        while t < tile_h * tile_w:
            r, c = r0 + t // tile_w, c0 + t % tile_w
            if r < padded.shape[1] and c < padded.shape[2]:
                tile[t] = padded[b, r, c]
            else:
                tile[t] = 0.0
            t += cuda.blockDim.x * cuda.blockDim.y
        cuda.syncthreads()
    if y < out.shape[1] and x < out.shape[2]:
        acc = float32(0.0)
        for i in range(kh):
            for j in range(kw):
                if use_shared:
                    value = tile[(ty * sh + i * dh) * tile_w + tx * sw + j * dw]
                else:
                    value = padded[b, y * sh + i * dh, x * sw + j * dw]
                acc += kernel[i, j] * value
        out[b, y, x] = acc


@cuda.jit
def _row_pass(padded, row, sw, dw, out):  # pragma: no cover - CUDA
    """out[b, r, x] = sum_j row[j] * padded[b, r, x*sw + j*dw] (every padded row)."""
    b = cuda.blockIdx.z
    r = cuda.blockIdx.y * cuda.blockDim.y + cuda.threadIdx.y
    x = cuda.blockIdx.x * cuda.blockDim.x + cuda.threadIdx.x
    if r < out.shape[1] and x < out.shape[2]:
        acc = float32(0.0)
        for j in range(row.shape[0]):
            acc += row[j] * padded[b, r, x * sw + j * dw]
        out[b, r, x] = acc


@cuda.jit
def _column_pass(rows, column, sh, dh, out):  # pragma: no cover - CUDA
    """out[b, y, x] = sum_i column[i] * rows[b, y*sh + i*dh, x]."""
    b = cuda.blockIdx.z
    y = cuda.blockIdx.y * cuda.blockDim.y + cuda.threadIdx.y
    x = cuda.blockIdx.x * cuda.blockDim.x + cuda.threadIdx.x
    if y < out.shape[1] and x < out.shape[2]:
        acc = float32(0.0)
        for i in range(column.shape[0]):
            acc += column[i] * rows[b, y * sh + i * dh, x]
        out[b, y, x] = acc


@cuda.jit
def _pool_kernel(image, ph, pw, sh, sw, top, left, kind, out):  # pragma: no cover - CUDA
    """Max (0), average (1) or L2 (2) pooling; window cells outside the image never count."""
    b = cuda.blockIdx.z
    y = cuda.blockIdx.y * cuda.blockDim.y + cuda.threadIdx.y
    x = cuda.blockIdx.x * cuda.blockDim.x + cuda.threadIdx.x
    if y < out.shape[1] and x < out.shape[2]:
        ya, yb = max(y * sh - top, 0), min(y * sh - top + ph, image.shape[1])
        xa, xb = max(x * sw - left, 0), min(x * sw - left + pw, image.shape[2])
        best = -math.inf
        total = 0.0
        for i in range(ya, yb):
            for j in range(xa, xb):
                value = image[b, i, j]
                best = max(best, value)
                total += value if kind == 1 else value * value
        if kind == 0:
            out[b, y, x] = best
        elif kind == 1:
            out[b, y, x] = total / max((yb - ya) * (xb - xa), 1)
        else:
            out[b, y, x] = math.sqrt(total)


def _grid(shape: tuple[int, int, int], threads: tuple[int, int]) -> tuple[int, int, int]:
    return math.ceil(shape[2] / threads[1]), math.ceil(shape[1] / threads[0]), shape[0]


def _padded(stack: np.ndarray, pads: tuple[int, int, int, int], border: str, cval: float) -> np.ndarray:
    return np.ascontiguousarray(reference.pad(stack.astype(np.float32, copy=False), pads, border, cval))


def correlate_direct(stack: np.ndarray, kernel: np.ndarray, stride: tuple[int, int], pads: tuple[int, int, int, int],
                     border: str, cval: float, dilation: tuple[int, int], out: np.ndarray,
                     threads: tuple[int, int] | None = None) -> None:
    """Direct correlation of a (B, H, W) stack into ``out`` on the GPU."""
    (sh, sw), (dh, dw), threads = stride, dilation, threads or THREADS
    tile_h = (threads[0] - 1) * sh + (kernel.shape[0] - 1) * dh + 1
    tile_w = (threads[1] - 1) * sw + (kernel.shape[1] - 1) * dw + 1
    use_shared = tile_h * tile_w <= SHARED_FLOATS
    weights = cuda.to_device(kernel.astype(np.float32))
    for start in range(0, stack.shape[0], MAX_GRID_Z):
        part = out[start: start + MAX_GRID_Z]
        device_in = cuda.to_device(_padded(stack[start: start + MAX_GRID_Z], pads, border, cval))
        device_out = cuda.device_array(part.shape, dtype=np.float32)
        _direct_kernel[_grid(part.shape, threads), (threads[1], threads[0])](
            device_in, weights, sh, sw, dh, dw, tile_h, tile_w, use_shared, device_out)
        part[...] = device_out.copy_to_host()


def correlate_separable(stack: np.ndarray, col: np.ndarray, row: np.ndarray, stride: tuple[int, int],
                        pads: tuple[int, int, int, int], border: str, cval: float, dilation: tuple[int, int],
                        out: np.ndarray, threads: tuple[int, int] | None = None) -> None:
    """Correlation with ``outer(col, row)`` as a row pass then a column pass on the GPU."""
    (sh, sw), (dh, dw), threads = stride, dilation, threads or THREADS
    column_w = cuda.to_device(col.astype(np.float32))
    row_w = cuda.to_device(row.astype(np.float32))
    for start in range(0, stack.shape[0], MAX_GRID_Z):
        part = out[start: start + MAX_GRID_Z]
        padded = _padded(stack[start: start + MAX_GRID_Z], pads, border, cval)
        device_in = cuda.to_device(padded)
        middle = cuda.device_array((padded.shape[0], padded.shape[1], part.shape[2]), dtype=np.float32)
        _row_pass[_grid(middle.shape, threads), (threads[1], threads[0])](device_in, row_w, sw, dw, middle)
        device_out = cuda.device_array(part.shape, dtype=np.float32)
        _column_pass[_grid(part.shape, threads), (threads[1], threads[0])](middle, column_w, sh, dh, device_out)
        part[...] = device_out.copy_to_host()


def pool(stack: np.ndarray, size: tuple[int, int], stride: tuple[int, int], pads: tuple[int, int, int, int],
         kind: str, out: np.ndarray, threads: tuple[int, int] | None = None) -> None:
    """Pool a (B, H, W) stack into ``out`` on the GPU; padded cells are ignored."""
    code, threads = {"max": 0, "avg": 1, "l2": 2}[kind], threads or THREADS
    for start in range(0, stack.shape[0], MAX_GRID_Z):
        part = out[start: start + MAX_GRID_Z]
        device_in = cuda.to_device(np.ascontiguousarray(stack[start: start + MAX_GRID_Z], dtype=np.float32))
        device_out = cuda.device_array(part.shape, dtype=np.float32)
        _pool_kernel[_grid(part.shape, threads), (threads[1], threads[0])](
            device_in, size[0], size[1], stride[0], stride[1], pads[0], pads[2], code, device_out)
        part[...] = device_out.copy_to_host()
