"""Every CPU back-end of correlate2d / pool2d against the NumPy reference and scipy.ndimage."""

import numpy as np
import pytest
from scipy import ndimage

from convtool.conv import Choice, choose_backend, choose_pool_backend, convolve2d, correlate2d, cpu, pool2d, separable
from convtool.errors import DeviceError, ShapeError, UsageError

RNG = np.random.default_rng(7)
SOBEL = np.array([[1.0, 0, -1], [2, 0, -2], [1, 0, -1]])
KERNELS = {
    "rank1": np.outer([1.0, 2, 1], [1, 0, -1, 3]),  # even width, a zero column
    "dense": RNG.standard_normal((3, 4)),
}
BORDERS = ["zero", "constant", "reflect", "symmetric", "replicate", "wrap"]
GEOMETRIES = [  # stride, dilation, padding
    (1, 1, "same"),
    ((2, 3), 1, "full"),
    (1, (2, 1), (1, 2, 3, 0)),
    (2, 2, "valid"),
    (3, 1, 7),
]
# scipy.ndimage's names for convtool's borders
SCIPY_MODES = {"zero": "constant", "constant": "constant", "reflect": "mirror", "symmetric": "reflect",
               "replicate": "nearest", "wrap": "grid-wrap"}


def _image(shape=(2, 23, 19)):
    return RNG.standard_normal(shape).astype(np.float32)


@pytest.fixture(params=["rows", "flat", "in_place"])
def cpu_path(request, monkeypatch):
    """Run the Numba kernels every way: a ring of padded rows per block, one flat padded stack, or (direct
    kernels at stride 1) the image read in place."""
    _numba_path(monkeypatch, request.param)
    return request.param


def _numba_path(monkeypatch, path):
    monkeypatch.setattr(cpu, "IN_PLACE", path == "in_place")
    monkeypatch.setattr(cpu, "IN_PLACE_STACKED", 0)
    if path != "in_place":
        monkeypatch.setattr(cpu, "FLAT_PIXELS", 0 if path == "rows" else 1 << 30)


@pytest.mark.parametrize("backend,numba_path", [("direct", "rows"), ("direct", "flat"), ("direct", "in_place"),
                                               ("separable", "rows"), ("separable", "flat"), ("fft", None),
                                               ("im2col", None), ("numpy", None)])
@pytest.mark.parametrize("border", BORDERS)
def test_backends_match_reference_for_every_geometry(backend, numba_path, border, monkeypatch):
    if numba_path is not None:  # the Numba kernels' paths: a ring of padded rows, one flat stack, in place
        _numba_path(monkeypatch, numba_path)
    image = _image()
    for stride, dilation, padding in GEOMETRIES:
        for kernel in KERNELS.values():
            options = dict(stride=stride, dilation=dilation, padding=padding, border=border, cval=1.5)
            fast = correlate2d(image, kernel, backend=backend, **options)
            slow = correlate2d(image, kernel, backend="reference", **options)
            assert fast.dtype == np.float32 and fast.shape == slow.shape
            np.testing.assert_allclose(fast, slow, rtol=1e-4, atol=1e-4, err_msg=f"{backend} {options}")


@pytest.mark.parametrize("backend", ["auto", "direct", "separable", "fft", "im2col", "numpy"])
@pytest.mark.parametrize("border", BORDERS)
def test_backends_match_scipy_ndimage(backend, border):
    image = _image((40, 37))
    for kernel in (SOBEL, RNG.standard_normal((5, 3)), np.outer(np.hanning(7), np.hanning(9))):
        fast = correlate2d(image, kernel, padding="same", border=border, cval=-2.0, backend=backend)
        cval = 0.0 if border == "zero" else -2.0
        expected = ndimage.correlate(image.astype(np.float64), kernel, mode=SCIPY_MODES[border], cval=cval)
        np.testing.assert_allclose(fast, expected, rtol=1e-4, atol=1e-4)


