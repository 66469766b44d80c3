"""Layers with their forward and backward passes side by side.

A layer's ``forward(*inputs, train) -> (y, cache)`` and ``backward(dy, cache) -> (dx, grads)``;
``dx`` is a tuple for layers with several inputs (Add, Concat). Parameters live in ``params``
(PyTorch names and shapes: ``weight``, ``bias``), non-trained state in ``buffers``. Every pass
works in the dtype of its input, so the float64 gradient checks use the same code as float32
training.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from convtool.conv.im2col import col2im, conv_output_shape, im2col
from convtool.errors import ShapeError
from convtool.geometry import Pair, pair
from convtool.nn._conv_kernels import conv2d_backward, conv2d_forward
from convtool.nn._kernels import maxpool_backward, maxpool_forward

Grads = dict[str, np.ndarray]


# -- initialisation ---------------------------------------------------------------------------------

def he_normal(shape: tuple[int, ...], fan_in: int, rng: np.random.Generator) -> np.ndarray:
    """He (Kaiming) normal: std ``sqrt(2 / fan_in)``, for layers followed by ReLU."""
    return (rng.standard_normal(shape) * np.sqrt(2.0 / fan_in)).astype(np.float32)


def xavier_uniform(shape: tuple[int, ...], fan_in: int, fan_out: int, rng: np.random.Generator) -> np.ndarray:
    """Xavier (Glorot) uniform: ``U(-a, a)``, ``a = sqrt(6 / (fan_in + fan_out))``, for tanh/sigmoid."""
    bound = np.sqrt(6.0 / (fan_in + fan_out))
    return rng.uniform(-bound, bound, shape).astype(np.float32)


class Layer:
    """Base class: no parameters, one input."""

    n_inputs = 1

    def __init__(self) -> None:
        self.params: dict[str, np.ndarray] = {}
        self.buffers: dict[str, np.ndarray] = {}
        self.needs_input_grad = True

    def output_shape(self, *shapes: tuple[int, ...]) -> tuple[int, ...]:
        """Shape of the output (batch dimension included) for inputs of ``shapes``."""
        return shapes[0]

    def forward(self, *inputs: np.ndarray, train: bool = False) -> tuple[np.ndarray, Any]:
        """``(y, cache)`` for one input (two for Add and Concat); every layer defines its own."""
        raise NotImplementedError

    def backward(self, dy: np.ndarray, cache: Any) -> tuple[Any, Grads]:
        """``(dx, grads)``: ``dx`` a tuple for layers with several inputs; every layer defines its own."""
        raise NotImplementedError

    def __repr__(self) -> str:
        return type(self).__name__


# -- convolutions --------------------------------------------------------------------------------

class Conv2d(Layer):
    """2-D correlation (PyTorch's Conv2d); weight ``(out, in, kh, kw)``.

    Stride 1 runs on the Numba kernels (parallel over the images); other strides, and every layer
    with ``fast = False``, on the NumPy im2col + GEMM reference.
    """

    fast = True

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int | Pair, stride: int | Pair = 1,
                 padding: int | Pair = 0, dilation: int | Pair = 1, bias: bool = True, *,
                 init: str = "he", rng: np.random.Generator | None = None) -> None:
        super().__init__()
        rng = rng or np.random.default_rng(0)
        self.in_channels, self.out_channels = in_channels, out_channels
        self.kernel_size, self.stride = pair("kernel_size", kernel_size), pair("stride", stride)
        self.padding, self.dilation = pair("padding", padding, minimum=0), pair("dilation", dilation)
        kh, kw = self.kernel_size
        fan_in, fan_out = in_channels * kh * kw, out_channels * kh * kw
        shape = (out_channels, in_channels, kh, kw)
        self.params["weight"] = he_normal(shape, fan_in, rng) if init == "he" else xavier_uniform(shape, fan_in, fan_out, rng)
        if bias:
            self.params["bias"] = np.zeros(out_channels, np.float32)

    def _geometry(self) -> tuple:
        return self.kernel_size, self.stride, self.padding, self.dilation

    def output_shape(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        if shape[1] != self.in_channels:
            raise ShapeError(f"Conv2d expects {self.in_channels} input channels, got {shape[1]}")
        return (shape[0], self.out_channels, *conv_output_shape(shape[2], shape[3], *self._geometry()))

    def forward(self, x: np.ndarray, train: bool = False) -> tuple[np.ndarray, tuple]:
        if self.fast and self.stride == (1, 1):
            self.output_shape(x.shape)  # the channel check
            y = conv2d_forward(x, self.params["weight"], self.params.get("bias"), self.padding, self.dilation)
            return y, (x, None)
        return self.forward_reference(x)

    def backward(self, dy: np.ndarray, cache: tuple) -> tuple[np.ndarray | None, Grads]:
        x, cols = cache
        if cols is not None:
            return self.backward_reference(dy, cache)
        dx, dw, db = conv2d_backward(x, self.params["weight"], dy, self.padding, self.dilation, self.needs_input_grad)
        grads = {"weight": dw}
        if "bias" in self.params:
            grads["bias"] = db
        return dx, grads

    def forward_reference(self, x: np.ndarray) -> tuple[np.ndarray, tuple]:
        """The whole batch as one GEMM over im2col columns (any stride); the oracle of the kernels."""
        n = x.shape[0]
        _, f, oh, ow = self.output_shape(x.shape)
        cols = im2col(x, *self._geometry(), order="cln")  # C*KH*KW, OH*OW, N (batch innermost)
        w = self.params["weight"].reshape(f, -1)  # F, C*KH*KW
        y = w @ cols.reshape(cols.shape[0], -1)  # F, OH*OW*N: the whole batch in one GEMM
        if "bias" in self.params:
            y += self.params["bias"][:, None]
        y = np.ascontiguousarray(y.reshape(f, oh, ow, n).transpose(3, 0, 1, 2))  # N, F, OH, OW
        return y, (x.shape, cols)

    def backward_reference(self, dy: np.ndarray, cache: tuple) -> tuple[np.ndarray | None, Grads]:
        x_shape, cols = cache
        f = dy.shape[1]
        dy_t = np.ascontiguousarray(dy.transpose(1, 2, 3, 0)).reshape(f, -1)  # F, OH*OW*N
        cols2 = cols.reshape(cols.shape[0], -1)  # C*KH*KW, OH*OW*N
        grads = {"weight": (dy_t @ cols2.T).reshape(self.params["weight"].shape)}
        if "bias" in self.params:
            grads["bias"] = dy_t.sum(axis=1)
        dx = None
        if self.needs_input_grad:
            dcols = (self.params["weight"].reshape(f, -1).T @ dy_t).reshape(cols.shape)  # C*KH*KW, OH*OW, N
            dx = col2im(dcols, x_shape, *self._geometry(), order="cln")
        return dx, grads


class ConvTranspose2d(Layer):
    """Transposed convolution (PyTorch's ConvTranspose2d, no output padding); weight ``(in, out, kh, kw)``.

    The forward pass is the input gradient of a Conv2d (col2im of ``W^T x``), the backward an im2col.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int | Pair, stride: int | Pair = 1,
                 padding: int | Pair = 0, bias: bool = True, *, rng: np.random.Generator | None = None) -> None:
        super().__init__()
        rng = rng or np.random.default_rng(0)
        self.in_channels, self.out_channels = in_channels, out_channels
        self.kernel_size, self.stride = pair("kernel_size", kernel_size), pair("stride", stride)
        self.padding = pair("padding", padding, minimum=0)
        kh, kw = self.kernel_size
        self.params["weight"] = he_normal((in_channels, out_channels, kh, kw), in_channels * kh * kw // (self.stride[0] * self.stride[1]), rng)
        if bias:
            self.params["bias"] = np.zeros(out_channels, np.float32)

    def output_shape(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        if shape[1] != self.in_channels:
            raise ShapeError(f"ConvTranspose2d expects {self.in_channels} input channels, got {shape[1]}")
        (kh, kw), (sh, sw), (ph, pw) = self.kernel_size, self.stride, self.padding
        return shape[0], self.out_channels, (shape[2] - 1) * sh - 2 * ph + kh, (shape[3] - 1) * sw - 2 * pw + kw

    def forward(self, x: np.ndarray, train: bool = False) -> tuple[np.ndarray, np.ndarray]:
        n, c, h, w = x.shape
        _, f, oh, ow = self.output_shape(x.shape)
        wmat = self.params["weight"].reshape(c, -1)  # C, F*KH*KW
        cols = np.matmul(wmat.T, x.reshape(n, c, h * w))  # N, F*KH*KW, H*W
        y = col2im(cols, (n, f, oh, ow), self.kernel_size, self.stride, self.padding)  # N, F, OH, OW
        if "bias" in self.params:
            y += self.params["bias"][:, None, None]
        return y, x

    def backward(self, dy: np.ndarray, x: np.ndarray) -> tuple[np.ndarray | None, Grads]:
        n, c, h, w = x.shape
        dcols = im2col(dy, self.kernel_size, self.stride, self.padding)  # N, F*KH*KW, H*W
        grads = {"weight": _sum_batched_outer(x.reshape(n, c, h * w), dcols).reshape(self.params["weight"].shape)}
        if "bias" in self.params:
            grads["bias"] = dy.sum(axis=(0, 2, 3))
        dx = None
        if self.needs_input_grad:
            dx = np.matmul(self.params["weight"].reshape(c, -1), dcols).reshape(x.shape)
        return dx, grads


def _sum_batched_outer(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``sum_n a[n] @ b[n].T`` for a (N, P, L), b (N, Q, L), as one GEMM over the merged N*L axis."""
    p, q = a.shape[1], b.shape[1]
    a2 = np.ascontiguousarray(a.transpose(1, 0, 2)).reshape(p, -1)
    b2 = np.ascontiguousarray(b.transpose(1, 0, 2)).reshape(q, -1)
    return a2 @ b2.T


# -- dense -----------------------------------------------------------------------------------------

class Linear(Layer):
    """``y = x W^T + b`` with PyTorch's weight ``(out_features, in_features)``."""

    def __init__(self, in_features: int, out_features: int, bias: bool = True, *, init: str = "he",
                 rng: np.random.Generator | None = None) -> None:
        super().__init__()
        rng = rng or np.random.default_rng(0)
        self.in_features, self.out_features = in_features, out_features
        shape = (out_features, in_features)
        self.params["weight"] = he_normal(shape, in_features, rng) if init == "he" else xavier_uniform(shape, in_features, out_features, rng)
        if bias:
            self.params["bias"] = np.zeros(out_features, np.float32)

    def output_shape(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        if len(shape) != 2 or shape[1] != self.in_features:
            raise ShapeError(f"Linear expects (N, {self.in_features}) inputs, got {shape}")
        return shape[0], self.out_features

    def forward(self, x: np.ndarray, train: bool = False) -> tuple[np.ndarray, np.ndarray]:
        y = x @ self.params["weight"].T  # N, out
        if "bias" in self.params:
            y += self.params["bias"]
        return y, x

    def backward(self, dy: np.ndarray, x: np.ndarray) -> tuple[np.ndarray | None, Grads]:
        grads = {"weight": dy.T @ x}
        if "bias" in self.params:
            grads["bias"] = dy.sum(axis=0)
        return (dy @ self.params["weight"] if self.needs_input_grad else None), grads


class Flatten(Layer):
    """N,C,H,W -> N, C*H*W."""

    def output_shape(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        return shape[0], int(np.prod(shape[1:]))

    def forward(self, x: np.ndarray, train: bool = False) -> tuple[np.ndarray, tuple]:
        return x.reshape(x.shape[0], -1), x.shape

    def backward(self, dy: np.ndarray, shape: tuple) -> tuple[np.ndarray, Grads]:
        return dy.reshape(shape), {}


# -- activations ----------------------------------------------------------------------------------

class ReLU(Layer):
    def forward(self, x: np.ndarray, train: bool = False) -> tuple[np.ndarray, np.ndarray]:
        y = np.maximum(x, 0)
        return y, y

    def backward(self, dy: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, Grads]:
        return dy * (y > 0), {}


class Tanh(Layer):
    def forward(self, x: np.ndarray, train: bool = False) -> tuple[np.ndarray, np.ndarray]:
        y = np.tanh(x)
        return y, y

    def backward(self, dy: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, Grads]:
        return dy * (1 - y * y), {}


class Sigmoid(Layer):
    def forward(self, x: np.ndarray, train: bool = False) -> tuple[np.ndarray, np.ndarray]:
        y = 0.5 * (1 + np.tanh(0.5 * x))  # stable for large |x|
        return y, y

    def backward(self, dy: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, Grads]:
        return dy * y * (1 - y), {}


# -- pooling ---------------------------------------------------------------------------------------

class _Pool2d(Layer):
    def __init__(self, kernel_size: int | Pair, stride: int | Pair | None = None) -> None:
        super().__init__()
        self.kernel_size = pair("kernel_size", kernel_size)
        self.stride = pair("stride", stride) if stride is not None else self.kernel_size

    def output_shape(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        return (shape[0], shape[1], *conv_output_shape(shape[2], shape[3], self.kernel_size, self.stride))

    def _tiles(self, x: np.ndarray) -> np.ndarray | None:
        """N,C,OH,KH,OW,KW view when windows tile the input exactly (the fast path), else None."""
        (kh, kw), (n, c, h, w) = self.kernel_size, x.shape
        if self.stride != self.kernel_size or h % kh or w % kw:
            return None
        return x.reshape(n, c, h // kh, kh, w // kw, kw)

    def _cols(self, x: np.ndarray) -> np.ndarray:
        n, c, h, w = x.shape  # general path: every window of every channel as a column
        return im2col(x.reshape(n * c, 1, h, w), self.kernel_size, self.stride)  # N*C, KH*KW, OH*OW


class MaxPool2d(_Pool2d):
    """Max over windows (no padding); the gradient goes to the first maximum of each window."""

    def forward(self, x: np.ndarray, train: bool = False) -> tuple[np.ndarray, tuple]:
        out_shape = self.output_shape(x.shape)
        y, idx = maxpool_forward(x, self.kernel_size, self.stride, (out_shape[2], out_shape[3]))
        return y, (x.shape, idx)

    def backward(self, dy: np.ndarray, cache: tuple) -> tuple[np.ndarray, Grads]:
        x_shape, idx = cache
        return maxpool_backward(dy, idx, x_shape), {}


def maxpool_reference(x: np.ndarray, kernel_size: Pair, stride: Pair) -> np.ndarray:
    """Window maxima by im2col and argmax: the oracle of the Numba pooling kernel."""
    n, c, h, w = x.shape
    oh, ow = conv_output_shape(h, w, kernel_size, stride)
    cols = im2col(x.reshape(n * c, 1, h, w), kernel_size, stride)  # N*C, KH*KW, OH*OW
    return cols.max(axis=1).reshape(n, c, oh, ow)


class AvgPool2d(_Pool2d):
    """Mean over windows (no padding)."""

    def forward(self, x: np.ndarray, train: bool = False) -> tuple[np.ndarray, tuple]:
        tiles = self._tiles(x)
        if tiles is not None:
            return tiles.mean(axis=(3, 5)), x.shape
        return self._cols(x).mean(axis=1).reshape(self.output_shape(x.shape)), x.shape

    def backward(self, dy: np.ndarray, x_shape: tuple) -> tuple[np.ndarray, Grads]:
        (kh, kw), (n, c, h, w) = self.kernel_size, x_shape
        share = dy / (kh * kw)
        if self.stride == self.kernel_size and h % kh == 0 and w % kw == 0:
            return np.repeat(np.repeat(share, kh, axis=2), kw, axis=3), {}
        dcols = np.broadcast_to(share.reshape(n * c, 1, -1), (n * c, kh * kw, share.shape[2] * share.shape[3]))
        return col2im(np.ascontiguousarray(dcols), (n * c, 1, h, w), self.kernel_size, self.stride).reshape(x_shape), {}


# -- regularisation and normalisation ---------------------------------------------------------------

class Dropout(Layer):
    """Inverted dropout: zero a fraction ``p`` in training and scale the rest by ``1/(1-p)``."""

    def __init__(self, p: float = 0.5, *, rng: np.random.Generator | None = None) -> None:
        super().__init__()
        if not 0 <= p < 1:
            raise ShapeError(f"dropout probability must be in [0, 1), got {p}")
        self.p, self.rng = p, rng or np.random.default_rng(0)

    def forward(self, x: np.ndarray, train: bool = False) -> tuple[np.ndarray, np.ndarray | None]:
        if not train or self.p == 0:
            return x, None
        mask = (self.rng.random(x.shape) >= self.p).astype(x.dtype) / (1 - self.p)
        return x * mask, mask

    def backward(self, dy: np.ndarray, mask: np.ndarray | None) -> tuple[np.ndarray, Grads]:
        return (dy if mask is None else dy * mask), {}


class BatchNorm2d(Layer):
    """Per-channel batch normalisation; batch statistics in training, running ones in evaluation."""

    def __init__(self, num_features: int, eps: float = 1e-5, momentum: float = 0.1) -> None:
        super().__init__()
        self.eps, self.momentum = eps, momentum
        self.params = {"weight": np.ones(num_features, np.float32), "bias": np.zeros(num_features, np.float32)}
        self.buffers = {"running_mean": np.zeros(num_features, np.float32), "running_var": np.ones(num_features, np.float32)}

    def forward(self, x: np.ndarray, train: bool = False) -> tuple[np.ndarray, tuple | None]:
        gamma, beta = self.params["weight"], self.params["bias"]
        if not train:
            scale = gamma / np.sqrt(self.buffers["running_var"] + self.eps)
            shift = beta - self.buffers["running_mean"] * scale
            return x * scale.astype(x.dtype)[:, None, None] + shift.astype(x.dtype)[:, None, None], None
        mean = x.mean(axis=(0, 2, 3))
        var = x.var(axis=(0, 2, 3))
        m = x.size // x.shape[1]
        unbiased = var * m / max(m - 1, 1)
        for key, batch_value in (("running_mean", mean), ("running_var", unbiased)):
            running = self.buffers[key]
            self.buffers[key] = ((1 - self.momentum) * running + self.momentum * batch_value).astype(running.dtype)
        inv = 1 / np.sqrt(var + self.eps)
        xhat = (x - mean[:, None, None]) * inv[:, None, None]
        return xhat * gamma[:, None, None] + beta[:, None, None], (xhat, inv)

    def backward(self, dy: np.ndarray, cache: tuple) -> tuple[np.ndarray, Grads]:
        xhat, inv = cache
        grads = {"weight": (dy * xhat).sum(axis=(0, 2, 3)), "bias": dy.sum(axis=(0, 2, 3))}
        dxhat = dy * self.params["weight"][:, None, None]
        dx = inv[:, None, None] * (dxhat - dxhat.mean(axis=(0, 2, 3), keepdims=True)
                                   - xhat * (dxhat * xhat).mean(axis=(0, 2, 3), keepdims=True))
        return dx, grads


# -- joins -----------------------------------------------------------------------------------------

class Add(Layer):
    """Element-wise sum of two inputs (the residual connection)."""

    n_inputs = 2

    def output_shape(self, a: tuple[int, ...], b: tuple[int, ...]) -> tuple[int, ...]:
        if a != b:
            raise ShapeError(f"Add needs equal shapes, got {a} and {b}")
        return a

    def forward(self, a: np.ndarray, b: np.ndarray, train: bool = False) -> tuple[np.ndarray, None]:
        return a + b, None

    def backward(self, dy: np.ndarray, cache: None) -> tuple[tuple[np.ndarray, np.ndarray], Grads]:
        return (dy, dy), {}


class Concat(Layer):
    """Channel concatenation of two N,C,H,W inputs (the U-Net skip connection)."""

    n_inputs = 2

    def output_shape(self, a: tuple[int, ...], b: tuple[int, ...]) -> tuple[int, ...]:
        if a[0:1] + a[2:] != b[0:1] + b[2:]:
            raise ShapeError(f"Concat needs equal sizes apart from channels, got {a} and {b}")
        return a[0], a[1] + b[1], *a[2:]

    def forward(self, a: np.ndarray, b: np.ndarray, train: bool = False) -> tuple[np.ndarray, int]:
        return np.concatenate([a, b], axis=1), a.shape[1]

    def backward(self, dy: np.ndarray, split: int) -> tuple[tuple[np.ndarray, np.ndarray], Grads]:
        return (dy[:, :split], dy[:, split:]), {}
