"""The layers the lectures compare convolution with: tiled convolution and the locally connected layer.

A :class:`TiledConv2d` holds ``TH x TW`` kernels and gives output location ``(oy, ox)`` kernel
``(oy % TH, ox % TW)`` (Goodfellow et al., *Deep Learning*, ch. 9.5, "tiled convolution"; Le et al.
2010). A period of 1x1 is an ordinary convolution, a period equal to the output size is a locally
connected layer: every output location has weights of its own (:class:`LocallyConnected2d`).

Shapes (PyTorch's names, a leading tile grid)::

    weight  (TH, TW, out_channels, in_channels, KH, KW)
    bias    (TH, TW, out_channels)

A period must divide the output size on its axis, so every kernel serves the same number of
locations. The forward pass is one im2col and one batched GEMM over the ``TH*TW`` kernels; the
backward pass is the same GEMMs transposed and a col2im. :func:`tiled_reference` is the plain
loop kept beside them as the oracle. :func:`onnx_nodes` spells the layer in standard ONNX
operators (Pad, Gather, MatMul, Tile) for :mod:`convtool.nn.export`.
"""

from __future__ import annotations

import json

import numpy as np

from convtool.conv.im2col import col2im, conv_output_shape, im2col
from convtool.errors import ShapeError
from convtool.geometry import Pads, Pair, pads, pair
from convtool.layer_kinds import ONNX_LAYER, ONNX_PART, check_period
from convtool.nn.layers import Grads, Layer, he_normal


