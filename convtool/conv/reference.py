"""Plain NumPy reference implementations: the oracle every fast path is tested against.

Arrays are (..., H, W); leading axes (channels, images) are independent. Padding is explicit
``(top, bottom, left, right)``; the border modes follow numpy.pad's names.
"""

from __future__ import annotations

from typing import Any

import numpy as np

# convtool border name -> numpy.pad mode
PAD_MODES: dict[str, Any] = {  # np.pad modes (its stubs want literals)
    "zero": "constant", "constant": "constant", "reflect": "reflect",
             "symmetric": "symmetric", "replicate": "edge", "wrap": "wrap"}


def pad(image: np.ndarray, padding: tuple[int, int, int, int], border: str, cval: float = 0.0) -> np.ndarray:
    """Pad the last two axes by ``(top, bottom, left, right)`` cells filled by ``border``."""
    top, bottom, left, right = padding
    widths = [(0, 0)] * (image.ndim - 2) + [(top, bottom), (left, right)]
    mode = PAD_MODES[border]
    if mode == "constant":
        value = 0.0 if border == "zero" else cval
        return np.pad(image, widths, mode="constant", constant_values=value)
    return np.pad(image, widths, mode=mode)  # type: ignore[call-overload]


def correlate2d(image: np.ndarray, kernel: np.ndarray, stride: tuple[int, int],
                padding: tuple[int, int, int, int], border: str, cval: float,
                dilation: tuple[int, int]) -> np.ndarray:
    """out[y, x] = sum_ij kernel[i, j] * padded[y*sh + i*dh, x*sw + j*dw], accumulated in float64."""
    padded = pad(image.astype(np.float64), padding, border, cval)
    (kh, kw), (sh, sw), (dh, dw) = kernel.shape, stride, dilation
    oh = (padded.shape[-2] - (kh - 1) * dh - 1) // sh + 1
    ow = (padded.shape[-1] - (kw - 1) * dw - 1) // sw + 1
    out = np.zeros(image.shape[:-2] + (oh, ow))
    for i in range(kh):
        for j in range(kw):
            window = padded[..., i * dh: i * dh + (oh - 1) * sh + 1: sh, j * dw: j * dw + (ow - 1) * sw + 1: sw]
            out += kernel[i, j] * window
    return out.astype(np.float32)


def pool2d(image: np.ndarray, size: tuple[int, int], stride: tuple[int, int],
           padding: tuple[int, int, int, int], kind: str) -> np.ndarray:
    """Max, average or L2 pooling; padded cells are ignored (never counted in averages)."""
    values = pad(image.astype(np.float64), padding, "constant", np.nan)
    (ph, pw), (sh, sw) = size, stride
    oh = (values.shape[-2] - ph) // sh + 1
    ow = (values.shape[-1] - pw) // sw + 1
    windows = np.stack([values[..., i: i + (oh - 1) * sh + 1: sh, j: j + (ow - 1) * sw + 1: sw]
                        for i in range(ph) for j in range(pw)])
    if kind == "max":
        out = np.nanmax(windows, axis=0)
    elif kind == "avg":
        out = np.nanmean(windows, axis=0)
    else:
        out = np.sqrt(np.nansum(windows**2, axis=0))
    return out.astype(np.float32)
