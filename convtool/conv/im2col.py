"""im2col / col2im for batched ``N,C,H,W`` arrays, with stride, zero padding and dilation.

``im2col`` unrolls every receptive field into a column, so a correlation becomes one matrix
product; ``col2im`` is its adjoint (it sums overlapping columns back into the image), which is
what the backward pass of a convolution needs.

Column layout (shared by every function here)::

    cols[n, (c * KH + i) * KW + j, oy * OW + ox] = xpad[n, c, oy * sh + i * dh, ox * sw + j * dw]

so ``cols`` has shape ``(N, C*KH*KW, OH*OW)`` and a PyTorch-ordered weight ``w`` of shape
``(F, C, KH, KW)`` gives the correlation as ``(w.reshape(F, -1) @ cols).reshape(N, F, OH, OW)``.

Padding is zero padding and may be asymmetric: ``p`` (all sides), ``(ph, pw)`` or
``((top, bottom), (left, right))``. Other borders (reflect, replicate) are the caller's job:
pad first (``np.pad``), then call with ``padding=0``.

``im2col`` / ``col2im`` are the fast NumPy versions (one strided copy or add per kernel tap);
``im2col_reference`` / ``col2im_reference`` are plain loops kept beside them as the oracle.
"""

from __future__ import annotations

import numpy as np

from convtool.errors import ShapeError
from convtool.shapes import output_size

Pair = tuple[int, int]
Padding = int | Pair | tuple[Pair, Pair]


def _pair(name: str, value: int | Pair) -> Pair:
    """``v`` -> ``(v, v)``; a pair stays a pair; both entries must be positive integers."""
    pair = (value, value) if isinstance(value, (int, np.integer)) else tuple(value)
    if len(pair) != 2 or any(not isinstance(v, (int, np.integer)) or isinstance(v, bool) or v <= 0 for v in pair):
        raise ShapeError(f"{name} must be a positive integer or a pair of them, got {value!r}")
    return int(pair[0]), int(pair[1])


def normalize_padding(padding: Padding) -> tuple[Pair, Pair]:
    """Padding as ``((top, bottom), (left, right))`` from ``p``, ``(ph, pw)`` or the full form."""
    if isinstance(padding, (int, np.integer)) and not isinstance(padding, bool):
        rows = cols = (int(padding), int(padding))
    elif isinstance(padding, tuple) and len(padding) == 2 and all(isinstance(p, (int, np.integer)) for p in padding):
        rows, cols = (int(padding[0]),) * 2, (int(padding[1]),) * 2
    elif isinstance(padding, tuple) and len(padding) == 2 and all(isinstance(p, tuple) and len(p) == 2 for p in padding):
        rows, cols = (int(padding[0][0]), int(padding[0][1])), (int(padding[1][0]), int(padding[1][1]))
    else:
        raise ShapeError(f"padding must be p, (ph, pw) or ((top, bottom), (left, right)), got {padding!r}")
    if min(rows + cols) < 0:
        raise ShapeError(f"padding must not be negative, got {padding!r}")
    return rows, cols


def conv_output_shape(
    height: int,
    width: int,
    kernel_size: int | Pair,
    stride: int | Pair = 1,
    padding: Padding = 0,
    dilation: int | Pair = 1,
) -> Pair:
    """``(OH, OW)`` of a correlation; raises ShapeError if the dilated kernel does not fit."""
    (kh, kw), (sh, sw), (dh, dw) = _pair("kernel_size", kernel_size), _pair("stride", stride), _pair("dilation", dilation)
    rows, cols = normalize_padding(padding)
    return output_size(height, kh, sh, rows, dh), output_size(width, kw, sw, cols, dw)


def _check_input(x: np.ndarray) -> None:
    if not isinstance(x, np.ndarray) or x.ndim != 4:
        raise ShapeError(f"im2col expects an N,C,H,W array, got shape {getattr(x, 'shape', None)}")


def _padded(x: np.ndarray, rows: Pair, cols: Pair) -> np.ndarray:
    if rows == (0, 0) and cols == (0, 0):
        return x
    return np.pad(x, ((0, 0), (0, 0), rows, cols))


def im2col(
    x: np.ndarray,
    kernel_size: int | Pair,
    stride: int | Pair = 1,
    padding: Padding = 0,
    dilation: int | Pair = 1,
    *,
    out: np.ndarray | None = None,
) -> np.ndarray:
    """Unroll the receptive fields of ``x`` (N,C,H,W) into columns.

    Parameters
    ----------
    x : array (N, C, H, W), any float or integer dtype (the result keeps it).
    kernel_size, stride, dilation : int or (h, w) pair of positive ints.
    padding : zero padding, ``p``, ``(ph, pw)`` or ``((top, bottom), (left, right))``.
    out : optional preallocated result of the right shape and dtype, reused between calls.

    Returns
    -------
    cols : array (N, C*KH*KW, OH*OW), C-contiguous, layout as in the module docstring.
    """
    _check_input(x)
    n, c, h, w = x.shape
    (kh, kw), (sh, sw), (dh, dw) = _pair("kernel_size", kernel_size), _pair("stride", stride), _pair("dilation", dilation)
    rows, cols_pad = normalize_padding(padding)
    oh, ow = conv_output_shape(h, w, (kh, kw), (sh, sw), (rows, cols_pad), (dh, dw))
    shape = (n, c * kh * kw, oh * ow)
    if out is None:
        out = np.empty(shape, dtype=x.dtype)
    elif out.shape != shape or out.dtype != x.dtype or not out.flags.c_contiguous:
        raise ShapeError(f"out must be a C-contiguous {x.dtype} array of shape {shape}, got {out.dtype} {out.shape}")
    xp = _padded(x, rows, cols_pad)
    view = out.reshape(n, c, kh, kw, oh, ow)  # N,C,KH,KW,OH,OW
    for i in range(kh):
        y0 = i * dh
        for j in range(kw):
            x0 = j * dw
            view[:, :, i, j] = xp[:, :, y0 : y0 + sh * (oh - 1) + 1 : sh, x0 : x0 + sw * (ow - 1) + 1 : sw]
    return out


