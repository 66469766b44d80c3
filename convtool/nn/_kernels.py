"""Private Numba kernels for max-pooling; NumPy paths in layers.py are the oracle.

Serial on purpose: a LeNet-5 pooling pass takes about 0.1 ms, less than waking a second thread costs on a
loaded machine (with ``prange`` the two pooling passes of a step took 6.6 ms there instead of 0.5).
"""

from __future__ import annotations

import numpy as np
from numba import njit


@njit(cache=True, nogil=True)
def _maxpool_forward(x, kh, kw, sh, sw, y, idx):  # pragma: no cover (jitted)
    n, c, h, w = x.shape
    oh, ow = y.shape[2], y.shape[3]
    if kh == 2 and kw == 2 and sh == 2 and sw == 2:  # the common case, unrolled; element indexing only
        for b in range(n):  # (row views would cost reference counts)
            for ch in range(c):
                for oy in range(oh):
                    r0, r1 = 2 * oy, 2 * oy + 1
                    for ox in range(ow):
                        c0, c1 = 2 * ox, 2 * ox + 1
                        best, where = x[b, ch, r0, c0], r0 * w + c0
                        if x[b, ch, r0, c1] > best:
                            best, where = x[b, ch, r0, c1], where + 1
                        if x[b, ch, r1, c0] > best:
                            best, where = x[b, ch, r1, c0], r1 * w + c0
                        if x[b, ch, r1, c1] > best:
                            best, where = x[b, ch, r1, c1], r1 * w + c1
                        y[b, ch, oy, ox] = best
                        idx[b, ch, oy, ox] = where
        return
    for b in range(n):
        for ch in range(c):
            for oy in range(oh):
                for ox in range(ow):
                    best = x[b, ch, oy * sh, ox * sw]
                    where = (oy * sh) * w + ox * sw
                    for i in range(kh):
                        for j in range(kw):
                            v = x[b, ch, oy * sh + i, ox * sw + j]
                            if v > best:
                                best = v
                                where = (oy * sh + i) * w + ox * sw + j
                    y[b, ch, oy, ox] = best
                    idx[b, ch, oy, ox] = where


@njit(cache=True, nogil=True)
def _maxpool_backward(dy, idx, dx):  # pragma: no cover (jitted)
    n, c, oh, ow = dy.shape
    w = dx.shape[3]
    for b in range(n):
        for ch in range(c):
            for oy in range(oh):
                for ox in range(ow):
                    k = idx[b, ch, oy, ox]
                    dx[b, ch, k // w, k % w] += dy[b, ch, oy, ox]


def maxpool_forward(x: np.ndarray, kernel: tuple[int, int], stride: tuple[int, int], out_hw: tuple[int, int]):
    """Window maxima (N,C,OH,OW) and the flat in-plane index of each (the first maximum)."""
    n, c = x.shape[:2]
    y = np.empty((n, c, *out_hw), x.dtype)
    idx = np.empty((n, c, *out_hw), np.int32)
    _maxpool_forward(np.ascontiguousarray(x), kernel[0], kernel[1], stride[0], stride[1], y, idx)
    return y, idx


def maxpool_backward(dy: np.ndarray, idx: np.ndarray, x_shape: tuple[int, ...]) -> np.ndarray:
    """Route each output gradient to the input pixel that was the window's maximum."""
    dx = np.zeros(x_shape, dy.dtype)
    _maxpool_backward(np.ascontiguousarray(dy), idx, dx)
    return dx
