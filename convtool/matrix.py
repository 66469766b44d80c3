"""The matrix behind a layer: ``y = W x`` with one row per output unit and one column per input pixel.

A convolution's W is made of offset copies of its kernel (a doubly block Toeplitz matrix); a tiled
convolution's rows cycle through its T kernels; a locally connected layer's rows each hold weights of
their own; a dense layer's W is full. Rows are ordered ``(f, oy, ox)`` and columns ``(c, y, x)``, the
row-major flattening of the output and input. ``W^T`` maps an output gradient back onto the input:
the input gradient of the backward pass, which is also the transposed convolution.

:func:`layer_matrix` builds W from weights by plain loops over the kernel taps (no im2col), so the
checks in :func:`verify` compare two independent computations: W against the convolution core
(:func:`convtool.conv.correlate2d`) or the tiled layer's forward pass, and W^T against col2im
(the layer's backward pass).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from convtool.errors import UsageError
from convtool.geometry import Pads
from convtool.layer_kinds import Kind, check_period

PRINT_COLUMNS = 64  # widest W printed as numbers (an 8x8 input)
PRINT_ROWS = 64
PICTURE_ENTRIES = 16_000_000  # largest W drawn as a picture (one pixel per entry)

@dataclass(frozen=True)
class Spec:
    """A 2-D layer (1-D inputs are 1 x n): channels, sizes, kernel, stride, padding (top, bottom, left, right)."""

    cin: int
    cout: int
    n: tuple[int, int]
    k: tuple[int, int]
    s: tuple[int, int] = (1, 1)
    pads: Pads = (0, 0, 0, 0)
    d: tuple[int, int] = (1, 1)

    @property
    def out(self) -> tuple[int, int]:
        from convtool.shapes import output_size

        h, w = (output_size(n, k, s, p, d) for n, k, s, p, d in
                zip(self.n, self.k, self.s, ((self.pads[0], self.pads[1]), (self.pads[2], self.pads[3])), self.d))
        return h, w

    @property
    def shape(self) -> tuple[int, int]:
        """(rows, columns) of W: output units x input pixels."""
        return self.cout * math.prod(self.out), self.cin * math.prod(self.n)


def period_of(kind: Kind, spec: Spec) -> tuple[int, int]:
    """Tiling period (TH, TW) of a conv, tiled or local layer of ``spec``."""
    if kind.name == "conv":
        return 1, 1
    if kind.name == "local":
        return spec.out
    if kind.name == "tiled":
        period = kind.period or (1,)
        if len(period) == 1:  # one period for both axes; a 1-D layer (1 x n) tiles its only axis
            period = (1, period[0]) if spec.n[0] == 1 else (period[0], period[0])
        pair = (period[0], period[1])
        check_period(pair, spec.out)
        return pair
    raise UsageError(f"a {kind.name} layer has no tiling period")


def weight_shape(kind: Kind, spec: Spec) -> tuple[int, ...]:
    """(TH, TW, F, C, KH, KW) for conv, tiled and local layers; (F*OH*OW, C*H*W) for dense."""
    if kind.name == "dense":
        return spec.shape
    return (*period_of(kind, spec), spec.cout, spec.cin, *spec.k)


def layer_matrix(weight: np.ndarray, spec: Spec) -> np.ndarray:
    """W of a tiled layer with ``weight`` (TH, TW, F, C, KH, KW); a (rows, cols) weight is dense W itself."""
    if weight.ndim == 2:
        return weight.copy()
    th, tw, f_count, c_count, kh, kw = weight.shape
    (h, w), (oh, ow) = spec.n, spec.out
    (sh, sw), (dh, dw), top, left = spec.s, spec.d, spec.pads[0], spec.pads[2]
    matrix = np.zeros(spec.shape, dtype=weight.dtype)
    oy, ox = np.meshgrid(np.arange(oh), np.arange(ow), indexing="ij")
    for f in range(f_count):
        for c in range(c_count):
            for i in range(kh):
                for j in range(kw):
                    y, x = oy * sh + i * dh - top, ox * sw + j * dw - left
                    inside = (y >= 0) & (y < h) & (x >= 0) & (x < w)
                    rows = (f * oh + oy[inside]) * ow + ox[inside]
                    cols = (c * h + y[inside]) * w + x[inside]
                    matrix[rows, cols] = weight[oy[inside] % th, ox[inside] % tw, f, c, i, j]
    return matrix


def weight_ids(kind: Kind, spec: Spec) -> np.ndarray:
    """W with each entry the 1-based number of the distinct weight it holds (0: no connection)."""
    shape = weight_shape(kind, spec)
    return layer_matrix(np.arange(1, math.prod(shape) + 1, dtype=np.int64).reshape(shape), spec)


def check_size(spec: Spec, *, picture: bool) -> None:
    """UsageError when W is too large to print (without a picture) or to draw."""
    rows, cols = spec.shape
    if picture and rows * cols > PICTURE_ENTRIES:
        raise UsageError(f"W would be {rows:,} x {cols:,} ({rows * cols:,} entries), too large even for a picture "
                         f"(at most {PICTURE_ENTRIES:,}); use a smaller input size")
    if not picture and (cols > PRINT_COLUMNS or rows > PRINT_ROWS):
        raise UsageError(f"W is {rows:,} x {cols:,} ({rows * cols:,} entries), too large to print (at most "
                         f"{PRINT_ROWS} x {PRINT_COLUMNS}, e.g. an 8x8 input); write it as a picture with -o W.png")


@dataclass
class Checks:
    """``y = W x`` against an independent computation, and ``W^T g`` against the backward pass."""

    x: np.ndarray  # C, H, W
    y: np.ndarray  # F, OH, OW from W
    forward_error: float
    forward_oracle: str
    transpose_error: float
    transpose_oracle: str


def verify(kind: Kind, spec: Spec, weight: np.ndarray, x: np.ndarray, rng: np.random.Generator) -> Checks:
    """Compute ``y = W x`` and ``W^T g`` (random ``g``) and their largest differences from the oracles."""
    matrix = layer_matrix(weight, spec).astype(np.float64)
    y = (matrix @ x.reshape(-1)).reshape(spec.cout, *spec.out)
    g = rng.standard_normal(spec.shape[0])
    dx = matrix.T @ g
    if kind.name == "dense":
        from convtool.nn.layers import Linear

        layer = Linear(spec.shape[1], spec.shape[0], bias=False)
        layer.params["weight"] = matrix
        ours, cache = layer.forward(x.reshape(1, -1))
        back = layer.backward(g[None], cache)[0]
        return Checks(x, y, _err(y, ours), "Linear forward", _err(dx, back), "Linear input gradient")
    layer = _tiled_layer(spec, weight)
    ours, cache = layer.forward(x[None].astype(np.float64))
    back = layer.backward(g.reshape(1, spec.cout, *spec.out), cache)[0]
    transpose_oracle = "col2im (the input gradient of the backward pass = transposed convolution)"
    transpose_error = _err(dx, back)
    if kind.name != "conv":
        return Checks(x, y, _err(y, ours), "TiledConv2d forward (im2col + GEMM per kernel)", transpose_error,
                      transpose_oracle)
    transposed = _conv_transpose(weight[0, 0], g.reshape(spec.cout, *spec.out), spec)
    if transposed is not None:  # ConvTranspose2d covers symmetric padding, no dilation, no dropped inputs
        transpose_oracle = "ConvTranspose2d forward and col2im (the input gradient of the backward pass)"
        transpose_error = max(transpose_error, _err(dx, transposed))
    return Checks(x, y, _err(y, _core(x, weight[0, 0], spec)), "convtool.conv.correlate2d", transpose_error,
                  transpose_oracle)


def _tiled_layer(spec: Spec, weight: np.ndarray):
    from convtool.nn.local import TiledConv2d

    layer = TiledConv2d(spec.cin, spec.cout, spec.k, period=weight.shape[:2], stride=spec.s,
                        padding=spec.pads, dilation=spec.d, bias=False)
    layer.params["weight"] = weight.astype(np.float64)
    layer.needs_input_grad = True
    return layer


def _conv_transpose(kernels: np.ndarray, g: np.ndarray, spec: Spec) -> np.ndarray | None:
    """The transposed convolution of ``g`` by nn's ConvTranspose2d, when it can give the input's size."""
    from convtool.nn.layers import ConvTranspose2d

    top, bottom, left, right = spec.pads
    if top != bottom or left != right or spec.d != (1, 1):
        return None
    layer = ConvTranspose2d(spec.cout, spec.cin, spec.k, spec.s, (top, left), bias=False)
    if layer.output_shape((1, *g.shape))[2:] != spec.n:
        return None
    layer.params["weight"] = kernels.astype(np.float64)  # (out=F, in=C) of the conv is (in=F, out=C) here
    return layer.forward(g[None])[0][0]


def _core(x: np.ndarray, kernels: np.ndarray, spec: Spec) -> np.ndarray:
    """Sum over input channels of the core's correlation, per output channel (F, OH, OW)."""
    from convtool.conv import correlate2d

    return np.stack([sum(correlate2d(x[c].astype(np.float32), kernels[f, c], stride=spec.s,
                                     padding=spec.pads, dilation=spec.d, backend="reference")
                         for c in range(spec.cin)) for f in range(spec.cout)])


def _err(a: np.ndarray, b: np.ndarray | None) -> float:
    if b is None:
        return math.inf
    return float(np.max(np.abs(np.asarray(a, np.float64).reshape(-1) - np.asarray(b, np.float64).reshape(-1))))


def picture(matrix: np.ndarray, *, target: int = 600) -> np.ndarray:
    """RGB uint8 picture of W: white where there is no connection, red positive, blue negative weights,
    each entry a square of as many pixels as make the wider side about ``target`` (at least 1)."""
    scale = max(1, min(16, target // max(matrix.shape)))
    peak = float(np.max(np.abs(matrix))) or 1.0
    t = np.clip(matrix / peak, -1, 1)
    rgb = np.empty((*matrix.shape, 3))
    rgb[..., 0] = np.where(t >= 0, 1.0, 1.0 + t)
    rgb[..., 2] = np.where(t <= 0, 1.0, 1.0 - t)
    rgb[..., 1] = 1.0 - np.abs(t)
    rgb[matrix == 0] = 1.0
    image = np.rint(rgb * 255).astype(np.uint8)
    return np.repeat(np.repeat(image, scale, axis=0), scale, axis=1)
