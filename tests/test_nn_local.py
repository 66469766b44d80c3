"""Tiled convolution and the locally connected layer: gradients, the conv/local limits, a plain-loop oracle, ONNX."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from convtool.errors import ShapeError
from convtool.nn import layers as L
from convtool.nn.local import LocallyConnected2d, TiledConv2d, tiled_reference
from tests.test_nn_layers import _as64, check_gradients

GEOMETRIES = [dict(kernel_size=3), dict(kernel_size=3, stride=2, padding=1), dict(kernel_size=(2, 3), padding=(1, 0), dilation=2)]


@pytest.mark.parametrize("kwargs", GEOMETRIES)
def test_tiled_gradients(kwargs):
    conv = L.Conv2d(2, 3, **kwargs)
    oh, ow = conv.output_shape((1, 2, 6, 8))[2:]
    period = (2 if oh % 2 == 0 else 1, 2 if ow % 2 == 0 else ow)
    check_gradients(TiledConv2d(2, 3, period=period, **kwargs), (2, 2, 6, 8))


def test_locally_connected_gradients_without_bias():
    check_gradients(LocallyConnected2d(2, 3, 3, (5, 6), stride=2, padding=1, bias=False), (2, 2, 5, 6))


def _equal_weights(layer: TiledConv2d, conv: L.Conv2d) -> TiledConv2d:
    """Every tile gets the conv's kernels and biases."""
    th, tw = layer.period
    layer.params["weight"] = np.broadcast_to(conv.params["weight"], (th, tw, *conv.params["weight"].shape)).copy()
    layer.params["bias"] = np.broadcast_to(conv.params["bias"], (th, tw, conv.out_channels)).copy()
    return layer


@pytest.mark.parametrize("kwargs", GEOMETRIES)
def test_locally_connected_with_equal_weights_is_conv2d(kwargs):
    rng = np.random.default_rng(1)
    conv = _as64(L.Conv2d(2, 3, rng=rng, **kwargs))
    conv.params["bias"] = rng.standard_normal(3)
    local = _equal_weights(_as64(LocallyConnected2d(2, 3, input_size=(6, 7), **kwargs)), conv)
    x = rng.standard_normal((2, 2, 6, 7))
    np.testing.assert_allclose(local.forward(x)[0], conv.forward(x)[0], atol=1e-12)
    g = rng.standard_normal(conv.forward(x)[0].shape)
    dx_local = local.backward(g, local.forward(x)[1])[0]
    np.testing.assert_allclose(dx_local, conv.backward(g, conv.forward(x)[1])[0], atol=1e-12)


def test_tiled_with_one_kernel_is_conv2d_and_with_one_per_location_is_locally_connected():
    rng = np.random.default_rng(2)
    conv = _as64(L.Conv2d(3, 2, 3, padding=1, rng=rng))
    conv.params["bias"] = rng.standard_normal(2)
    tiled = _as64(TiledConv2d(3, 2, 3, period=1, padding=1))
    tiled.params = {"weight": conv.params["weight"][None, None].copy(), "bias": conv.params["bias"][None, None].copy()}
    x = rng.standard_normal((2, 3, 4, 6))
    np.testing.assert_allclose(tiled.forward(x)[0], conv.forward(x)[0], atol=1e-12)
    local = _as64(LocallyConnected2d(3, 2, 3, (4, 6), padding=1, rng=rng))
    local.params["bias"] = rng.standard_normal(local.params["bias"].shape)
    every = _as64(TiledConv2d(3, 2, 3, period=(4, 6), padding=1))
    every.params = {k: v.copy() for k, v in local.params.items()}
    np.testing.assert_allclose(every.forward(x)[0], local.forward(x)[0], atol=1e-12)


@pytest.mark.parametrize("kwargs", GEOMETRIES)
def test_tiled_forward_matches_the_plain_loop(kwargs):
    rng = np.random.default_rng(3)
    conv = L.Conv2d(2, 3, **kwargs)
    oh, ow = conv.output_shape((1, 2, 8, 8))[2:]
    tiled = _as64(TiledConv2d(2, 3, period=(oh, 1), **kwargs, rng=rng))
    if kwargs.get("padding") == 1:  # TensorFlow's uneven 'same' split instead: nothing before, one after
        tiled.padding = (0, 1, 0, 1)
    tiled.params["bias"] = rng.standard_normal(tiled.params["bias"].shape)
    x = rng.standard_normal((2, 2, 8, 8))
    expected = tiled_reference(x, tiled.params["weight"], tiled.params["bias"], tiled.stride, tiled.padding, tiled.dilation)
    np.testing.assert_allclose(tiled.forward(x)[0], expected, atol=1e-12)


