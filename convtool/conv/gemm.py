"""im2col + matrix product: the whole correlation as one GEMM (the form CNN layers use).

``correlate_batch`` takes N,C,H,W images and F,C,KH,KW filters and returns N,F,OH,OW: every output
channel sums its filter over all input channels. ``correlate`` is the single-kernel case used by
``correlate2d(..., backend="im2col")``. Columns come from :func:`convtool.conv.im2col.im2col`, made in
bands of output rows so the column matrix stays under ``BAND_BYTES``.
"""

from __future__ import annotations

import numpy as np

from convtool import geometry, shapes
from convtool.conv import reference
from convtool.conv.im2col import im2col
from convtool.errors import ShapeError

BAND_BYTES = 32 << 20  # largest column matrix built at once


def correlate_batch(x: np.ndarray, weight: np.ndarray, *, stride: tuple[int, int] = (1, 1),
                    pads: tuple[int, int, int, int] = (0, 0, 0, 0), border: str = "zero", cval: float = 0.0,
                    dilation: tuple[int, int] = (1, 1)) -> np.ndarray:
    """Multi-channel, multi-filter correlation: (N, C, H, W) x (F, C, KH, KW) -> float32 (N, F, OH, OW)."""
    if x.ndim != 4 or weight.ndim != 4 or x.shape[1] != weight.shape[1]:
        raise ShapeError(f"need images N,C,H,W and filters F,C,KH,KW with the same C, got {x.shape} and {weight.shape}")
    n, c, h, w = x.shape
    f, _, kh, kw = weight.shape
    (sh, sw), (dh, dw) = stride, dilation
    oh = shapes.output_size(h, kh, sh, pads[0:2], dh)
    ow = shapes.output_size(w, kw, sw, pads[2:4], dw)
    padded = reference.pad(x.astype(np.float32, copy=False), pads, border, cval)  # N,C,H+pt+pb,W+pl+pr
    matrix = weight.reshape(f, c * kh * kw).astype(np.float32)
    out = np.empty((n, f, oh, ow), dtype=np.float32)
    band = max(1, BAND_BYTES // (4 * c * kh * kw * ow))
    span_h = geometry.effective_kernel(kh, dh)
    for y0 in range(0, oh, band):
        y1 = min(oh, y0 + band)
        rows = padded[:, :, y0 * sh: (y1 - 1) * sh + span_h]
        cols = im2col(np.ascontiguousarray(rows), (kh, kw), (sh, sw), 0, (dh, dw))  # N, C*KH*KW, rows*OW
        out[:, :, y0:y1] = np.matmul(matrix, cols).reshape(n, f, y1 - y0, ow)
    return out


def correlate(stack: np.ndarray, kernel: np.ndarray, stride: tuple[int, int], pads: tuple[int, int, int, int],
              border: str, cval: float, dilation: tuple[int, int], out: np.ndarray) -> None:
    """Correlate a (B, H, W) stack with one 2D kernel into the (B, OH, OW) float32 ``out``."""
    result = correlate_batch(stack[:, None], kernel[None, None], stride=stride, pads=pads, border=border,
                             cval=cval, dilation=dilation)
    out[...] = result[:, 0]
