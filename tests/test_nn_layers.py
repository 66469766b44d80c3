"""Every layer's backward pass against central finite differences in float64, plus forward oracles."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import signal

from convtool.nn import layers as L
from convtool.nn.losses import cross_entropy

EPS = 1e-6


def _as64(layer: L.Layer) -> L.Layer:
    layer.params = {k: v.astype(np.float64) for k, v in layer.params.items()}
    layer.buffers = {k: v.astype(np.float64) for k, v in layer.buffers.items()}
    return layer


def _numeric(f, array: np.ndarray, count: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Central differences of scalar f() w.r.t. ``count`` random entries of ``array`` (changed in place)."""
    flat = array.reshape(-1)
    picks = rng.choice(flat.size, size=min(count, flat.size), replace=False)
    out = np.empty(len(picks))
    for n, i in enumerate(picks):
        keep = flat[i]
        flat[i] = keep + EPS
        up = f()
        flat[i] = keep - EPS
        down = f()
        flat[i] = keep
        out[n] = (up - down) / (2 * EPS)
    return picks, out


def check_gradients(layer: L.Layer, *shapes: tuple[int, ...], train: bool = True, reset=None, positive=False) -> None:
    rng = np.random.default_rng(0)
    _as64(layer)
    xs = [rng.standard_normal(s) for s in shapes]
    if positive:
        xs = [np.abs(x) + 0.1 for x in xs]
    if reset:
        reset()
    y, cache = layer.forward(*xs, train=train)
    g = rng.standard_normal(y.shape)

    def loss() -> float:
        if reset:
            reset()
        return float(np.sum(layer.forward(*xs, train=train)[0] * g))

    if reset:
        reset()
    y, cache = layer.forward(*xs, train=train)
    dx, grads = layer.backward(g, cache)
    dxs = dx if layer.n_inputs > 1 else (dx,)
    for x, d in zip(xs, dxs):
        picks, numeric = _numeric(loss, x, 40, rng)
        np.testing.assert_allclose(d.reshape(-1)[picks], numeric, rtol=1e-5, atol=1e-7)
    for name, p in layer.params.items():
        picks, numeric = _numeric(loss, p, 40, rng)
        np.testing.assert_allclose(grads[name].reshape(-1)[picks], numeric, rtol=1e-5, atol=1e-7, err_msg=name)


@pytest.mark.parametrize("kwargs", [
    dict(kernel_size=3),
    dict(kernel_size=3, stride=2, padding=1),
    dict(kernel_size=(2, 3), padding=(1, 0), dilation=2),
    dict(kernel_size=1, bias=False),
])
@pytest.mark.parametrize("fast", [True, False], ids=["kernels", "numpy"])
def test_conv2d_gradients(kwargs, fast):
    conv = L.Conv2d(3, 4, **kwargs)
    conv.fast = fast
    check_gradients(conv, (2, 3, 7, 8))


@pytest.mark.parametrize("kwargs, shape", [
    (dict(in_channels=1, out_channels=6, kernel_size=5, padding=2), (5, 1, 28, 28)),  # LeNet-5's two
    (dict(in_channels=6, out_channels=16, kernel_size=5), (5, 6, 14, 14)),
    (dict(in_channels=2, out_channels=3, kernel_size=3, padding=2, dilation=2), (3, 2, 8, 9)),  # U-Net's middle
    (dict(in_channels=3, out_channels=5, kernel_size=(3, 1), padding=(1, 0), dilation=(1, 2), bias=False), (4, 3, 6, 7)),
    (dict(in_channels=4, out_channels=2, kernel_size=1), (1, 4, 3, 5)),
])
def test_conv2d_kernels_match_the_numpy_reference(kwargs, shape):
    """float32 forward, weight, bias and input gradients of the Numba kernels against im2col + GEMM."""
    rng = np.random.default_rng(4)
    conv = L.Conv2d(**kwargs, rng=rng)
    if "bias" in conv.params:
        conv.params["bias"][:] = rng.standard_normal(conv.out_channels)
    x = rng.standard_normal(shape).astype(np.float32)
    y, cache = conv.forward(x)
    y_ref, cache_ref = conv.forward_reference(x)
    assert y.dtype == np.float32 and y.shape == y_ref.shape
    np.testing.assert_allclose(y, y_ref, rtol=1e-5, atol=1e-5)
    dy = rng.standard_normal(y.shape).astype(np.float32)
    dx, grads = conv.backward(dy, cache)
    dx_ref, grads_ref = conv.backward_reference(dy, cache_ref)
    np.testing.assert_allclose(dx, dx_ref, rtol=1e-5, atol=1e-5)
    for name in grads_ref:
        np.testing.assert_allclose(grads[name], grads_ref[name], rtol=1e-5, atol=1e-4, err_msg=name)