def test_tiled_kernels_rotate_through_space():
    """Period 2 along the width on a constant input: columns alternate between two kernels' sums."""
    tiled = _as64(TiledConv2d(1, 1, 2, period=(1, 2), bias=False))
    tiled.params["weight"][0, 0] = 1.0  # first kernel: ones (sum 4)
    tiled.params["weight"][0, 1] = -0.5  # second: sum -2
    y = tiled.forward(np.ones((1, 1, 3, 5)))[0]
    np.testing.assert_array_equal(y[0, 0], [[4, -2, 4, -2]] * 2)


def test_parameter_counts_of_the_lecture_example():
    """6x5 input, 3x3 fields, valid: 4x3 units with 9 weights each (+ 12 biases); conv: 9."""
    local = LocallyConnected2d(1, 1, 3, (6, 5))
    assert local.params["weight"].size == 108 and local.params["bias"].size == 12
    assert L.Conv2d(1, 1, 3).params["weight"].size == 9
    assert TiledConv2d(1, 1, 3, period=2).params["weight"].size == 36


def test_periods_that_do_not_divide_the_output_are_refused():
    with pytest.raises(ShapeError, match="period of 3 does not divide the 4 output positions of the height.*use one of 1, 2, 4"):
        TiledConv2d(1, 1, 3, period=(3, 1)).output_shape((1, 1, 6, 5))
    with pytest.raises(ShapeError, match="built for 6x5 inputs"):
        LocallyConnected2d(1, 1, 3, (6, 5)).output_shape((1, 1, 7, 5))


def test_float32_stays_float32():
    x = np.random.default_rng(4).standard_normal((2, 1, 6, 6)).astype(np.float32)
    layer = TiledConv2d(1, 2, 3, period=2)
    y, cache = layer.forward(x)
    assert y.dtype == np.float32 and layer.backward(np.ones_like(y), cache)[0].dtype == np.float32


@pytest.mark.parametrize("layer", [
    TiledConv2d(2, 3, 3, period=(2, 3), stride=2, padding=1, dilation=1),
    LocallyConnected2d(2, 3, (3, 2), (7, 6), padding=(1, 0), dilation=(2, 1)),
    TiledConv2d(2, 3, 3, period=(1, 2), bias=False),
])
def test_onnx_export_matches_the_forward_pass(layer):
    from convtool.infer.session import open_session
    from convtool.nn import export
    from convtool.nn.models import Network

    rng = np.random.default_rng(5)
    layer.params = {k: rng.standard_normal(v.shape).astype(np.float32) for k, v in layer.params.items()}
    net = Network("tiled", "classify", (2, 7, 6), 3)
    net.add("tiled1", layer)
    model = export.to_onnx(net, {})
    session = open_session(Path("t.onnx"), "cpu", model_bytes=model.SerializeToString())
    x = rng.standard_normal((3, 2, 7, 6)).astype(np.float32)
    np.testing.assert_allclose(session.run(x)[0], net.forward(x)[0], atol=1e-4)


def test_lenet5_with_a_locally_connected_c1_trains_on_mnist_and_exports(tmp_path, monkeypatch):
    """``convtool train lenet5-local``: the loss falls on the bundled MNIST and the ONNX export check holds."""
    import csv

    from click.testing import CliRunner

    from convtool.cli.main import cli

    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(cli, ["train", "lenet5-local", "--epochs", "2", "--limit", "400", "-q", "-o", "m.onnx"])
    assert result.exit_code == 0, result.output
    assert "export check: onnxruntime matches convtool" in result.output
    rows = list(csv.DictReader(open(tmp_path / "m-metrics.csv")))
    assert float(rows[-1]["train_loss"]) < float(rows[0]["train_loss"])
    assert float(rows[-1]["val_accuracy"]) > 0.3  # 10 classes: chance is 0.1
    from onnx import load

    names = {t.name: tuple(t.dims) for t in load(str(tmp_path / "m.onnx")).graph.initializer}
    assert names["local1.weight"] == (28, 28, 6, 1, 5, 5)
