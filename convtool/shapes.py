"""Convolution arithmetic on plain integers: output sizes, axes worked out, counts, receptive fields.

Pure Python, no numpy: ``convtool calc``, the nets tables and the filter core share these rules.
Conventions: ``n`` input size, ``k`` kernel size, ``s`` stride, ``d`` dilation, padding of one axis as
``(before, after)``. The dilated kernel spans ``(k - 1) * d + 1`` inputs. Padding modes, pairs and the
parsing of sizes and paddings live in :mod:`convtool.geometry`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

from convtool import guards
from convtool.errors import ShapeError, UsageError
from convtool.geometry import (
    PADDING_MODES,
    Pads,
    Pair,
    axis_padding,
    axis_pairs,
    check_positive,
    effective_kernel,
    same_padding,
)


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
        raise ShapeError(f"{what} does not fit the padded input {padded}; use `padding` same or a smaller kernel")
    return (padded - span) // s + 1


def output_hw(image_hw: Sequence[int], kernel_hw: Sequence[int], stride: Pair = (1, 1), pads: Pads = (0, 0, 0, 0),
              dilation: Pair = (1, 1)) -> tuple[int, int]:
    """(height, width) of a 2-D correlation's output: :func:`output_size` on each axis, ``pads`` as
    ``(top, bottom, left, right)``."""
    rows, cols = axis_pairs(pads)
    return (output_size(image_hw[0], kernel_hw[0], stride[0], rows, dilation[0]),
            output_size(image_hw[1], kernel_hw[1], stride[1], cols, dilation[1]))


# ---------------------------------------------------------------------------------------------
# Beyond one output size: a whole axis worked out, transposed convolution, counts,
# receptive fields and solving for settings. Used by ``convtool calc`` and convtool.nets.
# ---------------------------------------------------------------------------------------------

def transposed_output_size(n: int, k: int, s: int = 1, padding: tuple[int, int] = (0, 0), d: int = 1,
                           output_padding: int = 0) -> int:
    """Outputs of a transposed convolution (PyTorch's rule): ``(n-1)s - p_total + (k-1)d + 1 + output_padding``.

    ``padding`` removes cells from the full output, as ``ConvTranspose2d(padding=...)`` does.
    """
    for name, value in (("input size", n), ("kernel size", k), ("stride", s), ("dilation", d)):
        check_positive(name, value)
    if output_padding < 0 or output_padding >= max(s, d):
        raise ShapeError(f"output padding must be at least 0 and smaller than the stride or dilation, got {output_padding}")
    out = (n - 1) * s - padding[0] - padding[1] + effective_kernel(k, d) + output_padding
    if out <= 0:
        raise ShapeError(f"padding {padding[0]}+{padding[1]} removes every output of the transposed convolution "
                         f"(it would have {out + padding[0] + padding[1]}); use less padding")
    return out


@dataclass(frozen=True)
class Axis:
    """One axis of one convolution or pooling, worked out.

    ``pad`` is ``(before, after)``; ``dropped`` are the 1-based inputs past the last window;
    ``unused`` every input no kernel tap reads (also gaps between windows and dilation holes).
    For a transposed convolution ``pad`` is the cropping of the full output.
    """

    n: int
    k: int
    s: int
    d: int
    pad: tuple[int, int]
    out: int
    mode: str
    transposed: bool = False
    output_padding: int = 0

    @property
    def span(self) -> int:
        return effective_kernel(self.k, self.d)

    @property
    def dropped_range(self) -> tuple[int, int] | None:
        """First and last 1-based dropped input (past the end of the last window), or None."""
        if self.transposed:
            return None
        first = max((self.out - 1) * self.s + self.span - self.pad[0], 0) + 1
        return (first, self.n) if first <= self.n else None

    @property
    def dropped(self) -> list[int]:
        """The dropped inputs as a list (use ``dropped_range`` for very long inputs)."""
        span = self.dropped_range
        return list(range(span[0], span[1] + 1)) if span else []

    @property
    def unused(self) -> list[int] | None:
        """Every input no tap reads, 1-based; None when ``n`` exceeds ``UNUSED_LIMIT`` (too long to list)."""
        if self.transposed:
            return []
        if self.n > UNUSED_LIMIT:
            return None
        read = bytearray(self.n)
        for w in range(self.out):
            for t in range(self.k):
                i = w * self.s + t * self.d - self.pad[0]
                if 0 <= i < self.n:
                    read[i] = 1
        return [i + 1 for i in range(self.n) if not read[i]]

    @property
    def receptive_field(self) -> int:
        """Inputs one output depends on: the dilated span, or for a transposed conv the most taps landing on
        one output (taps whose offsets agree modulo the stride)."""
        if not self.transposed:
            return self.span
        counts: dict[int, int] = {}
        for t in range(self.k):
            counts[t * self.d % self.s] = counts.get(t * self.d % self.s, 0) + 1
        return max(counts.values())


UNUSED_LIMIT = 100_000


def conv_axis(n: int, k: int, s: int = 1, padding: str | int | tuple[int, int] = "valid", d: int = 1) -> Axis:
    """Work out one axis of a correlation: padding split, output size (ShapeError if the kernel does not fit)."""
    for name, value in (("input size", n), ("kernel size", k), ("stride", s), ("dilation", d)):
        check_positive(name, value)
    pad = axis_padding(padding, n, k, s, d)
    mode = padding if isinstance(padding, str) else "explicit"
    return Axis(n, k, s, d, pad, output_size(n, k, s, pad, d), mode)


def transposed_axis(n: int, k: int, s: int = 1, padding: str | int | tuple[int, int] = "valid", d: int = 1,
                    output_padding: int = 0) -> Axis:
    """One axis of a transposed convolution. 'same' gives ``n * s`` outputs (TensorFlow's rule)."""
    for name, value in (("input size", n), ("kernel size", k), ("stride", s), ("dilation", d)):
        check_positive(name, value)
    if padding == "full":
        raise UsageError("padding 'full' has no meaning for a transposed convolution; use valid, same or N")
    if padding == "same":
        total = effective_kernel(k, d) - s
        if total < 0:  # the kernel is shorter than the stride: PyTorch needs output_padding instead
            output_padding, total = -total, 0
        pad = (total // 2, total - total // 2)
    else:
        pad = axis_padding(padding, n, k, s, d)
    mode = padding if isinstance(padding, str) else "explicit"
    out = transposed_output_size(n, k, s, pad, d, output_padding)
    return Axis(n, k, s, d, pad, out, mode, transposed=True, output_padding=output_padding)


def pool_axis(n: int, size: int, stride: int | None = None, padding: str | int | tuple[int, int] = "valid") -> Axis:
    """One axis of a pooling window of ``size`` (stride defaults to the size)."""
    return conv_axis(n, size, size if stride is None else stride, padding, 1)


def symmetric_alternatives(axis: Axis) -> list[tuple[int, int]]:
    """For an asymmetric split, the symmetric paddings ``p`` (each side) and their output sizes.

    Returns ``[(p, out), ...]`` for ``p = floor(total/2)`` and ``ceil(total/2)``.
    """
    total = axis.pad[0] + axis.pad[1]
    results = []
    for p in sorted({total // 2, (total + 1) // 2}):
        try:
            results.append((p, output_size(axis.n, axis.k, axis.s, (p, p), axis.d)))
        except ShapeError:
            results.append((p, 0))
    return results


def receptive_field(layers: list[tuple[int, int, int]]) -> tuple[int, int]:
    """Receptive field and jump (input cells between neighbouring outputs) of a stack of ``(k, s, d)`` layers.

    ``r_out = r_in + (k-1) d j_in`` and ``j_out = j_in s``, starting from ``r = j = 1``.
    """
    r, j = 1, 1
    for k, s, d in layers:
        r += (effective_kernel(k, d) - 1) * j
        j *= s
    return r, j


def conv_weights(cin: int, cout: int, kernel: tuple[int, ...], groups: int = 1) -> int:
    """Weights of a convolution (no biases): ``cout * cin/groups * prod(kernel)``."""
    check_positive("groups", groups)
    if cin % groups or cout % groups:
        raise ShapeError(f"groups {groups} must divide both the input channels {cin} and the output channels {cout}")
    return cout * (cin // groups) * math.prod(kernel)


def conv_macs(out_units: int, cin: int, kernel: tuple[int, ...], groups: int = 1) -> int:
    """Multiply-accumulates of a convolution: every output unit reads ``cin/groups * prod(kernel)`` inputs."""
    return out_units * (cin // groups) * math.prod(kernel)


@dataclass(frozen=True)
class MatrixView:
    """A single-channel correlation as a matrix product ``y = M x`` (the lecture's comparison)."""

    kernel_floats: int  # what the convolution stores
    dense_floats: int  # a dense M: (output units) x (input units)
    sparse_floats: int  # non-zeros of M: one per tap and output
    muls: int
    adds: int  # taps - 1 per output (no bias)

    @property
    def float_ops(self) -> int:
        return self.muls + self.adds


def matrix_view(in_units: int, out_units: int, taps: int) -> MatrixView:
    """Stored floats and float operations of a convolution with ``taps`` taps seen as a (sparse) matrix."""
    return MatrixView(taps, in_units * out_units, taps * out_units, taps * out_units, (taps - 1) * out_units)


@dataclass(frozen=True)
class Solution:
    """Settings of one axis that map ``n`` inputs to the wanted number of outputs."""

    k: int
    s: int
    d: int
    pad: tuple[int, int]
    modes: tuple[str, ...]  # which of valid/same/full give exactly this padding
    dropped: int  # inputs past the last window
    symmetric: int | None = None  # the least padding per side that also works (PyTorch's kind), if any


def solve(n: int, out: int, *, k: int | None = None, s: int | None = None, d: int | None = None,
          max_kernel: int = 11, max_search: int = guards.MAX_SEARCH) -> list[Solution]:
    """All (k, s, d) with the smallest padding that gives ``out`` outputs from ``n`` inputs.

    Unknown kernels range over 1..``max_kernel``, unknown strides over 1..n, unknown dilation is 1.
    Padding is split TensorFlow's way (extra after) and never exceeds ``span - 1`` on a side.
    A search over more than ``max_search`` settings is refused before it starts (ResourceError).
    """
    check_positive("input size", n)
    check_positive("wanted output size", out)
    for name, value in (("kernel size", k), ("stride", s), ("dilation", d)):
        if value is not None:
            check_positive(name, value)
    plan = [(kk, dd, _candidate_strides(n, out, effective_kernel(kk, dd), s))
            for kk in ([k] if k else range(1, max_kernel + 1)) for dd in ([d] if d else [1])]
    guards.check_search(f"solving {n} inputs -> {out} outputs", sum(len(strides) for *_, strides in plan), max_search)
    found = []
    for kk, dd, strides in plan:
        span = effective_kernel(kk, dd)
        for ss in strides:
            # out = floor((n + P - span) / s) + 1  <=>  (out-1)s <= n + P - span < out*s
            low = max((out - 1) * ss + span - n, 0)
            if low >= out * ss + span - n or low > 2 * (span - 1):
                continue
            pad = (low // 2, low - low // 2)
            named = {"valid": (0, 0), "same": same_padding(n, kk, ss, dd), "full": (span - 1, span - 1)}
            modes = tuple(m for m in PADDING_MODES if named[m] == pad)
            high = min(out * ss + span - n - 1, 2 * (span - 1))  # the largest total padding that works
            symmetric = (low + 1) // 2 if 2 * ((low + 1) // 2) <= high else None
            dropped = max(n - ((out - 1) * ss + span - pad[0]), 0)
            found.append(Solution(kk, ss, dd, pad, modes, dropped, symmetric))
    return found


def _candidate_strides(n: int, out: int, span: int, s: int | None) -> list[int] | range:
    """The given stride, or the only strides that can give ``out`` windows with 0 <= padding <= 2(span-1)."""
    if s:
        return [s]
    lowest = max(1, (n - span) // out + 1)
    highest = n if out == 1 else min(n, (n + span - 2) // (out - 1))
    return range(lowest, highest + 1)