def test_convolve2d_flips_the_kernel_like_scipy():
    image = _image((31, 29))
    kernel = RNG.standard_normal((3, 5))
    expected = ndimage.convolve(image.astype(np.float64), kernel, mode="nearest")
    for backend in ("direct", "fft"):
        got = convolve2d(image, kernel, padding="same", border="replicate", backend=backend)
        np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4)


def test_padding_wider_than_the_image_repeats_like_numpy_pad(cpu_path):
    image = np.arange(1, 7, dtype=np.float32).reshape(1, 2, 3)
    kernel = RNG.standard_normal((3, 3))
    for border in ("reflect", "symmetric", "wrap", "replicate"):
        slow = correlate2d(image, kernel, padding=(7, 5, 6, 9), border=border, backend="reference")
        for backend in ("direct", "separable", "fft"):
            fast = correlate2d(image, kernel, padding=(7, 5, 6, 9), border=border, backend=backend)
            np.testing.assert_allclose(fast, slow, rtol=1e-5, atol=1e-5)


def test_many_row_blocks_and_images_cover_every_output_once(monkeypatch, cpu_path):
    monkeypatch.setattr(cpu, "THREADS", 3)  # uneven split of jobs between threads
    monkeypatch.setattr(cpu, "SERIAL_WORK", 0)  # use the threads even for this small job
    image = _image((5, 101, 35))
    for backend, kernel in (("direct", RNG.standard_normal((4, 3))), ("separable", KERNELS["rank1"])):
        assert cpu.block_rows(101, 5, 4, 3) < 101  # several row blocks per image
        fast = correlate2d(image, kernel, stride=(2, 1), padding="same", border="symmetric", backend=backend)
        slow = correlate2d(image, kernel, stride=(2, 1), padding="same", border="symmetric", backend="reference")
        np.testing.assert_allclose(fast, slow, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("backend", ["direct", "separable", "fft", "im2col", "auto"])
def test_uint8_and_other_dtypes_are_read_exactly(backend, cpu_path):
    image = RNG.integers(0, 256, (3, 17, 21)).astype(np.uint8)
    expected = ndimage.correlate(image.astype(np.float64), SOBEL[None], mode="mirror")
    for dtype in (np.uint8, np.uint16, np.int32, np.float64):
        got = correlate2d(image.astype(dtype), SOBEL, padding="same", border="reflect", backend=backend)
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-3)


def test_all_zero_kernel_and_one_by_one_kernel():
    image = _image((2, 9, 8))
    assert not correlate2d(image, np.zeros((3, 3)), backend="direct").any()
    np.testing.assert_allclose(correlate2d(image, [[2.5]], backend="direct"), 2.5 * image, rtol=1e-6)
    np.testing.assert_allclose(correlate2d(image, [[2.5]], backend="separable"), 2.5 * image, rtol=1e-6)


def test_separable_factors_are_exact_for_sobel_and_absent_for_rank_two():
    column, row = separable.factors(SOBEL)
    np.testing.assert_array_equal(np.outer(column, row), SOBEL)
    assert separable.rank(np.eye(3)) == 3
    assert separable.factors(np.eye(2)) is None


def test_auto_picks_by_cost_and_says_why():
    gaussian = np.outer(np.hanning(31), np.hanning(31))
    assert choose_backend((512, 512), gaussian, device="cpu").backend == "separable"
    assert choose_backend((512, 512), RNG.standard_normal((9, 9)), device="cpu").backend == "direct"
    # Sobel: 6 direct taps in one pass beat 2 + 3 taps in two, on small and large planes alike; on a large plane
    # (a ring of rows) a 3x3 binomial goes separable (3 + 3 taps against 9), on a small one direct; 5x5 separable
    assert choose_backend((256, 256), SOBEL, device="cpu").backend == "direct"
    assert choose_backend((3, 1080, 1920), SOBEL, device="cpu").backend == "direct"
    binomial3 = np.outer([1.0, 2, 1], [1.0, 2, 1])
    assert choose_backend((3, 1080, 1920), binomial3, device="cpu").backend == "separable"
    assert choose_backend((256, 256), binomial3, device="cpu").backend == "direct"
    binomial5 = np.outer([1.0, 4, 6, 4, 1], [1.0, 4, 6, 4, 1])
    assert choose_backend((3, 1080, 1920), binomial5, device="cpu").backend == "separable"
    big = choose_backend((512, 512), RNG.standard_normal((31, 31)), device="cpu")
    assert big == Choice("fft", "cpu", big.reason) and "non-separable" in big.reason and "fft" in big.reason


