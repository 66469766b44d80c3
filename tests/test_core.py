"""The filter core (correlate2d, convolve2d, pool2d) against scipy.ndimage, NumPy loops and the lectures."""

import numpy as np
import pytest
import scipy.ndimage as ndi
from hypothesis import given, settings
from hypothesis import strategies as st

from convtool.conv import convolve2d, correlate2d, pool2d
from convtool.errors import ShapeError, UsageError

# convtool border -> scipy.ndimage mode
SCIPY_MODES = {"zero": "constant", "constant": "constant", "reflect": "mirror", "symmetric": "reflect",
               "replicate": "nearest", "wrap": "wrap"}
BACKENDS = ["reference", "direct"]


def naive_correlate(x, k, stride=(1, 1), dilation=(1, 1)):
    """A pixel-by-pixel loop over a (pre-padded) 2D array: the most literal oracle."""
    kh, kw = k.shape
    span_h, span_w = (kh - 1) * dilation[0] + 1, (kw - 1) * dilation[1] + 1
    oh, ow = (x.shape[0] - span_h) // stride[0] + 1, (x.shape[1] - span_w) // stride[1] + 1
    out = np.zeros((oh, ow))
    for y in range(oh):
        for xx in range(ow):
            for i in range(kh):
                for j in range(kw):
                    out[y, xx] += k[i, j] * x[y * stride[0] + i * dilation[0], xx * stride[1] + j * dilation[1]]
    return out


def dilate(k, d):
    out = np.zeros(((k.shape[0] - 1) * d[0] + 1, (k.shape[1] - 1) * d[1] + 1))
    out[:: d[0], :: d[1]] = k
    return out


# --- the lecture examples, exactly --------------------------------------------------------------

@pytest.mark.parametrize("backend", BACKENDS)
def test_lecture_binary_image(backend):
    x = np.array([[1, 1, 1, 0, 0], [0, 1, 1, 1, 0], [0, 0, 1, 1, 1], [0, 0, 1, 1, 0], [0, 1, 1, 0, 0]])
    k = np.array([[1, 0, 1], [0, 1, 0], [1, 0, 1]])
    np.testing.assert_array_equal(correlate2d(x, k, backend=backend), [[4, 3, 4], [2, 4, 3], [2, 3, 4]])


@pytest.mark.parametrize("backend", BACKENDS)
def test_lecture_horizontal_edge(backend):
    x = np.array([[100] * 6, [100] * 6, [100, 0, 0, 100, 100, 100], [0] * 6, [0] * 6])
    k = np.array([[1, 2, 1], [0, 0, 0], [-1, -2, -1]])
    expected = [[300, 300, 100, 0], [400, 400, 400, 400], [100, 100, 300, 400]]
    np.testing.assert_array_equal(correlate2d(x, k, backend=backend), expected)


@pytest.mark.parametrize("backend", BACKENDS)
def test_lecture_full_true_convolution(backend):
    x = np.array([[1, 3, 1], [0, -1, 1], [2, 2, -1]])
    k = np.array([[1, 2], [0, -1]])
    expected = [[1, 5, 7, 2], [0, -2, -4, 1], [2, 6, 4, -3], [0, -2, -2, 1]]
    np.testing.assert_array_equal(convolve2d(x, k, padding="full", backend=backend), expected)


def test_lecture_max_pool_width_3_stride_2():
    x = np.array([[1, 3, 2, 9, 7, 0, 4]], dtype=float)
    out = pool2d(x, (1, 3), stride=(1, 2))
    np.testing.assert_array_equal(out, [[3, 9, 7]])


# --- scipy.ndimage on real photos: every border, odd and even kernels ------------------------------

@pytest.mark.parametrize("border", list(SCIPY_MODES))
@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("shape", [(3, 3), (5, 3), (1, 4)])
def test_same_padding_matches_scipy(camera, border, backend, shape):
    rng = np.random.default_rng(sum(shape))
    k = rng.normal(size=shape)
    ours = correlate2d(camera, k, padding="same", border=border, cval=7.5, backend=backend)
    # TensorFlow's same puts the extra cell after; scipy centres at k//2: shift by origin for even sizes
    origin = [-1 if n % 2 == 0 else 0 for n in shape]
    cval = 7.5 if border == "constant" else 0.0
    expected = ndi.correlate(camera.astype(np.float64), k, mode=SCIPY_MODES[border], cval=cval, origin=origin)
    np.testing.assert_allclose(ours, expected, rtol=1e-5, atol=1e-3)


@pytest.mark.parametrize("backend", BACKENDS)
def test_convolve_matches_scipy(camera, backend):
    k = np.arange(9.0).reshape(3, 3) - 4
    ours = convolve2d(camera, k, padding="same", border="replicate", backend=backend)
    np.testing.assert_allclose(ours, ndi.convolve(camera.astype(float), k, mode="nearest"), rtol=1e-5, atol=1e-3)


@pytest.mark.parametrize("backend", BACKENDS)
def test_colour_channels_filtered_independently(astronaut, backend):
    planes = np.moveaxis(astronaut, -1, 0)
    k = np.array([[1.0, 2, 1], [0, 0, 0], [-1, -2, -1]])
    ours = correlate2d(planes, k, padding="same", border="reflect", backend=backend)
    for c in range(3):
        expected = ndi.correlate(planes[c].astype(float), k, mode="mirror")
        np.testing.assert_allclose(ours[c], expected, rtol=1e-5, atol=1e-3)