def col2im(
    cols: np.ndarray,
    input_shape: tuple[int, int, int, int],
    kernel_size: int | Pair,
    stride: int | Pair = 1,
    padding: Padding = 0,
    dilation: int | Pair = 1,
) -> np.ndarray:
    """Adjoint of :func:`im2col`: sum every column entry back into its input pixel.

    ``cols`` is (N, C*KH*KW, OH*OW) for an input of ``input_shape`` (N, C, H, W) and the same
    geometry arguments as the ``im2col`` call. Returns an (N, C, H, W) array of ``cols.dtype``;
    padding positions are dropped. This is the input gradient of a convolution given
    ``w.T @ dy`` in column form.
    """
    n, c, h, w = input_shape
    (kh, kw), (sh, sw), (dh, dw) = _pair("kernel_size", kernel_size), _pair("stride", stride), _pair("dilation", dilation)
    rows, cols_pad = normalize_padding(padding)
    oh, ow = conv_output_shape(h, w, (kh, kw), (sh, sw), (rows, cols_pad), (dh, dw))
    if cols.shape != (n, c * kh * kw, oh * ow):
        raise ShapeError(f"cols must have shape {(n, c * kh * kw, oh * ow)} for input {input_shape}, got {cols.shape}")
    xp = np.zeros((n, c, h + rows[0] + rows[1], w + cols_pad[0] + cols_pad[1]), dtype=cols.dtype)
    view = cols.reshape(n, c, kh, kw, oh, ow)
    for i in range(kh):
        y0 = i * dh
        for j in range(kw):
            x0 = j * dw
            xp[:, :, y0 : y0 + sh * (oh - 1) + 1 : sh, x0 : x0 + sw * (ow - 1) + 1 : sw] += view[:, :, i, j]
    return xp[:, :, rows[0] : rows[0] + h, cols_pad[0] : cols_pad[0] + w]


def im2col_reference(
    x: np.ndarray,
    kernel_size: int | Pair,
    stride: int | Pair = 1,
    padding: Padding = 0,
    dilation: int | Pair = 1,
) -> np.ndarray:
    """Naive loop version of :func:`im2col` (the oracle); same arguments and result."""
    _check_input(x)
    n, c, h, w = x.shape
    (kh, kw), (sh, sw), (dh, dw) = _pair("kernel_size", kernel_size), _pair("stride", stride), _pair("dilation", dilation)
    (top, _), (left, _) = rows, cols_pad = normalize_padding(padding)
    oh, ow = conv_output_shape(h, w, (kh, kw), (sh, sw), (rows, cols_pad), (dh, dw))
    out = np.zeros((n, c * kh * kw, oh * ow), dtype=x.dtype)
    for b in range(n):
        for ch in range(c):
            for i in range(kh):
                for j in range(kw):
                    row = (ch * kh + i) * kw + j
                    for oy in range(oh):
                        for ox in range(ow):
                            y, xx = oy * sh + i * dh - top, ox * sw + j * dw - left
                            if 0 <= y < h and 0 <= xx < w:
                                out[b, row, oy * ow + ox] = x[b, ch, y, xx]
    return out


def col2im_reference(
    cols: np.ndarray,
    input_shape: tuple[int, int, int, int],
    kernel_size: int | Pair,
    stride: int | Pair = 1,
    padding: Padding = 0,
    dilation: int | Pair = 1,
) -> np.ndarray:
    """Naive loop version of :func:`col2im` (the oracle); same arguments and result."""
    n, c, h, w = input_shape
    (kh, kw), (sh, sw), (dh, dw) = _pair("kernel_size", kernel_size), _pair("stride", stride), _pair("dilation", dilation)
    (top, _), (left, _) = rows, cols_pad = normalize_padding(padding)
    oh, ow = conv_output_shape(h, w, (kh, kw), (sh, sw), (rows, cols_pad), (dh, dw))
    out = np.zeros(input_shape, dtype=cols.dtype)
    for b in range(n):
        for ch in range(c):
            for i in range(kh):
                for j in range(kw):
                    row = (ch * kh + i) * kw + j
                    for oy in range(oh):
                        for ox in range(ow):
                            y, xx = oy * sh + i * dh - top, ox * sw + j * dw - left
                            if 0 <= y < h and 0 <= xx < w:
                                out[b, ch, y, xx] += cols[b, row, oy * ow + ox]
    return out
