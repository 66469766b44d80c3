"""The convolution core: ``correlate2d``, ``convolve2d`` and ``pool2d``.

These wrappers validate their arguments, resolve padding with :mod:`convtool.geometry`, choose a
back-end (:func:`choose_backend`) and dispatch to it. Images are ``(..., H, W)``: any leading axes
(channels, images) are filtered independently.

Back-ends: ``direct`` (Numba, every tap), ``separable`` (rank-1 kernels as two 1D passes), ``fft``
(numpy's FFT, for large dense kernels), ``im2col`` (columns and one matrix product), ``numpy`` (one
float32 multiply-add per tap, no JIT: small jobs in a fresh process), ``reference`` (plain NumPy in
float64, the oracle) and ``cuda`` (Numba CUDA, direct or separable on the GPU). ``auto`` picks by a
cost model. Devices: ``auto`` (CUDA when a GPU initialises), ``cpu``, ``cuda``.

Cross-correlation is what CNN libraries and OpenCV call "convolution"; ``convolve2d`` flips the
kernel first (true convolution).
"""

from __future__ import annotations

import functools
import math
import sys
import time
from dataclasses import dataclass, field
from typing import Callable, Sequence, Union

import numpy as np

from convtool import shapes
from convtool.conv.device import DEVICES, resolve_device
from convtool.errors import ShapeError, UsageError
from convtool.geometry import POOL_KINDS, Padding, pair, resolve_pads

Pair = Union[int, Sequence[int]]

BORDERS = ("zero", "constant", "reflect", "symmetric", "replicate", "wrap")
BACKENDS = ("auto", "direct", "separable", "fft", "im2col", "numpy", "cuda", "reference")
CPU_ONLY = ("fft", "im2col", "numpy", "reference")
NATIVE_DTYPES = (np.uint8, np.float32)  # the Numba kernels read these directly; others become float32

# Cost model, in "vector multiply-adds per output pixel" (measured on 4096^2 float32, 2 threads):
# a pass over a row costs about one unit per tap plus a fixed pass overhead; the FFT costs about
# FFT_COST_PER_LOG2 * log2(padded pixels) per pixel whatever the kernel (numpy FFT, padding and
# the spectrum product included: about 15-18 Mpix/s here, so it wins past about 23x23 dense taps).
# Small planes (filtered whole, in cache) pay PASS_OVERHEAD per pass; large ones (a ring of rows, outputs
# streamed) only ROW_PASS_OVERHEAD, set between what two kernels measured (2 threads, medians of 31 interleaved,
# three runs, 2026-12-01): Sobel 3x3 as 6 direct taps beats 2 + 3 separable ones (1080p RGB uint8 1.86-2.66 vs
# 2.32-2.91 ms, 4096^2 float32 13.7-16.3 vs 14.1-16.7 ms: overhead > 1), a 3x3 binomial as 3 + 3 beats 9 direct
# taps (3.20-3.31 vs 3.24-3.42 ms, 16.2-16.9 vs 18.0-19.1 ms: overhead < 3).
PASS_OVERHEAD = 3.0
ROW_PASS_OVERHEAD = 2.0
LARGE_PLANE = 1 << 17  # padded pixels from which the Numba kernels keep a ring of rows (cpu.FLAT_PIXELS)
# Below SERIAL_WORK multiply-adds a job runs on one thread (cpu.SERIAL_WORK); there a single-channel direct
# kernel at stride 1 reads the image in place in one pass (_cpu_kernels._in_place: no pass overhead), and separable
# passes over a ring of rows pay per-row costs like a flat pass (512^2 Sobel: 129 us direct in place, 300 us
# separable on the ring).
SERIAL_WORK = 2_000_000
FFT_COST_PER_LOG2 = 25.0
# Until Numba is loaded, plain NumPy wins for small jobs: loading Numba and its cache costs about 1 s,
# NumPy does about 0.3-1e9 multiply-adds per second.
NUMPY_WORK = 50_000_000
NUMBA_LOAD_SECONDS = 0.5  # once auto's NumPy runs have taken this long in all, Numba is loaded (then it pays)
_numpy_seconds = [0.0]  # time auto has spent in the NumPy back-end in this process