def test_auto_uses_numpy_for_small_jobs_until_numba_is_loaded(monkeypatch):
    import convtool.conv as conv

    monkeypatch.setattr(conv, "numba_loaded", lambda: False)
    small = choose_backend((512, 512), SOBEL, device="cpu")
    assert small.backend == "numpy" and "Numba not loaded" in small.reason
    assert choose_backend((4096, 4096), SOBEL, device="cpu").backend != "numpy"
    assert choose_backend((100, 512, 512), SOBEL, device="cpu").backend != "numpy"  # 100 planes: big job
    assert choose_pool_backend(device="cpu", work=1e4).backend == "numpy"
    image = _image((3, 30, 31))
    np.testing.assert_allclose(pool2d(image, 3, stride=2, kind="avg", padding="same"),
                               pool2d(image, 3, stride=2, kind="avg", padding="same", backend="reference"), rtol=1e-6)
    monkeypatch.setattr(conv, "numba_loaded", lambda: True)
    assert choose_backend((512, 512), SOBEL, device="cpu").backend != "numpy"


def test_a_backend_that_cannot_run_the_kernel_falls_back_and_names_one_that_can():
    choice = choose_backend((64, 64), np.eye(3), backend="separable", device="cpu")
    assert choice.backend == "direct" and "rank 3" in choice.reason and "direct" in choice.reason
    pool_choice = choose_pool_backend(backend="fft", device="cpu")
    assert pool_choice.backend == "direct" and "pooling has no fft" in pool_choice.reason
    image = _image((12, 12))
    np.testing.assert_allclose(pool2d(image, 2, backend="fft"), pool2d(image, 2, backend="reference"))


def test_cuda_without_a_gpu_is_a_clear_error(monkeypatch):
    from convtool.conv import device

    monkeypatch.setattr(device, "cuda_status", lambda: (False, "numba.cuda.is_available() is false: no driver"))
    with pytest.raises(DeviceError, match="CUDA was asked for but is unavailable: .*is_available.*`device` cpu"):
        correlate2d(_image((8, 8)), SOBEL, device="cuda")
    with pytest.raises(DeviceError, match="CUDA was asked for but is unavailable"):
        correlate2d(_image((8, 8)), SOBEL, backend="cuda")
    with pytest.raises(DeviceError, match="CUDA was asked for but is unavailable"):
        pool2d(_image((8, 8)), 2, device="cuda")
    assert choose_backend((8, 8), SOBEL).device == "cpu"


def test_bad_backend_device_and_combinations_are_usage_errors():
    with pytest.raises(UsageError, match="unknown backend 'gpu'; choose one of auto, direct"):
        correlate2d(_image((8, 8)), SOBEL, backend="gpu")
    with pytest.raises(UsageError, match="unknown device 'tpu'"):
        correlate2d(_image((8, 8)), SOBEL, device="tpu")
    with pytest.raises(UsageError, match="fft runs on the CPU only"):
        choose_backend((8, 8), SOBEL, backend="fft", device="cuda")
    with pytest.raises(ShapeError, match="does not fit"):
        correlate2d(_image((4, 4)), np.ones((5, 5)), backend="direct")


@pytest.mark.parametrize("kind", ["max", "avg", "l2"])
def test_pooling_matches_reference(kind):
    image = _image((3, 14, 11))
    for size, stride, padding in ((2, None, "valid"), (3, 2, "same"), ((2, 3), (1, 2), (1, 1, 0, 2))):
        fast = pool2d(image, size, stride=stride, kind=kind, padding=padding)
        slow = pool2d(image, size, stride=stride, kind=kind, padding=padding, backend="reference")
        np.testing.assert_allclose(fast, slow, rtol=1e-5, atol=1e-5)
    uint8 = RNG.integers(0, 256, (9, 10)).astype(np.uint8)
    np.testing.assert_allclose(pool2d(uint8, 3, kind=kind, padding="same"),
                               pool2d(uint8, 3, kind=kind, padding="same", backend="reference"), rtol=1e-5)


