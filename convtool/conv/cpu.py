"""Numba CPU kernels. Private and unvalidated: call them through ``convtool.conv``.

All take a padded float32 stack (B, H, W) and write into a preallocated (B, OH, OW) output.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

_POOL_MAX, _POOL_AVG, _POOL_L2 = 0, 1, 2
POOL_KINDS = {"max": _POOL_MAX, "avg": _POOL_AVG, "l2": _POOL_L2}


@njit(parallel=True, cache=True, fastmath=False)
def _correlate_direct(padded, kernel, sh, sw, dh, dw, out):  # pragma: no cover - jitted
    batch, oh, ow = out.shape
    kh, kw = kernel.shape
    for row in prange(batch * oh):
        b = row // oh
        y = row % oh
        acc = np.zeros(ow, dtype=np.float32)
        for i in range(kh):
            src = padded[b, y * sh + i * dh]
            for j in range(kw):
                weight = kernel[i, j]
                if weight == 0.0:
                    continue
                offset = j * dw
                for x in range(ow):
                    acc[x] += weight * src[offset + x * sw]
        out[b, y, :] = acc


@njit(parallel=True, cache=True)
def _pool(padded, ph, pw, sh, sw, kind, out):  # pragma: no cover - jitted
    """Pool a stack whose padded cells are NaN (ignored, never counted)."""
    batch, oh, ow = out.shape
    for row in prange(batch * oh):
        b = row // oh
        y = row % oh
        for x in range(ow):
            best = -np.inf
            total = 0.0
            count = 0
            for i in range(ph):
                for j in range(pw):
                    v = padded[b, y * sh + i, x * sw + j]
                    if np.isnan(v):
                        continue
                    count += 1
                    if kind == 0:
                        best = max(best, v)
                    elif kind == 1:
                        total += v
                    else:
                        total += v * v
            if kind == 0:
                out[b, y, x] = best
            elif kind == 1:
                out[b, y, x] = total / max(count, 1)
            else:
                out[b, y, x] = np.sqrt(total)


def correlate_direct(padded: np.ndarray, kernel: np.ndarray, stride: tuple[int, int],
                     dilation: tuple[int, int], out: np.ndarray) -> None:
    """Direct correlation of a padded (B, H, W) float32 stack into ``out``."""
    _correlate_direct(padded, kernel, stride[0], stride[1], dilation[0], dilation[1], out)


def pool(padded: np.ndarray, size: tuple[int, int], stride: tuple[int, int], kind: str, out: np.ndarray) -> None:
    """Pool a NaN-padded (B, H, W) float32 stack into ``out``."""
    _pool(padded, size[0], size[1], stride[0], stride[1], POOL_KINDS[kind], out)
