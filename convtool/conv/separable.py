"""Rank of a kernel and its separable factors: a rank-1 kernel is ``outer(column, row)``.

Sobel is smoothing [1, 2, 1] down the columns times the derivative [1, 0, -1] along the rows;
Gaussians and boxes are rank 1 too, so they run as two 1D passes (k + k taps instead of k * k).
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

RANK_TOLERANCE = 1e-6  # singular values below this fraction of the largest count as zero


def rank(kernel: np.ndarray) -> int:
    """Numerical rank of a 2D kernel (singular values above ``RANK_TOLERANCE`` of the largest)."""
    values = np.linalg.svd(np.asarray(kernel, dtype=np.float64), compute_uv=False)
    if values.size == 0 or values[0] == 0.0:
        return 0
    return int(np.count_nonzero(values > RANK_TOLERANCE * values[0]))


def factors(kernel: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """``(column, row)`` with ``outer(column, row) == kernel``, or None if the kernel is not rank 1.

    The factors come from the row and column through the largest entry, so an integer kernel such as
    Sobel keeps exact integer factors (no SVD rounding).
    """
    kernel = np.ascontiguousarray(kernel, dtype=np.float64)
    found = _factors(kernel.shape, kernel.tobytes())
    return None if found is None else (found[0].copy(), found[1].copy())


@lru_cache(maxsize=64)
def _factors(shape: tuple[int, ...], data: bytes) -> tuple[np.ndarray, np.ndarray] | None:
    """factors() of the kernel held in ``data``, remembered: filters reuse a few kernels many times."""
    kernel = np.frombuffer(data, dtype=np.float64).reshape(shape)
    if rank(kernel) != 1:
        return None
    i, j = np.unravel_index(np.argmax(np.abs(kernel)), kernel.shape)
    row = kernel[i, :].copy()
    column = kernel[:, j] / kernel[i, j]
    scale = np.abs(kernel).max()
    if np.abs(np.outer(column, row) - kernel).max() > RANK_TOLERANCE * scale:
        return None
    return column, row