def test_max_pooling_matches_scipy_maximum_filter():
    image = _image((20, 21))
    expected = ndimage.maximum_filter(image, size=3, mode="constant", cval=-np.inf)
    np.testing.assert_array_equal(pool2d(image, 3, stride=1, padding="same"), expected)


def test_im2col_batch_sums_every_input_channel_per_filter():
    from convtool.conv import gemm, reference

    x = RNG.standard_normal((2, 3, 10, 9)).astype(np.float32)  # N,C,H,W
    weight = RNG.standard_normal((4, 3, 3, 2))  # F,C,KH,KW
    pads, stride, dilation = (1, 0, 2, 1), (2, 1), (1, 2)
    got = gemm.correlate_batch(x, weight, stride=stride, pads=pads, border="reflect", dilation=dilation)
    expected = np.stack([np.stack([sum(reference.correlate2d(x[n, c], weight[f, c], stride, pads, "reflect", 0.0, dilation)
                                       for c in range(3)) for f in range(4)]) for n in range(2)])
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4)
    with pytest.raises(ShapeError, match="same C"):
        gemm.correlate_batch(x, weight[:, :2])


def test_kernels_mirrored_top_to_bottom_fold_rows_and_match_reference(monkeypatch):
    monkeypatch.setattr(cpu, "FLAT_PIXELS", 0)  # the row-ring path, where folding happens
    from convtool.bench_harness.cases import BLOB

    half = RNG.standard_normal((4, 5))
    mirrored = np.vstack([half, RNG.standard_normal((1, 5)), half[::-1]])  # 9x5, rows i and 8-i equal
    assert cpu._fold_taps(BLOB, (1, 1)) is not None and cpu._fold_taps(mirrored, (1, 1)) is not None
    assert cpu._fold_taps(SOBEL, (1, 1)) is None  # rows mirrored, but 6 taps -> 4 plus a row sum saves nothing
    assert cpu._fold_taps(SOBEL.T, (1, 1)) is None  # first and last rows differ in sign
    image = _image((2, 40, 37))
    for kernel in (BLOB, mirrored):
        for stride, dilation, border in ((1, 1, "reflect"), ((2, 1), (2, 1), "wrap"), ((1, 2), 1, "constant")):
            options = dict(stride=stride, dilation=dilation, padding=(9, 8, 4, 5), border=border, cval=0.5)
            np.testing.assert_allclose(correlate2d(image, kernel, backend="direct", **options),
                                       correlate2d(image, kernel, backend="reference", **options), rtol=1e-4, atol=1e-3)


@pytest.mark.parametrize("dtype", [np.uint8, np.float32])
def test_rows_wider_than_a_tile_read_the_image_in_place_and_pad_only_the_edges(monkeypatch, dtype):
    monkeypatch.setattr(cpu, "FLAT_PIXELS", 0)  # the row-ring path
    image = RNG.integers(0, 256, (2, 11, 1100)).astype(dtype)  # 1100 columns: two full tiles and a part
    kernel = np.outer([1.0, -2, 0, 3], [2.0, 1, 0, -1, 4])
    wide = np.outer([1.0, 2, 1], np.arange(-5.0, 6.0))  # 10 non-zero taps per row: uint8 tiles converted first
    for dilation, padding, border in ((1, "same", "reflect"), ((1, 2), (2, 3, 9, 0), "wrap"),
                                      (1, (1, 1, 0, 7), "constant"), (2, "full", "replicate")):
        options = dict(dilation=dilation, padding=padding, border=border, cval=-3.0)
        np.testing.assert_allclose(correlate2d(image, wide, backend="separable", **options),
                                   correlate2d(image, wide, backend="reference", **options),
                                   rtol=1e-4, atol=1e-2, err_msg=f"wide {options}")
        for backend in ("separable", "direct"):
            np.testing.assert_allclose(correlate2d(image, kernel, backend=backend, **options),
                                       correlate2d(image, kernel, backend="reference", **options),
                                       rtol=1e-4, atol=1e-2, err_msg=f"{backend} {options}")
    narrow = RNG.standard_normal((1, 6, 3)).astype(dtype)  # narrower than the kernel: no interior columns
    np.testing.assert_allclose(correlate2d(narrow, kernel, padding="full", border="symmetric", backend="separable"),
                               correlate2d(narrow, kernel, padding="full", border="symmetric", backend="reference"),
                               rtol=1e-4, atol=1e-3)