def test_conv2d_forward_is_scipy_correlation():
    rng = np.random.default_rng(1)
    conv = _as64(L.Conv2d(2, 3, 3, padding=1))
    conv.params["bias"] = rng.standard_normal(3)
    x = rng.standard_normal((2, 2, 6, 5))
    y, _ = conv.forward(x)
    for n in range(2):
        for f in range(3):
            expected = sum(signal.correlate2d(x[n, c], conv.params["weight"][f, c], mode="same") for c in range(2))
            np.testing.assert_allclose(y[n, f], expected + conv.params["bias"][f], atol=1e-12)


@pytest.mark.parametrize("kwargs", [dict(kernel_size=2, stride=2), dict(kernel_size=3, stride=2, padding=1), dict(kernel_size=3)])
def test_conv_transpose2d_gradients(kwargs):
    check_gradients(L.ConvTranspose2d(3, 2, **kwargs), (2, 3, 4, 5))


def test_conv_transpose_is_the_adjoint_of_conv():
    """<conv(x), y> == <x, convT(y)> with the same weight and no bias."""
    rng = np.random.default_rng(2)
    conv = _as64(L.Conv2d(3, 4, 3, stride=2, padding=1, bias=False))
    up = _as64(L.ConvTranspose2d(4, 3, 3, stride=2, padding=1, bias=False))
    up.params["weight"] = conv.params["weight"]  # (out=4, in=3) of the conv is (in=4, out=3) of the transpose
    x = rng.standard_normal((2, 3, 9, 9))
    y = rng.standard_normal(conv.forward(x)[0].shape)
    assert np.sum(conv.forward(x)[0] * y) == pytest.approx(np.sum(x * up.forward(y)[0]), rel=1e-10)


def test_linear_flatten_and_activation_gradients():
    check_gradients(L.Linear(6, 4), (3, 6))
    check_gradients(L.Flatten(), (2, 3, 2, 2))
    for act in (L.ReLU(), L.Tanh(), L.Sigmoid()):
        check_gradients(act, (2, 3, 4, 4))


@pytest.mark.parametrize("pool", [L.MaxPool2d(2), L.MaxPool2d(3, 2), L.AvgPool2d(2), L.AvgPool2d(3, 2), L.AvgPool2d((4, 5))])
def test_pooling_gradients(pool):
    check_gradients(pool, (2, 3, 8, 9) if not isinstance(pool, L.AvgPool2d) or pool.kernel_size != (4, 5) else (2, 3, 4, 5))


def test_maxpool_matches_im2col_reference():
    x = np.random.default_rng(3).standard_normal((2, 3, 9, 7)).astype(np.float32)
    for k, s in ((2, 2), (3, 2), (3, 1)):
        pool = L.MaxPool2d(k, s)
        np.testing.assert_array_equal(pool.forward(x)[0], L.maxpool_reference(x, (k, k), (s, s)))


