"""The CUDA cost estimate and the auto device choice, with a fake device description (no GPU here)."""

import numpy as np
import pytest

from convtool.conv import choose_backend, correlate2d, device, estimate
from convtool.conv.chain import Correlate, Pool, choose_chain_device, run_chain

SOBEL = np.array([[1.0, 0, -1], [2, 0, -2], [1, 0, -1]])
T4 = {"MEMORY_CLOCK_RATE": 5_001_000, "GLOBAL_MEMORY_BUS_WIDTH": 256, "MULTIPROCESSOR_COUNT": 40,
      "CLOCK_RATE": 1_590_000, "COMPUTE_CAPABILITY_MAJOR": 7}  # kHz and bits, as the driver reports them


@pytest.fixture
def fake_t4(monkeypatch):
    """A usable CUDA device described by a T4's properties on PCIe 3.0 x16."""
    figures = estimate.figures_from_attributes("Fake T4", T4, ("8.0", 16))
    monkeypatch.setattr(device, "simulated", lambda: False)
    monkeypatch.setattr(device, "cuda_status", lambda: (True, "Fake T4"))
    monkeypatch.setattr(estimate, "cuda_figures", lambda: figures)
    return figures


def test_figures_come_from_clock_bus_sms_and_the_pcie_link_and_name_their_sources():
    figures = estimate.figures_from_attributes("T4", T4, ("8.0", 16))
    assert figures.memory_gbps == pytest.approx(2 * 5.001e9 * 256 / 8 / 1e9)  # 320 GB/s
    assert figures.pcie_gbps == pytest.approx(8 * 16 * 128 / 130 / 8 * 0.8)  # 12.6 GB/s each way
    assert figures.gflops == pytest.approx(2 * 40 * 64 * 1.59)
    assert "5,001 MHz x 256-bit bus" in figures.sources[0] and "8 GT/s x16" in figures.sources[1]
    bare = estimate.figures_from_attributes("mystery", {}, None)
    assert (bare.memory_gbps, bare.pcie_gbps) == (estimate.DEFAULT_MEMORY_GBPS, estimate.DEFAULT_PCIE_GBPS)
    assert all("default" in source for source in bare.sources)


def test_on_paper_targets_of_the_readme_hold_for_a_t4(fake_t4):
    pixels = 4096 * 4096
    to_float = estimate.estimate(fake_t4, 1, pixels, pixels, 9.0, 6, in_bytes=1, out_bytes=4)
    to_uint8 = estimate.estimate(fake_t4, 1, pixels, pixels, 9.0, 6, in_bytes=1, out_bytes=1)
    assert pixels / to_float.gpu_s / 1e6 >= 2000 and pixels / to_uint8.gpu_s / 1e6 >= 4000
    batch = estimate.estimate(fake_t4, 100, 1080 * 1920 * 3, 1080 * 1920 * 3, 9.0, 6, in_bytes=1)
    assert batch.download_s > batch.kernels_s  # PCIe-bound, not kernel-bound


def test_auto_keeps_small_one_shot_jobs_on_the_cpu_and_says_why(fake_t4):
    choice = choose_backend((64, 64), SOBEL)
    assert choice.device == "cpu" and "estimated CUDA" in choice.reason and "vs CPU" in choice.reason
    image = np.random.default_rng(0).random((20, 21), dtype=np.float32)
    np.testing.assert_allclose(correlate2d(image, SOBEL, padding="same"),  # ran on the CPU: no GPU needed
                               correlate2d(image, SOBEL, padding="same", backend="reference"), atol=1e-5)


def test_auto_sends_large_batches_and_chains_to_cuda_where_the_estimate_says_so(fake_t4):
    batch = choose_backend((100, 1080, 1920), SOBEL, dtype=np.uint8)
    assert batch.device == "cuda" and "estimated CUDA" in batch.reason
    chain = [Correlate((SOBEL, SOBEL.T)), Correlate((np.ones((5, 5)) / 25,)), Pool(2)]
    assert choose_chain_device((4096, 4096), np.uint8, chain, uint8_out=True).device == "cuda"
    assert choose_chain_device((64, 64), np.uint8, chain).device == "cpu"


def test_a_pool_alone_stays_on_the_cpu_with_the_estimate_as_reason(fake_t4):
    from convtool.conv import choose_pool_backend

    choice = choose_pool_backend(work=4096 * 4096)
    assert choice.device == "cpu" and "pooling alone: estimated CUDA" in choice.reason


def test_a_chain_on_the_cpu_equals_its_steps_one_by_one():
    image = np.random.default_rng(1).integers(0, 256, (9, 10)).astype(np.uint8)
    steps = [Correlate((SOBEL, SOBEL.T), padding="same", border="reflect"), Pool(2, kind="avg", padding="same")]
    got = run_chain(image, steps, device="cpu")
    gx, gy = (correlate2d(image, k, padding="same", border="reflect", backend="reference") for k in (SOBEL, SOBEL.T))
    expected = correlate2d(np.sqrt(gx * gx + gy * gy), np.ones((1, 1)), backend="reference")
    from convtool.conv import pool2d

    np.testing.assert_allclose(got, pool2d(expected, 2, kind="avg", padding="same", backend="reference"), rtol=1e-5)
    as_uint8 = run_chain(image, steps, device="cpu", scale=0.5)
    assert as_uint8.dtype == np.uint8
    np.testing.assert_array_equal(as_uint8, np.floor(np.clip(got * 0.5, 0, 255) + 0.5).astype(np.uint8))


def test_the_doctor_report_names_the_figures_or_why_there_are_none(monkeypatch, fake_t4):
    report = estimate.figures_report()
    assert report["device"]["name"] == "Fake T4" and report["device"]["memory_gbps"] > 300
    monkeypatch.setattr(device, "cuda_status", lambda: (False, "no NVIDIA driver found"))
    report = estimate.figures_report()
    assert report["device"] is None and report["reason"] == "no NVIDIA driver found"
    assert report["defaults"]["pcie_gbps"] == estimate.DEFAULT_PCIE_GBPS


def test_an_empty_chain_is_a_usage_error():
    from convtool.errors import UsageError

    with pytest.raises(UsageError, match="a chain needs at least one step"):
        run_chain(np.ones((4, 4)), [])