@pytest.mark.parametrize("backend", ["direct", "separable", "fft", "reference"])
def test_out_is_written_and_returned_and_equals_a_new_array(backend, cpu_path):
    image = RNG.integers(0, 256, (3, 20, 17)).astype(np.uint8)
    kernel = KERNELS["rank1"]
    options = dict(stride=(1, 2), padding="same", border="wrap", backend=backend)
    out = np.full((3, 20, 9), np.nan, dtype=np.float32)
    assert correlate2d(image, kernel, out=out, **options) is out
    np.testing.assert_allclose(out, correlate2d(image, kernel, **options), rtol=1e-5, atol=1e-3)
    np.testing.assert_allclose(out, correlate2d(image, kernel, **{**options, "backend": "reference"}), rtol=1e-4, atol=1e-3)
    flipped = np.empty((3, 20, 9), dtype=np.float32)
    assert convolve2d(image, kernel, out=flipped, **options) is flipped
    np.testing.assert_allclose(flipped, correlate2d(image, kernel[::-1, ::-1], **options), rtol=1e-5, atol=1e-3)


def test_pool_out_is_written_and_returned():
    image = _image((2, 9, 8))
    for backend in ("direct", "numpy", "reference"):
        out = np.full((2, 5, 4), np.nan, dtype=np.float32)
        assert pool2d(image, 2, kind="avg", padding="same", backend=backend, out=out) is out
        np.testing.assert_allclose(out, pool2d(image, 2, kind="avg", padding="same", backend="reference"),
                                   rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("out, message", [
    (np.zeros((2, 8, 8), np.float64), r"out must be a C-contiguous float32 array of shape \(2, 8, 8\), got float64 \(2, 8, 8\)"),
    (np.zeros((2, 8, 9), np.float32), r"got float32 \(2, 8, 9\)"),
    (np.zeros((2, 8, 16), np.float32)[:, :, ::2], r"got float32 \(2, 8, 8\), not C-contiguous"),
    ([[0.0]], r"got list"),
])
def test_bad_out_is_a_one_line_error_naming_what_is_expected(out, message):
    image = _image((2, 8, 8))
    for call in (lambda: correlate2d(image, SOBEL, padding="same", out=out),
                 lambda: pool2d(image, 1, out=out)):
        with pytest.raises(UsageError, match=message) as error:
            call()
        assert "\n" not in str(error.value)


def test_out_aliasing_the_input_is_refused_and_the_input_is_untouched():
    image = _image((2, 8, 8))
    before = image.copy()
    buffer = np.arange(100, dtype=np.float32)
    with pytest.raises(UsageError, match="out shares memory with the input image"):  # overlapping, shifted
        correlate2d(buffer[:64].reshape(8, 8), SOBEL, padding="same", out=buffer[8:72].reshape(8, 8))
    np.testing.assert_array_equal(buffer, np.arange(100))
    for call in (lambda: correlate2d(image, SOBEL, padding="same", out=image),
                 lambda: pool2d(image, 1, out=image)):
        with pytest.raises(UsageError, match="out shares memory with the input image"):
            call()
    np.testing.assert_array_equal(image, before)


def test_repeated_calls_of_one_shape_reuse_the_plan():
    import convtool.conv as conv

    image, kernel = _image((2, 12, 13)), RNG.standard_normal((3, 3))
    correlate2d(image, kernel, padding="same", border="reflect")
    hits = conv.correlation_plan.cache_info().hits
    for _ in range(3):
        again = correlate2d(image + 1, kernel.tolist(), padding=[1, 1], border="reflect")
    assert conv.correlation_plan.cache_info().hits >= hits + 2  # the list forms key one plan too
    np.testing.assert_allclose(again, correlate2d(image + 1, kernel, padding=1, border="reflect", backend="reference"),
                               rtol=1e-4, atol=1e-4)


def test_auto_leaves_numpy_for_numba_once_numpy_has_cost_as_much_as_loading_it(monkeypatch):
    import convtool.conv as conv

    loaded = []
    monkeypatch.setattr(conv, "numba_loaded", lambda: bool(loaded))
    monkeypatch.setattr(conv, "_numpy_seconds", [0.0])
    monkeypatch.setattr(conv, "NUMBA_LOAD_SECONDS", 0.0)  # the first NumPy run already costs "enough"
    monkeypatch.setattr(conv, "_load_numba", lambda: loaded.append("numba"))
    image = _image((1, 9, 10))
    first = correlate2d(image, SOBEL, padding="same")
    assert loaded  # the NumPy run asked for Numba's back-end module
    assert conv.correlation_plan(image.shape, image.dtype, SOBEL.shape, SOBEL.tobytes(), 1, "same", "zero", 0.0, 1,
                                 "auto", "auto", True).choice.backend == "direct"
    np.testing.assert_allclose(first, correlate2d(image, SOBEL, padding="same", backend="reference"), atol=1e-5)



@pytest.mark.parametrize("border", BORDERS)
def test_numpy_separable_in_bands_of_a_few_rows_with_mirrored_taps_paired(border, monkeypatch):
    from convtool.conv import vectorised

    monkeypatch.setattr(vectorised, "BAND_SAMPLES", 8)  # a band per output row or two: every band edge case
    gaussian = np.outer(np.hanning(7)[1:-1], np.hanning(7)[1:-1])  # symmetric taps: 3 multiplies per pass
    for kernel in (SOBEL, gaussian, KERNELS["rank1"], np.outer([2.0], [0, 1, 0])):
        for stride, dilation, padding in GEOMETRIES + [(1, 1, (0, 0, 9, 0))]:
            options = dict(stride=stride, dilation=dilation, padding=padding, border=border, cval=1.5)
            for image, axis in ((_image(), None), (RNG.integers(0, 256, (2, 13, 11, 3)).astype(np.uint8), -1)):
                got = correlate2d(image, kernel, backend="numpy", channel_axis=axis, **options)
                planes = image if axis is None else np.moveaxis(image, -1, -3)
                expected = correlate2d(planes, kernel, backend="reference", **options)
                expected = expected if axis is None else np.moveaxis(expected, -3, -1)
                np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-3, err_msg=f"{kernel} {options}")


