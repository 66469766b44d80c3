"""The matrix W behind conv, tiled and locally connected layers against scipy and the conv layer's backward pass."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import signal

from convtool.errors import UsageError
from convtool.layer_kinds import parse_kind
from convtool.matrix import Spec, check_size, layer_matrix, verify, weight_ids, weight_shape
from convtool.nn import layers as L


def _scipy_correlation(x: np.ndarray, kernel: np.ndarray, s, pads, d) -> np.ndarray:
    """Zero-pad, dilate the kernel by inserting zeros, correlate 'valid', keep every s-th output."""
    top, bottom, left, right = pads
    padded = np.pad(x, ((top, bottom), (left, right)))
    dilated = np.zeros(((kernel.shape[0] - 1) * d[0] + 1, (kernel.shape[1] - 1) * d[1] + 1))
    dilated[:: d[0], :: d[1]] = kernel
    return signal.correlate2d(padded, dilated, mode="valid")[:: s[0], :: s[1]]


@st.composite
def specs(draw):
    k = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    d = (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
    pads = tuple(draw(st.integers(0, 2)) for _ in range(4))
    n = tuple(draw(st.integers((kk - 1) * dd + 1, 7)) for kk, dd in zip(k, d))
    s = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    return Spec(1, 1, n, k, s, pads, d)


@settings(max_examples=25, deadline=None)
@given(specs(), st.integers(0, 2**32 - 1))
def test_w_times_x_is_scipy_correlation(spec, seed):
    rng = np.random.default_rng(seed)
    kernel = rng.standard_normal(spec.k)
    x = rng.standard_normal(spec.n)
    w = layer_matrix(kernel[None, None, None, None], spec)
    expected = _scipy_correlation(x, kernel, spec.s, spec.pads, spec.d)
    np.testing.assert_allclose((w @ x.reshape(-1)).reshape(spec.out), expected, atol=1e-12)


@pytest.mark.parametrize("kwargs", [dict(kernel_size=3), dict(kernel_size=3, stride=2, padding=1),
                                    dict(kernel_size=(2, 3), padding=(1, 2), dilation=2)])
def test_w_transpose_is_the_conv_layers_input_gradient(kwargs):
    rng = np.random.default_rng(1)
    conv = L.Conv2d(2, 3, bias=False, **kwargs)
    conv.params["weight"] = rng.standard_normal(conv.params["weight"].shape)
    x = rng.standard_normal((1, 2, 7, 8))
    y, cache = conv.forward(x)
    g = rng.standard_normal(y.shape)
    ph, pw = conv.padding
    spec = Spec(2, 3, (7, 8), conv.kernel_size, conv.stride, (ph, ph, pw, pw), conv.dilation)
    w = layer_matrix(conv.params["weight"][None, None], spec)
    np.testing.assert_allclose(w @ x.reshape(-1), y.reshape(-1), atol=1e-12)
    np.testing.assert_allclose(w.T @ g.reshape(-1), conv.backward(g, cache)[0].reshape(-1), atol=1e-12)


def test_weight_numbers_show_sharing():
    """Conv rows are shifted copies of weights 1..9; local rows hold weights of their own; tiled alternates."""
    spec = Spec(1, 1, (6, 5), (3, 3))
    conv = weight_ids(parse_kind("conv"), spec)
    assert conv.shape == (12, 30) and set(np.unique(conv)) == set(range(10))
    assert [list(row[row > 0]) for row in conv] == [list(range(1, 10))] * 12
    local = weight_ids(parse_kind("local"), spec)
    assert np.count_nonzero(local) == 108 and len(np.unique(local[local > 0])) == 108
    tiled = weight_ids(parse_kind("tiled:2x1"), spec)
    assert list(tiled[0][tiled[0] > 0]) == list(range(1, 10)) and list(tiled[3][tiled[3] > 0]) == list(range(10, 19))
    assert list(tiled[6][tiled[6] > 0]) == list(range(1, 10))  # output row 2 uses the first kernel again
    dense = weight_ids(parse_kind("dense"), spec)
    assert np.count_nonzero(dense) == 360


@pytest.mark.parametrize("kind", ["conv", "tiled:3x2", "local", "dense"])
def test_verify_agrees_for_every_kind(kind):
    rng = np.random.default_rng(2)
    spec = Spec(2, 2, (7, 8), (3, 2), (2, 1), (0, 1, 1, 1), (1, 2))
    weight = rng.standard_normal(weight_shape(parse_kind(kind), spec))
    checks = verify(parse_kind(kind), spec, weight, rng.standard_normal((2, 7, 8)), rng)
    assert checks.forward_error < 1e-5 and checks.transpose_error < 1e-12


def test_too_large_to_print_says_how_big():
    with pytest.raises(UsageError, match=r"W is 1,444 x 1,600 \(2,310,400 entries\), too large to print.*-o W.png"):
        check_size(Spec(1, 1, (40, 40), (3, 3)), picture=False)
    check_size(Spec(1, 1, (8, 8), (3, 3), pads=(1, 1, 1, 1)), picture=False)  # 64 x 64 prints
    check_size(Spec(1, 1, (40, 40), (3, 3)), picture=True)


def test_w_transpose_is_conv_transpose2d_where_it_gives_the_input_size():
    rng = np.random.default_rng(3)
    spec = Spec(2, 3, (5, 5), (3, 3), (2, 2), (1, 1, 1, 1))  # 5 -> 3 -> back to 5: ConvTranspose2d applies
    checks = verify(parse_kind("conv"), spec, rng.standard_normal(weight_shape(parse_kind("conv"), spec)),
                    rng.standard_normal((2, 5, 5)), rng)
    assert checks.transpose_oracle.startswith("ConvTranspose2d") and checks.transpose_error < 1e-12
    dropped = Spec(1, 1, (6, 6), (3, 3), (2, 2))  # 6 -> 2 -> 5: one input row dropped, col2im only
    checks = verify(parse_kind("conv"), dropped, np.ones((1, 1, 1, 1, 3, 3)), np.ones((1, 6, 6)), rng)
    assert checks.transpose_oracle.startswith("col2im") and checks.transpose_error < 1e-12