@dataclass(frozen=True)
class Choice:
    """The back-end and device that will run a correlation, and why (shown by ``--verbose``)."""

    backend: str
    device: str
    reason: str
    cost: float = field(default=0.0, compare=False)  # the CPU cost model's units per output pixel, when it ran


def choose_backend(image_shape: Sequence[int], kernel: np.ndarray, *, backend: str = "auto",
                   device: str = "auto", stride: Pair = 1, dtype: np.dtype | type = np.float32) -> Choice:
    """Pick the back-end and device for correlating an image of ``image_shape`` (and ``dtype``) with ``kernel``.

    A back-end that cannot run the request falls back to one that can; ``reason`` says so. With
    ``device="auto"`` and a usable GPU, the device is chosen by the estimate of :mod:`convtool.conv.estimate`
    (upload, kernels and download on the GPU against the CPU's cost model) and the reason gives both.
    Raises DeviceError when CUDA is asked for and unavailable.
    """
    if backend not in BACKENDS:
        raise UsageError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    if device not in DEVICES:
        raise UsageError(f"unknown device {device!r}; choose one of {', '.join(DEVICES)}")
    kernel = np.asarray(kernel, dtype=np.float64)
    if backend == "cuda":
        if device == "cpu":
            raise UsageError("backend cuda runs on the GPU; drop `device` cpu or pick a CPU backend (auto, direct)")
        device = "cuda"
    if backend in CPU_ONLY and device != "cpu":
        if device == "cuda":
            raise UsageError(f"backend {backend} runs on the CPU only; on CUDA use direct, separable or auto")
        return Choice(backend, "cpu", f"asked for; {backend} runs on the CPU only")
    ran_on, why_device = resolve_device(device)
    from convtool.conv import separable

    rank1 = separable.factors(kernel) is not None
    if backend == "separable" and not rank1:
        return Choice("direct", ran_on, f"separable needs a rank-1 kernel, this one has rank "
                                        f"{separable.rank(kernel)}; direct (or fft, im2col) can run it")
    if backend not in ("auto", "cuda"):
        return Choice(backend, ran_on, f"asked for; {why_device}")
    stride_hw = pair("stride", stride)
    if ran_on == "cuda" and device == "auto" and backend == "auto":
        on_cpu = _cost_model(image_shape, kernel, rank1, stride_hw, "compared with CUDA")
        guess = _device_estimate(image_shape, kernel, stride_hw, on_cpu.cost, np.dtype(dtype))
        if guess.device == "cpu":
            return Choice(on_cpu.backend, "cpu", f"{on_cpu.reason}: {guess.reason()}; CUDA device {why_device}",
                          on_cpu.cost)
        why_device = f"{guess.reason()}; CUDA device {why_device}"
    if ran_on == "cuda":
        name = "separable" if rank1 else "direct"
        return Choice(name, "cuda", f"{'rank-1 kernel: two 1D passes' if rank1 else 'direct tiles'}; {why_device}")
    return _cost_model(image_shape, kernel, rank1, stride_hw, why_device)