@settings(max_examples=60, deadline=None)
@given(
    h=st.integers(1, 12), w=st.integers(1, 12), kh=st.integers(1, 4), kw=st.integers(1, 4),
    stride=st.tuples(st.integers(1, 3), st.integers(1, 3)), dilation=st.tuples(st.integers(1, 2), st.integers(1, 2)),
    padding=st.one_of(st.sampled_from(["valid", "same", "full"]), st.tuples(*[st.integers(0, 3)] * 4)),
    border=st.sampled_from(list(SCIPY_MODES)), seed=st.integers(0, 2**16),
)
def test_random_settings_agree_with_scipy_and_naive_loop(h, w, kh, kw, stride, dilation, padding, border, seed):
    rng = np.random.default_rng(seed)
    x, k = rng.normal(size=(h, w)), rng.normal(size=(kh, kw))
    try:
        ref = correlate2d(x, k, stride=stride, dilation=dilation, padding=padding, border=border, backend="reference")
    except ShapeError:
        return  # kernel larger than the padded input: rejected, as it must be
    direct = correlate2d(x, k, stride=stride, dilation=dilation, padding=padding, border=border, backend="direct")
    np.testing.assert_allclose(direct, ref, rtol=1e-4, atol=1e-4)
    # oracle: explicit numpy padding, then scipy in constant mode on the dilated kernel, sampled by stride
    from convtool.geometry import resolve_pads

    top, bottom, left, right = resolve_pads(padding, (h, w), (kh, kw), stride, dilation)
    numpy_mode = {"zero": "constant", "constant": "constant", "reflect": "reflect", "symmetric": "symmetric",
                  "replicate": "edge", "wrap": "wrap"}[border]
    padded = np.pad(x, ((top, bottom), (left, right)), mode=numpy_mode)
    dk = dilate(k, dilation)
    full = ndi.correlate(padded, dk, mode="constant")  # centred at k//2: out[c] = sum_i k[i] x[c + i - k//2]
    ch, cw = dk.shape[0] // 2, dk.shape[1] // 2
    oh, ow = ref.shape
    expected = full[ch: ch + (oh - 1) * stride[0] + 1: stride[0], cw: cw + (ow - 1) * stride[1] + 1: stride[1]]
    np.testing.assert_allclose(ref, expected, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(ref, naive_correlate(padded, k, stride, dilation), rtol=1e-4, atol=1e-4)


def test_translation_equivariance(camera):
    k = np.array([[0.0, 1, 0], [1, -4, 1], [0, 1, 0]])
    shifted = np.roll(camera, (3, -5), axis=(0, 1))
    out, out_shifted = correlate2d(camera, k, padding="same"), correlate2d(shifted, k, padding="same")
    # away from the borders, shifting the input shifts the output
    np.testing.assert_allclose(np.roll(out, (3, -5), axis=(0, 1))[8:-8, 8:-8], out_shifted[8:-8, 8:-8], atol=1e-3)
    # with wrap-around borders it holds everywhere
    wrap = correlate2d(camera, k, padding="same", border="wrap")
    np.testing.assert_allclose(np.roll(wrap, (3, -5), axis=(0, 1)),
                               correlate2d(shifted, k, padding="same", border="wrap"), atol=1e-3)


# --- pooling -----------------------------------------------------------------------------------

@pytest.mark.parametrize("kind", ["max", "avg", "l2"])
@pytest.mark.parametrize("size,stride", [((2, 2), (2, 2)), ((3, 3), (2, 2)), ((3, 2), (1, 3))])
def test_pool_matches_naive_loop(camera, kind, size, stride):
    x = camera[:17, :23]
    oh, ow = (17 - size[0]) // stride[0] + 1, (23 - size[1]) // stride[1] + 1
    reduce = {"max": np.max, "avg": np.mean, "l2": lambda w: np.sqrt(np.sum(w.astype(float) ** 2))}[kind]
    expected = np.array([[reduce(x[y * stride[0]: y * stride[0] + size[0], c * stride[1]: c * stride[1] + size[1]])
                          for c in range(ow)] for y in range(oh)])
    for backend in BACKENDS:
        np.testing.assert_allclose(pool2d(x, size, stride=stride, kind=kind, backend=backend), expected, rtol=1e-5)


def test_max_pool_same_padding_matches_scipy_filter(camera):
    out = pool2d(camera, 3, stride=1, padding="same")
    np.testing.assert_array_equal(out, ndi.maximum_filter(camera, size=3, mode="nearest"))


# --- validation ----------------------------------------------------------------------------------

@pytest.mark.parametrize("kwargs,error", [
    (dict(stride=0), ShapeError), (dict(dilation=-1), ShapeError), (dict(stride=(1, 2, 3)), ShapeError),
    (dict(padding="middle"), UsageError), (dict(padding=-1), UsageError), (dict(border="mirrorish"), UsageError),
])
def test_bad_options_are_rejected(kwargs, error):
    with pytest.raises(error):
        correlate2d(np.ones((5, 5)), np.ones((3, 3)), **kwargs)


def test_kernel_larger_than_padded_input_names_sizes():
    with pytest.raises(ShapeError, match="kernel 6 does not fit the padded input 5"):
        correlate2d(np.ones((5, 5)), np.ones((6, 6)))


@pytest.mark.parametrize("kernel", [np.ones((0, 3)), np.ones(3), np.array([[np.nan]])])
def test_bad_kernels_are_rejected(kernel):
    with pytest.raises(ShapeError):
        correlate2d(np.ones((5, 5)), kernel)
