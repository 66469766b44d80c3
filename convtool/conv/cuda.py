"""Numba CUDA kernels: direct correlation (shared-memory tiles), separable passes, pooling, magnitude, uint8 out.

Same host signatures as :mod:`convtool.conv.cpu`. The input goes up in its own dtype (uint8 stays
uint8: a quarter of float32's PCIe time) and is converted on the device; borders are resolved where
the tile loader reads the image (no padded copy on the host or the device). A stack of images runs
as a pipeline over ``STREAMS`` CUDA streams with pinned host buffers, so the upload of chunk i + 1,
the kernels of chunk i and the download of chunk i - 1 overlap; outputs land in order.
:func:`run_steps` keeps the intermediates of a chain of kernels, pooling and magnitudes on the device
and can bring the result back as uint8.

Threads per block live in ``BLOCK_THREADS`` (rows, columns); tests pass small blocks so multi-block and edge
paths run under ``NUMBA_ENABLE_CUDASIM=1``.
"""

from __future__ import annotations

import math
from typing import Callable, Sequence

import numpy as np
from numba import cuda, float32, uint8

from convtool.conv import borders

BLOCK_THREADS = (16, 16)  # threads per block: (rows, columns)
SHARED_FLOATS = 6144  # 24 KiB tile of input per block; larger tiles read global memory
MAX_GRID_Z = 65535  # images per launch
STREAMS = 3  # chunks in flight: upload i + 1, kernels i, download i - 1
CHUNKS_PER_STREAM = 2  # a stack is cut into about STREAMS * this many chunks so the pipeline fills
BORDER_CODES = borders.CODES
POOL_CODES = {"max": 0, "avg": 1, "l2": 2}


_source_index = cuda.jit(device=True)(borders.source_index)


@cuda.jit(device=True)
def _load(image, b, r, c, mode, cval):  # pragma: no cover - CUDA
    """Image value at (r, c) of image ``b``, outside positions resolved by the border; float32."""
    sr = _source_index(r, image.shape[1], mode)
    sc = _source_index(c, image.shape[2], mode)
    if sr < 0 or sc < 0:
        return cval
    return float32(image[b, sr, sc])


