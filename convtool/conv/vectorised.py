"""Plain-NumPy correlation in float32: one strided multiply-add over the whole stack per non-zero tap.

No JIT: for a small image in a fresh process this finishes before Numba would even load (about 1 s of
imports and cache loading), so ``auto`` uses it while Numba is not loaded and the work is small.
"""

from __future__ import annotations

import numpy as np

from convtool.conv import reference


def correlate(stack: np.ndarray, kernel: np.ndarray, stride: tuple[int, int], pads: tuple[int, int, int, int],
              border: str, cval: float, dilation: tuple[int, int], out: np.ndarray,
              factors: tuple[np.ndarray, np.ndarray] | None = None) -> None:
    """Correlate a (B, H, W) stack into the (B, OH, OW) float32 ``out``.

    With the rank-1 ``factors`` (column, row) of ``kernel``: a pass along the rows of every padded row,
    then one down the columns (a 3x3 Sobel: 2 + 3 multiply-adds instead of 6).
    """
    padded = reference.pad(stack.astype(np.float32, copy=False), pads, border, cval)
    if factors is None:
        _accumulate(padded, kernel, stride, dilation, out)
        return
    column, row = factors
    horizontal = np.empty(padded.shape[:2] + out.shape[2:], dtype=np.float32)  # (B, padded H, OW)
    _accumulate(padded, row[None, :], (1, stride[1]), (1, dilation[1]), horizontal)
    _accumulate(horizontal, column[:, None], (stride[0], 1), (dilation[0], 1), out)


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
