"""Plain-NumPy correlation in float32: one strided multiply-add per non-zero tap.

No JIT: for a small image in a fresh process this finishes before Numba would even load (about 1 s of
imports and cache loading), so ``auto`` uses it while Numba is not loaded and the work is small; and it
is what a caller can run while Numba's cache is still empty (compiling the kernels takes seconds).

Rank-1 kernels run in bands of output rows, each band small enough to stay in cache: the band's padded
rows are gathered from the image (converted to float32, no padded copy of the whole stack), the column
pass runs down them, the few padded columns are filled from its result, and the row pass writes the
band's outputs. Taps whose weights mirror (``w[i] == w[k - 1 - i]``, or its negative) are summed or
subtracted first: a 19-tap Gaussian is 10 multiplies per pass instead of 19.
"""

from __future__ import annotations

import numpy as np

from convtool.conv import borders, reference

BAND_SAMPLES = 1 << 17  # samples of a band's column-pass result (512 KB, in L2: 1 << 15-20 measured 1.2-0.35-0.5 s)


def correlate(stack: np.ndarray, kernel: np.ndarray, stride: tuple[int, int], pads: tuple[int, int, int, int],
              border: str, cval: float, dilation: tuple[int, int], out: np.ndarray,
              factors: tuple[np.ndarray, np.ndarray] | None = None, channels: int = 1) -> None:
    """Correlate a (B, H, W) stack into the (B, OH, OW) float32 ``out``.

    With the rank-1 ``factors`` (column, row) of ``kernel``: bands of a pass down the columns then one
    along the rows (:func:`correlate_separable`). ``channels`` > 1 (rank 1, horizontal stride 1 only):
    the stack is (B, H, W * C) of interleaved pixels and ``out`` (B, OH, OW * C).
    """
    if factors is not None:
        correlate_separable(stack, factors[0], factors[1], stride, pads, border, cval, dilation, out, channels)
        return
    padded = reference.pad(stack.astype(np.float32, copy=False), pads, border, cval)
    _accumulate(padded, kernel, stride, dilation, out)