@cuda.jit
def _direct_kernel(image, kernel, sh, sw, dh, dw, top, left, mode, cval, tile_h, tile_w, use_shared,
                   out):  # pragma: no cover - CUDA
    """out[b, y, x] = sum_ij kernel[i, j] * padded[b, y*sh + i*dh, x*sw + j*dw], one thread per pixel.

    ``padded`` is never built: the tile loader maps each padded position to the image through the border.
    """
    tile = cuda.shared.array(SHARED_FLOATS, float32)
    b = cuda.blockIdx.z
    ty, tx = cuda.threadIdx.y, cuda.threadIdx.x
    y0, x0 = cuda.blockIdx.y * cuda.blockDim.y, cuda.blockIdx.x * cuda.blockDim.x
    y, x = y0 + ty, x0 + tx
    kh, kw = kernel.shape
    if use_shared:
        r0, c0 = y0 * sh - top, x0 * sw - left
        t = ty * cuda.blockDim.x + tx
        while t < tile_h * tile_w:
            tile[t] = _load(image, b, r0 + t // tile_w, c0 + t % tile_w, mode, cval)
            t += cuda.blockDim.x * cuda.blockDim.y
        cuda.syncthreads()
    if y < out.shape[1] and x < out.shape[2]:
        acc = float32(0.0)
        for i in range(kh):
            for j in range(kw):
                if use_shared:
                    value = tile[(ty * sh + i * dh) * tile_w + tx * sw + j * dw]
                else:
                    value = _load(image, b, y * sh + i * dh - top, x * sw + j * dw - left, mode, cval)
                acc += kernel[i, j] * value
        out[b, y, x] = acc


@cuda.jit
def _row_pass(image, row, sw, dw, top, left, mode, cval, out):  # pragma: no cover - CUDA
    """out[b, r, x] = sum_j row[j] * padded[b, r, x*sw + j*dw] for every padded row r the column pass reads."""
    b = cuda.blockIdx.z
    r = cuda.blockIdx.y * cuda.blockDim.y + cuda.threadIdx.y
    x = cuda.blockIdx.x * cuda.blockDim.x + cuda.threadIdx.x
    if r < out.shape[1] and x < out.shape[2]:
        acc = float32(0.0)
        for j in range(row.shape[0]):
            acc += row[j] * _load(image, b, r - top, x * sw + j * dw - left, mode, cval)
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
                value = float32(image[b, i, j])
                best = max(best, value)
                total += value if kind == 1 else value * value
        if kind == 0:
            out[b, y, x] = best
        elif kind == 1:
            out[b, y, x] = total / max((yb - ya) * (xb - xa), 1)
        else:
            out[b, y, x] = math.sqrt(total)


@cuda.jit
def _add_square(values, total, first, last):  # pragma: no cover - CUDA
    """total += values * values (starting from zero when ``first``; square root taken when ``last``)."""
    b = cuda.blockIdx.z
    y = cuda.blockIdx.y * cuda.blockDim.y + cuda.threadIdx.y
    x = cuda.blockIdx.x * cuda.blockDim.x + cuda.threadIdx.x
    if y < total.shape[1] and x < total.shape[2]:
        square = values[b, y, x] * values[b, y, x]
        square = square if first else total[b, y, x] + square
        total[b, y, x] = math.sqrt(square) if last else square


@cuda.jit
def _to_uint8(values, scale, out):  # pragma: no cover - CUDA
    """out = round(clip(values * scale, 0, 255)) as uint8, so an 8-bit result comes back at a quarter the bytes."""
    b = cuda.blockIdx.z
    y = cuda.blockIdx.y * cuda.blockDim.y + cuda.threadIdx.y
    x = cuda.blockIdx.x * cuda.blockDim.x + cuda.threadIdx.x
    if y < out.shape[1] and x < out.shape[2]:
        value = values[b, y, x] * scale  # clipped with comparisons: min/max need a driver to compile to PTX
        value = float32(0.0) if value < 0 else (float32(255.0) if value > 255 else value)
        out[b, y, x] = uint8(math.floor(value + float32(0.5)))


def _grid(shape: tuple[int, ...], threads: tuple[int, int]) -> tuple[int, int, int]:
    return math.ceil(shape[2] / threads[1]), math.ceil(shape[1] / threads[0]), shape[0]


def _launch(kernel, shape: tuple[int, ...], threads: tuple[int, int], stream, *args) -> None:
    kernel[_grid(shape, threads), (threads[1], threads[0]), stream](*args)


Launch = Callable[[object, object, object], None]  # (device input, device output, stream)


def pipeline(stack: np.ndarray, out: np.ndarray, launch: Launch, streams: int | None = None) -> None:
    """Run ``launch`` over chunks of the stack: upload (pinned, async), kernels, download, on rotating streams.

    Chunk k uses stream k % streams; before a stream takes a new chunk its previous chunk is waited for
    and copied out of its pinned buffer into ``out``, so outputs land in their own places in order.
    """
    streams = streams or STREAMS
    count = stack.shape[0]
    chunk = min(MAX_GRID_Z, max(1, -(-count // (streams * CHUNKS_PER_STREAM))))
    starts = list(range(0, count, chunk))
    slots = min(streams, len(starts))
    pinned_in = [cuda.pinned_array((chunk,) + stack.shape[1:], dtype=stack.dtype) for _ in range(slots)]
    pinned_out = [cuda.pinned_array((chunk,) + out.shape[1:], dtype=out.dtype) for _ in range(slots)]
    device_in = [cuda.device_array((chunk,) + stack.shape[1:], dtype=stack.dtype) for _ in range(slots)]
    device_out = [cuda.device_array((chunk,) + out.shape[1:], dtype=out.dtype) for _ in range(slots)]
    queues = [cuda.stream() for _ in range(slots)]
    pending: list[tuple[int, int] | None] = [None] * slots

    def finish(slot: int) -> None:
        waiting = pending[slot]
        if waiting is not None:
            start, n = waiting
            queues[slot].synchronize()
            out[start: start + n] = pinned_out[slot][:n]
            pending[slot] = None

    for k, start in enumerate(starts):
        slot, n = k % slots, min(chunk, count - start)
        finish(slot)
        pinned_in[slot][:n] = stack[start: start + n]
        part_in, part_out = device_in[slot][:n], device_out[slot][:n]
        part_in.copy_to_device(pinned_in[slot][:n], stream=queues[slot])
        launch(part_in, part_out, queues[slot])
        part_out.copy_to_host(pinned_out[slot][:n], stream=queues[slot])
        pending[slot] = (start, n)
    for slot in range(slots):
        finish(slot)


def direct_launch(kernel: np.ndarray, stride: tuple[int, int], pads: tuple[int, int, int, int], border: str,
                  cval: float, dilation: tuple[int, int], threads: tuple[int, int]) -> Launch:
    """The launch of direct correlation on device arrays (input of any dtype, float32 output)."""
    (sh, sw), (dh, dw) = stride, dilation
    tile_h = (threads[0] - 1) * sh + (kernel.shape[0] - 1) * dh + 1
    tile_w = (threads[1] - 1) * sw + (kernel.shape[1] - 1) * dw + 1
    use_shared = tile_h * tile_w <= SHARED_FLOATS
    weights = cuda.to_device(kernel.astype(np.float32))
    geometry = (sh, sw, dh, dw, pads[0], pads[2], BORDER_CODES[border], np.float32(cval))

    def launch(device_in, device_out, stream) -> None:
        _launch(_direct_kernel, device_out.shape, threads, stream, device_in, weights, *geometry, tile_h, tile_w,
                use_shared, device_out)

    return launch


def separable_launch(col: np.ndarray, row: np.ndarray, stride: tuple[int, int], pads: tuple[int, int, int, int],
                     border: str, cval: float, dilation: tuple[int, int], threads: tuple[int, int]) -> Launch:
    """The launch of a row pass (borders resolved as it reads) then a column pass, on device arrays."""
    (sh, sw), (dh, dw) = stride, dilation
    column_w, row_w = cuda.to_device(col.astype(np.float32)), cuda.to_device(row.astype(np.float32))

    def launch(device_in, device_out, stream) -> None:
        rows = (device_out.shape[1] - 1) * sh + (col.shape[0] - 1) * dh + 1  # padded rows the column pass reads
        middle = cuda.device_array((device_out.shape[0], rows, device_out.shape[2]), dtype=np.float32, stream=stream)
        _launch(_row_pass, middle.shape, threads, stream, device_in, row_w, sw, dw, pads[0], pads[2],
                BORDER_CODES[border], np.float32(cval), middle)
        _launch(_column_pass, device_out.shape, threads, stream, middle, column_w, sh, dh, device_out)

    return launch


def pool_launch(size: tuple[int, int], stride: tuple[int, int], pads: tuple[int, int, int, int], kind: str,
                threads: tuple[int, int]) -> Launch:
    def launch(device_in, device_out, stream) -> None:
        _launch(_pool_kernel, device_out.shape, threads, stream, device_in, size[0], size[1], stride[0], stride[1],
                pads[0], pads[2], POOL_CODES[kind], device_out)

    return launch


def correlate_direct(stack: np.ndarray, kernel: np.ndarray, stride: tuple[int, int], pads: tuple[int, int, int, int],
                     border: str, cval: float, dilation: tuple[int, int], out: np.ndarray,
                     threads: tuple[int, int] | None = None) -> None:
    """Direct correlation of a (B, H, W) uint8 or float32 stack into ``out`` on the GPU."""
    pipeline(stack, out, direct_launch(kernel, stride, pads, border, cval, dilation, threads or BLOCK_THREADS))


def correlate_separable(stack: np.ndarray, col: np.ndarray, row: np.ndarray, stride: tuple[int, int],
                        pads: tuple[int, int, int, int], border: str, cval: float, dilation: tuple[int, int],
                        out: np.ndarray, threads: tuple[int, int] | None = None) -> None:
    """Correlation with ``outer(col, row)`` as a row pass then a column pass on the GPU."""
    pipeline(stack, out, separable_launch(col, row, stride, pads, border, cval, dilation, threads or BLOCK_THREADS))


def pool(stack: np.ndarray, size: tuple[int, int], stride: tuple[int, int], pads: tuple[int, int, int, int],
         kind: str, out: np.ndarray, threads: tuple[int, int] | None = None) -> None:
    """Pool a (B, H, W) stack into ``out`` on the GPU; padded cells are ignored."""
    pipeline(stack, out, pool_launch(size, stride, pads, kind, threads or BLOCK_THREADS))


Step = tuple[Sequence[Launch], tuple[int, int]]  # launches whose outputs combine (1: plain, 2+: magnitude), out H, W


def run_steps(stack: np.ndarray, steps: Sequence[Step], out: np.ndarray, scale: float | None = None,
              threads: tuple[int, int] | None = None) -> None:
    """Run a chain on the device: upload once, each step's launches (several = the magnitude of their
    responses), intermediates kept on the device, download once (uint8 when ``out`` is uint8, as
    round(clip(value * scale, 0, 255)))."""
    threads = threads or BLOCK_THREADS

    def launch(device_in, device_out, stream) -> None:
        current = device_in
        for k, (launches, out_hw) in enumerate(steps):
            last = k == len(steps) - 1
            shape = (current.shape[0],) + tuple(out_hw)
            if len(launches) == 1:
                target = device_out if last and out.dtype == np.float32 else \
                    cuda.device_array(shape, dtype=np.float32, stream=stream)
                launches[0](current, target, stream)
            else:  # the magnitude of several responses: sqrt(sum of squares), summed in place
                target, response = (cuda.device_array(shape, dtype=np.float32, stream=stream) for _ in range(2))
                for index, respond in enumerate(launches):
                    respond(current, response, stream)
                    _launch(_add_square, shape, threads, stream, response, target, index == 0,
                            index == len(launches) - 1)
            current = target
        if out.dtype == np.uint8:
            _launch(_to_uint8, device_out.shape, threads, stream, current, np.float32(scale or 1.0), device_out)
        elif current is not device_out:
            device_out.copy_to_device(current, stream=stream)

    pipeline(stack, out, launch)
