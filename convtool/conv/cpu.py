"""Numba CPU kernels. Private and unvalidated: call them through ``convtool.conv``.

Every kernel takes the raw (B, H, W) image stack (uint8 or float32) and the padding
``(top, bottom, left, right)`` with a border code, and writes a preallocated (B, OH, OW) float32
output. Large images get no padded copy: each block of output rows keeps a ring of the padded rows
it needs (converted to float32 on the way, so uint8 costs no separate pass), filters them while they
are in cache and stores each output once. Small planes (up to ``FLAT_PIXELS`` padded pixels, e.g. a
stack of 28x28 digits or a 256x256 tile) are padded whole, one image at a time, into a per-thread
scratch plane and filtered as one long flat row while it is in cache (fused pad + filter), because
per-row overheads would outweigh rows that short.

The inner loop sums four taps per pass over a contiguous row (five loads and one store per four
multiply-adds), so LLVM vectorises it and the output row stays in L1. A horizontal stride is made
contiguous by storing each padded row as ``stride`` phases (columns p, p + s, p + 2s, ...).

Threads: the jitted functions release the GIL and each runs a range of (image, row block) jobs; a
small thread pool runs the ranges side by side (cheaper to compile than ``parallel=True`` and free
of OpenMP's start-up stalls).
"""

from __future__ import annotations

import itertools
import os
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Callable

import numpy as np


def _load_numba_without_blas_probe() -> None:
    """Import Numba's array lowering with scipy's BLAS hidden: the first compile or cache load in a process
    otherwise imports scipy.linalg (0.3-0.6 s) only to learn whether jitted np.dot may call BLAS, which
    these kernels never do. np.dot in other jitted code still finds scipy when it is compiled."""
    if "numba.np.arraymath" in sys.modules or "scipy.linalg.cython_blas" in sys.modules:
        return
    sys.modules["scipy.linalg.cython_blas"] = None  # type: ignore[assignment]
    try:
        import numba.np.arraymath  # noqa: F401
    finally:
        if sys.modules.get("scipy.linalg.cython_blas", 0) is None:
            del sys.modules["scipy.linalg.cython_blas"]


_load_numba_without_blas_probe()

from numba import njit, uint64  # noqa: E402

from convtool import conv  # noqa: E402
from convtool.conv import borders  # noqa: E402

BORDER_CODES = borders.CODES  # border code for each convtool border name (numpy.pad semantics)
_POOL_MAX, _POOL_AVG, _POOL_L2 = 0, 1, 2
POOL_KINDS = {"max": _POOL_MAX, "avg": _POOL_AVG, "l2": _POOL_L2}
JOBS_PER_THREAD = 4  # ranges handed out per thread, so a busy core does not hold the others up
# Up to this many jobs per thread each job is a part of its own: parts of 2 and 3 jobs left one thread alone with
# the last part (1080p RGB Gaussian 31x31, 18 jobs in 8 parts: 4 ms of 19 with one thread idle; one job per
# part: 17.2 ms, OpenCV 16.2 in the same rounds), from SINGLE_JOBS_WORK multiply-adds (1080p RGB Sobel, 16 jobs:
# two halves 3.66-3.84 ms, one job at a time 3.56-3.57, medians of 51 interleaved, two runs)
SINGLE_JOBS_PER_THREAD = 16
SINGLE_JOBS_WORK = 16 * conv.SERIAL_WORK
TILE = 1024  # output columns per pass (512 measured 0-15% slower on 1080p and 4096-wide rows)
# separable rows of uint8 with more horizontal taps are converted once, not at every tap (1080p RGB, 2 threads:
# 2 taps in place 1.25x faster, 5 taps equal, 31 taps converted first 1.2-1.35x faster)
CONVERT_FIRST_TAPS = 8
# separable vertical passes of at least GROUP_TAPS consecutive taps (no zero, no dilation) at vertical stride 1
# make COLUMN_GROUP (4 or 1) output rows at a time, sharing the loads of their rows (_columns4). Short columns
# stay on _taps: 5 taps as one group of 4 and one left over, after zeroing, store each output three times.
COLUMN_GROUP = 4
GROUP_TAPS = 8
FLAT_PIXELS = 1 << 17  # padded pixels of one plane up to which it is padded whole and filtered as one flat row
# Single-channel direct kernels at stride 1 with less than SERIAL_WORK (conv's cost model knows) read the image
# in place (_in_place): 512^2 Sobel float32 129 us against 260-300 us padded whole or on a ring of rows.
IN_PLACE = True
# ... and large float32 planes with this many taps or fewer read it in place on every thread, blocks of rows
# each (_in_place_part; 4096^2 Sobel into an existing array 8.8-9.5 ms against 10.5-11.2 on a ring of rows,
# a two-thread copy 9.6). More taps keep the ring (the blob's mirrored rows are added once there).
IN_PLACE_THREADED_TAPS = 6
IN_PLACE_CHUNK = 4096  # outputs per pass of the threaded in-place taps: every group of taps while they are in L1
# (an argument of the jitted kernels, never a global they read: Numba would freeze its value into its disk cache)
IN_PLACE_STACKED = 1 << 14  # padded pixels from which planes of a stack go in place too (256 x 28^2: 0.7 vs 0.5 ms)
SERIAL_WORK = conv.SERIAL_WORK  # multiply-adds below which one thread is faster (about 0.5 ms of work)
RING_SKEW = 16  # floats added to each ring row: see _separable
RING_BYTES = 1 << 18  # the separable ring of horizontal results is kept below this (L2: 512 KB per core)
_pool_executor: ThreadPoolExecutor | None = None
_scratch = threading.local()  # per thread: the flat path's padded plane and pass buffers
_probe = threading.local()  # per thread: the kernel calls recorded instead of run by kernels_cached
_probes = [0]  # kernels_cached calls running in any thread (the hot paths test only this)
_probe_lock = threading.Lock()


def default_threads() -> int:
    """Threads to use: ``NUMBA_NUM_THREADS`` if set, else the CPUs this process may run on."""
    if os.environ.get("NUMBA_NUM_THREADS"):
        return max(1, int(os.environ["NUMBA_NUM_THREADS"]))
    return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1)


THREADS = default_threads()


def set_threads(count: int) -> None:
    """Use ``count`` threads from now on (the benchmark limits every library to the same number)."""
    global THREADS, _pool_executor
    THREADS = max(1, int(count))
    if _pool_executor is not None:
        _pool_executor.shutdown()
        _pool_executor = None


