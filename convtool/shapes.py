"""Convolution arithmetic on plain integers: output sizes, padding and its split.

Pure Python, no numpy: ``convtool calc`` and the filter core share these rules.
Conventions: ``n`` input size, ``k`` kernel size, ``s`` stride, ``d`` dilation, padding as
``(before, after)``. The dilated kernel spans ``(k - 1) * d + 1`` inputs.
"""

from __future__ import annotations

import math

from convtool.errors import ShapeError


def effective_kernel(k: int, d: int = 1) -> int:
    """Span of a kernel of size ``k`` dilated by ``d``: ``(k - 1) d + 1``."""
    return (k - 1) * d + 1


def check_positive(name: str, value: int) -> None:
    """Raise ShapeError unless ``value`` is a positive integer (stride, dilation, sizes)."""
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        raise ShapeError(f"{name} must be a positive integer, got {value!r}")


def same_padding(n: int, k: int, s: int = 1, d: int = 1) -> tuple[int, int]:
    """TensorFlow's "same" padding: total ``max(s(ceil(n/s)-1) + (k-1)d + 1 - n, 0)``, extra after."""
    total = max(s * (math.ceil(n / s) - 1) + effective_kernel(k, d) - n, 0)
    return total // 2, total - total // 2


def full_padding(k: int, d: int = 1) -> tuple[int, int]:
    """"Full" padding: every position where the kernel touches at least one input."""
    span = effective_kernel(k, d) - 1
    return span, span


def resolve_padding(mode: str | int | tuple[int, int], n: int, k: int, s: int = 1, d: int = 1) -> tuple[int, int]:
    """Padding ``(before, after)`` for ``mode``: 'valid', 'same', 'full', an int, or a pair."""
    if mode == "valid":
        return 0, 0
    if mode == "same":
        return same_padding(n, k, s, d)
    if mode == "full":
        return full_padding(k, d)
    if isinstance(mode, int) and not isinstance(mode, bool):
        pair = (mode, mode)
    elif isinstance(mode, tuple) and len(mode) == 2:
        pair = mode
    else:
        raise ShapeError(f"padding must be valid, same, full, N or a (before, after) pair, got {mode!r}")
    if any(not isinstance(p, int) or p < 0 for p in pair):
        raise ShapeError(f"padding must not be negative, got {pair}")
    return pair


def output_size(n: int, k: int, s: int = 1, padding: tuple[int, int] = (0, 0), d: int = 1) -> int:
    """Outputs of a strided, dilated correlation: ``floor((n + p - (k-1)d - 1) / s) + 1``.

    Raises ShapeError when the (dilated) kernel does not fit the padded input.
    """
    for name, value in (("input size", n), ("kernel size", k), ("stride", s), ("dilation", d)):
        check_positive(name, value)
    padded = n + padding[0] + padding[1]
    span = effective_kernel(k, d)
    if span > padded:
        what = f"kernel {k}" if d == 1 else f"kernel {k} dilated by {d} (span {span})"
        raise ShapeError(f"{what} does not fit the padded input {padded}; use --padding same or a smaller kernel")
    return (padded - span) // s + 1


def dropped_inputs(n: int, k: int, s: int = 1, padding: tuple[int, int] = (0, 0), d: int = 1) -> list[int]:
    """1-based input positions no window covers (those past the last window), e.g. n=13,k=6,s=5 -> [12, 13]."""
    out = output_size(n, k, s, padding, d)
    last_covered = (out - 1) * s + effective_kernel(k, d) - padding[0]  # 1-based index of last covered input
    return list(range(max(last_covered, 0) + 1, n + 1))