def test_batchnorm_gradients_and_running_statistics():
    bn = L.BatchNorm2d(3)
    check_gradients(bn, (4, 3, 3, 3))
    bn = _as64(L.BatchNorm2d(3, momentum=1.0))
    x = np.random.default_rng(4).standard_normal((5, 3, 4, 4)) * 3 + 2
    y, _ = bn.forward(x, train=True)
    np.testing.assert_allclose(y.mean(axis=(0, 2, 3)), 0, atol=1e-12)
    np.testing.assert_allclose(bn.buffers["running_mean"], x.mean(axis=(0, 2, 3)))
    np.testing.assert_allclose(bn.buffers["running_var"], x.var(axis=(0, 2, 3), ddof=1))
    evaluated, _ = bn.forward(x, train=False)  # with momentum 1 the running stats are this batch's
    np.testing.assert_allclose(evaluated, (x - x.mean(axis=(0, 2, 3), keepdims=True)) / np.sqrt(
        x.var(axis=(0, 2, 3), ddof=1, keepdims=True) + bn.eps))


def test_dropout_gradient_and_scaling():
    drop = L.Dropout(0.3)
    check_gradients(drop, (4, 5), reset=lambda: setattr(drop, "rng", np.random.default_rng(9)))
    x = np.ones((200, 500))
    y, _ = L.Dropout(0.3).forward(x, train=True)
    assert abs(y.mean() - 1) < 0.01 and abs((y == 0).mean() - 0.3) < 0.01
    assert L.Dropout(0.3).forward(x, train=False)[0] is x


def test_add_and_concat_gradients():
    check_gradients(L.Add(), (2, 3, 4, 4), (2, 3, 4, 4))
    check_gradients(L.Concat(), (2, 3, 4, 4), (2, 2, 4, 4))


def test_cross_entropy_per_image_and_per_pixel():
    rng = np.random.default_rng(5)
    for shape, labels in (((4, 5), rng.integers(0, 5, 4)), ((2, 3, 4, 4), rng.integers(0, 3, (2, 4, 4)))):
        logits = rng.standard_normal(shape)
        loss, grad = cross_entropy(logits, labels)
        moved = np.moveaxis(logits, 1, -1).reshape(-1, shape[1])
        naive = np.mean([np.log(np.exp(row).sum()) - row[t] for row, t in zip(moved, labels.reshape(-1))])
        assert loss == pytest.approx(naive, rel=1e-12)
        picks, numeric = _numeric(lambda x=logits, t=labels: cross_entropy(x, t)[0], logits, 30, rng)
        np.testing.assert_allclose(grad.reshape(-1)[picks], numeric, rtol=1e-5, atol=1e-8)


def test_float32_stays_float32():
    x = np.random.default_rng(6).standard_normal((2, 1, 8, 8)).astype(np.float32)
    for layer in (L.Conv2d(1, 2, 3), L.MaxPool2d(2), L.BatchNorm2d(1), L.ConvTranspose2d(1, 2, 2, stride=2)):
        y, cache = layer.forward(x, train=True)
        assert y.dtype == np.float32
        assert layer.backward(np.ones_like(y), cache)[0].dtype == np.float32


@pytest.mark.parametrize("arch, shape", [("resnet", (1, 8, 8)), ("unet", (1, 8, 8)), ("lenet5", (1, 12, 12))])
def test_whole_network_gradients(arch, shape):
    """Graph backward (fan-out into a skip, concatenation, residual add) against finite differences."""
    from convtool.nn import models

    net = models.build(arch, shape, 3, seed=0).astype(np.float64)
    for node in net.nodes:
        node.layer.needs_input_grad = True
    rng = np.random.default_rng(7)
    x = rng.standard_normal((3, *shape))
    y = rng.integers(0, 3, (3, *shape[1:]) if arch == "unet" else 3)

    def loss() -> float:
        return cross_entropy(net.forward(x, train=True)[0], y)[0]

    logits, caches = net.forward(x, train=True)
    grads = net.backward(cross_entropy(logits, y)[1], caches)
    for name, p in net.parameters().items():
        picks, numeric = _numeric(loss, p, 1 if arch == "unet" else 3, rng)
        np.testing.assert_allclose(grads[name].reshape(-1)[picks], numeric, rtol=1e-4, atol=1e-7, err_msg=name)
