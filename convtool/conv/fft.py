"""Correlation through numpy's FFT: O(N log N) whatever the kernel size, for large dense kernels.

The stack is padded exactly like the other paths (``reference.pad``), correlated at stride 1 as a
circular convolution with the flipped, dilated kernel (only the wrapped-around first rows and columns
are wrong, and they are cut off), then subsampled by the stride.
"""

from __future__ import annotations

import numpy as np

from convtool.conv import reference

CHUNK_PIXELS = 1 << 24  # padded pixels transformed at once, to bound memory


def fast_length(n: int) -> int:
    """Smallest 2^a 3^b 5^c >= n: lengths pocketfft transforms quickly."""
    best = 1 << max(n - 1, 0).bit_length()
    power5 = 1
    while power5 < 2 * n:
        power35 = power5
        while power35 < 2 * n:
            size = power35
            while size < n:
                size *= 2
            best = min(best, size)
            power35 *= 3
        power5 *= 5
    return best


def dilate(kernel: np.ndarray, dilation: tuple[int, int]) -> np.ndarray:
    """The kernel with ``dilation - 1`` zeros between taps: a dense kernel of the same span."""
    (kh, kw), (dh, dw) = kernel.shape, dilation
    dense = np.zeros(((kh - 1) * dh + 1, (kw - 1) * dw + 1))
    dense[::dh, ::dw] = kernel
    return dense


def correlate(stack: np.ndarray, kernel: np.ndarray, stride: tuple[int, int], pads: tuple[int, int, int, int],
              border: str, cval: float, dilation: tuple[int, int], out: np.ndarray) -> None:
    """Correlate a (B, H, W) stack into the (B, OH, OW) float32 ``out``."""
    dense = dilate(kernel, dilation)
    span_h, span_w = dense.shape
    height = stack.shape[1] + pads[0] + pads[1]
    width = stack.shape[2] + pads[2] + pads[3]
    size = (fast_length(height), fast_length(width))
    spectrum = np.fft.rfft2(dense[::-1, ::-1].astype(np.float32), s=size)
    oh, ow = out.shape[1:]
    chunk = max(1, CHUNK_PIXELS // (size[0] * size[1]))
    for start in range(0, stack.shape[0], chunk):
        part = stack[start: start + chunk]
        padded = reference.pad(part.astype(np.float32, copy=False), pads, border, cval)
        full = np.fft.irfft2(np.fft.rfft2(padded, s=size) * spectrum, s=size)
        valid = full[:, span_h - 1: height, span_w - 1: width]
        out[start: start + chunk] = valid[:, ::stride[0], ::stride[1]][:, :oh, :ow]