def correlate_separable(stack: np.ndarray, column: np.ndarray, row: np.ndarray, stride: tuple[int, int],
                        pads: tuple[int, int, int, int], border: str, cval: float, dilation: tuple[int, int],
                        out: np.ndarray, channels: int = 1) -> None:
    """Correlation with ``outer(column, row)``: per band of output rows, the column pass, then the row pass."""
    (sh, sw), (dh, dw), (top, _, left, _) = stride, dilation, pads
    batch, height, samples = stack.shape
    width = samples // channels
    oh, ow = out.shape[1], out.shape[2] // channels
    mode = borders.CODES[border]
    cval32 = np.float32(0.0 if border == "zero" else cval)
    span_h = (column.size - 1) * dh + 1
    span_w = (row.size - 1) * dw + 1
    pitch = ((ow - 1) * sw + span_w) * channels  # padded samples of a row the row pass reads
    column_taps, row_taps = _paired(column, dh), _paired(row, dw * channels)
    # padded samples of a row: where each comes from (-1: the constant); interleaved pixels keep their channel
    pixels = np.array([borders.source_index(c - left, width, mode) for c in range(pitch // channels)], dtype=np.int64)
    source = np.repeat(pixels * channels, channels) + np.tile(np.arange(channels), pitch // channels)
    source[np.repeat(pixels < 0, channels)] = -1
    start = left * channels  # the column pass writes the image's samples 0 .. inside - 1 from here on
    positions = np.arange(pitch)
    inside = max(0, min(left + width, pitch // channels) * channels - start)
    edges = np.flatnonzero((positions < start) | (positions >= start + inside))
    inside = max(inside, int(source[edges].max(initial=-1)) + 1)  # wrap may read beyond what the outputs need
    edges = np.flatnonzero((positions < start) | (positions >= start + inside))
    constant_edges, mirrored_edges = edges[source[edges] < 0], edges[source[edges] >= 0]
    mirrored_from = source[mirrored_edges] + start
    edge_value = np.float32(cval32 * np.float32(column.astype(np.float32).sum()))
    rows_per_band = max(1, min(oh, BAND_SAMPLES // max(pitch, 1)))
    buffer_width = max(pitch, start + inside)
    for b in range(batch):
        for y0 in range(0, oh, rows_per_band):
            n = min(rows_per_band, oh - y0)
            band = _band_rows(stack[b], y0 * sh - top, (n - 1) * sh + span_h, mode, cval32, inside)
            vertical = np.empty((n, buffer_width), dtype=np.float32)
            _pass(band, column_taps, sh, n, vertical[:, start: start + inside], rows=True)
            if constant_edges.size:
                vertical[:, constant_edges] = edge_value
            if mirrored_edges.size:
                vertical[:, mirrored_edges] = vertical[:, mirrored_from]
            target = out[b, y0: y0 + n]
            _pass(vertical, row_taps, sw * channels, target.shape[1], target, rows=False, channels=channels)


def _paired(weights: np.ndarray, step: int) -> list[tuple[int, int, int, np.float32]]:
    """The non-zero taps of a 1-D pass as (offset, mirrored offset or -1, sign, weight): taps whose weights
    mirror (w[i] == +-w[k-1-i]) share one multiply."""
    weights = weights.astype(np.float32)
    k = weights.size
    taps = []
    for i in range((k + 1) // 2):
        j = k - 1 - i
        if weights[i] == 0 and weights[j] == 0:
            continue
        if j == i:
            taps.append((i * step, -1, 0, weights[i]))
        elif weights[j] == weights[i]:
            taps.append((i * step, j * step, 1, weights[i]))
        elif weights[j] == -weights[i]:
            taps.append((i * step, j * step, -1, weights[i]))
        else:
            taps.extend((t * step, -1, 0, weights[t]) for t in (i, j) if weights[t] != 0)
    return taps


def _band_rows(plane: np.ndarray, first: int, count: int, mode: int, cval: np.float32, samples: int) -> np.ndarray:
    """Padded rows ``first .. first + count - 1`` of ``plane`` (its first ``samples`` samples) as float32."""
    height = plane.shape[0]
    if first >= 0 and first + count <= height:
        return plane[first: first + count, :samples].astype(np.float32)
    rows = np.array([borders.source_index(r, height, mode) for r in range(first, first + count)], dtype=np.int64)
    band = plane[np.maximum(rows, 0), :samples].astype(np.float32)
    band[rows < 0] = cval
    return band


def _pass(source: np.ndarray, taps: list[tuple[int, int, int, np.float32]], step: int, count: int,
          target: np.ndarray, *, rows: bool, channels: int = 1) -> None:
    """target = the taps' weighted sum of windows of ``source``: ``count`` rows (``rows``) or output samples
    apart by ``step``; mirrored pairs summed (or subtracted) before their one multiply."""
    size = target.shape[1] if rows else target.shape[1] // channels

    def window(offset: int) -> np.ndarray:
        if rows:
            return source[offset: offset + (count - 1) * step + 1: step, :target.shape[1]]
        if channels == 1:
            return source[:, offset: offset + (size - 1) * step + 1: step]
        return source[:, offset: offset + size * channels]

    if not taps:
        target[...] = 0.0
    scratch = np.empty(target.shape, dtype=np.float32) if len(taps) > 1 else target
    for k, (offset, mirror, sign, weight) in enumerate(taps):
        into = target if k == 0 else scratch
        if mirror < 0:
            np.multiply(window(offset), weight, out=into)
        else:
            (np.add if sign > 0 else np.subtract)(window(offset), window(mirror), out=into)
            into *= weight
        if k:
            target += scratch


def _accumulate(padded: np.ndarray, kernel: np.ndarray, stride: tuple[int, int], dilation: tuple[int, int],
                out: np.ndarray) -> None:
    """out = sum over the non-zero taps of weight * the strided window of ``padded`` it reads."""
    (sh, sw), (dh, dw) = stride, dilation
    oh, ow = out.shape[1:]
    out[...] = 0.0
    scratch = np.empty_like(out)
    for i, j in zip(*np.nonzero(kernel), strict=True):
        window = padded[:, i * dh: i * dh + (oh - 1) * sh + 1: sh, j * dw: j * dw + (ow - 1) * sw + 1: sw]
        np.multiply(window, np.float32(kernel[i, j]), out=scratch)
        out += scratch


def pool(stack: np.ndarray, size: tuple[int, int], stride: tuple[int, int], pads: tuple[int, int, int, int],
         kind: str, out: np.ndarray) -> None:
    """Pool a (B, H, W) stack into ``out``; padded cells are ignored."""
    out[...] = reference.pool2d(stack, size, stride, pads, kind)
