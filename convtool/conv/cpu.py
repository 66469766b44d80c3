"""The CPU back-end: which Numba kernel runs a plan, on how many threads. Private and unvalidated: call
it through ``convtool.conv``.

The jitted kernels live in :mod:`convtool.conv._cpu_kernels`; this module holds the settings the plans
are made from, turns taps into a kernel's arguments (:func:`prepare`), hands ranges of jobs to a small
thread pool (:func:`_run`: the kernels release the GIL; cheaper to compile than ``parallel=True`` and free
of OpenMP's start-up stalls) and answers whether a call would compile (:func:`kernels_cached`).

Large images get no padded copy: each block of output rows keeps a ring of the padded rows it needs.
Small planes (up to ``FLAT_PIXELS`` padded pixels, e.g. a stack of 28x28 digits or a 256x256 tile) are
padded whole, one image at a time, into a per-thread scratch plane and filtered as one flat row, because
per-row overheads would outweigh rows that short.
"""

from __future__ import annotations

import itertools
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Callable

import numpy as np

from convtool import conv
from convtool.conv import borders
from convtool.conv._cpu_kernels import (
    _POOL_AVG,
    _POOL_L2,
    _POOL_MAX,
    TILE,
    _direct,
    _in_place,
    _in_place_part,
    _planes,
    _pool,
    _separable,
)

BORDER_CODES = borders.CODES  # border code for each convtool border name (numpy.pad semantics)
POOL_KINDS = {"max": _POOL_MAX, "avg": _POOL_AVG, "l2": _POOL_L2}
JOBS_PER_THREAD = 4  # ranges handed out per thread, so a busy core does not hold the others up
# Up to this many jobs per thread each job is a part of its own: parts of 2 and 3 jobs left one thread alone with
# the last part (1080p RGB Gaussian 31x31, 18 jobs in 8 parts: 4 ms of 19 with one thread idle; one job per
# part: 17.2 ms, OpenCV 16.2 in the same rounds), from SINGLE_JOBS_WORK multiply-adds (1080p RGB Sobel, 16 jobs:
# two halves 3.66-3.84 ms, one job at a time 3.56-3.57, medians of 51 interleaved, two runs)
SINGLE_JOBS_PER_THREAD = 16
SINGLE_JOBS_WORK = 16 * conv.SERIAL_WORK
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
