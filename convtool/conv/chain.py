"""A chain of filters run as one job: correlations (one kernel, or several combined as a gradient
magnitude), then pooling, optionally ending in uint8.

On CUDA the image goes up once in its own dtype, every intermediate stays on the device and only the
result comes back (as uint8 when the output is an 8-bit image: a quarter of float32's PCIe time).
On the CPU the same steps run through :func:`convtool.conv.correlate2d` and :func:`pool2d`, which is
also the oracle the device path is tested against. ``device="auto"`` asks the cost estimate
(:mod:`convtool.conv.estimate`), counting every step, so a chain that keeps a GPU busy long enough for
the transfers to pay goes there and a small one-shot stays on the CPU.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence, Union

import numpy as np

from convtool import shapes
from convtool.conv import Choice, Pair, correlate2d, pool2d
from convtool.errors import UsageError
from convtool.geometry import Padding, pair, resolve_pads


@dataclass(frozen=True)
class Correlate:
    """One correlation step; several kernels combine as the magnitude sqrt(sum of squared responses)."""

    kernels: tuple[np.ndarray, ...]
    stride: Pair = 1
    padding: Padding = "same"
    border: str = "reflect"
    cval: float = 0.0
    dilation: Pair = 1


@dataclass(frozen=True)
class Pool:
    """One pooling step (stride defaults to the size)."""

    size: Pair
    stride: Pair | None = None
    kind: str = "max"
    padding: Padding = "valid"


Step = Union[Correlate, Pool]


def run_chain(image: np.ndarray, steps: Sequence[Step], *, device: str = "auto", scale: float | None = None,
              choices: list[Choice] | None = None) -> np.ndarray:
    """Run ``image`` (..., H, W) through ``steps``; float32, or uint8 = round(clip(value * scale, 0, 255)).

    The device that ran is appended to ``choices`` (with the estimate behind an ``auto`` choice).
    """
    if not steps:
        raise UsageError("a chain needs at least one step (a correlation or a pooling)")
    image = np.asarray(image)
    choice = choose_chain_device(image.shape, image.dtype, steps, device=device, uint8_out=scale is not None)
    if choices is not None:
        choices.append(choice)
    if choice.device == "cuda":
        return _run_cuda(image, steps, scale)
    values = image
    for step in steps:
        values = _cpu_step(values, step)
    return values if scale is None else to_uint8(values, scale)


def to_uint8(values: np.ndarray, scale: float) -> np.ndarray:
    """round(clip(values * scale, 0, 255)) as uint8 (halves round up), as the device does it."""
    return np.floor(np.clip(values * np.float32(scale), 0, 255) + np.float32(0.5)).astype(np.uint8)


def _cpu_step(values: np.ndarray, step: Step) -> np.ndarray:
    if isinstance(step, Pool):
        return pool2d(values, step.size, stride=step.stride, kind=step.kind, padding=step.padding, device="cpu")
    responses = [correlate2d(values, kernel, stride=step.stride, padding=step.padding, border=step.border,
                             cval=step.cval, dilation=step.dilation, device="cpu") for kernel in step.kernels]
    if len(responses) == 1:
        return responses[0]
    return np.sqrt(sum(r * r for r in responses)).astype(np.float32)


def _geometry(step: Step, image_hw: tuple[int, int]) -> tuple[tuple, tuple[int, int]]:
    """(stride, pads, dilation or None, size) and the output (H, W) of a step on an image of ``image_hw``."""
    if isinstance(step, Pool):
        size = pair("pool size", step.size)
        stride, dilation = (size if step.stride is None else pair("pool stride", step.stride)), (1, 1)
    else:
        size = step.kernels[0].shape
        stride, dilation = pair("stride", step.stride), pair("dilation", step.dilation)
    pads = resolve_pads(step.padding, image_hw, size, stride, dilation)
    return (stride, pads, dilation, size), shapes.output_hw(image_hw, size, stride, pads, dilation)


def choose_chain_device(image_shape: Sequence[int], dtype: np.dtype, steps: Sequence[Step], *, device: str = "auto",
                        uint8_out: bool = False) -> Choice:
    """CPU or CUDA for a whole chain: asked for, or by the estimate over every step (auto)."""
    from convtool.conv import estimate
    from convtool.conv.device import resolve_device

    if device != "auto":
        ran_on, why = resolve_device(device)
        return Choice("chain", ran_on, why)
    ran_on, why = resolve_device("auto")
    if ran_on != "cuda":
        return Choice("chain", "cpu", why)
    hw, taps, launches = (int(image_shape[-2]), int(image_shape[-1])), 0, 0
    for step in steps:
        geometry, hw = _geometry(step, hw)
        if isinstance(step, Correlate):
            taps += sum(int(np.count_nonzero(k)) for k in step.kernels)
            launches += len(step.kernels)
    images = math.prod(image_shape[:-2])
    guess = estimate.estimate(estimate.cuda_figures(), images, math.prod(image_shape[-2:]), math.prod(hw),
                              taps / max(launches, 1) + 3.0, max(taps // max(launches, 1), 1),
                              in_bytes=np.dtype(dtype).itemsize if np.dtype(dtype) == np.uint8 else 4,
                              out_bytes=1 if uint8_out else 4, steps=max(launches, 1))
    return Choice("chain", guess.device, f"{guess.reason()}; {why}")


def _run_cuda(image: np.ndarray, steps: Sequence[Step], scale: float | None) -> np.ndarray:
    from convtool.conv import cuda, separable

    stack = np.ascontiguousarray(image.reshape((-1,) + image.shape[-2:]),
                                 dtype=image.dtype if image.dtype in (np.uint8, np.float32) else np.float32)
    hw, plan = (stack.shape[1], stack.shape[2]), []
    for step in steps:
        (stride, pads, dilation, size), hw = _geometry(step, hw)
        if isinstance(step, Pool):
            plan.append(([cuda.pool_launch(size, stride, pads, step.kind, cuda.BLOCK_THREADS)], hw))
            continue
        cval = 0.0 if step.border == "zero" else float(step.cval)
        launches = []
        for kernel in step.kernels:
            kernel = np.asarray(kernel, dtype=np.float64)
            factors = separable.factors(kernel)
            launches.append(cuda.separable_launch(*factors, stride, pads, step.border, cval, dilation, cuda.BLOCK_THREADS)
                            if factors is not None else
                            cuda.direct_launch(kernel, stride, pads, step.border, cval, dilation, cuda.BLOCK_THREADS))
        plan.append((launches, hw))
    out = np.empty((stack.shape[0],) + hw, dtype=np.float32 if scale is None else np.uint8)
    cuda.run_steps(stack, plan, out, scale)
    return out.reshape(image.shape[:-2] + hw)
