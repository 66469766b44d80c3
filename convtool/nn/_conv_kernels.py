"""Private Numba kernels for Conv2d's forward and backward passes (stride 1), parallel over the images.

Each image is copied once into a zero-padded flat buffer (a thread's own), and an output plane is
computed at the padded width ``WP``: output ``(oy, ox)`` sits at ``oy * WP + ox`` and tap ``(c, ki, kj)``
reads the input at that index plus ``c * HP * WP + ki * dh * WP + kj * dw``. Every tap is then one
long contiguous loop, four taps per pass over the plane (one store per four multiply-adds), with
unsigned indices so Numba adds no negative-index checks. The extra ``WP - OW`` columns are dropped
when the plane is copied out (with the bias added there). The backward pass uses the same loops:
the weight gradient is a dot product per tap (summed per chunk of images, one chunk per thread), the
input gradient a correlation of the output gradient with the mirrored taps. The NumPy im2col + GEMM
path in layers.py is the reference the tests hold these to.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache

import numba
import numpy as np
from numba import njit, prange, uint64


@njit(cache=True, nogil=True, fastmath=True)
def _taps(src, s0, offsets, weights, w0, dst, n):  # pragma: no cover (jitted)
    """``dst[j] = sum_t weights[w0 + t] * src[s0 + offsets[t] + j]`` for ``j < n``, four taps per pass."""
    count, span = offsets.shape[0], uint64(n)
    t, first = 0, True
    while t < count:
        if count - t >= 4:
            a, b = uint64(s0 + offsets[t]), uint64(s0 + offsets[t + 1])
            c, d = uint64(s0 + offsets[t + 2]), uint64(s0 + offsets[t + 3])
            wa, wb, wc, wd = weights[w0 + t], weights[w0 + t + 1], weights[w0 + t + 2], weights[w0 + t + 3]
            if first:
                for j in range(span):
                    dst[j] = wa * src[a + j] + wb * src[b + j] + wc * src[c + j] + wd * src[d + j]
            else:
                for j in range(span):
                    dst[j] += wa * src[a + j] + wb * src[b + j] + wc * src[c + j] + wd * src[d + j]
            t += 4
        else:
            a, wa = uint64(s0 + offsets[t]), weights[w0 + t]
            if first:
                for j in range(span):
                    dst[j] = wa * src[a + j]
            else:
                for j in range(span):
                    dst[j] += wa * src[a + j]
            t += 1
        first = False


@njit(cache=True, nogil=True, fastmath=True)
def _taps4(src, s0, offsets, weights, w0, wstep, dst, d0, dstep, n):  # pragma: no cover (jitted)
    """``_taps`` for four outputs at once (weights rows ``w0 + k * wstep``, planes ``d0 + k * dstep``):
    each input value loaded serves four outputs, so a pass does 16 multiply-adds per 4 loads of input."""
    count, span = offsets.shape[0], uint64(n)
    p0, p1, p2, p3 = uint64(d0), uint64(d0 + dstep), uint64(d0 + 2 * dstep), uint64(d0 + 3 * dstep)
    for j in range(span):
        dst[p0 + j] = 0
        dst[p1 + j] = 0
        dst[p2 + j] = 0
        dst[p3 + j] = 0
    t = 0
    while t < count:
        if count - t >= 2:
            a, b = uint64(s0 + offsets[t]), uint64(s0 + offsets[t + 1])
            r0, r1, r2, r3 = w0 + t, w0 + wstep + t, w0 + 2 * wstep + t, w0 + 3 * wstep + t
            a0, a1, a2, a3 = weights[r0], weights[r1], weights[r2], weights[r3]
            b0, b1, b2, b3 = weights[r0 + 1], weights[r1 + 1], weights[r2 + 1], weights[r3 + 1]
            for j in range(span):
                u, v = src[a + j], src[b + j]
                dst[p0 + j] += a0 * u + b0 * v
                dst[p1 + j] += a1 * u + b1 * v
                dst[p2 + j] += a2 * u + b2 * v
                dst[p3 + j] += a3 * u + b3 * v
            t += 2
        else:
            a = uint64(s0 + offsets[t])
            a0, a1 = weights[w0 + t], weights[w0 + wstep + t]
            a2, a3 = weights[w0 + 2 * wstep + t], weights[w0 + 3 * wstep + t]
            for j in range(span):
                u = src[a + j]
                dst[p0 + j] += a0 * u
                dst[p1 + j] += a1 * u
                dst[p2 + j] += a2 * u
                dst[p3 + j] += a3 * u
            t += 1


@njit(cache=True, nogil=True)
def _correlate(src, s0, offsets, weights, outputs, dst, n):  # pragma: no cover (jitted)
    """``dst[k * n + j] = sum_t weights[k * T + t] * src[s0 + offsets[t] + j]`` for every output ``k``."""
    taps = offsets.shape[0]
    k = 0
    while outputs - k >= 4:
        _taps4(src, s0, offsets, weights, k * taps, taps, dst, k * n, n, n)
        k += 4
    while k < outputs:
        _taps(src, s0, offsets, weights, k * taps, dst[k * n : (k + 1) * n], n)
        k += 1


@njit(cache=True, nogil=True, fastmath=True)
def _dots(g, g0, src, offsets, out, o0, n):  # pragma: no cover (jitted)
    """``out[o0 + t] += sum_j g[g0 + j] * src[offsets[t] + j]`` over ``j < n``, four taps per pass."""
    count, span, base = offsets.shape[0], uint64(n), uint64(g0)
    t = 0
    while t < count:
        if count - t >= 4:
            a, b, c, d = uint64(offsets[t]), uint64(offsets[t + 1]), uint64(offsets[t + 2]), uint64(offsets[t + 3])
            sa = sb = sc = sd = out.dtype.type(0)
            for j in range(span):
                v = g[base + j]
                sa += v * src[a + j]
                sb += v * src[b + j]
                sc += v * src[c + j]
                sd += v * src[d + j]
            out[o0 + t] += sa
            out[o0 + t + 1] += sb
            out[o0 + t + 2] += sc
            out[o0 + t + 3] += sd
            t += 4
        else:
            a = uint64(offsets[t])
            s = out.dtype.type(0)
            for j in range(span):
                s += g[base + j] * src[a + j]
            out[o0 + t] += s
            t += 1


@njit(cache=True, nogil=True, fastmath=True)
def _dots2(g, g0, gstep, src, offsets, out, o0, ostep, n):  # pragma: no cover (jitted)
    """``_dots`` for two gradient planes at once (``g0`` and ``g0 + gstep``, into ``o0`` and ``o0 + ostep``):
    each input value loaded serves both, eight multiply-adds per five loads."""
    count, span = offsets.shape[0], uint64(n)
    e, f = uint64(g0), uint64(g0 + gstep)
    t = 0
    while t + 4 <= count:
        a, b, c, d = uint64(offsets[t]), uint64(offsets[t + 1]), uint64(offsets[t + 2]), uint64(offsets[t + 3])
        ea = eb = ec = ed = fa = fb = fc = fd = out.dtype.type(0)
        for j in range(span):
            u, v = g[e + j], g[f + j]
            xa, xb, xc, xd = src[a + j], src[b + j], src[c + j], src[d + j]
            ea += u * xa
            eb += u * xb
            ec += u * xc
            ed += u * xd
            fa += v * xa
            fb += v * xb
            fc += v * xc
            fd += v * xd
        out[o0 + t] += ea
        out[o0 + t + 1] += eb
        out[o0 + t + 2] += ec
        out[o0 + t + 3] += ed
        out[o0 + ostep + t] += fa
        out[o0 + ostep + t + 1] += fb
        out[o0 + ostep + t + 2] += fc
        out[o0 + ostep + t + 3] += fd
        t += 4
    while t < count:
        a = uint64(offsets[t])
        se = sf = out.dtype.type(0)
        for j in range(span):
            x = src[a + j]
            se += g[e + j] * x
            sf += g[f + j] * x
        out[o0 + t] += se
        out[o0 + ostep + t] += sf
        t += 1


@njit(cache=True, nogil=True)
def _pad_image(x, i, ph, pw, buf):  # pragma: no cover (jitted)
    """Copy image ``i`` of ``x`` (N,C,H,W) into the interior of the zero-bordered flat ``buf`` (C,HP,WP)."""
    c, h, w = x.shape[1], x.shape[2], x.shape[3]
    wp = w + 2 * pw
    plane = (h + 2 * ph) * wp
    for ci in range(c):
        for r in range(h):
            row = uint64(ci * plane + (r + ph) * wp + pw)
            for col in range(w):
                buf[row + col] = x[i, ci, r, col]


@njit(cache=True, parallel=True)
def _conv_forward(x, weights, bias, offsets, ph, pw, y):  # pragma: no cover (jitted)
    n, c, h, w = x.shape
    f, oh, ow = y.shape[1], y.shape[2], y.shape[3]
    wp = w + 2 * pw
    length = (oh - 1) * wp + ow
    for i in prange(n):  # N,C,H,W -> N,F,OH,OW
        xp = np.zeros(c * (h + 2 * ph) * wp, x.dtype)
        planes = np.empty(f * length, x.dtype)
        _pad_image(x, i, ph, pw, xp)
        _correlate(xp, 0, offsets, weights, f, planes, length)
        for fo in range(f):
            for oy in range(oh):
                row = uint64(fo * length + oy * wp)
                for ox in range(ow):
                    y[i, fo, oy, ox] = planes[row + ox] + bias[fo]


@njit(cache=True, parallel=True)
def _conv_backward(x, weights_t, dy, offsets, mirrored, margin, ph, pw, dx, gw, gb):  # pragma: no cover (jitted)
    """Weight and bias gradients per chunk of images into ``gw`` (T, F*C*KH*KW) and ``gb`` (T,F); the
    input gradient into ``dx`` unless it is empty. ``weights_t`` is (C, F*KH*KW); ``mirrored`` holds
    the taps of the correlation that gives the input gradient (offsets into the margined ``dy`` planes)."""
    n, c, h, w = x.shape
    f, oh, ow = dy.shape[1], dy.shape[2], dy.shape[3]
    hp, wp = h + 2 * ph, w + 2 * pw
    taps, length = offsets.shape[0], (oh - 1) * wp + ow
    dy_plane = margin + hp * wp
    chunks = gw.shape[0]
    need_dx = dx.shape[0] > 0
    for t in prange(chunks):
        xp = np.zeros(c * hp * wp, x.dtype)
        dyp = np.zeros(f * dy_plane, x.dtype)  # per channel: margin zeros, then dy at the padded width
        dxp = np.empty(c * h * wp, x.dtype)
        for i in range(t * n // chunks, (t + 1) * n // chunks):
            _pad_image(x, i, ph, pw, xp)
            for fo in range(f):
                total = gb.dtype.type(0)
                for oy in range(oh):
                    row = uint64(fo * dy_plane + margin + oy * wp)
                    for ox in range(ow):
                        v = dy[i, fo, oy, ox]
                        dyp[row + ox] = v
                        total += v
                gb[t, fo] += total
            fo = 0
            while fo + 2 <= f:
                _dots2(dyp, fo * dy_plane + margin, dy_plane, xp, offsets, gw[t], fo * taps, taps, length)
                fo += 2
            if fo < f:
                _dots(dyp, fo * dy_plane + margin, xp, offsets, gw[t], fo * taps, length)
            if need_dx:  # rows ph..ph+h of the padded input gradient, then the padding dropped
                _correlate(dyp, margin + ph * wp, mirrored, weights_t, c, dxp, h * wp)
                for ci in range(c):
                    for r in range(h):
                        row = uint64(ci * h * wp + r * wp + pw)
                        for col in range(w):
                            dx[i, ci, r, col] = dxp[row + col]


@lru_cache(maxsize=64)
def _tap_offsets(channels: int, plane: int, kernel: tuple[int, int], dilation: tuple[int, int], wp: int) -> np.ndarray:
    """Flat offsets of taps ``(c, ki, kj)`` in a (C, HP, WP) buffer, in weight order (cached: read-only)."""
    (kh, kw), (dh, dw) = kernel, dilation
    c, ki, kj = np.meshgrid(np.arange(channels), np.arange(kh), np.arange(kw), indexing="ij")
    offsets = (c * plane + ki * dh * wp + kj * dw).ravel().astype(np.int64)
    offsets.flags.writeable = False
    return offsets


@lru_cache(maxsize=64)
def _mirrored_offsets(channels: int, plane: int, kernel: tuple[int, int], dilation: tuple[int, int], wp: int) -> np.ndarray:
    """Offsets ``c * plane - (ki * dh * WP + kj * dw)`` of the input-gradient correlation, in weight order."""
    spatial = _tap_offsets(1, 0, kernel, dilation, wp)
    offsets = (np.arange(channels)[:, None] * plane - spatial[None, :]).ravel()
    offsets.flags.writeable = False
    return offsets


def conv2d_forward(x: np.ndarray, weight: np.ndarray, bias: np.ndarray | None, padding: tuple[int, int],
                   dilation: tuple[int, int]) -> np.ndarray:
    """Stride-1 correlation of ``x`` (N,C,H,W) with ``weight`` (F,C,KH,KW) plus ``bias``: (N,F,OH,OW)."""
    n, c, h, w = x.shape
    f, _, kh, kw = weight.shape
    (ph, pw), (dh, dw) = padding, dilation
    hp, wp = h + 2 * ph, w + 2 * pw
    oh, ow = hp - (kh - 1) * dh, wp - (kw - 1) * dw
    offsets = _tap_offsets(c, hp * wp, (kh, kw), dilation, wp)
    b = np.zeros(f, x.dtype) if bias is None else np.ascontiguousarray(bias, x.dtype)
    y = np.empty((n, f, oh, ow), x.dtype)
    _conv_forward(np.ascontiguousarray(x), np.ascontiguousarray(weight, x.dtype).ravel(), b, offsets, ph, pw, y)
    return y


def conv2d_backward(x: np.ndarray, weight: np.ndarray, dy: np.ndarray, padding: tuple[int, int],
                    dilation: tuple[int, int], need_dx: bool):
    """Gradients ``(dx or None, dweight, dbias)`` of a stride-1 Conv2d for the output gradient ``dy``."""
    n, c, h, w = x.shape
    f, _, kh, kw = weight.shape
    (ph, pw), (dh, dw) = padding, dilation
    hp, wp = h + 2 * ph, w + 2 * pw
    margin = (kh - 1) * dh * wp + (kw - 1) * dw  # the largest tap offset: mirrored reads never go below 0
    offsets = _tap_offsets(c, hp * wp, (kh, kw), dilation, wp)
    mirrored = _mirrored_offsets(f, margin + hp * wp, (kh, kw), dilation, wp)
    weights_t = np.ascontiguousarray(weight.transpose(1, 0, 2, 3), x.dtype).ravel()  # C, F*KH*KW
    chunks = max(1, min(numba.get_num_threads(), n))
    gw = np.zeros((chunks, weight.size), x.dtype)
    gb = np.zeros((chunks, f), x.dtype)
    dx = np.empty(x.shape if need_dx else (0, 0, 0, 0), x.dtype)
    _conv_backward(np.ascontiguousarray(x), weights_t, np.ascontiguousarray(dy, x.dtype), offsets, mirrored, margin,
                   ph, pw, dx, gw, gb)
    return (dx if need_dx else None), gw.sum(axis=0).reshape(weight.shape), gb.sum(axis=0)


def max_threads() -> int:
    """The most threads the kernels can use in this process (Numba's pool: the CPUs, or NUMBA_NUM_THREADS)."""
    return int(numba.config.NUMBA_NUM_THREADS)  # type: ignore[attr-defined]


@contextmanager
def using_threads(count: int) -> Iterator[None]:
    """Run the kernels on ``count`` threads inside the block, then restore the previous count."""
    previous = numba.get_num_threads()
    numba.set_num_threads(count)
    try:
        yield
    finally:
        numba.set_num_threads(previous)
