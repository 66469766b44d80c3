"""correlate2d on interleaved (..., H, W, C) images (``channel_axis=-1``) against the reference and scipy.ndimage."""

import numpy as np
import pytest
from scipy import ndimage

from convtool.conv import convolve2d, correlate2d, cpu
from convtool.errors import UsageError

RNG = np.random.default_rng(12)
BORDERS = ["zero", "constant", "reflect", "symmetric", "replicate", "wrap"]
SCIPY_MODES = {"zero": "constant", "constant": "constant", "reflect": "mirror", "symmetric": "reflect",
               "replicate": "nearest", "wrap": "grid-wrap"}
GEOMETRIES = [  # stride, dilation, padding; a horizontal stride > 1 goes through planes
    (1, 1, "same"),
    ((2, 1), (1, 2), (5, 6, 7, 8)),
    (1, (2, 1), (1, 2, 3, 0)),
    ((2, 3), 1, "full"),
    (3, 1, 7),
]
KERNELS = {"rank1": np.outer([1.0, 2, 1], [1, 0, -1, 3]), "dense": RNG.standard_normal((3, 4))}


def _planes_reference(image, kernel, **options):
    """The reference back-end on the channels as planes, moved back to (..., OH, OW, C)."""
    planes = np.moveaxis(image, -1, -3)
    return np.moveaxis(correlate2d(planes, kernel, backend="reference", **options), -3, -1)


@pytest.mark.parametrize("backend,numba_path", [("direct", "rows"), ("direct", "flat"), ("separable", "rows"),
                                               ("separable", "flat"), ("fft", None), ("im2col", None),
                                               ("numpy", None), ("reference", None)])
@pytest.mark.parametrize("dtype", [np.uint8, np.float32])
def test_every_backend_matches_the_reference_on_planes(backend, numba_path, dtype, monkeypatch):
    if numba_path is not None:
        monkeypatch.setattr(cpu, "FLAT_PIXELS", 0 if numba_path == "rows" else 1 << 30)
    image = RNG.integers(0, 256, (2, 13, 11, 3)).astype(dtype)
    for border in BORDERS:
        for stride, dilation, padding in GEOMETRIES:
            for kernel in KERNELS.values():
                options = dict(stride=stride, dilation=dilation, padding=padding, border=border, cval=1.5)
                got = correlate2d(image, kernel, backend=backend, channel_axis=-1, **options)
                expected = _planes_reference(image, kernel, **options)
                assert got.dtype == np.float32 and got.shape == expected.shape
                np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-3, err_msg=f"{backend} {options}")


@pytest.mark.parametrize("backend", ["auto", "direct", "separable"])
@pytest.mark.parametrize("border", BORDERS)
def test_a_colour_image_matches_scipy_with_a_one_channel_deep_kernel(backend, border):
    image = RNG.integers(0, 256, (19, 23, 3)).astype(np.uint8)
    for kernel in (np.array([[1.0, 0, -1], [2, 0, -2], [1, 0, -1]]), np.outer(np.hanning(7), np.hanning(5))):
        got = correlate2d(image, kernel, padding="same", border=border, cval=7.0, backend=backend, channel_axis=2)
        expected = ndimage.correlate(image.astype(np.float64), kernel[:, :, None], mode=SCIPY_MODES[border],
                                     cval=0.0 if border == "zero" else 7.0)
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-3)
    flipped = convolve2d(image, kernel, padding="same", border=border, backend=backend, channel_axis=-1)
    np.testing.assert_allclose(flipped, correlate2d(image, kernel[::-1, ::-1], padding="same", border=border,
                                                    backend=backend, channel_axis=-1), rtol=1e-6)


@pytest.mark.parametrize("dtype", [np.uint8, np.float32])
@pytest.mark.parametrize("strips", [False, True])
def test_rows_wider_than_a_tile_and_many_blocks_on_threads(monkeypatch, dtype, strips):
    monkeypatch.setattr(cpu, "FLAT_PIXELS", 0)  # the row-ring path: 400 x 3 samples per row, two tiles and a part
    monkeypatch.setattr(cpu, "THREADS", 3)
    monkeypatch.setattr(cpu, "SERIAL_WORK", 0)
    if strips:  # separable rings in 1-tile column strips
        monkeypatch.setattr(cpu, "RING_BYTES", 0)
        assert cpu.column_strip(1200, 3, 1) == 640  # two strips of equal width (multiples of 64)
    image = RNG.integers(0, 256, (2, 37, 400, 3)).astype(dtype)
    wide = np.outer([1.0, 2, 1], np.arange(-5.0, 6.0))  # 10 taps per row: uint8 tiles converted first
    folded = np.array([[1.0, 2, 1, 0], [3, -1, 4, 2], [0, 5, 1, -2], [3, -1, 4, 2], [1.0, 2, 1, 0]])  # mirrored rows
    for kernel, backend in ((wide, "separable"), (KERNELS["rank1"], "separable"), (folded, "direct"),
                            (KERNELS["dense"], "direct")):
        for dilation, padding, border in ((1, "same", "reflect"), ((1, 2), (2, 3, 9, 0), "wrap"),
                                          (1, (1, 1, 0, 7), "constant"), (2, "full", "replicate")):
            options = dict(dilation=dilation, padding=padding, border=border, cval=-3.0)
            np.testing.assert_allclose(correlate2d(image, kernel, backend=backend, channel_axis=-1, **options),
                                       _planes_reference(image, kernel, **options), rtol=1e-4, atol=1e-2,
                                       err_msg=f"{backend} {options}")


def test_one_and_four_channels_and_leading_axes():
    kernel = KERNELS["dense"]
    for shape in ((9, 8, 1), (9, 8, 4), (2, 3, 9, 8, 2)):
        image = RNG.standard_normal(shape).astype(np.float32)
        got = correlate2d(image, kernel, padding="same", border="symmetric", backend="direct", channel_axis=-1)
        np.testing.assert_allclose(got, _planes_reference(image, kernel, padding="same", border="symmetric"),
                                   rtol=1e-4, atol=1e-4)


def test_out_takes_the_interleaved_output_shape():
    image = RNG.integers(0, 256, (12, 10, 3)).astype(np.uint8)
    out = np.full((12, 5, 3), np.nan, dtype=np.float32)
    options = dict(stride=(1, 2), padding="same", border="reflect", channel_axis=-1)
    assert correlate2d(image, KERNELS["rank1"], out=out, **options) is out
    np.testing.assert_allclose(out, _planes_reference(image, KERNELS["rank1"], stride=(1, 2), padding="same",
                                                      border="reflect"), rtol=1e-5, atol=1e-3)
    with pytest.raises(UsageError, match=r"out must be a C-contiguous float32 array of shape \(12, 10, 3\), got "
                                         r"float32 \(3, 12, 10\)"):
        correlate2d(image, KERNELS["rank1"], padding="same", channel_axis=-1, out=np.empty((3, 12, 10), np.float32))


@pytest.mark.parametrize("image_shape, channel_axis", [((8, 8, 3), 0), ((8, 8, 3), -2), ((8, 8, 3), True),
                                                       ((8, 8), -1), ((8, 8, 3), "last")])
def test_a_channel_axis_other_than_the_last_is_a_one_line_error(image_shape, channel_axis):
    with pytest.raises(UsageError, match=r"`channel_axis` must be None or -1") as error:
        correlate2d(np.zeros(image_shape, np.float32), KERNELS["dense"], channel_axis=channel_axis)
    assert "\n" not in str(error.value)
