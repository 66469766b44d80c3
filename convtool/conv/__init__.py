"""The convolution core: ``correlate2d``, ``convolve2d`` and ``pool2d``.

These wrappers validate their arguments, resolve padding with :mod:`convtool.shapes`, and dispatch to
a back-end: ``"direct"`` (Numba, the default) or ``"reference"`` (plain NumPy, the oracle).
Images are ``(..., H, W)``: any leading axes (channels, images) are filtered independently.

Cross-correlation is what CNN libraries and OpenCV call "convolution"; ``convolve2d`` flips the
kernel first (true convolution).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence, Union

import numpy as np

from convtool import shapes
from convtool.errors import ShapeError, UsageError

Pair = Union[int, Sequence[int]]
Padding = Union[str, int, Sequence[int]]

@dataclass(frozen=True)
class Choice:
    """The back-end and device that will run a correlation, and why (shown by ``--verbose``)."""

    backend: str
    device: str
    reason: str


def choose_backend(image_shape: Sequence[int], kernel: np.ndarray, *, backend: str = "auto",
                   device: str = "auto") -> Choice:
    """Pick the back-end and device for correlating an image of ``image_shape`` with ``kernel``."""
    if backend not in BACKENDS:
        raise UsageError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    if device not in ("auto", "cpu"):
        raise UsageError(f"unknown device {device!r}; choose auto or cpu")
    if backend == "auto":
        return Choice("direct", "cpu", "the only fast back-end so far")
    return Choice(backend, "cpu", "asked for")


BORDERS = ("zero", "constant", "reflect", "symmetric", "replicate", "wrap")
BACKENDS = ("auto", "direct", "reference")
POOL_KINDS = ("max", "avg", "l2")


def correlate2d(image: np.ndarray, kernel: np.ndarray, *, stride: Pair = 1, padding: Padding = "valid",
                border: str = "zero", cval: float = 0.0, dilation: Pair = 1, backend: str = "auto") -> np.ndarray:
    """Cross-correlate the last two axes of ``image`` with a 2D ``kernel``; returns float32.

    Parameters
    ----------
    stride, dilation : int or (int, int)
    padding : {'valid', 'same', 'full'}, int, (vertical, horizontal) or (top, bottom, left, right)
        'same' uses TensorFlow's split: any odd extra row or column goes after.
    border : {'zero', 'constant', 'reflect', 'symmetric', 'replicate', 'wrap'}
        What fills the padding: 0, ``cval``, mirror without / with the edge pixel, the edge pixel,
        or the opposite side. (scipy.ndimage names: constant, constant, mirror, reflect, nearest, wrap.)
    backend : {'auto', 'direct', 'reference'}
    """
    image, kernel = _check_arrays(image, kernel)
    stride_hw, dilation_hw = _pair("stride", stride), _pair("dilation", dilation)
    pads = resolve_padding2d(padding, image.shape[-2:], kernel.shape, stride_hw, dilation_hw)
    for axis in (0, 1):
        shapes.output_size(image.shape[-2 + axis], kernel.shape[axis], stride_hw[axis],
                           pads[2 * axis: 2 * axis + 2], dilation_hw[axis])
    if border not in BORDERS:
        raise UsageError(f"unknown border {border!r}; choose one of {', '.join(BORDERS)}")
    if backend not in BACKENDS:
        raise UsageError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    from convtool.conv import reference

    if backend == "reference":
        return reference.correlate2d(image, kernel, stride_hw, pads, border, cval, dilation_hw)
    from convtool.conv import cpu

    stack = reference.pad(image.reshape((-1,) + image.shape[-2:]), pads, border, cval).astype(np.float32)
    out_hw = tuple((stack.shape[1 + a] - shapes.effective_kernel(kernel.shape[a], dilation_hw[a])) // stride_hw[a] + 1
                   for a in (0, 1))
    out = np.empty((stack.shape[0],) + out_hw, dtype=np.float32)
    cpu.correlate_direct(np.ascontiguousarray(stack), kernel.astype(np.float32), stride_hw, dilation_hw, out)
    return out.reshape(image.shape[:-2] + out_hw)


def convolve2d(image: np.ndarray, kernel: np.ndarray, **options) -> np.ndarray:
    """True convolution: ``correlate2d`` with the kernel flipped in both axes. Same options."""
    kernel = np.asarray(kernel)
    return correlate2d(image, kernel[::-1, ::-1] if kernel.ndim == 2 else kernel, **options)


def pool2d(image: np.ndarray, size: Pair, *, stride: Pair | None = None, kind: str = "max",
           padding: Padding = "valid", backend: str = "auto") -> np.ndarray:
    """Max, average or L2 pooling over windows of ``size`` (stride defaults to the size).

    Padded cells never count: max ignores them and averages divide by the real cells only.
    """
    image = _check_image(image)
    size_hw = _pair("pool size", size)
    stride_hw = size_hw if stride is None else _pair("pool stride", stride)
    if kind not in POOL_KINDS:
        raise UsageError(f"unknown pooling {kind!r}; choose one of {', '.join(POOL_KINDS)}")
    pads = resolve_padding2d(padding, image.shape[-2:], size_hw, stride_hw, (1, 1))
    for axis in (0, 1):
        shapes.output_size(image.shape[-2 + axis], size_hw[axis], stride_hw[axis], pads[2 * axis: 2 * axis + 2])
    from convtool.conv import reference

    if backend == "reference":
        return reference.pool2d(image, size_hw, stride_hw, pads, kind)
    from convtool.conv import cpu

    stack = reference.pad(image.reshape((-1,) + image.shape[-2:]).astype(np.float32), pads, "constant", np.nan)
    out_hw = tuple((stack.shape[1 + a] - size_hw[a]) // stride_hw[a] + 1 for a in (0, 1))
    out = np.empty((stack.shape[0],) + out_hw, dtype=np.float32)
    cpu.pool(np.ascontiguousarray(stack), size_hw, stride_hw, kind, out)
    return out.reshape(image.shape[:-2] + out_hw)


def resolve_padding2d(padding: Padding, image_hw: Sequence[int], kernel_hw: Sequence[int],
                      stride: tuple[int, int], dilation: tuple[int, int]) -> tuple[int, int, int, int]:
    """Padding as ``(top, bottom, left, right)`` from a mode name, an int, a pair or a 4-tuple."""
    if isinstance(padding, str):
        if padding not in ("valid", "same", "full"):
            raise UsageError(f"unknown padding {padding!r}; use valid, same, full, N or T,B,L,R")
        per_axis = [shapes.resolve_padding(padding, image_hw[a], kernel_hw[a], stride[a], dilation[a]) for a in (0, 1)]
        return per_axis[0] + per_axis[1]
    values = (padding,) if np.isscalar(padding) else tuple(padding)
    if len(values) not in (1, 2, 4) or not all(isinstance(v, (int, np.integer)) and v >= 0 for v in values):
        raise UsageError(f"padding must be non-negative integers N, (V, H) or (T, B, L, R), got {padding!r}")
    if len(values) == 1:
        return (int(values[0]),) * 4
    if len(values) == 2:
        return (int(values[0]),) * 2 + (int(values[1]),) * 2
    return tuple(int(v) for v in values)  # type: ignore[return-value]


def _pair(name: str, value: Pair) -> tuple[int, int]:
    values = (value, value) if np.isscalar(value) else tuple(value)
    if len(values) != 2 or not all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) and v > 0 for v in values):
        raise ShapeError(f"{name} must be a positive integer or a pair of them, got {value!r}")
    return int(values[0]), int(values[1])


def _check_image(image: np.ndarray) -> np.ndarray:
    image = np.asarray(image)
    if image.ndim < 2 or 0 in image.shape:
        raise ShapeError(f"image must have at least two non-empty axes (..., H, W), got shape {image.shape}")
    if not np.issubdtype(image.dtype, np.number) or np.iscomplexobj(image):
        raise UsageError(f"image must hold real numbers, got {image.dtype}")
    return image


def _check_arrays(image: np.ndarray, kernel: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    image = _check_image(image)
    kernel = np.asarray(kernel, dtype=np.float64)
    if kernel.ndim != 2 or 0 in kernel.shape:
        raise ShapeError(f"kernel must be a non-empty 2D matrix, got shape {kernel.shape}")
    if not np.all(np.isfinite(kernel)):
        raise ShapeError("kernel holds NaN or infinite values; use finite numbers")
    return image, kernel
