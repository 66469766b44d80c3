"""im2col / col2im against naive loops, scipy's correlation and their adjoint identity."""

import numpy as np
import pytest
from scipy import signal

from convtool.conv.im2col import col2im, col2im_reference, conv_output_shape, im2col, im2col_reference
from convtool.errors import ShapeError

GEOMETRIES = [
    # kernel, stride, padding, dilation
    (3, 1, 0, 1),
    (3, 2, 1, 1),
    ((2, 3), (1, 2), (1, 0), 1),
    (3, 1, ((0, 2), (1, 0)), 2),
    (1, 3, 0, 1),
    (5, 1, 2, (2, 1)),
]


@pytest.mark.parametrize("kernel, stride, padding, dilation", GEOMETRIES)
def test_im2col_matches_naive_loops(kernel, stride, padding, dilation):
    x = np.random.default_rng(0).standard_normal((2, 3, 9, 8)).astype(np.float32)
    fast = im2col(x, kernel, stride, padding, dilation)
    assert fast.dtype == np.float32 and fast.flags.c_contiguous
    np.testing.assert_array_equal(fast, im2col_reference(x, kernel, stride, padding, dilation))


@pytest.mark.parametrize("kernel, stride, padding, dilation", GEOMETRIES)
def test_col2im_matches_naive_loops_and_is_the_adjoint(kernel, stride, padding, dilation):
    rng = np.random.default_rng(1)
    x = rng.standard_normal((2, 3, 9, 8))
    cols = rng.standard_normal(im2col(x, kernel, stride, padding, dilation).shape)
    back = col2im(cols, x.shape, kernel, stride, padding, dilation)
    np.testing.assert_allclose(back, col2im_reference(cols, x.shape, kernel, stride, padding, dilation), atol=1e-12)
    # <im2col(x), c> == <x, col2im(c)>
    lhs = np.sum(im2col(x, kernel, stride, padding, dilation) * cols)
    assert lhs == pytest.approx(np.sum(x * back), rel=1e-12)


def test_gemm_of_columns_is_scipy_correlation():
    rng = np.random.default_rng(2)
    x = rng.standard_normal((1, 2, 10, 11))
    w = rng.standard_normal((4, 2, 3, 3))
    cols = im2col(x, 3, padding=1)
    y = (w.reshape(4, -1) @ cols).reshape(1, 4, 10, 11)
    for f in range(4):
        expected = sum(signal.correlate2d(x[0, c], w[f, c], mode="same") for c in range(2))
        np.testing.assert_allclose(y[0, f], expected, atol=1e-12)


def test_out_buffer_is_reused_and_checked():
    x = np.ones((1, 1, 4, 4), np.float32)
    buffer = np.empty((1, 4, 9), np.float32)
    assert im2col(x, 2, out=buffer) is buffer
    with pytest.raises(ShapeError, match="out must be"):
        im2col(x, 2, out=np.empty((1, 4, 8), np.float32))


def test_bad_geometry_is_a_shape_error():
    x = np.ones((1, 1, 4, 4))
    with pytest.raises(ShapeError, match="does not fit"):
        im2col(x, 5)
    with pytest.raises(ShapeError, match="stride"):
        im2col(x, 2, stride=0)
    with pytest.raises(ShapeError, match="padding"):
        im2col(x, 2, padding=-1)
    with pytest.raises(ShapeError, match="N,C,H,W"):
        im2col(np.ones((4, 4)), 2)
    assert conv_output_shape(28, 28, 5, 1, 2) == (28, 28)


@pytest.mark.parametrize("kernel, stride, padding, dilation", GEOMETRIES)
@pytest.mark.parametrize("order, axes", [("cnl", (1, 0, 2)), ("cln", (1, 2, 0))])
def test_other_orders_are_transposes_of_ncl(kernel, stride, padding, dilation, order, axes):
    rng = np.random.default_rng(3)
    x = rng.standard_normal((3, 2, 9, 8)).astype(np.float32)
    ncl = im2col(x, kernel, stride, padding, dilation)
    other = im2col(x, kernel, stride, padding, dilation, order=order)
    assert other.flags.c_contiguous
    np.testing.assert_array_equal(other, ncl.transpose(axes))
    back = col2im(other, x.shape, kernel, stride, padding, dilation, order=order)
    np.testing.assert_allclose(back, col2im_reference(ncl, x.shape, kernel, stride, padding, dilation), rtol=1e-5, atol=1e-5)