@pytest.mark.parametrize("dtype", [np.float32, np.uint8])
def test_direct_in_place_matches_reference_on_every_border_block(dtype, monkeypatch):
    """Images read in place: one run over the rows ("same"), a run per row (other widths), border blocks on every
    side, and images too small for any output to avoid the padding."""
    _numba_path(monkeypatch, "in_place")
    kernels = (SOBEL, KERNELS["dense"], RNG.standard_normal((5, 5)))
    for shape in ((2, 23, 19), (1, 3, 2), (1, 40, 5)):
        image = RNG.integers(0, 256, shape).astype(dtype)
        for border in BORDERS:
            for kernel in kernels:
                for dilation, padding in ((1, "same"), (1, "valid"), (1, "full"), ((2, 1), (1, 2, 3, 0)), (1, 7)):
                    options = dict(dilation=dilation, padding=padding, border=border, cval=1.5)
                    try:
                        slow = correlate2d(image, kernel, backend="reference", **options)
                    except ShapeError:  # a kernel larger than the padded image: refused by both
                        with pytest.raises(ShapeError):
                            correlate2d(image, kernel, backend="direct", **options)
                        continue
                    fast = correlate2d(image, kernel, backend="direct", **options)
                    np.testing.assert_allclose(fast, slow, rtol=1e-4, atol=1e-2, err_msg=f"{shape} {options}")


