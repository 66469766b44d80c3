"""Filter images: a chain of kernels, then optional pooling, then scaling for the output file.

This is the library behind ``convtool filter``; it knows nothing of click or files.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import numpy as np

from convtool import conv, guards, shapes
from convtool.errors import ConvtoolError, UsageError
from convtool.geometry import PoolSpec, pair, resolve_pads
from convtool.kernels import OUT_SCALES, Kernel


@dataclass
class FilterSettings:
    """How to filter: the kernels in order and the geometry applied to each of them."""

    kernels: list[Kernel]
    mode: str = "correlate"  # or "convolve" (kernel flipped)
    stride: tuple[int, int] = (1, 1)
    padding: str | tuple[int, ...] = "same"
    border: str = "reflect"
    cval: float = 0.0
    dilation: tuple[int, int] = (1, 1)
    pool: PoolSpec | None = None
    backend: str = "auto"
    device: str = "auto"
    max_pixels: int = guards.MAX_PIXELS  # per plane after padding, checked before each step allocates
    why_backend: str | None = None  # why ``backend`` was chosen for the caller (shown instead of "asked for")

    def conv_options(self) -> dict:
        """The geometry keywords of ``conv.correlate2d`` (back-end and device are chosen per step)."""
        return dict(stride=self.stride, padding=self.padding, border=self.border, cval=self.cval,
                    dilation=self.dilation)


SURELY_FINITE = 1e37  # |values| below this bound cannot have overflowed float32 (largest about 3.4e38)


def apply_kernel(image: np.ndarray, kernel: Kernel, settings: FilterSettings,
                 choices: list[tuple[str, conv.Choice]], *, bound: float = math.inf,
                 channels_last: bool = False) -> np.ndarray:
    """Filter (..., H, W) planes, or with ``channels_last`` an H,W,C image, with one kernel (same layout out);
    combined kernels give the gradient magnitude.

    The back-end and device chosen for each matrix are appended to ``choices``. ``bound`` is the largest
    absolute value the image can hold (255 for uint8 pixels); when the weights prove every value finite,
    the passes that look for overflow are skipped.
    """
    planes_shape = (image.shape[-1],) + image.shape[:-1] if channels_last else image.shape  # C,H,W as the core sees it
    image = read_only(image)
    responses = []
    for matrix in kernel.matrices:
        _check_padded_size(planes_shape[-2:], matrix.shape, settings)
        oriented = matrix[::-1, ::-1] if settings.mode == "convolve" else matrix
        choice = conv.choose_backend(planes_shape, oriented, backend=settings.backend, device=settings.device,
                                     stride=settings.stride, dtype=image.dtype)
        if settings.why_backend is not None:
            choice = dataclasses.replace(choice, reason=settings.why_backend)
        choices.append((kernel.name, choice))
        responses.append(conv.correlate2d(image, oriented, **settings.conv_options(), backend=choice.backend,
                                          device=choice.device, channel_axis=-1 if channels_last else None))
    if len(responses) == 1:
        result = responses[0]
    elif kernel.combine == "magnitude":
        result = _magnitude(responses)
    else:
        raise UsageError(f"kernel {kernel.name!r}: unknown combination {kernel.combine!r}")
    if not _surely_finite(kernel, bound, settings) and not (
            np.isfinite(result.max()) and np.isfinite(result.min())):  # NaN and inf reach the extremes
        raise UsageError(f"kernel {kernel.name!r}: the filtered values overflow float32 (the kernel's weights "
                         "are too large for these pixels); scale the kernel down")
    return result


def read_only(array: np.ndarray) -> np.ndarray:
    """A read-only view of ``array``: what the core is always given, so Numba compiles (and caches) one
    kernel per dtype. Images as decoded are read-only (Pillow's bytes) and Numba types read-only arrays
    apart: fed both kinds, it would compile each kernel twice (13 s more for a large image's first run)."""
    view = array.view()
    view.flags.writeable = False
    return view


def response_bound(kernel: Kernel, bound: float, settings: FilterSettings) -> float:
    """The largest absolute value ``kernel`` can give on planes whose values are at most ``bound`` in size
    (the padding's constant counts too): sum of absolute weights per matrix, root-sum-square for a magnitude."""
    sums = _matrix_bounds(kernel, bound, settings)
    return sums[0] if len(sums) == 1 else math.sqrt(sum(v * v for v in sums))


def _surely_finite(kernel: Kernel, bound: float, settings: FilterSettings) -> bool:
    """Whether every value computed for ``kernel`` (a magnitude's squares included) stays far inside float32."""
    largest = response_bound(kernel, bound, settings)
    return (largest if len(kernel.matrices) == 1 else largest * largest) < SURELY_FINITE


def _matrix_bounds(kernel: Kernel, bound: float, settings: FilterSettings) -> list[float]:
    reach = max(bound, abs(settings.cval)) if settings.border == "constant" else bound
    return [reach * float(np.abs(m).sum()) for m in kernel.matrices]


def _magnitude(responses: list[np.ndarray]) -> np.ndarray:
    """sqrt(r0**2 + r1**2 + ...) in the first response's memory (the responses are this module's own arrays)."""
    result = np.multiply(responses[0], responses[0], out=responses[0])
    for response in responses[1:]:
        result += np.multiply(response, response, out=response)
    return np.sqrt(result, out=result)


def _check_padded_size(image_hw: tuple[int, ...], kernel_hw: tuple[int, ...], settings: FilterSettings) -> None:
    """Refuse, before anything is allocated, a padded plane above ``settings.max_pixels``."""
    stride, dilation = pair("stride", settings.stride), pair("dilation", settings.dilation)
    top, bottom, left, right = resolve_pads(settings.padding, image_hw, kernel_hw, stride, dilation)
    guards.check_pixels("the padded image", image_hw[0] + top + bottom, image_hw[1] + left + right,
                        settings.max_pixels)


def filter_pixels(pixels: np.ndarray, settings: FilterSettings,
                  choices: list[tuple[str, conv.Choice]] | None = None) -> np.ndarray:
    """Filter H,W or H,W,C pixels channel by channel; returns float32 of the same layout (this call's own array).

    Colour images go to the core as they are, channels interleaved (no transposed copy); uint8 pixels
    too (the core converts them on the fly); other dtypes become float32. Pass a list as ``choices`` to
    learn which back-end and device ran each step.
    """
    if settings.mode not in ("correlate", "convolve"):
        raise UsageError(f"unknown mode {settings.mode!r}; use correlate or convolve")
    choices = [] if choices is None else choices
    channels_last = pixels.ndim == 3  # H,W,C
    image = np.ascontiguousarray(pixels, dtype=np.uint8 if pixels.dtype == np.uint8 else np.float32)
    bound = 255.0 if image.dtype == np.uint8 else math.inf  # the largest |value| the image can hold
    for kernel in settings.kernels:
        image = apply_kernel(image, kernel, settings, choices, bound=bound, channels_last=channels_last)
        bound = response_bound(kernel, bound, settings)
    if settings.pool is not None:
        pool = settings.pool.broadcast(2)
        windows = image.size * math.prod(pool.size) / math.prod(pool.strides)
        # a back-end chosen for the caller (why_backend) is the correlations': NumPy's pool is the float64 reference
        backend = "auto" if settings.why_backend is not None else settings.backend
        choice = conv.choose_pool_backend(backend=backend, device=settings.device, work=windows)
        choices.append((f"{pool.kind}-pool", choice))
        planes = np.moveaxis(image, -1, 0) if channels_last else image  # the pool reads (..., H, W)
        pooled = conv.pool2d(planes, pool.size, stride=pool.strides, kind=pool.kind,
                             backend=choices[-1][1].backend, device=choices[-1][1].device)
        image = np.ascontiguousarray(np.moveaxis(pooled, 0, -1)) if channels_last else pooled
    return image.astype(np.float32, copy=image is pixels)  # the caller's own array: it may scale it in place


def jit_cached(shape: tuple[int, ...], dtype: np.dtype | type, settings: FilterSettings) -> bool:
    """Whether filtering an H,W(,C) image of ``shape`` and ``dtype`` with ``settings`` would find every Numba
    kernel of the chain compiled in this process or in Numba's cache (``conv.jit_cached`` for each step: it
    imports Numba, about 0.5 s the first time, and compiles nothing). Pooling is not asked about.
    """
    image = read_only(np.empty(shape, dtype=np.uint8 if np.dtype(dtype) == np.uint8 else np.float32))
    channel_axis = -1 if image.ndim == 3 else None
    try:
        for kernel in settings.kernels:
            for matrix in kernel.matrices:
                _check_padded_size(image.shape[:2], matrix.shape, settings)  # before any array of that size
                oriented = matrix[::-1, ::-1] if settings.mode == "convolve" else matrix
                if not conv.jit_cached(image, oriented, **settings.conv_options(), backend=settings.backend,
                                       device=settings.device, channel_axis=channel_axis):
                    return False
            height, width = _output_hw(image.shape[:2], kernel.matrices[0].shape, settings)
            image = read_only(np.empty((height, width) + image.shape[2:], dtype=np.float32))  # never written
    except ConvtoolError:  # a kernel too large for the image, a padded size above the limit: the job reports it
        return True
    return True


def _output_hw(image_hw: tuple[int, ...], kernel_hw: tuple[int, ...], settings: FilterSettings) -> tuple[int, int]:
    stride, dilation = pair("stride", settings.stride), pair("dilation", settings.dilation)
    pads = resolve_pads(settings.padding, image_hw, kernel_hw, stride, dilation)
    return shapes.output_hw(image_hw, kernel_hw, stride, pads, dilation)


def chain_out_scale(kernels: list[Kernel]) -> str:
    """'normalize' if any kernel in the chain asks for it (derivatives), else the last kernel's."""
    scales = [k.out_scale for k in kernels]
    return "normalize" if "normalize" in scales else scales[-1]


def scale_for_output(values: np.ndarray, out_scale: str, in_max: float, out_max: float, *,
                     out: np.ndarray | None = None) -> np.ndarray:
    """Map float values in the input's range (0..in_max) to 0..out_max for an integer image.

    clip: rescale by out_max/in_max and clip; abs: the same on absolute values (signed
    derivatives become edge strength); normalize: the minimum goes to 0 and the maximum to out_max.
    ``out``: a float32 array of the same shape to write into (``values`` itself is fine), else a new one.
    """
    if out_scale not in OUT_SCALES:
        raise UsageError(f"unknown out-scale {out_scale!r}; choose one of {', '.join(OUT_SCALES)}")
    if out_scale == "normalize":
        low, high = float(values.min()), float(values.max())
        span = high - low
        if span == 0:
            return np.zeros_like(values) if out is None else np.multiply(out, 0, out=out)
        result = np.subtract(values, low, out=out)
        return np.multiply(result, np.float32(out_max / span), out=result)
    if out_scale == "abs":
        values = np.abs(values, out=out)
    factor = np.float32(out_max / in_max)
    result = values if factor == 1 and out is values else np.multiply(values, factor, out=out)  # x * 1 is x
    return np.clip(result, 0, out_max, out=result)
