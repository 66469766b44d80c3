"""CUDA kernels under Numba's simulator; run by tests/test_conv_cuda.py in a subprocess.

Not collected by the main test run (no ``test_`` prefix): NUMBA_ENABLE_CUDASIM must be set before
numba is first imported, and the main pytest process has long imported numba by then.
"""

import os

import numpy as np
import pytest

if os.environ.get("NUMBA_ENABLE_CUDASIM") != "1":  # pragma: no cover - guard for a direct run
    pytest.skip("run through tests/test_conv_cuda.py (needs NUMBA_ENABLE_CUDASIM=1)", allow_module_level=True)

from convtool.conv import choose_backend, correlate2d, cuda, pool2d  # noqa: E402

RNG = np.random.default_rng(3)
BLOCK = (4, 3)  # tiny blocks: several blocks per image, partial blocks at the right and bottom edges


@pytest.fixture(autouse=True)
def small_blocks(monkeypatch):
    monkeypatch.setattr(cuda, "BLOCK_THREADS", BLOCK)


CASES = [  # kernel, stride, dilation, padding, border
    (np.outer([1.0, 2, 1], [1, 0, -1]), 1, 1, "same", "reflect"),
    (RNG.standard_normal((3, 4)), (2, 3), (1, 2), "full", "wrap"),
    (RNG.standard_normal((2, 2)), 1, 1, (0, 2, 1, 0), "constant"),
    (np.outer([1.0, 3], [2, 1, 1]), 2, 1, "valid", "symmetric"),
]


@pytest.mark.parametrize("kernel, stride, dilation, padding, border", CASES)
def test_cuda_matches_reference(kernel, stride, dilation, padding, border):
    image = RNG.standard_normal((2, 9, 11)).astype(np.float32)
    options = dict(stride=stride, dilation=dilation, padding=padding, border=border, cval=0.5)
    expected = correlate2d(image, kernel, backend="reference", **options)
    for backend in ("cuda", "direct", "separable"):
        got = correlate2d(image, kernel, backend=backend, device="cuda", **options)
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5, err_msg=backend)


def test_interleaved_colour_images_run_on_cuda_as_planes():
    image = RNG.integers(0, 256, (7, 9, 3)).astype(np.uint8)
    kernel = np.outer([1.0, 2, 1], [1, 0, -1])
    expected = np.moveaxis(correlate2d(np.moveaxis(image, -1, 0), kernel, padding="same", border="wrap",
                                       backend="reference"), 0, -1)
    got = correlate2d(image, kernel, padding="same", border="wrap", device="cuda", channel_axis=-1)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-4)


def test_choice_reports_cuda_and_the_kernel_form():
    rank1 = choose_backend((9, 11), np.outer([1.0, 2, 1], [1, 0, -1]), device="cuda")
    assert (rank1.backend, rank1.device) == ("separable", "cuda") and "simulator" in rank1.reason
    assert choose_backend((9, 11), np.eye(3), backend="cuda").backend == "direct"
    assert choose_backend((9, 11), np.eye(3)).device == "cpu"  # auto never picks the simulator


def test_tile_too_large_for_shared_memory_reads_global_memory():
    kernel = RNG.standard_normal((3, 3))
    image = RNG.standard_normal((1, 90, 85)).astype(np.float32)
    tile_h, tile_w = (BLOCK[0] - 1) + 2 * 44 + 1, (BLOCK[1] - 1) + 2 * 40 + 1
    assert tile_h * tile_w > cuda.SHARED_FLOATS
    options = dict(dilation=(44, 40), padding="valid")
    got = correlate2d(image, kernel, device="cuda", backend="direct", **options)
    np.testing.assert_allclose(got, correlate2d(image, kernel, backend="reference", **options), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("kind", ["max", "avg", "l2"])
def test_cuda_pooling_matches_reference(kind):
    image = (RNG.random((2, 10, 9)) * 255).astype(np.uint8)
    for size, stride, padding in ((2, None, "valid"), (3, 2, "same")):
        got = pool2d(image, size, stride=stride, kind=kind, padding=padding, device="cuda")
        expected = pool2d(image, size, stride=stride, kind=kind, padding=padding, backend="reference")
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-4)


