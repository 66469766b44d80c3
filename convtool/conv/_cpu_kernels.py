"""The Numba CPU kernels behind :mod:`convtool.conv.cpu`: private, unvalidated, called only from there.

Every kernel takes the raw (B, H, W) image stack (uint8 or float32) and the padding
``(top, bottom, left, right)`` with a border code, and writes a preallocated (B, OH, OW) float32
output. Large images get no padded copy: each block of output rows keeps a ring of the padded rows
it needs (converted to float32 on the way, so uint8 costs no separate pass), filters them while they
are in cache and stores each output once. Small planes are padded whole, one image at a time, into a
per-thread scratch plane and filtered as one long flat row while it is in cache (fused pad + filter).

The inner loop sums up to six taps per pass over a contiguous row (one load per tap and one store per
output), so LLVM vectorises it and the output row stays in L1. A horizontal stride is made contiguous by
storing each padded row as ``stride`` phases (columns p, p + s, p + 2s, ...). Each job kernel takes a
range of jobs (``first_job``, ``last_job``) and releases the GIL, so threads can run ranges side by side.

The module settings read here (TILE, RING_SKEW, the pooling codes) are frozen into the compiled code and
Numba's disk cache: settings that tests or callers change are passed as arguments instead.
"""

from __future__ import annotations

import sys

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

from convtool.conv import borders  # noqa: E402

TILE = 1024  # output columns per pass (512 measured 0-15% slower on 1080p and 4096-wide rows)
RING_SKEW = 16  # floats added to each ring row: see _separable
_POOL_MAX, _POOL_AVG, _POOL_L2 = 0, 1, 2
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
    Every image is one job of :func:`_in_place_part`, its inside outputs one run (in cache anyway).
    """
    rows = max(1, out.shape[1])
    _in_place_part(image, params, rows, rows * max(1, out.shape[2]), out, 0, out.shape[0])


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
