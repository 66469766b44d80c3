"""im2col / col2im for batched ``N,C,H,W`` arrays, with stride, zero padding and dilation.

``im2col`` unrolls every receptive field into a column, so a correlation becomes one matrix
product; ``col2im`` is its adjoint (it sums overlapping columns back into the image), which is
what the backward pass of a convolution needs.

Column layout (shared by every function here)::

    cols[n, (c * KH + i) * KW + j, oy * OW + ox] = xpad[n, c, oy * sh + i * dh, ox * sw + j * dw]

so ``cols`` has shape ``(N, C*KH*KW, OH*OW)`` and a PyTorch-ordered weight ``w`` of shape
``(F, C, KH, KW)`` gives the correlation as ``(w.reshape(F, -1) @ cols).reshape(N, F, OH, OW)``.

Padding is zero padding and may be asymmetric: ``p`` (all sides), ``(ph, pw)``,
``(top, bottom, left, right)`` or ``((top, bottom), (left, right))`` (see :func:`convtool.geometry.pads`). Other borders (reflect, replicate) are the caller's job:
pad first (``np.pad``), then call with ``padding=0``.

With ``order="cnl"`` the columns come as ``(C*KH*KW, N, OH*OW)`` instead, so a whole batch is
one GEMM: ``w.reshape(F, -1) @ cols.reshape(C*KH*KW, -1)``. ``order="cln"`` gives
``(C*KH*KW, OH*OW, N)`` with the batch innermost: every kernel tap is then one block copy of
``OW*N`` contiguous values per output row, the fastest layout for small images in large batches
(what training uses); the GEMM result ``(F, OH*OW*N)`` needs one transpose back to N,F,OH,OW.

``im2col`` / ``col2im`` are the fast versions (private Numba kernels, compiled once and cached,
borders handled in the loop so no padded copy is made); ``im2col_reference`` /
``col2im_reference`` are plain loops kept beside them as the oracle.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from convtool.errors import ShapeError
from convtool.geometry import Pair, axis_pairs, pads, pair
from convtool.shapes import output_size

Padding = int | Pair | tuple[int, int, int, int] | tuple[Pair, Pair]


def conv_output_shape(
    height: int,
    width: int,
    kernel_size: int | Pair,
    stride: int | Pair = 1,
    padding: Padding = 0,
    dilation: int | Pair = 1,
) -> Pair:
    """``(OH, OW)`` of a correlation; raises ShapeError if the dilated kernel does not fit."""
    (kh, kw), (sh, sw), (dh, dw) = pair("kernel_size", kernel_size), pair("stride", stride), pair("dilation", dilation)
    rows, cols = axis_pairs(pads(padding))
    return output_size(height, kh, sh, rows, dh), output_size(width, kw, sw, cols, dw)


def _check_input(x: np.ndarray) -> None:
    if not isinstance(x, np.ndarray) or x.ndim != 4:
        raise ShapeError(f"im2col expects an N,C,H,W array, got shape {getattr(x, 'shape', None)}")


_ORDERS = ("ncl", "cnl", "cln")


def _geometry(shape, kernel_size, stride, padding, dilation) -> tuple[int, ...]:
    """Validated ``(kh, kw, sh, sw, top, left, dh, dw, oh, ow)`` for an input of ``shape`` (N,C,H,W)."""
    (kh, kw), (sh, sw), (dh, dw) = pair("kernel_size", kernel_size), pair("stride", stride), pair("dilation", dilation)
    rows, cols = axis_pairs(pads(padding))
    oh, ow = conv_output_shape(shape[2], shape[3], (kh, kw), (sh, sw), (rows, cols), (dh, dw))
    return kh, kw, sh, sw, rows[0], cols[0], dh, dw, oh, ow


def _columns_shape(order: str, n: int, rows: int, length: int) -> tuple[int, int, int]:
    if order not in _ORDERS:
        raise ShapeError(f"order must be one of {_ORDERS}, got {order!r}")
    return {"ncl": (n, rows, length), "cnl": (rows, n, length), "cln": (rows, length, n)}[order]


def im2col(
    x: np.ndarray,
    kernel_size: int | Pair,
    stride: int | Pair = 1,
    padding: Padding = 0,
    dilation: int | Pair = 1,
    *,
    order: str = "ncl",
    out: np.ndarray | None = None,
) -> np.ndarray:
    """Unroll the receptive fields of ``x`` (N,C,H,W) into columns.

    Parameters
    ----------
    x : array (N, C, H, W), float32 or float64 (the result keeps the dtype).
    kernel_size, stride, dilation : int or (h, w) pair of positive ints.
    padding : zero padding, ``p``, ``(ph, pw)`` or ``((top, bottom), (left, right))``.
    order : {'ncl', 'cnl', 'cln'}
        ``'ncl'`` gives (N, C*KH*KW, OH*OW); ``'cnl'`` (C*KH*KW, N, OH*OW); ``'cln'`` (C*KH*KW, OH*OW, N).
    out : optional preallocated C-contiguous result of the right shape and dtype, reused between calls.

    Returns
    -------
    cols : C-contiguous array, layout as in the module docstring.
    """
    _check_input(x)
    n, c = x.shape[:2]
    kh, kw, sh, sw, top, left, dh, dw, oh, ow = _geometry(x.shape, kernel_size, stride, padding, dilation)
    shape = _columns_shape(order, n, c * kh * kw, oh * ow)
    if x.dtype not in (np.float32, np.float64):
        x = x.astype(np.float32)
    if out is None:
        out = np.empty(shape, dtype=x.dtype)
    elif out.shape != shape or out.dtype != x.dtype or not out.flags.c_contiguous:
        raise ShapeError(f"out must be a C-contiguous {x.dtype} array of shape {shape}, got {out.dtype} {out.shape}")
    if order == "cln":
        _im2col_batch_last(x, (kh, kw, sh, sw, top, left, dh, dw, oh, ow), out)
        return out
    _im2col_kernel(np.ascontiguousarray(x), kh, kw, sh, sw, top, left, dh, dw, oh, ow, out.reshape(-1, oh * ow), order == "ncl")
    return out


def col2im(
    cols: np.ndarray,
    input_shape: tuple[int, int, int, int],
    kernel_size: int | Pair,
    stride: int | Pair = 1,
    padding: Padding = 0,
    dilation: int | Pair = 1,
    *,
    order: str = "ncl",
) -> np.ndarray:
    """Adjoint of :func:`im2col`: sum every column entry back into its input pixel.

    ``cols`` is laid out as ``im2col(..., order=order)`` returns it for an input of ``input_shape``
    (N, C, H, W) with the same geometry arguments. Returns an (N, C, H, W) array of ``cols.dtype``
    (float32 or float64); entries that fall on the padding are dropped. With ``cols = W^T @ dY`` this
    is the input gradient of a convolution (and the forward pass of a transposed convolution).
    """
    n, c, h, w = input_shape
    kh, kw, sh, sw, top, left, dh, dw, oh, ow = _geometry(input_shape, kernel_size, stride, padding, dilation)
    shape = _columns_shape(order, n, c * kh * kw, oh * ow)
    if cols.shape != shape:
        raise ShapeError(f"cols must have shape {shape} for input {tuple(input_shape)}, got {cols.shape}")
    if cols.dtype not in (np.float32, np.float64):
        cols = cols.astype(np.float32)
    if order == "cln":
        return _col2im_batch_last(cols, (n, c, h, w), (kh, kw, sh, sw, top, left, dh, dw, oh, ow))
    out = np.zeros(tuple(input_shape), dtype=cols.dtype)
    _col2im_kernel(np.ascontiguousarray(cols).reshape(-1, oh * ow), kh, kw, sh, sw, top, left, dh, dw, oh, ow, out, order == "ncl")
    return out


def _im2col_batch_last(x: np.ndarray, geometry: tuple[int, ...], out: np.ndarray) -> None:
    """'cln' columns by NumPy block copies from a zero-padded C,H,W,N copy of ``x``."""
    kh, kw, sh, sw, top, left, dh, dw, oh, ow = geometry
    n, c, h, w = x.shape
    height = max(h + top, (oh - 1) * sh + (kh - 1) * dh + 1)
    width = max(w + left, (ow - 1) * sw + (kw - 1) * dw + 1)
    padded = np.zeros((c, height, width, n), x.dtype)  # C, H', W', N
    padded[:, top : top + h, left : left + w] = x.transpose(1, 2, 3, 0)
    view = out.reshape(c, kh, kw, oh, ow, n)
    for i in range(kh):
        for j in range(kw):
            y0, x0 = i * dh, j * dw
            view[:, i, j] = padded[:, y0 : y0 + (oh - 1) * sh + 1 : sh, x0 : x0 + (ow - 1) * sw + 1 : sw]


def _col2im_batch_last(cols: np.ndarray, input_shape: tuple[int, int, int, int], geometry: tuple[int, ...]) -> np.ndarray:
    """Adjoint of ``_im2col_batch_last``: block adds into a padded C,H,W,N buffer, then N,C,H,W."""
    kh, kw, sh, sw, top, left, dh, dw, oh, ow = geometry
    n, c, h, w = input_shape
    height = max(h + top, (oh - 1) * sh + (kh - 1) * dh + 1)
    width = max(w + left, (ow - 1) * sw + (kw - 1) * dw + 1)
    padded = np.zeros((c, height, width, n), cols.dtype)
    view = cols.reshape(c, kh, kw, oh, ow, n)
    for i in range(kh):
        for j in range(kw):
            y0, x0 = i * dh, j * dw
            padded[:, y0 : y0 + (oh - 1) * sh + 1 : sh, x0 : x0 + (ow - 1) * sw + 1 : sw] += view[:, i, j]
    return np.ascontiguousarray(padded[:, top : top + h, left : left + w].transpose(3, 0, 1, 2))


@njit(cache=True, nogil=True)
def _valid_range(offset, stride, size, count):  # pragma: no cover (jitted)
    """Outputs ``o`` in [lo, hi) whose input ``o * stride + offset`` lies inside 0..size-1."""
    lo = 0 if offset >= 0 else (-offset + stride - 1) // stride
    hi = 0 if size - 1 - offset < 0 else (size - 1 - offset) // stride + 1
    return min(lo, count), max(min(hi, count), min(lo, count))


@njit(cache=True, nogil=True)
def _im2col_kernel(x, kh, kw, sh, sw, top, left, dh, dw, oh, ow, out2, batch_first):  # pragma: no cover
    """out2 is the result as 2-D rows: row ``b * CKK + r`` (ncl) or ``r * N + b`` (cnl)."""
    n, c, h, w = x.shape
    ckk = c * kh * kw
    for b in range(n):
        for ch in range(c):
            for i in range(kh):
                ylo, yhi = _valid_range(i * dh - top, sh, h, oh)
                for j in range(kw):
                    xlo, xhi = _valid_range(j * dw - left, sw, w, ow)
                    x0 = j * dw - left
                    row = (ch * kh + i) * kw + j
                    r = b * ckk + row if batch_first else row * n + b
                    out2[r, : ylo * ow] = 0
                    out2[r, yhi * ow :] = 0
                    for oy in range(ylo, yhi):
                        src = x[b, ch, oy * sh + i * dh - top]
                        base = oy * ow
                        for ox in range(xlo):
                            out2[r, base + ox] = 0
                        if sw == 1:  # contiguous copy, vectorised
                            for ox in range(xlo, xhi):
                                out2[r, base + ox] = src[ox + x0]
                        else:
                            for ox in range(xlo, xhi):
                                out2[r, base + ox] = src[ox * sw + x0]
                        for ox in range(xhi, ow):
                            out2[r, base + ox] = 0


@njit(cache=True, nogil=True)
def _col2im_kernel(cols2, kh, kw, sh, sw, top, left, dh, dw, oh, ow, out, batch_first):  # pragma: no cover
    """Adjoint of ``_im2col_kernel``: add every column entry back into ``out`` (N, C, H, W)."""
    n, c, h, w = out.shape
    ckk = c * kh * kw
    for b in range(n):
        for ch in range(c):
            for i in range(kh):
                ylo, yhi = _valid_range(i * dh - top, sh, h, oh)
                for j in range(kw):
                    xlo, xhi = _valid_range(j * dw - left, sw, w, ow)
                    x0 = j * dw - left
                    row = (ch * kh + i) * kw + j
                    r = b * ckk + row if batch_first else row * n + b
                    for oy in range(ylo, yhi):
                        dst = out[b, ch, oy * sh + i * dh - top]
                        base = oy * ow
                        if sw == 1:
                            for ox in range(xlo, xhi):
                                dst[ox + x0] += cols2[r, base + ox]
                        else:
                            for ox in range(xlo, xhi):
                                dst[ox * sw + x0] += cols2[r, base + ox]


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
    (kh, kw), (sh, sw), (dh, dw) = pair("kernel_size", kernel_size), pair("stride", stride), pair("dilation", dilation)
    (top, _), (left, _) = rows, cols_pad = axis_pairs(pads(padding))
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
    (kh, kw), (sh, sw), (dh, dw) = pair("kernel_size", kernel_size), pair("stride", stride), pair("dilation", dilation)
    (top, _), (left, _) = rows, cols_pad = axis_pairs(pads(padding))
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
