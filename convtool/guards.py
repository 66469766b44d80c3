"""Input guards in one place: finite numbers, and the size of the work estimated before any allocation.

A limit is a number of pixels or values; going over it raises :class:`~convtool.errors.ResourceError`
naming the estimate and the limit (the CLI adds the flag that raises it).
"""

from __future__ import annotations

import math

from convtool.errors import ResourceError, UsageError

# Pixels per image plane after padding: 1.5 x Pillow's decompression-bomb limit (a 11,585 x 11,585 plane,
# 512 MiB as float32), so every image convtool opens can be filtered with ordinary padding.
MAX_PIXELS = 2**27
# Values in one batch of model input (1 GiB as float32): 64 RGB images of 1,024 x 1,024 fit.
MAX_INPUT_VALUES = 2**28
# Kernel/stride/padding settings the convolution solver may try (about a second of work).
MAX_SEARCH = 1_000_000
# Taps per side of a generated kernel (a 4,097 x 4,097 kernel is 128 MiB as float64).
MAX_KERNEL_SIZE = 4097


def finite(name: str, value: float) -> float:
    """``value`` as a float if it is a finite number, else UsageError naming ``name``."""
    number = float(value)
    if not math.isfinite(number):
        raise UsageError(f"{name} must be a finite number, got {value!r}")
    return number


def check_pixels(what: str, height: int, width: int, limit: int = MAX_PIXELS) -> None:
    """Refuse a ``height`` x ``width`` plane above ``limit`` pixels before it is allocated."""
    if height * width > limit:
        raise ResourceError(f"{what} would be {height:,} x {width:,} = {height * width:,} pixels, above the "
                            f"limit of {limit:,}", limit="pixels")


def check_values(what: str, shape: tuple[int, ...], limit: int = MAX_INPUT_VALUES) -> None:
    """Refuse an array of ``shape`` holding more than ``limit`` values before it is allocated."""
    count = math.prod(shape)
    if count > limit:
        dims = " x ".join(f"{d:,}" for d in shape)
        raise ResourceError(f"{what} would hold {dims} = {count:,} values, above the limit of {limit:,}",
                            limit="values")


def check_search(what: str, count: int, limit: int = MAX_SEARCH) -> None:
    """Refuse a search over more than ``limit`` candidates before it starts."""
    if count > limit:
        raise ResourceError(f"{what} would try {count:,} settings, above the limit of {limit:,}; "
                            "give more of the settings to narrow it", limit="search")