def _run(function: Callable[..., None], jobs: int, work: float, *args: object) -> None:
    """Call ``function(*args, first, last)`` over ``range(jobs)``, split between threads if ``work`` pays.

    ``work`` counts multiply-adds; below ``SERIAL_WORK`` waking threads costs more than it saves. The
    calling thread takes parts too, with THREADS - 1 pool threads: THREADS busy threads, and one of them
    already running where it is. (With the caller only waiting, the two pool threads often woke on one
    core after a long single-threaded call elsewhere in the process: 1080p RGB Sobel 4.2 -> 7.4 ms median
    with scipy in the benchmark's rounds, OpenCV unaffected.)
    """
    global _pool_executor
    if _probes[0] and _recorded(function, args + (0, jobs)):
        return
    if THREADS == 1 or jobs == 1 or work < SERIAL_WORK:
        function(*args, 0, jobs)
        return
    parts = min(jobs, THREADS * (JOBS_PER_THREAD if work > 64 * SERIAL_WORK else 1))
    if work > SINGLE_JOBS_WORK and jobs <= SINGLE_JOBS_PER_THREAD * THREADS:
        parts = jobs  # large jobs, few of them: hand them out one by one
    bounds = [jobs * k // parts for k in range(parts + 1)]
    taken = itertools.count()  # next() on it is atomic under the GIL: each part runs once

    def take_parts() -> None:
        k = next(taken)
        while k < parts:
            function(*args, bounds[k], bounds[k + 1])
            k = next(taken)

    if _pool_executor is None:
        _pool_executor = ThreadPoolExecutor(THREADS - 1, thread_name_prefix="convtool")
    futures = [_pool_executor.submit(take_parts) for _ in range(THREADS - 1)]
    take_parts()
    for future in futures:
        future.result()


_source_index = njit(cache=True, nogil=True)(borders.source_index)


@njit(cache=True, nogil=True)
def _column_source(t, width, channels, mode):  # pragma: no cover - jitted
    """Index into a row of ``width`` samples for padded sample ``t``, -1 = constant.

    An interleaved row holds ``channels`` samples per pixel (H,W,C read as H x W*C): the border
    mirrors or wraps whole pixels and keeps the channel.
    """
    if channels == 1 or 0 <= t < width:
        return _source_index(t, width, mode)
    pixel = t // channels
    source = _source_index(pixel, width // channels, mode)
    return -1 if source < 0 else source * channels + (t - pixel * channels)


@njit(cache=True, nogil=True)
def _fill_row(image, b, r, top, left, mode, cval, channels, pitch, sw, phase, row):  # pragma: no cover - jitted
    """Padded row ``r`` (columns 0 .. pitch-1) of image ``b`` into ``row`` as ``sw`` phases of length ``phase``.

    ``channels`` > 1: the row is interleaved (stride 1 only), see :func:`_column_source`.
    """
    height, width = image.shape[1], image.shape[2]
    source = _source_index(r - top, height, mode)
    if source < 0:
        row[:] = cval
        return
    line = image[b, source]
    if sw == 1:
        stop = min(pitch, left + width)
        for c in range(min(left, pitch)):
            s = _column_source(c - left, width, channels, mode)
            row[c] = cval if s < 0 else line[s]
        for c in range(left, stop):
            row[c] = line[c - left]
        for c in range(stop, pitch):
            s = _column_source(c - left, width, channels, mode)
            row[c] = cval if s < 0 else line[s]
        return
    for c in range(pitch):
        s = _source_index(c - left, width, mode)
        row[(c % sw) * phase + c // sw] = cval if s < 0 else line[s]


@njit(cache=True, nogil=True, fastmath={"contract"})
def _taps(src, base, offsets, weights, dst, d0, n):  # pragma: no cover - jitted
    """dst[d0 + x] = sum_t weights[t] * src[base + offsets[t] + x] for x < n (src float32, or uint8 converted).

    Taps go in groups of 6, 5, 4, 2 or 1 per pass over the row, so a 3x3 Sobel (6 non-zero taps) or a
    5-tap pass takes one pass: one load per tap, one store per output. Indices are unsigned, so Numba
    adds no negative-index checks and no array views (with their reference counting) are made.
    """
    count = offsets.shape[0]
    first = True
    span = uint64(n)
    out = uint64(d0)
    t = 0
    while t < count:
        left = count - t
        group = 6 if left >= 6 else (left if left >= 4 else (2 if left >= 2 else 1))
        o0 = uint64(base + offsets[t])
        w0 = weights[t]
        if group >= 2:
            o1 = uint64(base + offsets[t + 1])
            w1 = weights[t + 1]
        if group >= 4:
            o2, o3 = uint64(base + offsets[t + 2]), uint64(base + offsets[t + 3])
            w2, w3 = weights[t + 2], weights[t + 3]
        if group >= 5:
            o4 = uint64(base + offsets[t + 4])
            w4 = weights[t + 4]
        if group == 6:
            o5 = uint64(base + offsets[t + 5])
            w5 = weights[t + 5]
            if first:
                for x in range(span):
                    dst[out + x] = (w0 * np.float32(src[o0 + x]) + w1 * np.float32(src[o1 + x]) + w2 * np.float32(src[o2 + x]) + w3 * np.float32(src[o3 + x])
                                    + w4 * np.float32(src[o4 + x]) + w5 * np.float32(src[o5 + x]))
            else:
                for x in range(span):
                    dst[out + x] += (w0 * np.float32(src[o0 + x]) + w1 * np.float32(src[o1 + x]) + w2 * np.float32(src[o2 + x]) + w3 * np.float32(src[o3 + x])
                                     + w4 * np.float32(src[o4 + x]) + w5 * np.float32(src[o5 + x]))
        elif group == 5:
            if first:
                for x in range(span):
                    dst[out + x] = (w0 * np.float32(src[o0 + x]) + w1 * np.float32(src[o1 + x]) + w2 * np.float32(src[o2 + x]) + w3 * np.float32(src[o3 + x])
                                    + w4 * np.float32(src[o4 + x]))
            else:
                for x in range(span):
                    dst[out + x] += (w0 * np.float32(src[o0 + x]) + w1 * np.float32(src[o1 + x]) + w2 * np.float32(src[o2 + x]) + w3 * np.float32(src[o3 + x])
                                     + w4 * np.float32(src[o4 + x]))
        elif group == 4:
            if first:
                for x in range(span):
                    dst[out + x] = w0 * np.float32(src[o0 + x]) + w1 * np.float32(src[o1 + x]) + w2 * np.float32(src[o2 + x]) + w3 * np.float32(src[o3 + x])
            else:
                for x in range(span):
                    dst[out + x] += w0 * np.float32(src[o0 + x]) + w1 * np.float32(src[o1 + x]) + w2 * np.float32(src[o2 + x]) + w3 * np.float32(src[o3 + x])
        elif group == 2:
            if first:
                for x in range(span):
                    dst[out + x] = w0 * np.float32(src[o0 + x]) + w1 * np.float32(src[o1 + x])
            else:
                for x in range(span):
                    dst[out + x] += w0 * np.float32(src[o0 + x]) + w1 * np.float32(src[o1 + x])
        elif first:
            for x in range(span):
                dst[out + x] = w0 * np.float32(src[o0 + x])
        else:
            for x in range(span):
                dst[out + x] += w0 * np.float32(src[o0 + x])
        t += group
        first = False
    if first:
        for x in range(span):
            dst[out + x] = 0.0


@njit(cache=True, nogil=True, fastmath={"contract"})
def _columns4(src, x0, rows, weights, dst, d0, pitch, n):  # pragma: no cover - jitted
    """Four output rows of a vertical pass with consecutive taps, sharing their loads:
    ``dst[d0 + k * pitch + x] = sum_i weights[i] * src[rows[k + i] + x0 + x]`` for k < 4, x < n
    (``rows``: the start of each of the ``taps + 3`` padded rows). Each row read serves up to four outputs,
    four taps per pass: 7 loads per 16 multiply-adds instead of 6 per 6 (31 taps from L2: 1.94 -> 1.65 ns
    per output in isolation). Two loops only (the outputs are zeroed first): each vectorised loop of this
    many streams costs seconds of compile."""
    count = weights.shape[0]
    span = uint64(n)
    e0 = uint64(d0)
    e1, e2, e3 = e0 + uint64(pitch), e0 + uint64(2 * pitch), e0 + uint64(3 * pitch)
    b = uint64(x0)
    for x in range(span):
        dst[e0 + x] = 0.0
        dst[e1 + x] = 0.0
        dst[e2 + x] = 0.0
        dst[e3 + x] = 0.0
    t = 0
    while t + 4 <= count:
        w0, w1, w2, w3 = weights[t], weights[t + 1], weights[t + 2], weights[t + 3]
        r0, r1, r2, r3 = uint64(rows[t]) + b, uint64(rows[t + 1]) + b, uint64(rows[t + 2]) + b, uint64(rows[t + 3]) + b
        r4, r5, r6 = uint64(rows[t + 4]) + b, uint64(rows[t + 5]) + b, uint64(rows[t + 6]) + b
        for x in range(span):
            s0, s1, s2, s3 = src[r0 + x], src[r1 + x], src[r2 + x], src[r3 + x]
            s4, s5, s6 = src[r4 + x], src[r5 + x], src[r6 + x]
            dst[e0 + x] += (w0 * s0 + w1 * s1) + (w2 * s2 + w3 * s3)
            dst[e1 + x] += (w0 * s1 + w1 * s2) + (w2 * s3 + w3 * s4)
            dst[e2 + x] += (w0 * s2 + w1 * s3) + (w2 * s4 + w3 * s5)
            dst[e3 + x] += (w0 * s3 + w1 * s4) + (w2 * s5 + w3 * s6)
        t += 4
    while t < count:  # up to three taps left over, one at a time
        w0 = weights[t]
        r0, r1, r2, r3 = uint64(rows[t]) + b, uint64(rows[t + 1]) + b, uint64(rows[t + 2]) + b, uint64(rows[t + 3]) + b
        for x in range(span):
            dst[e0 + x] += w0 * src[r0 + x]
            dst[e1 + x] += w0 * src[r1 + x]
            dst[e2 + x] += w0 * src[r2 + x]
            dst[e3 + x] += w0 * src[r3 + x]
        t += 1


def block_rows(out_rows: int, batch: int, span: int, threads: int) -> int:
    """Output rows per job: about 8 jobs per thread, each much taller than the kernel."""
    per_image = max(1, -(-8 * threads // batch))  # jobs wanted in each image
    rows = -(-out_rows // per_image)
    return int(min(out_rows, max(rows, 4 * span)))


def column_strip(out_width: int, ring: int, sw: int) -> int:
    """Output columns per strip of the separable kernel: the whole row, unless its ring of ``ring`` rows
    would not fit in ``RING_BYTES``; then as few strips as fit (at least a tile wide, at horizontal stride 1
    only), of equal widths in multiples of 64 so that every job costs the same (1080p RGB Gaussian 31x31:
    strips of 2048, 2048 and 1664 columns -> 3 x 1920, 0.5 ms less of 15-16 ms in three interleaved runs)."""
    fits = RING_BYTES // (4 * ring) // TILE * TILE
    if sw != 1 or out_width <= fits:
        return out_width
    strips = -(-out_width // max(TILE, fits))
    width = -(-out_width // strips)
    return min(out_width, -(-width // 64) * 64)


@njit(cache=True, nogil=True)
def _fold(buffer, a, b, d, n):  # pragma: no cover - jitted
    """buffer[d + i] = buffer[a + i] + buffer[b + i] for i < n (two padded rows with equal weights)."""
    ua, ub, ud = uint64(a), uint64(b), uint64(d)
    for i in range(uint64(n)):
        buffer[ud + i] = buffer[ua + i] + buffer[ub + i]


@njit(cache=True, nogil=True)
def _fill_columns(image, b, r, top, left, mode, cval, channels, c0, c1, buffer, start):  # pragma: no cover - jitted
    """Padded columns c0..c1-1 of padded row ``r`` of image ``b`` into ``buffer[start + c]`` (stride 1)."""
    height, width = image.shape[1], image.shape[2]
    source = _source_index(r - top, height, mode)
    base = uint64(start)
    if source < 0:
        for c in range(c0, c1):
            buffer[base + uint64(c)] = cval
        return
    line = image[b, source]
    lo, hi = min(max(c0, left), c1), max(min(c1, left + width), min(max(c0, left), c1))
    for c in range(c0, lo):
        s = _column_source(c - left, width, channels, mode)
        buffer[base + uint64(c)] = cval if s < 0 else line[s]
    shift = uint64(left)
    for c in range(uint64(lo), uint64(hi)):
        buffer[base + c] = line[c - shift]
    for c in range(hi, c1):
        s = _column_source(c - left, width, channels, mode)
        buffer[base + uint64(c)] = cval if s < 0 else line[s]


@njit(cache=True, nogil=True)
def _direct(image, tap_rows, tap_cols, weights, fold_a, fold_b, ring, sh, sw, top, left, mode, cval, channels, rows, out,
            first_job, last_job):  # pragma: no cover - jitted
    """Direct correlation for jobs first..last-1; taps (row, column) already dilated, zero taps dropped.

    Each job keeps a ring of the last ``ring`` padded rows, so every input row is converted once.
    A kernel whose rows mirror top to bottom is folded: padded rows ``fold_a[f]`` and ``fold_b[f]``
    are added into extra slot ``ring + f`` first, and taps with ``tap_rows >= ring`` read that slot.
    At stride 1 the row each output row adds to the ring is filled one tile ahead of the taps, so its
    reads from memory overlap the arithmetic instead of stalling a separate copy loop.
    """
    batch, oh, ow = out.shape
    blocks = (oh + rows - 1) // rows
    span_w = tap_cols.max() + 1
    pitch = (ow - 1) * sw + span_w
    phase = ow + (span_w - 1) // sw + 1
    slot = sw * phase
    folds = fold_a.shape[0]
    buffer = np.empty((ring + folds) * slot, dtype=np.float32)
    offsets = np.empty_like(tap_rows)
    for job in range(first_job, last_job):
        b = job // blocks
        y0 = (job % blocks) * rows
        filled = y0 * sh
        for y in range(y0, min(oh, y0 + rows)):
            need = y * sh + ring
            new_rows = max(filled, y * sh)
            per_tile = sw == 1 and y > y0  # new rows filled tile by tile, between the taps of the row
            if not per_tile:
                for r in range(new_rows, need):
                    k = r % ring
                    _fill_row(image, b, r, top, left, mode, cval, channels, pitch, sw, phase,
                              buffer[k * slot: (k + 1) * slot])
            filled = need
            for t in range(offsets.shape[0]):
                column = tap_cols[t]
                k = tap_rows[t] if tap_rows[t] >= ring else (y * sh + tap_rows[t]) % ring
                offsets[t] = k * slot + (column % sw) * phase + column // sw
            row = out[b, y]
            done = 0  # padded columns of the new rows filled so far
            for x in range(0, ow, TILE):
                n = min(TILE, ow - x)
                if per_tile:
                    upto = pitch if x + n >= ow else x + n + span_w - 1
                    for r in range(new_rows, need):
                        k = r % ring
                        _fill_columns(image, b, r, top, left, mode, cval, channels, done, upto, buffer, k * slot)
                    done = upto
                for f in range(folds):  # only with sw == 1
                    _fold(buffer, ((y * sh + fold_a[f]) % ring) * slot + x, ((y * sh + fold_b[f]) % ring) * slot + x,
                          (ring + f) * slot + x, n + span_w - 1)
                _taps(buffer, x, offsets, weights, row, x, n)  # one call site: each inlined _taps costs seconds


@njit(cache=True, nogil=True)
def _separable(image, v_taps, col_w, h_taps, row_w, sh, sw, top, left, mode, cval, channels, convert_first,
               rows, strip, group, out, first_job, last_job):  # pragma: no cover - jitted
    """kernel = outer(column, row): a horizontal pass per padded row into a ring, then a vertical pass.

    Jobs are (image, block of ``rows`` output rows, strip of ``strip`` output columns): a strip keeps
    the ring of horizontal results in L2 however wide the row (31 rows of 1920 x 3 floats are 700 KB).
    At stride 1 the horizontal pass reads the image row in place (converting uint8 on the fly) and
    only the few edge columns are padded into ``line``: writing a padded copy of each row and
    reading it back at once cost more than both passes (1.2 -> 0.7 ns per pixel, one thread).
    With ``convert_first`` (uint8 and many taps, where converting at every tap would cost more) each
    tile of the row is converted into ``line`` just ahead of its taps instead.

    ``v_taps``/``h_taps`` are the (dilated) positions of the non-zero weights ``col_w``/``row_w``.
    ``group`` 4 (consecutive column taps at vertical stride 1 only): the vertical pass makes four output
    rows at a time (:func:`_columns4`) from a ring three rows deeper.
    """
    batch, oh, ow = out.shape
    kh, kw = col_w.shape[0], row_w.shape[0]
    blocks = (oh + rows - 1) // rows
    strips = (ow + strip - 1) // strip
    span_w = h_taps.max() + 1
    pitch = (ow - 1) * sw + span_w
    phase = ow + (span_w - 1) // sw + 1
    ring = v_taps.max() + 1
    h_offsets = np.empty(kw, dtype=np.int64)
    for j in range(kw):
        h_offsets[j] = (h_taps[j] % sw) * phase + h_taps[j] // sw
    height, width = image.shape[1], image.shape[2]
    x_lo = min(left, ow)  # outputs x_lo .. x_hi-1 need no padded column (stride 1)
    x_hi = max(x_lo, min(ow, width - span_w + 1 + left))
    line = np.empty(sw * phase, dtype=np.float32)
    slots = ring + group - 1  # rows of the ring
    lane = strip + RING_SKEW  # ring rows a page apart would share the L1 sets their columns map to
    horizontal = np.empty(slots * lane, dtype=np.float32)
    v_offsets = np.empty(kh, dtype=np.int64)
    group_rows = np.empty(kh + 3, dtype=np.int64)  # the start of each padded row four output rows read
    for job in range(first_job, last_job):
        b = job // (blocks * strips)
        y0 = (job // strips % blocks) * rows
        x0 = (job % strips) * strip
        x1 = min(ow, x0 + strip)
        filled = y0 * sh
        y_end = min(oh, y0 + rows)
        y = y0
        while y < y_end:
            step = group if y + group <= y_end else 1
            need = (y + step - 1) * sh + ring
            for r in range(max(filled, y * sh), need):
                k = r % slots
                source = _source_index(r - top, height, mode)
                if sw != 1 or source < 0:
                    _fill_row(image, b, r, top, left, mode, cval, channels, pitch, sw, phase, line)
                    for x in range(x0, x1, TILE):
                        _taps(line, x, h_offsets, row_w, horizontal, k * lane + x - x0, min(TILE, x1 - x))
                    continue
                if convert_first:  # many taps on uint8: convert each tile once, just ahead of its taps
                    done = x0
                    for x in range(x0, x1, TILE):
                        n = min(TILE, x1 - x)
                        upto = pitch if x + n >= ow else x + n + span_w - 1
                        _fill_columns(image, b, r, top, left, mode, cval, channels, done, upto, line, 0)
                        done = upto
                        _taps(line, x, h_offsets, row_w, horizontal, k * lane + x - x0, n)
                    continue
                _row_in_place(image[b, source], left, mode, cval, channels, pitch, span_w, x_lo, x_hi, x0, x1,
                              h_offsets, row_w, line, horizontal[k * lane: k * lane + x1 - x0])
            filled = need
            if step > 1:  # rows y .. y + 3 (consecutive taps, sh == 1)
                for i in range(kh + 3):
                    group_rows[i] = ((y + i) % slots) * lane
                flat = out[b].reshape(oh * ow)
                for x in range(x0, x1, TILE):
                    _columns4(horizontal, x - x0, group_rows, col_w, flat, y * ow + x, ow, min(TILE, x1 - x))
            else:
                for i in range(kh):
                    v_offsets[i] = ((y * sh + v_taps[i]) % slots) * lane
                row = out[b, y]
                for x in range(x0, x1, TILE):
                    n = min(TILE, x1 - x)
                    _taps(horizontal, x - x0, v_offsets, col_w, row, x, n)
            y += step


@njit(cache=True, nogil=True)
def _row_in_place(image_row, left, mode, cval, channels, pitch, span_w, x_lo, x_hi, x0, x1, offsets, weights, line,
                  dst):  # pragma: no cover - jitted
    """Outputs x0..x1-1 of one horizontal pass at stride 1 into ``dst[: x1 - x0]``: interior outputs
    (x_lo..x_hi-1) read ``image_row`` itself; only the outputs near the edges read ``line``, where just
    the padded edge columns they need are filled."""
    width = image_row.shape[0]
    lo = min(max(x0, x_lo), x1)  # x0..lo-1: left edge, lo..hi-1: interior, hi..x1-1: right edge
    hi = max(min(x1, x_hi), lo)
    if x0 < lo:
        for c in range(x0, min(lo + span_w - 1, pitch)):
            s = _column_source(c - left, width, channels, mode)
            line[c] = cval if s < 0 else image_row[s]
        _taps(line, x0, offsets, weights, dst, 0, lo - x0)
    for x in range(lo, hi, TILE):
        _taps(image_row, x - left, offsets, weights, dst, x - x0, min(TILE, hi - x))
    if hi < x1:
        for c in range(hi, min(x1 + span_w - 1, pitch)):
            s = _column_source(c - left, width, channels, mode)
            line[c] = cval if s < 0 else image_row[s]
        _taps(line, hi, offsets, weights, dst, hi - x0, x1 - hi)


@njit(cache=True, nogil=True)
def _planes(image, offsets1, weights1, offsets2, weights2, top, left, mode, cval, channels, ph, pw, sh, sw, scratch, out,
            first_job, last_job):  # pragma: no cover - jitted
    """Images first..last-1 each padded whole into a plane, filtered as one flat row and kept, while in cache.

    Output (y, x) sits at flat position y * sh * pw + x * sw of the plane, so tap (i, j) is the flat offset
    i * pw + j; positions past the valid region compute junk that is never kept. Pass 1 (``offsets1``)
    reads the padded plane; pass 2 (``offsets2``, empty for direct kernels) reads pass 1's result.
    ``scratch`` holds three planes (the caller's thread keeps it: fresh buffers would cost page faults).
    """
    batch, oh, ow = out.shape
    size = ph * pw
    plane, first, second = scratch[:size], scratch[size: 2 * size], scratch[2 * size: 3 * size]
    length1 = ph * pw - offsets1.max()
    length2 = length1 - (offsets2.max() if offsets2.shape[0] else 0)
    kept = uint64(2 * size if offsets2.shape[0] else size)  # where the last pass's result starts in scratch
    flat_out = out.reshape(batch * oh * ow)
    for b in range(first_job, last_job):
        _pad_plane(image, b, top, left, mode, cval, channels, ph, pw, plane)
        for x in range(0, length1, TILE):
            _taps(plane, x, offsets1, weights1, first, x, min(TILE, length1 - x))
        if offsets2.shape[0]:
            for x in range(0, length2, TILE):
                _taps(first, x, offsets2, weights2, second, x, min(TILE, length2 - x))
        for y in range(oh):  # flat unsigned indices: no views, no bounds or sign checks
            source = kept + uint64(y * sh * pw)
            target = uint64((b * oh + y) * ow)
            if sw == 1:
                for x in range(uint64(ow)):
                    flat_out[target + x] = scratch[source + x]
            else:
                for x in range(uint64(ow)):
                    flat_out[target + x] = scratch[source + x * uint64(sw)]


@njit(cache=True, nogil=True)
def _in_place(image, params, out):  # pragma: no cover - jitted
    """Direct correlation at stride 1 of a single-channel (B, H, W) stack, read where it lies.

    ``params`` (float64, every value exact) holds top, left, border code, tap count n, the scratch size,
    the constant border value, then the n tap rows, the n tap columns and the n weights: three arguments,
    because Numba's dispatch costs about 0.2 us per argument (a fifth of a 64x64 call with the eleven
    it would take spelled out); the scratch of the border blocks is allocated here (tens of floats).
    Every image is done whole by :func:`_in_place_rows_of`.
    """
    tap_rows, tap_cols, weights, offsets, top, left, mode, cval = _unpack(params, image.shape[2])
    scratch = np.empty(int(params[4]), dtype=np.float32)
    for b in range(out.shape[0]):  # small images: each inside run whole (in cache anyway)
        _in_place_rows_of(image, b, 0, out.shape[1], tap_rows, tap_cols, weights, offsets, top, left, mode, cval,
                          out.shape[1] * out.shape[2], scratch, out)


@njit(cache=True, nogil=True)
def _in_place_part(image, params, rows, chunk, out, first_job, last_job):  # pragma: no cover - jitted
    """:func:`_in_place` over jobs first..last-1 of (image, block of ``rows`` output rows), for threads
    (``params[4]``: the scratch of a block of ``rows`` rows, :func:`in_place_scratch`); inside runs in ``chunk``s."""
    tap_rows, tap_cols, weights, offsets, top, left, mode, cval = _unpack(params, image.shape[2])
    scratch = np.empty(int(params[4]), dtype=np.float32)
    oh = out.shape[1]
    blocks = (oh + rows - 1) // rows
    for job in range(first_job, last_job):
        y0 = (job % blocks) * rows
        _in_place_rows_of(image, job // blocks, y0, min(oh, y0 + rows), tap_rows, tap_cols, weights, offsets, top,
                          left, mode, cval, chunk, scratch, out)


@njit(cache=True, nogil=True)
def _unpack(params, width):  # pragma: no cover - jitted
    """Taps, flat tap offsets in an image ``width`` wide, top, left, border code and constant from ``params``."""
    count = int(params[3])
    tap_rows, tap_cols = params[6: 6 + count].astype(np.int64), params[6 + count: 6 + 2 * count].astype(np.int64)
    weights = params[6 + 2 * count: 6 + 3 * count].astype(np.float32)
    offsets = np.empty_like(tap_rows)  # a loop: one allocation (a small image's call is a few microseconds)
    for t in range(count):
        offsets[t] = tap_rows[t] * width + tap_cols[t]
    return tap_rows, tap_cols, weights, offsets, int(params[0]), int(params[1]), int(params[2]), np.float32(params[5])


@njit(cache=True, nogil=True)
def _in_place_rows_of(image, b, y0, y1, tap_rows, tap_cols, weights, offsets, top, left, mode, cval, chunk, scratch,
                      out):  # pragma: no cover - jitted
    """Output rows y0..y1-1 of image ``b``, read where it lies.

    Outputs whose taps all fall inside the image are one flat pass over the image itself, in chunks
    of ``chunk`` outputs (each chunk takes every group of taps while it is in L1), when output
    and image rows are equally wide ("same" padding: the junk computed where a row's last outputs meet
    the next row's first is overwritten below), else one pass per row. Only the border outputs (rows
    above and below, columns left and right) are computed from small padded blocks in ``scratch``
    (:func:`_block`). No padded copy of the image, no copy of the result: one read, one write.
    """
    batch, oh, ow = out.shape
    height, width = image.shape[1], image.shape[2]
    span_h, span_w = tap_rows.max() + 1, tap_cols.max() + 1
    y_lo = min(top, oh)
    y_hi = max(y_lo, min(oh, height - span_h + top + 1))  # outputs y_lo..y_hi-1, x_lo..x_hi-1 read no padding
    x_lo = min(left, ow)
    x_hi = max(x_lo, min(ow, width - span_w + left + 1))
    a, z = max(y0, y_lo), min(y1, y_hi)  # the rows of this range that have inside outputs
    flat_out = out.reshape(batch * oh * ow)
    source = image[b].reshape(height * width)
    base = b * oh * ow
    if z > a and x_hi > x_lo:
        if ow == width:  # rows a..z-1 as one run; image index = output index - top * width - left
            first, last = a * ow + x_lo, (z - 1) * ow + x_hi
            for start in range(first, last, chunk):
                _taps(source, start - top * width - left, offsets, weights, flat_out, base + start,
                      min(chunk, last - start))
        else:
            for y in range(a, z):
                _taps(source, (y - top) * width + x_lo - left, offsets, weights, flat_out,
                      base + y * ow + x_lo, x_hi - x_lo)
    _block(image, b, y0, min(y1, y_lo), 0, ow, tap_rows, tap_cols, weights, top, left, mode, cval, scratch, out)
    _block(image, b, max(y0, y_hi), y1, 0, ow, tap_rows, tap_cols, weights, top, left, mode, cval, scratch, out)
    _block(image, b, a, z, 0, x_lo, tap_rows, tap_cols, weights, top, left, mode, cval, scratch, out)
    _block(image, b, a, z, x_hi, ow, tap_rows, tap_cols, weights, top, left, mode, cval, scratch, out)


@njit(cache=True, nogil=True)
def _block(image, b, y0, y1, x0, x1, tap_rows, tap_cols, weights, top, left, mode, cval, scratch,
           out):  # pragma: no cover - jitted
    """Outputs y0..y1-1, x0..x1-1 of image ``b`` (stride 1): the padded block they read, padded into
    ``scratch`` and filtered as one flat row (as :func:`_planes` does a whole plane)."""
    if y1 <= y0 or x1 <= x0:
        return
    span_h, span_w = tap_rows.max() + 1, tap_cols.max() + 1
    bh, bw = y1 - y0 + span_h - 1, x1 - x0 + span_w - 1
    plane, result = scratch[: bh * bw], scratch[bh * bw: 2 * bh * bw]
    height, width = image.shape[1], image.shape[2]
    columns = np.empty(bw, dtype=np.int64)  # the image column of each padded column, -1 = constant
    for c in range(bw):
        columns[c] = _source_index(x0 + c - left, width, mode)
    for r in range(bh):
        row = _source_index(y0 + r - top, height, mode)
        for c in range(bw):
            plane[r * bw + c] = cval if row < 0 or columns[c] < 0 else image[b, row, columns[c]]
    offsets = np.empty_like(tap_rows)
    for t in range(offsets.shape[0]):
        offsets[t] = tap_rows[t] * bw + tap_cols[t]
    _taps(plane, 0, offsets, weights, result, 0, (y1 - y0 - 1) * bw + x1 - x0)
    for y in range(y1 - y0):
        for x in range(x1 - x0):
            out[b, y0 + y, x0 + x] = result[y * bw + x]


def in_place_scratch(image_hw: tuple[int, ...], out_hw: tuple[int, int], pads: tuple[int, int, int, int],
                     taps: Taps, block: int | None = None) -> int:
    """Floats of scratch :func:`_in_place` needs: twice its largest padded border block (with ``block``, of a
    block of that many output rows, as in :func:`_in_place_part`)."""
    rows, cols, _ = taps.passes[0]
    span_h, span_w = int(rows.max()) + 1, int(cols.max()) + 1
    (height, width), (oh, ow), top, left = image_hw, out_hw, pads[0], pads[2]
    y_lo, x_lo = min(top, oh), min(left, ow)
    y_hi, x_hi = max(y_lo, min(oh, height - span_h + top + 1)), max(x_lo, min(ow, width - span_w + left + 1))
    side = y_hi - y_lo if block is None else min(block, y_hi - y_lo)
    blocks = ((y_lo, ow), (oh - y_hi, ow), (side, x_lo), (side, ow - x_hi))
    return 2 * max([(r + span_h - 1) * (c + span_w - 1) for r, c in blocks if r and c] + [1])


@njit(cache=True, nogil=True)
def _pad_plane(image, b, top, left, mode, cval, channels, ph, pw, plane):  # pragma: no cover - jitted
    """Image ``b`` with its padding, as float32, into ``plane[: ph * pw]`` (row pitch ``pw``).

    One loop per padded row straight from the image (a call per row cost 4.4 of 6.6 us at 64x64).
    """
    height, width = image.shape[1], image.shape[2]
    span = uint64(width)
    for r in range(ph):
        base = uint64(r * pw)
        source = _source_index(r - top, height, mode)
        if source < 0:
            for c in range(uint64(pw)):
                plane[base + c] = cval
            continue
        line = image[b, source]
        for c in range(left):
            s = _column_source(c - left, width, channels, mode)
            plane[base + uint64(c)] = cval if s < 0 else line[s]
        start = base + uint64(left)
        for c in range(span):
            plane[start + c] = line[c]
        for c in range(left + width, pw):
            s = _column_source(c - left, width, channels, mode)
            plane[base + uint64(c)] = cval if s < 0 else line[s]


@njit(cache=True, nogil=True)
def _pool(image, ph, pw, sh, sw, top, left, kind, out, first_job, last_job):  # pragma: no cover - jitted
    """Pool output rows first..last-1 (over the whole stack); cells outside the image never count.

    Row at a time: for each window row and column offset j, one pass over the outputs whose column
    x * sw - left + j lies inside the image; averages divide by the real cells only.
    """
    batch, oh, ow = out.shape
    height, width = image.shape[1], image.shape[2]
    acc = np.empty(ow, dtype=np.float32)
    cells = np.zeros(ow, dtype=np.float32)  # real columns under each window
    for x in range(ow):
        cells[x] = min(x * sw - left + pw, width) - max(x * sw - left, 0)
    for job in range(first_job, last_job):
        b = job // oh
        y = job % oh
        ya = max(y * sh - top, 0)
        yb = min(y * sh - top + ph, height)
        acc[:] = -np.inf if kind == _POOL_MAX else 0.0
        for i in range(ya, yb):
            line = image[b, i]
            for j in range(pw):
                shift = j - left
                x_lo = max(0, (-shift + sw - 1) // sw)
                x_hi = min(ow, (width - 1 - shift) // sw + 1)
                if kind == _POOL_MAX:
                    for x in range(x_lo, x_hi):
                        acc[x] = max(acc[x], np.float32(line[x * sw + shift]))
                elif kind == _POOL_AVG:
                    for x in range(x_lo, x_hi):
                        acc[x] += np.float32(line[x * sw + shift])
                else:
                    for x in range(x_lo, x_hi):
                        v = np.float32(line[x * sw + shift])
                        acc[x] += v * v
        if kind == _POOL_AVG:
            rows = max(yb - ya, 1)
            for x in range(ow):
                acc[x] /= rows * max(cells[x], 1.0)
        elif kind == _POOL_L2:
            for x in range(ow):
                acc[x] = np.sqrt(acc[x])
        out[b, y, :] = acc


@dataclass(frozen=True)
class Taps:
    """A kernel made ready for the Numba kernels (worked out once per kernel and geometry, see ``conv``'s plans).

    ``passes`` are one (direct) or two (separable: row, then column) lists of non-zero taps, as dilated
    (rows, columns) positions and float32 weights. ``folded`` is the direct kernel with mirrored rows
    summed first (:func:`_fold_taps`), or None.
    """

    passes: tuple[tuple[np.ndarray, np.ndarray, np.ndarray], ...]
    folded: tuple | None = None

    @property
    def count(self) -> int:
        return sum(weights.size for _, _, weights in self.passes)


def direct_taps(kernel: np.ndarray, dilation: tuple[int, int], stride: tuple[int, int]) -> Taps:
    """Non-zero taps of a direct kernel (and its folded form where that pays, at horizontal stride 1)."""
    rows_idx, cols_idx = np.nonzero(kernel)
    weights = kernel[rows_idx, cols_idx].astype(np.float32)
    taps = ((rows_idx * dilation[0]).astype(np.int64), (cols_idx * dilation[1]).astype(np.int64), weights)
    return Taps((taps,), _fold_taps(kernel, dilation) if stride[1] == 1 and weights.size else None)


def separable_taps(col: np.ndarray, row: np.ndarray, dilation: tuple[int, int]) -> Taps:
    """Non-zero taps of ``outer(col, row)``'s two 1D passes: along the rows first, then down the columns."""
    (v_idx,), (h_idx,) = np.nonzero(col), np.nonzero(row)
    h_taps = (np.zeros(h_idx.size, np.int64), (h_idx * dilation[1]).astype(np.int64), row[h_idx].astype(np.float32))
    v_taps = ((v_idx * dilation[0]).astype(np.int64), np.zeros(v_idx.size, np.int64), col[v_idx].astype(np.float32))
    return Taps((h_taps, v_taps))


def correlate_direct(image: np.ndarray, kernel: np.ndarray, stride: tuple[int, int], pads: tuple[int, int, int, int],
                     border: str, cval: float, dilation: tuple[int, int], out: np.ndarray) -> None:
    """Direct correlation of a (B, H, W) uint8 or float32 stack into the (B, OH, OW) float32 ``out``."""
    run(direct_taps(kernel, dilation, stride), image, stride, pads, border, cval, out)


def correlate_separable(image: np.ndarray, col: np.ndarray, row: np.ndarray, stride: tuple[int, int],
                        pads: tuple[int, int, int, int], border: str, cval: float, dilation: tuple[int, int],
                        out: np.ndarray) -> None:
    """Correlation with the rank-1 kernel ``outer(col, row)`` as two 1D passes (zero taps skipped)."""
    run(separable_taps(col, row, dilation), image, stride, pads, border, cval, out)


def run(taps: Taps, image: np.ndarray, stride: tuple[int, int], pads: tuple[int, int, int, int], border: str,
        cval: float, out: np.ndarray) -> None:
    """Correlate a (B, H, W) uint8 or float32 stack with prepared ``taps`` into the (B, OH, OW) float32 ``out``."""
    prepare(taps, image.shape[1:], stride, pads, border, cval)(image, out)


def prepare(taps: Taps, image_hw: tuple[int, ...], stride: tuple[int, int], pads: tuple[int, int, int, int],
            border: str, cval: float, channels: int = 1) -> Callable[[np.ndarray, np.ndarray], None]:
    """The call ``(stack, out)`` that correlates (B, H, W) stacks of this plane size with ``taps``.

    With ``channels`` > 1 (horizontal stride 1 only) the stack is (B, H, W * channels), interleaved
    H,W,C images read as they are, and ``out`` is (B, OH, OW * channels): each row is one long row
    whose horizontal taps step ``channels`` samples, so no channel is ever copied out.

    Everything that depends only on the plane size is worked out here, once. Small planes (up to
    ``FLAT_PIXELS`` padded pixels) are padded whole and filtered in cache, one image per job; larger
    ones keep a ring of padded rows per block of output rows. Which of the two, and the thread split,
    are decided at each call from the module's settings (cheap integer tests).
    """
    if taps.count == 0 or any(weights.size == 0 for _, _, weights in taps.passes):
        return _zero
    if channels > 1:
        if stride[1] != 1:  # pragma: no cover - conv only sends interleaved images at horizontal stride 1
            raise ValueError("interleaved channels need horizontal stride 1")
        taps = _interleaved(taps, channels)
        image_hw = (image_hw[0], image_hw[1] * channels)
        pads = (pads[0], pads[1], pads[2] * channels, pads[3] * channels)
    mode, cval32 = BORDER_CODES[border], np.float32(cval)
    ph, pw = image_hw[0] + pads[0] + pads[1], image_hw[1] + pads[2] + pads[3]
    flat = [rows * pw + cols for rows, cols, _ in taps.passes]
    second = (flat[1], taps.passes[1][2]) if len(flat) == 2 else (_NO_TAPS, _NO_WEIGHTS)
    planes = (flat[0], taps.passes[0][2], *second, pads[0], pads[2], mode, cval32, channels, ph, pw, stride[0],
              stride[1])
    geometry = (stride[0], stride[1], pads[0], pads[2], mode, cval32, channels)

    plane_work, scratch_size = ph * pw * taps.count, 3 * ph * pw

    def correlate(image: np.ndarray, out: np.ndarray) -> None:
        if ph * pw > FLAT_PIXELS:
            _rows(taps, image, geometry, out)
        elif image.shape[0] == 1 or image.shape[0] * plane_work < SERIAL_WORK or THREADS == 1:
            # the lean path of small images: straight to the jitted kernel on this thread
            scratch = _scratch_buffer(0, scratch_size)
            if _probes[0] and _recorded(_planes, (image, *planes, scratch, out, 0, image.shape[0])):
                return
            _planes(image, *planes, scratch, out, 0, image.shape[0])  # type: ignore[call-arg]
        else:
            _run(_planes_part, image.shape[0], image.shape[0] * plane_work, image, *planes, out)

    if len(taps.passes) == 1 and channels == 1 and stride == (1, 1) and IN_PLACE:
        rows, cols, weights = taps.passes[0]
        out_hw = (ph - int(taps.passes[0][0].max()), pw - int(taps.passes[0][1].max()))
        params = np.concatenate([[pads[0], pads[2], mode, weights.size, in_place_scratch(image_hw, out_hw, pads, taps),
                                  cval32], rows, cols, weights]).astype(np.float64)

        rows_per_job = block_rows(out_hw[0], 1, int(rows.max()) + 1, THREADS)
        part_params = params.copy()
        part_params[4] = in_place_scratch(image_hw, out_hw, pads, taps, rows_per_job)
        threaded_in_place = weights.size <= IN_PLACE_THREADED_TAPS and ph * pw > FLAT_PIXELS

        def correlate_in_place(image: np.ndarray, out: np.ndarray) -> None:
            work = image.shape[0] * plane_work
            if work >= SERIAL_WORK and threaded_in_place and image.dtype == np.float32:
                jobs = image.shape[0] * -(-out.shape[1] // rows_per_job)
                _run(_in_place_part, jobs, work, image, part_params, rows_per_job, IN_PLACE_CHUNK, out)
                return
            if work >= SERIAL_WORK or (image.shape[0] > 1 and ph * pw < IN_PLACE_STACKED):
                correlate(image, out)  # threads pay (a ring of rows, padded planes), or small planes of a stack
                return
            if _probes[0] and _recorded(_in_place, (image, params, out)):
                return
            _in_place(image, params, out)

        return correlate_in_place

    return correlate


def _interleaved(taps: Taps, channels: int) -> Taps:
    """``taps`` for rows of interleaved pixels: every column offset counts ``channels`` samples per pixel."""
    passes = tuple((rows, cols * channels, weights) for rows, cols, weights in taps.passes)
    folded = None if taps.folded is None else (taps.folded[0], taps.folded[1] * channels, *taps.folded[2:])
    return Taps(passes, folded)


def _zero(image: np.ndarray, out: np.ndarray) -> None:
    out[...] = 0.0


def _rows(taps: Taps, image: np.ndarray, geometry: tuple, out: np.ndarray) -> None:
    """The row-ring kernels (``_separable`` or ``_direct``) over (image, block of output rows) jobs."""
    if len(taps.passes) == 2:
        (_, h_taps, row_w), (v_taps, _, col_w) = taps.passes
        ring = int(v_taps.max()) + 1
        group = COLUMN_GROUP if geometry[0] == 1 and v_taps.size >= GROUP_TAPS and ring == v_taps.size else 1
        strip = column_strip(out.shape[2], ring + group - 1, geometry[1])
        strips = -(-out.shape[2] // strip)
        rows = block_rows(out.shape[1], out.shape[0] * strips, ring, THREADS)
        _run(_separable, out.shape[0] * -(-out.shape[1] // rows) * strips, out.size * taps.count, image, v_taps, col_w,
             h_taps, row_w, *geometry, image.dtype != np.float32 and h_taps.size > CONVERT_FIRST_TAPS, rows,
             strip, group, out)
        return
    tap_rows, tap_cols, weights = taps.passes[0]
    ring, fold_a, fold_b = int(tap_rows.max()) + 1, _NO_TAPS, _NO_TAPS
    if taps.folded is not None:
        tap_rows, tap_cols, weights, fold_a, fold_b, ring = taps.folded
    rows = block_rows(out.shape[1], out.shape[0], ring, THREADS)
    _run(_direct, out.shape[0] * -(-out.shape[1] // rows), out.size * weights.size, image, tap_rows, tap_cols,
         weights, fold_a, fold_b, ring, *geometry, rows, out)


_NO_TAPS, _NO_WEIGHTS = np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32)


def _planes_part(image, offsets1, weights1, offsets2, weights2, top, left, mode, cval, channels, ph, pw, sh, sw, out,
                 first_job, last_job) -> None:
    """``_planes`` on this thread's scratch planes (kept per thread: fresh ones would cost page faults)."""
    scratch = _scratch_buffer(0, 3 * ph * pw)
    _planes(image, offsets1, weights1, offsets2, weights2, top, left, mode, cval, channels, ph, pw, sh, sw, scratch, out,
            first_job, last_job)


def _fold_taps(kernel: np.ndarray, dilation: tuple[int, int]):
    """Taps of a kernel whose rows mirror top to bottom, with mirrored rows added first; None if it does not pay.

    Row i and row kh-1-i share weights, so their padded rows are summed once per tile and the taps of
    row i read the sum: the blob 9x9 drops from 65 taps to 36 plus 4 row sums.
    """
    kh = kernel.shape[0]
    if kh < 3 or not np.array_equal(kernel, kernel[::-1]):
        return None
    ring = (kh - 1) * dilation[0] + 1
    rows, cols, weights = [], [], []
    for i in range((kh + 1) // 2):
        for j in np.flatnonzero(kernel[i]):
            rows.append(ring + i if i < kh // 2 else i * dilation[0])
            cols.append(j * dilation[1])
            weights.append(kernel[i, j])
    folds = kh // 2
    if np.count_nonzero(kernel) - len(weights) <= 2 * folds + 2:
        return None
    fold_a = np.arange(folds, dtype=np.int64) * dilation[0]
    fold_b = (kh - 1 - np.arange(folds, dtype=np.int64)) * dilation[0]
    return (np.array(rows, dtype=np.int64), np.array(cols, dtype=np.int64), np.array(weights, dtype=np.float32),
            fold_a, fold_b, ring)


def pool(image: np.ndarray, size: tuple[int, int], stride: tuple[int, int], pads: tuple[int, int, int, int],
         kind: str, out: np.ndarray) -> None:
    """Pool a (B, H, W) stack into ``out``; padded cells are ignored."""
    _run(_pool, out.shape[0] * out.shape[1], out.size * size[0] * size[1], image, size[0], size[1], stride[0], stride[1], pads[0], pads[2],
         POOL_KINDS[kind], out)


def _scratch_buffer(role: int, size: int) -> np.ndarray:
    """A float32 buffer of ``size`` kept per thread and ``role`` (the flat path's temporaries, never returned).

    Fresh arrays of about 1 MB here cost more in page faults than the filtering: glibc hands the
    freed memory back to the system after each call (256 x 28 x 28 Sobel: 1.4 ms -> 0.3 ms).
    """
    try:
        buffer = _scratch.buffers[role]
    except (AttributeError, KeyError):
        buffer = None
    if buffer is None or buffer.size < size:
        _scratch.__dict__.setdefault("buffers", {})[role] = buffer = np.empty(max(size, 1), dtype=np.float32)
    return buffer if buffer.size == size else buffer[:size]


def kernels_cached(run: Callable[[np.ndarray, np.ndarray], None], stack: np.ndarray, out: np.ndarray) -> bool:
    """Whether every jitted kernel ``run(stack, out)`` (a :func:`prepare`d call) would call is compiled in this
    process or held by Numba's on-disk cache for these argument types; nothing is compiled, loaded or run.

    ``run`` is called with its kernel calls recorded instead of made (only on this thread), then each call's
    signature is looked up. Reads Numba's private cache index (``_index_key``, ``_load_index``); if those ever
    change or fail, the answer is False ("not known to be cached"), never an error.
    """
    _probe.calls = []
    with _probe_lock:
        _probes[0] += 1
    try:
        run(stack, out)
    finally:
        with _probe_lock:
            _probes[0] -= 1
        calls, _probe.calls = _probe.calls, None
    return all(_compiled(*_jitted(function, args)) for function, args in calls)


def _jitted(function: Callable[..., None], args: tuple) -> tuple[Callable[..., None], tuple]:
    """The jitted kernel and its arguments behind a call ``_run`` makes (``_planes_part`` adds the scratch plane)."""
    if function is _planes_part:
        return _planes, args[:-3] + (np.empty(1, dtype=np.float32),) + args[-3:]
    return function, args


def _recorded(function: Callable[..., None], args: tuple) -> bool:
    """Record the kernel call instead of making it, if this thread is in :func:`kernels_cached`."""
    calls = getattr(_probe, "calls", None)
    if calls is None:
        return False
    calls.append((function, args))
    return True


def _compiled(dispatcher, args: tuple) -> bool:
    """Whether the jitted ``dispatcher`` has a compiled or cached version for ``args``' Numba types."""
    from numba import typeof
    from numba.core.typing.typeof import Purpose

    try:
        signature = tuple(typeof(value, Purpose.argument) for value in args)
    except Exception:  # noqa: BLE001 - a value Numba cannot type: its call would fail, not compile
        return False
    return signature in dispatcher.overloads or _on_disk(dispatcher, signature)


def _on_disk(dispatcher, signature: tuple) -> bool:
    """Whether Numba's cache index for ``dispatcher`` (fresh for its source file) lists ``signature`` for this
    machine and this version of the function's code."""
    try:
        cache = dispatcher._cache  # FunctionCache: the index maps (signature, target, code hash) to data files
        return cache._index_key(signature, dispatcher.targetctx.codegen()) in cache._cache_file._load_index()
    except Exception:  # noqa: BLE001 - a Numba without these private pieces: not known to be cached
        return False