def _device_estimate(image_shape: Sequence[int], kernel: np.ndarray, stride: tuple[int, int], cost: float,
                     dtype: np.dtype):
    """The estimate for one call (the stack's images pipelined over streams) on the current CUDA device."""
    from convtool.conv import estimate

    images, height, width = math.prod(image_shape[:-2]), image_shape[-2], image_shape[-1]
    out_pixels = -(-height // stride[0]) * -(-width // stride[1])
    return estimate.estimate(estimate.cuda_figures(), images, height * width, out_pixels, cost,
                             int(np.count_nonzero(kernel)), in_bytes=1 if dtype == np.uint8 else 4)


def set_threads(count: int) -> int:
    """Run the CPU back-ends on ``count`` threads from now on; returns the previous count (benchmarks use it)."""
    from convtool.conv import cpu

    previous = cpu.THREADS
    cpu.set_threads(count)
    return previous


def numba_loaded() -> bool:
    """Whether Numba is imported in this process (then the JIT back-ends cost no start-up)."""
    return "numba" in sys.modules


@functools.lru_cache(maxsize=64)
def _tap_counts(shape: tuple[int, int], data: bytes) -> tuple[int, int, int]:
    """Non-zero taps of a kernel: in all, in its widest row and in its tallest column (remembered)."""
    kernel = np.frombuffer(data, dtype=np.float64).reshape(shape)
    nonzero = kernel != 0
    return int(nonzero.sum()), int(nonzero.sum(axis=1).max()), int(nonzero.sum(axis=0).max())


def _cost_model(image_shape: Sequence[int], kernel: np.ndarray, rank1: bool, stride: tuple[int, int],
                why_device: str) -> Choice:
    """The cheapest CPU back-end by estimated work per output pixel (remembered per shape and kernel)."""
    kernel = np.ascontiguousarray(kernel, dtype=np.float64)
    return _cost_choice(tuple(int(n) for n in image_shape), kernel.shape, kernel.tobytes(), rank1, stride,
                        why_device, numba_loaded())


@functools.lru_cache(maxsize=256)
def _cost_choice(image_shape: tuple[int, ...], kernel_shape: tuple[int, int], data: bytes, rank1: bool,
                 stride: tuple[int, int], why_device: str, numba_in: bool) -> Choice:
    """_cost_model's answer (about 60 us to work out: 10% of filtering 256 28x28 digits)."""
    taps, row, column = _tap_counts(kernel_shape, data)
    pixels = float(math.prod(n + k - 1 for n, k in zip(image_shape[-2:], kernel_shape, strict=True)))
    planes = float(math.prod(image_shape[:-2]))
    serial = planes * pixels * taps < SERIAL_WORK
    overhead = ROW_PASS_OVERHEAD if pixels > LARGE_PLANE and not serial else PASS_OVERHEAD
    costs = {"direct": taps + (0.0 if serial and stride == (1, 1) else overhead)}
    if rank1:
        costs["separable"] = (row + column + 2 * overhead) * (1 if stride[0] == 1 else 1.5)
    # the FFT computes every stride-1 output, so strides multiply its cost per kept pixel
    costs["fft"] = FFT_COST_PER_LOG2 * math.log2(max(pixels, 2.0)) * stride[0] * stride[1]
    best = min(costs, key=lambda name: costs[name])
    work = planes * pixels / (stride[0] * stride[1]) * min(costs.values())
    if not numba_in and work < NUMPY_WORK:
        return Choice("numpy", "cpu", f"small job ({work / 1e6:.1f} M multiply-adds) and Numba not loaded yet: "
                                      f"NumPy finishes before Numba would load (about 1 s); {why_device}")
    detail = ", ".join(f"{name} {cost:.0f}" for name, cost in sorted(costs.items(), key=lambda item: item[1]))
    shape = "rank-1" if rank1 else "non-separable"
    return Choice(best, "cpu", f"{kernel_shape[0]}x{kernel_shape[1]} {shape} kernel, {taps} non-zero taps; "
                               f"estimated cost per pixel: {detail}; {why_device}", costs[best])


def choose_pool_backend(*, backend: str = "auto", device: str = "auto", work: float = math.inf) -> Choice:
    """Back-end and device for ``pool2d``: direct (Numba), numpy, cuda or reference; others fall back to direct.

    ``work`` is the number of window cells visited; small pools run in NumPy while Numba is not loaded.
    """
    if backend not in BACKENDS:
        raise UsageError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    if backend == "cuda":
        device = "cuda"
    ran_on, why_device = resolve_device(device)
    if backend == "reference":
        return Choice("reference", "cpu", "asked for; the reference runs on the CPU only")
    if backend == "numpy":
        return Choice("numpy", "cpu", "asked for; numpy runs on the CPU only")
    if backend in ("separable", "fft", "im2col"):
        return Choice("direct", ran_on, f"pooling has no {backend} form; direct (or numpy, reference) can pool; "
                                        f"{why_device}")
    if backend == "auto" and device == "auto" and ran_on == "cuda" and math.isfinite(work):
        from convtool.conv import estimate  # a pool alone: its input must cross PCIe for one pass over it

        cells = int(work)
        guess = estimate.estimate(estimate.cuda_figures(), 1, cells, cells, 1.0, 1)
        if guess.device == "cpu":
            ran_on, why_device = "cpu", f"pooling alone: {guess.reason()}; CUDA device {why_device}"
    if backend == "auto" and ran_on == "cpu" and not numba_loaded() and work < NUMPY_WORK / 4:
        return Choice("numpy", "cpu", f"small pool and Numba not loaded yet: NumPy finishes first; {why_device}")
    return Choice("direct", ran_on, why_device)


def correlate2d(image: np.ndarray, kernel: np.ndarray, *, stride: Pair = 1, padding: Padding = "valid",
                border: str = "zero", cval: float = 0.0, dilation: Pair = 1, backend: str = "auto",
                device: str = "auto", channel_axis: int | None = None, out: np.ndarray | None = None) -> np.ndarray:
    """Cross-correlate the last two axes of ``image`` (or the two before its channels) with a 2D ``kernel``;
    returns float32.

    Parameters
    ----------
    stride, dilation : int or (int, int)
    padding : {'valid', 'same', 'full'}, int, (vertical, horizontal) or (top, bottom, left, right)
        'same' uses TensorFlow's split: any odd extra row or column goes after.
    border : {'zero', 'constant', 'reflect', 'symmetric', 'replicate', 'wrap'}
        What fills the padding: 0, ``cval``, mirror without / with the edge pixel, the edge pixel,
        or the opposite side. (scipy.ndimage names: constant, constant, mirror, reflect, nearest, wrap.)
    backend : {'auto', 'direct', 'separable', 'fft', 'im2col', 'numpy', 'cuda', 'reference'}
    device : {'auto', 'cpu', 'cuda'}
    channel_axis : {None, -1}
        None: ``image`` is (..., H, W) and every leading axis is filtered independently. -1: ``image``
        is (..., H, W, C) with interleaved channels (a colour image as read), each channel filtered on
        its own, and the result is (..., OH, OW, C). The CPU kernels read the interleaved pixels in
        place (no transposed copy) at horizontal stride 1.
    out : float32 array of the output's shape, C-contiguous, not sharing memory with ``image``; optional
        Written and returned instead of a new array (a caller filtering many images of one size saves
        the allocation and its page faults).

    Notes
    -----
    The plan (back-end, padding, taps, pass structure) is worked out once per image shape, dtype,
    kernel and geometry and remembered (:func:`correlation_plan`), so a repeated call goes straight
    to one jitted function.
    """
    image = np.asarray(image)
    kernel = np.asarray(kernel, dtype=np.float64)
    channels_last = False if channel_axis is None else _channels_last(channel_axis, image.ndim)
    try:  # the common case: geometry given as ints, strings or tuples of them
        plan = correlation_plan(image.shape, image.dtype, kernel.shape, kernel.tobytes(), stride, padding, border,
                                cval, dilation, backend, device, "numba" in sys.modules, channels_last)
    except TypeError:  # a list or array somewhere: key the cache on its tuple form
        plan = correlation_plan(image.shape, image.dtype, kernel.shape, kernel.tobytes(), _hashable(stride),
                                _hashable(padding), border, cval, _hashable(dilation), backend, device,
                                numba_loaded(), channels_last)
    return _execute(plan, image, out)


def jit_cached(image: np.ndarray, kernel: np.ndarray, *, stride: Pair = 1, padding: Padding = "valid",
               border: str = "zero", cval: float = 0.0, dilation: Pair = 1, backend: str = "auto",
               device: str = "cpu", channel_axis: int | None = None) -> bool:
    """Whether ``correlate2d(image, kernel, ...)`` with the same options, once Numba is loaded, would compile
    nothing: its jitted kernels are compiled in this process or in Numba's on-disk cache. Nothing is
    compiled, loaded or filtered; the answer costs about a millisecond once Numba is imported (importing
    it, if this is the first thing that does, costs about 0.5 s).

    ``image`` may be the real image or any array of its shape, dtype and writeability (a read-only array
    is a different Numba signature). Back-ends that run no CPU kernel (fft, im2col, numpy, reference)
    need none: True. CUDA kernels compile in every process: False. Use it to stay in NumPy
    (``backend="numpy"``) for a job that would otherwise first compile for seconds on an empty cache::

        backend = "auto" if conv.jit_cached(image, kernel, padding="same") else "numpy"
    """
    from convtool.conv import cpu

    image = np.asarray(image)
    kernel = np.asarray(kernel, dtype=np.float64)
    channels_last = False if channel_axis is None else _channels_last(channel_axis, image.ndim)
    plan = correlation_plan(image.shape, image.dtype, kernel.shape, kernel.tobytes(), _hashable(stride),
                            _hashable(padding), border, cval, _hashable(dilation), backend, device, True, channels_last)
    if plan.choice.device == "cuda":
        return False
    if plan.choice.backend not in ("direct", "separable"):
        return True
    stack = image if image.dtype == plan.stack_dtype and image.flags.c_contiguous else \
        np.empty(image.shape, dtype=plan.stack_dtype)  # what correlate2d's copy would be
    out = np.empty(plan.out_shape, dtype=np.float32)  # never written: untouched pages cost nothing
    return cpu.kernels_cached(plan.run, stack.reshape(plan.stack_shape), out.reshape(plan.out_stack_shape))


def _channels_last(channel_axis: object, ndim: int) -> bool:
    """Whether ``channel_axis`` asks for interleaved (..., H, W, C) images; UsageError unless None or the last axis."""
    if channel_axis is None:
        return False
    if isinstance(channel_axis, (int, np.integer)) and not isinstance(channel_axis, bool) \
            and channel_axis in (-1, ndim - 1) and ndim >= 3:
        return True
    raise UsageError(f"`channel_axis` must be None or -1 (the last axis of an (..., H, W, C) image of at least 3 "
                     f"axes), got {channel_axis!r} for an image of {ndim} axes")


@dataclass(frozen=True)
class Plan:
    """What one correlation or pooling runs, worked out once: the choice, the output shape and the call.

    ``run(stack, out)`` takes the (B, H, W) stack in ``stack_dtype`` and the (B, OH, OW) float32 output;
    for interleaved (..., H, W, C) images, the (B, H, W * C) stack and the (B, OH, OW * C) output
    (``stack_shape`` and ``out_stack_shape`` reshape the caller's arrays to those).
    """

    choice: Choice
    out_shape: tuple[int, ...]
    stack_dtype: np.dtype
    run: Callable[[np.ndarray, np.ndarray], None]
    stack_shape: tuple[int, int, int]  # (-1, H, W), or (-1, H, W * C) for interleaved images
    out_stack_shape: tuple[int, int, int]  # (-1, OH, OW), or (-1, OH, OW * C)


@functools.lru_cache(maxsize=256)
def correlation_plan(image_shape: tuple[int, ...], dtype: np.dtype, kernel_shape: tuple[int, ...], data: bytes,
                     stride: Pair, padding: Padding, border: str, cval: float, dilation: Pair, backend: str,
                     device: str, numba_in: bool, channels_last: bool = False) -> Plan:
    """The validated plan for correlating an image of this shape and dtype with the kernel in ``data``.

    Remembered per argument set (``numba_in`` is part of the key: the choice changes once Numba loads).
    ``channels_last``: the image is (..., H, W, C), see :func:`correlate2d`'s ``channel_axis``.
    """
    _check_image_meta(image_shape, dtype)
    channels = image_shape[-1] if channels_last else 1
    planes = image_shape[:-3] + (channels,) + image_shape[-3:-1] if channels_last else image_shape  # (..., H, W)
    kernel = _check_kernel(np.frombuffer(data, dtype=np.float64).reshape(kernel_shape))
    stride_hw, dilation_hw = pair("stride", stride), pair("dilation", dilation)
    pads = resolve_pads(padding, planes[-2:], kernel.shape, stride_hw, dilation_hw)
    out_hw = shapes.output_hw(planes[-2:], kernel.shape, stride_hw, pads, dilation_hw)
    if border not in BORDERS:
        raise UsageError(f"unknown border {border!r}; choose one of {', '.join(BORDERS)}")
    choice = choose_backend(planes, kernel, backend=backend, device=device, stride=stride_hw, dtype=dtype)
    cval = 0.0 if border == "zero" else float(cval)
    run = _runner(choice, kernel, planes[-2:], stride_hw, pads, border, cval, dilation_hw, channels)
    if backend == "auto" and choice.backend == "numpy":
        run = functools.partial(_numpy_until_numba_pays, run)
    if not channels_last:
        return Plan(choice, tuple(image_shape[:-2]) + out_hw, _stack_dtype(dtype), run, (-1, planes[-2], planes[-1]),
                    (-1, out_hw[0], out_hw[1]))
    return Plan(choice, tuple(image_shape[:-3]) + out_hw + (channels,), _stack_dtype(dtype), run,
                (-1, planes[-2], planes[-1] * channels), (-1, out_hw[0], out_hw[1] * channels))


def _numpy_until_numba_pays(run: Callable[[np.ndarray, np.ndarray], None], stack: np.ndarray, out: np.ndarray) -> None:
    """Run auto's NumPy choice; once such runs have cost as much as loading Numba, load it (ski rental).

    Loading Numba makes the next call's plan a jitted one, so a loop of many small calls in a fresh
    process pays at most about twice the best of "NumPy throughout" and "Numba from the start".
    """
    start = time.perf_counter()
    run(stack, out)
    _numpy_seconds[0] += time.perf_counter() - start
    if _numpy_seconds[0] >= NUMBA_LOAD_SECONDS:
        _load_numba()


def _load_numba() -> None:
    from convtool.conv import cpu  # noqa: F401 - imports Numba: numba_loaded() is true from now on


def _runner(choice: Choice, kernel: np.ndarray, image_hw: tuple[int, ...], stride: tuple[int, int],
            pads: tuple[int, int, int, int], border: str, cval: float, dilation: tuple[int, int],
            channels: int = 1) -> Callable[[np.ndarray, np.ndarray], None]:
    """The call that runs ``choice`` on a (B, H, W) stack into a (B, OH, OW) output; kernels prepared once.

    ``channels`` > 1: a (B, H, W * C) stack of interleaved images into a (B, OH, OW * C) output. The CPU
    kernels read such rows in place at horizontal stride 1; every other back-end gets the channels as
    planes (:func:`_through_planes`).
    """
    if choice.device == "cpu" and choice.backend in ("direct", "separable"):
        from convtool.conv import cpu

        taps = (cpu.separable_taps(*_factors(kernel), dilation) if choice.backend == "separable"
                else cpu.direct_taps(kernel, dilation, stride))
        if channels == 1 or stride[1] == 1:
            return cpu.prepare(taps, image_hw, stride, pads, border, cval, channels)
        run = cpu.prepare(taps, image_hw, stride, pads, border, cval)
    elif choice.backend == "numpy" and channels > 1 and stride[1] == 1 and _rank1(kernel):
        from convtool.conv import vectorised

        column, row = _factors(kernel)  # interleaved rows read in place, as by the CPU kernels
        return lambda stack, out: vectorised.correlate_separable(stack, column, row, stride, pads, border, cval,
                                                                 dilation, out, channels)
    else:
        run = _other_runner(choice, kernel, stride, pads, border, cval, dilation)
    return run if channels == 1 else functools.partial(_through_planes, run, channels)


def _rank1(kernel: np.ndarray) -> bool:
    from convtool.conv import separable

    return separable.factors(kernel) is not None


def _through_planes(run: Callable[[np.ndarray, np.ndarray], None], channels: int, stack: np.ndarray,
                    out: np.ndarray) -> None:
    """``run`` on the channels of a (B, H, W * C) interleaved stack as (B * C, H, W) planes, into (B, OH, OW * C)."""
    batch, height, row = stack.shape
    planes = np.ascontiguousarray(stack.reshape(batch, height, row // channels, channels).transpose(0, 3, 1, 2))
    out_h, out_w = out.shape[1], out.shape[2] // channels
    result = np.empty((batch * channels, out_h, out_w), dtype=np.float32)
    run(planes.reshape(batch * channels, height, row // channels), result)
    out.reshape(batch, out_h, out_w, channels)[...] = result.reshape(batch, channels, out_h, out_w).transpose(0, 2, 3, 1)


def _other_runner(choice: Choice, kernel: np.ndarray, stride: tuple[int, int], pads: tuple[int, int, int, int],
                  border: str, cval: float, dilation: tuple[int, int]) -> Callable[[np.ndarray, np.ndarray], None]:
    """The call that runs ``choice`` (any back-end but the CPU's Numba kernels) on a (B, H, W) stack."""
    geometry = (stride, pads, border, cval, dilation)
    if choice.backend == "reference":
        from convtool.conv import reference

        def run_reference(stack: np.ndarray, out: np.ndarray) -> None:
            out[...] = reference.correlate2d(stack, kernel, stride, pads, border, cval, dilation)

        return run_reference
    if choice.device == "cuda":
        from convtool.conv import cuda

        if choice.backend == "separable":
            column, row = _factors(kernel)
            return lambda stack, out: cuda.correlate_separable(stack, column, row, *geometry, out)
        return lambda stack, out: cuda.correlate_direct(stack, kernel, *geometry, out)
    if choice.backend == "fft":
        from convtool.conv import fft as module
    elif choice.backend == "im2col":
        from convtool.conv import gemm as module  # type: ignore[no-redef]
    else:
        from convtool.conv import separable, vectorised

        factors = separable.factors(kernel)  # rank 1: two 1D passes
        return lambda stack, out: vectorised.correlate(stack, kernel, *geometry, out, factors)
    return lambda stack, out: module.correlate(stack, kernel, *geometry, out)


def _factors(kernel: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The separable factors of a kernel the choice already found to be rank 1."""
    from convtool.conv import separable

    found = separable.factors(kernel)
    if found is None:  # pragma: no cover - choose_backend only picks separable for rank-1 kernels
        raise ShapeError("separable back-end needs a rank-1 kernel")
    return found


def _execute(plan: Plan, image: np.ndarray, out: np.ndarray | None) -> np.ndarray:
    """Run ``plan`` on ``image`` into ``out`` (checked) or a new float32 array, and return it."""
    target = np.empty(plan.out_shape, dtype=np.float32) if out is None else check_out(out, plan.out_shape, image)
    stack = image if (image.dtype is plan.stack_dtype or image.dtype == plan.stack_dtype) and image.flags.c_contiguous \
        else np.ascontiguousarray(image, dtype=plan.stack_dtype)
    if stack.ndim == 2:  # one plane (the small-image case): [None] is half the cost of reshape
        plan.run(stack[None], target[None])
    else:
        plan.run(stack.reshape(plan.stack_shape), target.reshape(plan.out_stack_shape))
    return target


def check_out(out: object, shape: tuple[int, ...], image: np.ndarray) -> np.ndarray:
    """``out`` if it is a C-contiguous float32 array of ``shape`` that does not overlap ``image``; else UsageError."""
    expected = f"a C-contiguous float32 array of shape {shape}"
    if not isinstance(out, np.ndarray):
        raise UsageError(f"out must be {expected}, got {type(out).__name__}")
    if out.dtype != np.float32 or out.shape != shape or not out.flags.c_contiguous or not out.flags.writeable:
        got = f"{out.dtype} {out.shape}" + ("" if out.flags.c_contiguous else ", not C-contiguous") + \
              ("" if out.flags.writeable else ", read-only")
        raise UsageError(f"out must be {expected}, got {got}")
    if np.may_share_memory(out, image):
        raise UsageError("out shares memory with the input image; pass a separate array (the input is never overwritten)")
    return out


def _hashable(value: object) -> object:
    """Lists (and arrays) of geometry values as tuples, so the plan cache can key on them."""
    if isinstance(value, (list, tuple, np.ndarray)):
        return tuple(_hashable(v) for v in value)
    return value


def convolve2d(image: np.ndarray, kernel: np.ndarray, **options) -> np.ndarray:
    """True convolution: ``correlate2d`` with the kernel flipped in both axes. Same options."""
    kernel = np.asarray(kernel)
    return correlate2d(image, kernel[::-1, ::-1] if kernel.ndim == 2 else kernel, **options)


def pool2d(image: np.ndarray, size: Pair, *, stride: Pair | None = None, kind: str = "max",
           padding: Padding = "valid", backend: str = "auto", device: str = "auto",
           out: np.ndarray | None = None) -> np.ndarray:
    """Max, average or L2 pooling over windows of ``size`` (stride defaults to the size).

    Padded cells never count: max ignores them and averages divide by the real cells only.
    backend : {'auto', 'direct', 'numpy', 'cuda', 'reference'}; others fall back to direct (choose_pool_backend).
    out : as for :func:`correlate2d`: a C-contiguous float32 array of the output's shape, written and returned.
    """
    image = _check_image(image)
    size_hw = pair("pool size", size)
    stride_hw = size_hw if stride is None else pair("pool stride", stride)
    if kind not in POOL_KINDS:
        raise UsageError(f"unknown pooling {kind!r}; choose one of {', '.join(POOL_KINDS)}")
    pads = resolve_pads(padding, image.shape[-2:], size_hw, stride_hw)
    out_hw = shapes.output_hw(image.shape[-2:], size_hw, stride_hw, pads)
    choice = choose_pool_backend(backend=backend, device=device,
                                 work=float(np.prod(image.shape[:-2] + out_hw)) * size_hw[0] * size_hw[1])
    target = np.empty(image.shape[:-2] + out_hw, dtype=np.float32) if out is None else \
        check_out(out, image.shape[:-2] + out_hw, image)
    if choice.backend == "reference":
        from convtool.conv import reference

        target[...] = reference.pool2d(image, size_hw, stride_hw, pads, kind)
        return target
    stack, flat = _stack(image), target.reshape((-1,) + out_hw)
    if choice.device == "cuda":
        from convtool.conv import cuda

        cuda.pool(stack, size_hw, stride_hw, pads, kind, flat)
    elif choice.backend == "numpy":
        from convtool.conv import vectorised

        vectorised.pool(stack, size_hw, stride_hw, pads, kind, flat)
    else:
        from convtool.conv import cpu

        cpu.pool(stack, size_hw, stride_hw, pads, kind, flat)
    return target


def _stack(image: np.ndarray) -> np.ndarray:
    """(..., H, W) as a C-contiguous (B, H, W) stack of a dtype the kernels read (uint8 or float32)."""
    return np.ascontiguousarray(image.reshape((-1,) + image.shape[-2:]), dtype=_stack_dtype(image.dtype))


def _stack_dtype(dtype: np.dtype) -> np.dtype:
    return np.dtype(dtype if dtype in NATIVE_DTYPES else np.float32)


def _check_image(image: np.ndarray) -> np.ndarray:
    image = np.asarray(image)
    _check_image_meta(image.shape, image.dtype)
    return image


def _check_image_meta(shape: tuple[int, ...], dtype: np.dtype) -> None:
    if len(shape) < 2 or 0 in shape:
        raise ShapeError(f"image must have at least two non-empty axes (..., H, W), got shape {shape}")
    if not np.issubdtype(dtype, np.number) or np.issubdtype(dtype, np.complexfloating):
        raise UsageError(f"image must hold real numbers, got {dtype}")


def _check_kernel(kernel: np.ndarray) -> np.ndarray:
    if kernel.ndim != 2 or 0 in kernel.shape:
        raise ShapeError(f"kernel must be a non-empty 2D matrix, got shape {kernel.shape}")
    if not np.all(np.isfinite(kernel)):
        raise ShapeError("kernel holds NaN or infinite values; use finite numbers")
    return kernel