BORDERS = ["zero", "constant", "reflect", "symmetric", "replicate", "wrap"]
GEOMETRIES = [(1, 1, "same"), ((2, 1), (1, 2), "full"), (1, 2, (3, 0, 1, 4))]  # stride, dilation, padding


@pytest.mark.parametrize("border", BORDERS)
def test_borders_resolved_on_the_device_match_reference_for_every_geometry(border):
    image = RNG.standard_normal((1, 6, 5)).astype(np.float32)
    for stride, dilation, padding in GEOMETRIES:
        options = dict(stride=stride, dilation=dilation, padding=padding, border=border, cval=-0.5)
        for backend, kernel in (("direct", RNG.standard_normal((2, 3))), ("separable", np.outer([1.0, -2], [1, 0, 3]))):
            expected = correlate2d(image, kernel, backend="reference", **options)
            got = correlate2d(image, kernel, backend=backend, device="cuda", **options)
            np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5, err_msg=f"{backend} {options}")


def test_uint8_upload_equals_float32_upload():
    image = RNG.integers(0, 256, (2, 7, 6)).astype(np.uint8)
    for kernel in (np.outer([1.0, 2, 1], [1, 0, -1]), RNG.standard_normal((3, 2))):
        options = dict(padding="same", border="reflect", device="cuda")
        as_uint8 = correlate2d(image, kernel, **options)
        as_float = correlate2d(image.astype(np.float32), kernel, **options)
        np.testing.assert_allclose(as_uint8, as_float, rtol=1e-6, atol=1e-4)
    np.testing.assert_allclose(pool2d(image, 2, kind="avg", device="cuda"),
                               pool2d(image.astype(np.float32), 2, kind="avg", device="cuda"), rtol=1e-6)


def test_streams_keep_the_order_of_a_stack(monkeypatch):
    monkeypatch.setattr(cuda, "STREAMS", 2)
    monkeypatch.setattr(cuda, "CHUNKS_PER_STREAM", 2)  # 7 images: chunks of 2 over 2 streams, a short last one
    image = np.stack([np.full((4, 5), k, np.float32) + RNG.standard_normal((4, 5)).astype(np.float32)
                      for k in range(7)])
    kernel = RNG.standard_normal((2, 2))
    got = correlate2d(image, kernel, padding="same", border="wrap", device="cuda", backend="direct")
    np.testing.assert_allclose(got, correlate2d(image, kernel, padding="same", border="wrap", backend="reference"),
                               rtol=1e-5, atol=1e-5)


def test_a_chain_on_the_device_equals_the_cpu_chain_and_downloads_uint8():
    from convtool.conv.chain import Correlate, Pool, run_chain

    sobel_x = np.outer([1.0, 2, 1], [1, 0, -1])
    steps = [Correlate((np.full((2, 2), 0.25),), padding="same", border="replicate"),
             Correlate((sobel_x, sobel_x.T), padding="same", border="reflect"),  # a magnitude step
             Pool(2, kind="max", padding="same")]
    image = RNG.integers(0, 256, (2, 7, 9)).astype(np.uint8)
    choices = []
    on_cpu = run_chain(image, steps, device="cpu")
    on_gpu = run_chain(image, steps, device="cuda", choices=choices)
    assert choices[0].device == "cuda" and on_gpu.dtype == np.float32 and on_gpu.shape == (2, 4, 5)
    np.testing.assert_allclose(on_gpu, on_cpu, rtol=1e-5, atol=1e-3)
    as_uint8 = run_chain(image, steps, device="cuda", scale=0.5)
    assert as_uint8.dtype == np.uint8
    cpu_uint8 = run_chain(image, steps, device="cpu", scale=0.5)
    assert np.abs(as_uint8.astype(int) - cpu_uint8.astype(int)).max() <= 1  # float32 sums may round apart
