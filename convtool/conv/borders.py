"""Border lookup shared by the CPU and CUDA kernels (plain Python: each back-end compiles it for itself).

Border codes follow numpy.pad's modes: 0 constant (zero or cval), 1 reflect (mirror without the edge
pixel), 2 symmetric (mirror with it), 3 edge (replicate), 4 wrap.
"""

from __future__ import annotations

CONSTANT, REFLECT, SYMMETRIC, REPLICATE, WRAP = 0, 1, 2, 3, 4  # module ints: the kernels compile them as constants
CODES = {"zero": CONSTANT, "constant": CONSTANT, "reflect": REFLECT, "symmetric": SYMMETRIC, "replicate": REPLICATE,
         "wrap": WRAP}


def source_index(t, n, mode):
    """Index into an axis of length ``n`` for padded position ``t`` (may be outside), -1 = constant."""
    if 0 <= t < n:
        return t
    if mode == CONSTANT:
        return -1
    if mode == REPLICATE:
        return 0 if t < 0 else n - 1
    if mode == WRAP:
        return t % n
    if mode == REFLECT:  # reflect without repeating the edge: period 2n - 2
        if n == 1:
            return 0
        period = 2 * n - 2
        t = t % period
        return t if t < n else period - t
    period = 2 * n  # symmetric: the edge pixel repeats
    t = t % period
    return t if t < n else period - 1 - t
