"""Filtering many files: worker processes give the one-process outputs, in order, and stop cleanly."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from process_helpers import start_slowed

import convtool.io.read as images
from convtool import batchfilter as bf
from convtool.filtering import FilterSettings
from convtool.kernels import load_kernel

DATA = Path(__file__).parent / "data"
SETTINGS = FilterSettings([load_kernel("sobel")])


@pytest.fixture
def photos(tmp_path) -> list[Path]:
    """Eight different small photos (crops of the test photos), PNG and JPEG."""
    folder = tmp_path / "in"
    folder.mkdir()
    camera = Image.open(DATA / "camera-64.png")
    astronaut = Image.open(DATA / "astronaut-48x40.png").convert("RGB")
    paths = []
    for i in range(8):
        source = camera if i % 2 else astronaut
        crop = source.crop((i, i, source.width - 8 + i, source.height - 8 + i))
        path = folder / f"p{i}.{'png' if i % 3 else 'jpg'}"
        crop.save(path)
        paths.append(path)
    return paths


def run(paths: list[Path], out: Path, plan: bf.FilterPlan, encoding: bf.Encoding | None = None,
        **options) -> list[bf.FileResult]:
    out.mkdir(exist_ok=True)
    encoding = encoding or bf.Encoding()
    targets = [out / f"{p.stem}.png" for p in paths]
    return list(bf.filter_files(bf.make_jobs(paths, targets, SETTINGS, encoding), plan, **options))


INLINE = bf.FilterPlan("inline", 1, False, "test")
PROCESSES = bf.FilterPlan("processes", 2, False, "test")


def test_processes_write_the_same_pixels_as_one_process(photos, tmp_path):
    inline = run(photos, tmp_path / "inline", INLINE)
    spread = run(photos, tmp_path / "spread", PROCESSES)
    assert [r.job.path for r in spread] == photos and all(r.error is None for r in inline + spread)
    for a, b in zip(inline, spread, strict=False):
        np.testing.assert_array_equal(np.asarray(Image.open(a.job.target)), np.asarray(Image.open(b.job.target)))
        assert set(b.seconds) == {"decode", "filter", "encode"}
    assert not list((tmp_path / "spread").glob(".*"))  # no temporary left


def test_outputs_equal_pillows_png_of_the_same_pixels(photos, tmp_path):
    (result,) = run(photos[:1], tmp_path / "out", INLINE)
    image = images.read_image(photos[0])
    from convtool.filtering import filter_pixels, scale_for_output

    values = filter_pixels(image.pixels, SETTINGS)
    expected = np.rint(scale_for_output(values, "normalize", 255, 255)).astype(np.uint8)
    np.testing.assert_array_equal(np.asarray(Image.open(result.job.target)), expected)


def test_every_png_compression_level_gives_the_same_pixels(photos, tmp_path):
    fast = run(photos[:2], tmp_path / "fast", INLINE)
    for level in (0, 9):
        other = run(photos[:2], tmp_path / f"level{level}", INLINE, bf.Encoding(png_compression=level))
        for a, b in zip(fast, other, strict=False):
            np.testing.assert_array_equal(np.asarray(Image.open(a.job.target)), np.asarray(Image.open(b.job.target)))
            if level == 0:
                assert b.job.target.stat().st_size > a.job.target.stat().st_size


def _kill_on(poison: Path, flag: Path | None):
    real = images.read_image

    def reader(path, **options):
        if Path(path) == poison and (flag is None or not flag.exists()):
            if flag is not None:
                flag.touch()
            os.kill(os.getpid(), signal.SIGKILL)
        return real(path, **options)

    return reader


def test_a_worker_killed_once_costs_nothing(photos, tmp_path, monkeypatch):
    monkeypatch.setattr(images, "read_image", _kill_on(photos[3], tmp_path / "killed"))  # forked workers inherit it
    results = run(photos, tmp_path / "out", PROCESSES)
    assert (tmp_path / "killed").exists() and all(r.error is None for r in results)
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == sorted(f"{p.stem}.png" for p in photos)


def test_a_file_that_kills_its_worker_twice_is_reported_and_the_rest_published(photos, tmp_path, monkeypatch):
    monkeypatch.setattr(images, "read_image", _kill_on(photos[3], None))
    results = run(photos, tmp_path / "out", PROCESSES)
    assert [r.error is None for r in results] == [True, True, True, False, True, True, True, True]
    assert results[3].error == f"{photos[3]}: its worker process died (killed by SIGKILL), also on retry"
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == sorted(f"{p.stem}.png" for p in photos if p != photos[3])


def test_an_output_that_appears_during_the_run_is_not_replaced(photos, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    jobs = bf.make_jobs(photos[:2], [out / "a.png", out / "b.png"], SETTINGS, bf.Encoding())
    (out / "b.png").write_bytes(b"someone else's")
    results = list(bf.filter_files(jobs, INLINE))
    assert results[0].error is None and "b.png: already exists; pass `overwrite`" in results[1].error
    assert (out / "b.png").read_bytes() == b"someone else's"
    assert sorted(p.name for p in out.iterdir()) == ["a.png", "b.png"]


def test_ctrl_c_mid_batch_leaves_complete_outputs_and_no_temporaries(photos, tmp_path):
    folder, out = photos[0].parent, tmp_path / "out"
    for i in range(8, 24):  # enough files that the run is still going when interrupted
        Image.open(photos[i % 8]).save(folder / f"q{i}.png")
    child = start_slowed("convtool.io.read", "read_image", 0.3, ["filter", str(folder), "-k", "sobel", "-o", str(out),
                                                                "--workers", "2"])
    deadline = time.monotonic() + 60
    while not (out.exists() and any(p.suffix == ".png" and not p.name.startswith(".") for p in out.iterdir())) and time.monotonic() < deadline:
        time.sleep(0.05)  # until the first output is published
    os.killpg(child.pid, signal.SIGINT)
    _, err = child.communicate(timeout=30)
    assert child.returncode != 0 and "Traceback" not in err
    with pytest.raises(ProcessLookupError):
        os.killpg(child.pid, 0)  # no worker left behind
    written = sorted(out.iterdir())
    assert written and all(p.suffix == ".png" and not p.name.startswith(".") for p in written)
    for path in written:
        Image.open(path).load()  # each one complete
    assert len(written) < 24


def test_plan_loads_numba_only_when_each_process_has_enough_work(photos, monkeypatch):
    from convtool import conv, filtering

    monkeypatch.setattr(conv, "numba_loaded", lambda: False)
    monkeypatch.setattr(filtering, "jit_cached", lambda *a: True)
    small = bf.plan_filtering(photos[:1], SETTINGS)
    assert small.mode == "inline" and not small.numba and "NumPy" in small.reason
    monkeypatch.setattr(bf, "NUMBA_LOAD_SECONDS", 0.0)
    assert bf.plan_filtering(photos[:1], SETTINGS).numba


def test_a_cold_numba_cache_means_numpy_this_run_and_the_steps_say_why(photos, tmp_path, monkeypatch):
    from convtool import conv, filtering

    monkeypatch.setattr(conv, "numba_loaded", lambda: False)
    monkeypatch.setattr(bf, "NUMBA_LOAD_SECONDS", 0.0)
    asked = []
    monkeypatch.setattr(filtering, "jit_cached", lambda shape, dtype, settings: asked.append((shape, dtype)) or False)
    plan = bf.plan_filtering(photos[:1], SETTINGS)
    assert asked == [((32, 40, 3), np.uint8)]  # the first photo as it is read: 40x32 RGB
    assert not plan.numba and plan.backend == "numpy" and "Numba cache cold: NumPy this run" in plan.describe()[0]
    settings = bf.planned_settings(SETTINGS, plan)
    assert SETTINGS.backend == "auto" and settings.backend == "numpy"
    (result,) = list(bf.filter_files(bf.make_jobs(photos[:1], [tmp_path / "o.png"], settings, bf.Encoding()), plan))
    assert {(ran, reason.split(" (")[0]) for _, ran, _, reason in result.steps} == \
        {("numpy", "Numba cache cold: NumPy this run")}
    monkeypatch.setattr(bf, "COMPILE_SECONDS", 0.0)  # work enough to pay for compiling: Numba, compiled first
    paid = bf.plan_filtering(photos[:1], SETTINGS)
    assert paid.numba and paid.backend is None and "compiled first" in paid.reason


def test_a_backend_asked_for_by_name_is_never_swapped_for_numpy(photos, monkeypatch):
    from convtool import conv, filtering

    monkeypatch.setattr(conv, "numba_loaded", lambda: False)
    monkeypatch.setattr(bf, "NUMBA_LOAD_SECONDS", 0.0)
    monkeypatch.setattr(filtering, "jit_cached", lambda *a: pytest.fail("asked about the cache"))
    plan = bf.plan_filtering(photos[:1], FilterSettings([load_kernel("sobel")], backend="separable"))
    assert plan.numba and plan.backend is None


def test_the_cache_query_follows_the_chain_and_knows_what_this_process_compiled():
    from convtool.filtering import filter_pixels, jit_cached

    settings = FilterSettings([load_kernel("sobel"), load_kernel("box")], stride=(2, 2), backend="direct")
    filter_pixels(np.zeros((30, 40, 3), np.uint8), settings)  # compiles (or loads) what the query asks about
    assert jit_cached((30, 40, 3), np.uint8, settings)
    too_large = FilterSettings([load_kernel("gaussian:sigma=9")], padding="valid")
    assert jit_cached((5, 5), np.uint8, too_large)  # the job reports the kernel; the plan goes on


@pytest.mark.parametrize("mode", ["RGB", "RGBA", "L"])
def test_sobel_output_matches_scipy(mode, tmp_path):
    """The uint8 path (decode, core, magnitude and scaling in place, interleave) against scipy.ndimage in float64."""
    from scipy import ndimage

    rng = np.random.default_rng(1)
    pixels = rng.integers(0, 256, (23, 31, 4), dtype=np.uint8)
    source = tmp_path / "in.png"
    Image.fromarray(pixels[..., : len(mode)].squeeze(), mode).save(source)
    (result,) = run([source], tmp_path / "out", INLINE)
    colour = pixels[..., : 1 if mode == "L" else 3].astype(np.float64)
    sobel_x = np.array([[1, 0, -1], [2, 0, -2], [1, 0, -1]], float)
    grads = [ndimage.correlate(colour, k[..., None], mode="mirror") for k in (sobel_x, sobel_x.T)]
    magnitude = np.hypot(*grads)
    expected = (magnitude - magnitude.min()) * 255 / (magnitude.max() - magnitude.min())
    written = np.asarray(Image.open(result.job.target)).astype(np.float64)
    written = written[..., None] if written.ndim == 2 else written
    assert np.abs(written[..., : colour.shape[-1]] - expected).max() <= 1.0  # float32 against float64 rounding
    if mode == "RGBA":
        np.testing.assert_array_equal(written[..., 3], pixels[..., 3])


def test_warming_numba_loads_the_core_and_tolerates_a_kernel_larger_than_the_sample():
    import sys

    bf._load_numba(SETTINGS, (8, 8, 3))
    assert "convtool.conv.cpu" in sys.modules
    huge = FilterSettings([load_kernel("gaussian:sigma=9")], padding="valid")
    bf._load_numba(huge, (4, 4))  # the job itself reports the kernel being too large


def test_overflow_is_still_caught_on_uint8_pixels_and_in_a_magnitude():
    from convtool.errors import UsageError
    from convtool.filtering import filter_pixels
    from convtool.kernels import Kernel

    pixels = np.full((6, 7, 3), 255, np.uint8)
    huge = FilterSettings([load_kernel("[[1e37, 1e37]]")])
    with pytest.raises(UsageError, match="overflow float32"):
        filter_pixels(pixels, huge)
    squares = Kernel("pair", [np.full((1, 1), 1e18), np.full((1, 1), 1e18)], combine="magnitude")
    with pytest.raises(UsageError, match="overflow float32"):  # 255e18 is finite, its square is not
        filter_pixels(pixels, FilterSettings([squares]))
    assert np.isfinite(filter_pixels(pixels, FilterSettings([load_kernel("sobel")]))).all()


def test_the_first_image_read_ahead_while_numba_loads_gives_the_same_file(photos, tmp_path, monkeypatch):
    plain = run(photos[:2], tmp_path / "plain", INLINE)
    monkeypatch.setattr(bf, "_load_numba", lambda settings, sample: time.sleep(0.05))
    ahead = run(photos[:2], tmp_path / "ahead", bf.FilterPlan("inline", 1, True, "test", (40, 48, 3)))
    for a, b in zip(plain, ahead, strict=False):
        assert b.error is None and b.job.target.read_bytes() == a.job.target.read_bytes()
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not a png")
    (result,) = run([broken], tmp_path / "bad", bf.FilterPlan("inline", 1, True, "test", (40, 48, 3)))
    assert "broken.png" in result.error and not list((tmp_path / "bad").iterdir())


def test_the_core_is_given_read_only_images_so_numba_compiles_one_kernel_per_dtype(monkeypatch):
    from convtool import conv
    from convtool.filtering import filter_pixels

    seen = []
    real = conv.correlate2d

    def spy(image, kernel, **options):
        seen.append((image.dtype, image.flags.writeable))
        return real(image, kernel, **options)

    monkeypatch.setattr(conv, "correlate2d", spy)
    writable = np.zeros((6, 7, 3), np.uint8)
    filter_pixels(writable, FilterSettings([load_kernel("sobel"), load_kernel("box")]))
    assert seen == [(np.uint8, False), (np.uint8, False), (np.float32, False)]
    assert writable.flags.writeable  # the caller's array is left as it was


def test_warming_covers_every_cpu_kernel_auto_can_pick(monkeypatch):
    from convtool import conv
    from convtool.conv import cpu

    calls = []
    monkeypatch.setattr(conv, "correlate2d", lambda image, kernel, **o: calls.append(
        (image.dtype, image.flags.writeable, image.shape, o["backend"], o["channel_axis"])))
    monkeypatch.setattr(conv, "pool2d", lambda image, size, **o: calls.append((image.dtype, "pool", o["backend"])))
    lines = bf.warm_numba()
    assert len(lines) == len(calls)
    kinds = set()
    for dtype, writeable, shape, backend, axis in calls[:-1]:
        assert not writeable and axis == (-1 if len(shape) == 3 else None)  # as filter_pixels gives the core images
        samples = (shape[0] + 2) * (shape[1] + 2) * (shape[2] if len(shape) == 3 else 1)
        if len(shape) == 2:  # direct np.eye(3): 3 taps, in place on threads from SERIAL_WORK multiply-adds
            size = "gray in place" if samples <= cpu.FLAT_PIXELS else "gray in place, threads"
            assert size == "gray in place" or 3 * samples >= cpu.SERIAL_WORK
        else:
            size = "rows" if samples > cpu.FLAT_PIXELS else "whole"
        kinds.add((np.dtype(dtype).name, size, backend))
    assert kinds == {(d, size, b) for d in ("uint8", "float32")
                     for size in ("rows", "whole", "gray in place", "gray in place, threads")
                     for b in ("direct", "separable")}
    assert calls[-1] == (np.float32, "pool", "direct")


def test_the_cache_query_refuses_no_size_the_job_would_refuse_itself():
    from convtool.filtering import jit_cached

    huge = FilterSettings([load_kernel("sobel")], padding=2**31)
    assert jit_cached((8, 8), np.uint8, huge)  # no array of 2^31 rows is made; the job reports the limit