@pytest.mark.parametrize("border", BORDERS)
def test_direct_in_place_on_threads_in_blocks_of_rows_matches_reference(border, monkeypatch):
    """cpu._in_place_part: large float32 planes read in place by several threads, each a block of output rows
    (5 here: blocks of top border rows, inside rows and bottom border rows, and blocks straddling them), with
    flat runs cut into chunks shorter than a row; kernels of 1 to 6 taps, every padding, dilations."""
    from convtool import conv

    _numba_path(monkeypatch, "in_place")
    monkeypatch.setattr(cpu, "THREADS", 3)
    monkeypatch.setattr(cpu, "SERIAL_WORK", 0)
    monkeypatch.setattr(cpu, "FLAT_PIXELS", 0)
    monkeypatch.setattr(cpu, "IN_PLACE_CHUNK", 8)
    monkeypatch.setattr(cpu, "block_rows", lambda out_rows, batch, span, threads: 5)
    conv.correlation_plan.cache_clear()
    calls = []
    monkeypatch.setattr(cpu, "_in_place_part", _spy(cpu._in_place_part, calls))
    image = RNG.standard_normal((2, 23, 19)).astype(np.float32)
    kernels = (SOBEL, np.array([[2.0]]), RNG.standard_normal((2, 3)), RNG.standard_normal((3, 1)))
    for kernel in kernels:
        for dilation, padding in ((1, "same"), (1, "valid"), (1, "full"), ((2, 1), (1, 2, 3, 0)), (1, 7)):
            options = dict(dilation=dilation, padding=padding, border=border, cval=2.25)
            fast = correlate2d(image, kernel, backend="direct", **options)
            slow = correlate2d(image, kernel, backend="reference", **options)
            np.testing.assert_allclose(fast, slow, rtol=1e-4, atol=1e-4, err_msg=f"{kernel.shape} {options}")
    assert len(calls) >= 2 * len(kernels) * 5  # every case ran on this path, in more than one part
    conv.correlation_plan.cache_clear()


def _spy(function, calls):
    def spy(*args):
        calls.append(args[-2:])
        return function(*args)

    return spy


@pytest.mark.parametrize("border", BORDERS)
def test_separable_vertical_pass_four_rows_at_a_time_matches_reference(border, monkeypatch):
    """cpu._columns4: columns of 5 to 9 consecutive taps (groups of four taps and 1-3 left over), row blocks of
    every length (4k + 0..3 rows, several per image, on threads), strides and dilations that do and do not allow it."""
    _numba_path(monkeypatch, "rows")
    monkeypatch.setattr(cpu, "THREADS", 3)
    monkeypatch.setattr(cpu, "SERIAL_WORK", 0)
    monkeypatch.setattr(cpu, "block_rows", lambda out_rows, batch, span, threads: 7)  # 7 = 4 + 3 rows per block
    monkeypatch.setattr(cpu, "GROUP_TAPS", 5)
    rows = RNG.standard_normal(4)
    for taps in (5, 6, 7, 9):
        kernel = np.outer(RNG.standard_normal(taps), rows)
        for stride, dilation, padding in ((1, 1, "same"), ((1, 2), (1, 2), "full"), (1, (2, 1), (1, 2, 3, 0)),
                                          (2, 1, "valid")):
            options = dict(stride=stride, dilation=dilation, padding=padding, border=border, cval=1.5)
            for image in (_image((2, 26, 19)), RNG.integers(0, 256, (1, 31, 17)).astype(np.uint8)):
                expected = correlate2d(image, kernel, backend="reference", **options)
                for group in (4, 1):
                    monkeypatch.setattr(cpu, "COLUMN_GROUP", group)
                    got = correlate2d(image, kernel, backend="separable", **options)
                    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-3, err_msg=f"{taps} {group} {options}")