class TiledConv2d(Layer):
    """``TH x TW`` kernels tiled over the output locations; weight ``(TH, TW, out, in, kh, kw)``."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int | Pair, period: int | Pair = 1,
                 stride: int | Pair = 1, padding: int | Pair | Pads = 0, dilation: int | Pair = 1, bias: bool = True,
                 *, rng: np.random.Generator | None = None) -> None:
        super().__init__()
        rng = rng or np.random.default_rng(0)
        self.in_channels, self.out_channels = in_channels, out_channels
        self.kernel_size, self.period = pair("kernel_size", kernel_size), pair("tiling period", period)
        self.stride, self.dilation = pair("stride", stride), pair("dilation", dilation)
        self.padding = pads(padding)  # top, bottom, left, right
        (th, tw), (kh, kw) = self.period, self.kernel_size
        shape = (th, tw, out_channels, in_channels, kh, kw)
        self.params["weight"] = he_normal(shape, in_channels * kh * kw, rng)
        if bias:
            self.params["bias"] = np.zeros((th, tw, out_channels), np.float32)

    def _geometry(self) -> tuple:
        return self.kernel_size, self.stride, self.padding, self.dilation

    def output_shape(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        name = type(self).__name__
        if len(shape) != 4 or shape[1] != self.in_channels:
            raise ShapeError(f"{name} expects (N, {self.in_channels}, H, W) inputs, got {shape}")
        out_hw = conv_output_shape(shape[2], shape[3], *self._geometry())
        check_period(self.period, out_hw)
        return (shape[0], self.out_channels, *out_hw)

    def _tiles(self, cols: np.ndarray, oh: int, ow: int) -> np.ndarray:
        """(N, CKK, OH*OW) columns -> (TH*TW, CKK, N*A*B), grouped by the kernel that reads them."""
        (th, tw), (n, ckk) = self.period, cols.shape[:2]
        view = cols.reshape(n, ckk, oh // th, th, ow // tw, tw)  # N, CKK, A, TH, B, TW
        return np.ascontiguousarray(view.transpose(3, 5, 1, 0, 2, 4)).reshape(th * tw, ckk, -1)

    def _untile(self, tiles: np.ndarray, n: int, oh: int, ow: int) -> np.ndarray:
        """Inverse of :meth:`_tiles`: (TH*TW, R, N*A*B) -> (N, R, OH, OW)."""
        (th, tw), rows = self.period, tiles.shape[1]
        view = tiles.reshape(th, tw, rows, n, oh // th, ow // tw)  # TH, TW, R, N, A, B
        return np.ascontiguousarray(view.transpose(3, 2, 4, 0, 5, 1)).reshape(n, rows, oh, ow)

    def forward(self, x: np.ndarray, train: bool = False) -> tuple[np.ndarray, tuple]:
        n, f, oh, ow = self.output_shape(x.shape)
        cols = self._tiles(im2col(x, *self._geometry()), oh, ow)  # T, CKK, N*A*B
        t = cols.shape[0]
        w = self.params["weight"].reshape(t, f, -1)  # T, F, CKK
        y = np.matmul(w, cols)  # T, F, N*A*B
        if "bias" in self.params:
            y += self.params["bias"].reshape(t, f, 1)
        return self._untile(y, n, oh, ow), (x.shape, cols)  # N, F, OH, OW

    def backward(self, dy: np.ndarray, cache: tuple) -> tuple[np.ndarray | None, Grads]:
        x_shape, cols = cache
        n, f, oh, ow = dy.shape
        dy_t = self._tiles(dy.reshape(n, f, oh * ow), oh, ow)  # T, F, N*A*B
        grads = {"weight": np.matmul(dy_t, cols.transpose(0, 2, 1)).reshape(self.params["weight"].shape)}
        if "bias" in self.params:
            grads["bias"] = dy_t.sum(axis=2).reshape(self.params["bias"].shape)
        dx = None
        if self.needs_input_grad:
            w = self.params["weight"].reshape(dy_t.shape[0], f, -1)  # T, F, CKK
            dcols = self._untile(np.matmul(w.transpose(0, 2, 1), dy_t), n, oh, ow)  # N, CKK, OH, OW
            dx = col2im(dcols.reshape(n, -1, oh * ow), x_shape, *self._geometry())
        return dx, grads

    def __repr__(self) -> str:
        return f"{type(self).__name__}(period={self.period})"


class LocallyConnected2d(TiledConv2d):
    """Unshared weights: every output location has kernels of its own; weight ``(OH, OW, out, in, kh, kw)``.

    The output size (and so the weight shape) depends on the input size, given as ``input_size``.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int | Pair, input_size: Pair,
                 stride: int | Pair = 1, padding: int | Pair | Pads = 0, dilation: int | Pair = 1, bias: bool = True,
                 *, rng: np.random.Generator | None = None) -> None:
        h, w = pair("input_size", input_size)
        out_hw = conv_output_shape(h, w, kernel_size, stride, pads(padding), dilation)
        super().__init__(in_channels, out_channels, kernel_size, out_hw, stride, padding, dilation, bias, rng=rng)
        self.input_size = (h, w)

    def output_shape(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        if len(shape) == 4 and tuple(shape[2:]) != self.input_size:
            raise ShapeError(f"LocallyConnected2d was built for {self.input_size[0]}x{self.input_size[1]} inputs "
                             f"(one kernel per output location), got {shape[2]}x{shape[3]}")
        return super().output_shape(shape)

    def __repr__(self) -> str:
        return f"LocallyConnected2d(input_size={self.input_size})"


def tiled_reference(x: np.ndarray, weight: np.ndarray, bias: np.ndarray | None, stride: Pair = (1, 1),
                    padding: Pads = (0, 0, 0, 0), dilation: Pair = (1, 1)) -> np.ndarray:
    """Plain loops over outputs and taps: the oracle of :class:`TiledConv2d` (weight TH,TW,F,C,KH,KW;
    padding top, bottom, left, right)."""
    n, c, h, w = x.shape
    th, tw, f, _, kh, kw = weight.shape
    (sh, sw), (ph, _, pw, _), (dh, dw) = stride, padding, dilation
    oh, ow = conv_output_shape(h, w, (kh, kw), stride, padding, dilation)
    y = np.zeros((n, f, oh, ow), dtype=np.result_type(x, weight))
    for oy in range(oh):
        for ox in range(ow):
            kernel = weight[oy % th, ox % tw]  # F, C, KH, KW
            for i in range(kh):
                for j in range(kw):
                    yy, xx = oy * sh + i * dh - ph, ox * sw + j * dw - pw
                    if 0 <= yy < h and 0 <= xx < w:
                        y[:, :, oy, ox] += x[:, :, yy, xx] @ kernel[:, :, i, j].T
            if bias is not None:
                y[:, :, oy, ox] += bias[oy % th, ox % tw]
    return y


# -- ONNX -----------------------------------------------------------------------------------------

def gather_indices(layer: TiledConv2d, height: int, width: int) -> np.ndarray:
    """Flat indices into the zero-padded input (C*HP*WP) of every tap, as (TH*TW, A*B, C*KH*KW).

    Row ``t`` holds the locations of kernel ``t`` (tile order), so one batched MatMul applies them.
    """
    (kh, kw), (sh, sw), (top, bottom, left, right), (dh, dw) = layer._geometry()
    c, (th, tw) = layer.in_channels, layer.period
    oh, ow = conv_output_shape(height, width, *layer._geometry())
    hp, wp = height + top + bottom, width + left + right
    oy, ox = np.arange(oh).reshape(-1, 1, 1, 1, 1), np.arange(ow).reshape(1, -1, 1, 1, 1)
    ch, i, j = np.arange(c).reshape(1, 1, -1, 1, 1), np.arange(kh).reshape(1, 1, 1, -1, 1), np.arange(kw).reshape(1, 1, 1, 1, -1)
    flat = ch * hp * wp + (oy * sh + i * dh) * wp + (ox * sw + j * dw)  # OH, OW, C, KH, KW (padded coordinates)
    flat = flat.reshape(oh // th, th, ow // tw, tw, c * kh * kw).transpose(1, 3, 0, 2, 4)  # TH, TW, A, B, CKK
    return np.ascontiguousarray(flat.reshape(th * tw, -1, c * kh * kw)).astype(np.int64)


def onnx_nodes(helper, layer: TiledConv2d, x: str, output: str, name: str, weights: list[str],
               input_hw: Pair) -> list:
    """Pad -> Reshape(N, C*HP*WP) -> Gather(taps) -> MatMul per kernel -> (+ Tile'd bias) -> N,F,OH,OW."""
    (th, tw), (top, bottom, left, right), f = layer.period, layer.padding, layer.out_channels
    oh, ow = conv_output_shape(*input_hw, *layer._geometry())
    index = gather_indices(layer, *input_hw)
    t, ckk = th * tw, index.shape[2]

    def const(suffix: str, values) -> str:
        values = np.asarray(values, np.int64)
        dtype = helper.np_dtype_to_tensor_dtype(values.dtype)
        tensor = helper.make_tensor(f"{name}.{suffix}", dtype, values.shape, values.reshape(-1).tolist())
        nodes.append(helper.make_node("Constant", [], [f"{name}.{suffix}"], value=tensor))
        return f"{name}.{suffix}"

    nodes: list = []
    make = helper.make_node
    widths = const("pads", [0, 0, top, left, 0, 0, bottom, right])
    nodes.append(make("Pad", [x, widths], [f"{name}.padded"], mode="constant"))
    nodes.append(make("Reshape", [f"{name}.padded", const("flat_shape", [0, -1])], [f"{name}.flat"]))
    nodes.append(make("Gather", [f"{name}.flat", const("taps", index)], [f"{name}.cols"], axis=1))  # N,T,AB,CKK
    nodes.append(make("Transpose", [f"{name}.cols"], [f"{name}.cols_t"], perm=[1, 0, 2, 3]))  # T,N,AB,CKK
    nodes.append(make("Reshape", [f"{name}.cols_t", const("cols_shape", [t, -1, ckk])], [f"{name}.cols2"]))
    nodes.append(make("Reshape", [weights[0], const("w_shape", [t, f, ckk])], [f"{name}.w"]))
    nodes.append(make("Transpose", [f"{name}.w"], [f"{name}.w_t"], perm=[0, 2, 1]))  # T, CKK, F
    nodes.append(make("MatMul", [f"{name}.cols2", f"{name}.w_t"], [f"{name}.prod"]))  # T, N*AB, F
    a, b = oh // th, ow // tw
    nodes.append(make("Reshape", [f"{name}.prod", const("y_shape", [th, tw, -1, a, b, f])], [f"{name}.y6"]))
    nodes.append(make("Transpose", [f"{name}.y6"], [f"{name}.y6t"], perm=[2, 5, 3, 0, 4, 1]))  # N,F,A,TH,B,TW
    final = output if len(weights) == 1 else f"{name}.nobias"
    nodes.append(make("Reshape", [f"{name}.y6t", const("out_shape", [-1, f, oh, ow])], [final]))
    if len(weights) > 1:
        nodes.append(make("Transpose", [weights[1]], [f"{name}.b_t"], perm=[2, 0, 1]))  # F, TH, TW
        nodes.append(make("Tile", [f"{name}.b_t", const("repeats", [1, a, b])], [f"{name}.bias_map"]))
        nodes.append(make("Add", [final, f"{name}.bias_map"], [output]))
    return _tagged(nodes, layer, x, name, weights)


def _tagged(nodes: list, layer: TiledConv2d, x: str, name: str, weights: list[str]) -> list:
    """Name the nodes ``layer/op`` and tag them, so ``convtool calc --net`` shows the layer as one row."""
    local = isinstance(layer, LocallyConnected2d)
    kh, kw = layer.kernel_size
    detail = f"{layer.out_channels}@{kh}x{kw}" + ("" if local else f" t{layer.period[0]}x{layer.period[1]}")
    if any(layer.padding):
        detail += f" p{layer.padding[0]}" if len(set(layer.padding)) == 1 else " p" + ",".join(map(str, layer.padding))
    tag = {"input": x, "op": "local" if local else "tiled", "kernel": list(layer.kernel_size),
           "strides": list(layer.stride), "dilations": list(layer.dilation), "detail": detail, "params": weights}
    for i, node in enumerate(nodes):
        node.name = f"{name}/{node.op_type}_{i}"
        node.doc_string = ONNX_PART
    nodes[-1].doc_string = ONNX_LAYER + json.dumps(tag)
    return nodes
