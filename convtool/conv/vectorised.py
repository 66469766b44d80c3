"""Plain-NumPy correlation in float32: one strided multiply-add over the whole stack per non-zero tap.

No JIT: for a small image in a fresh process this finishes before Numba would even load (about 1 s of
imports and cache loading), so ``auto`` uses it while Numba is not loaded and the work is small.
"""

from __future__ import annotations

import numpy as np

from convtool.conv import reference


def correlate(stack: np.ndarray, kernel: np.ndarray, stride: tuple[int, int], pads: tuple[int, int, int, int],
              border: str, cval: float, dilation: tuple[int, int], out: np.ndarray) -> None:
    """Correlate a (B, H, W) stack into the (B, OH, OW) float32 ``out``."""
    padded = reference.pad(stack.astype(np.float32, copy=False), pads, border, cval)
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
