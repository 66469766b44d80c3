"""`convtool filter` end to end, against scipy.ndimage, and every bad input of the issue."""

import shutil
from pathlib import Path

import numpy as np
import pytest
import scipy.ndimage as ndi
from PIL import Image

from convtool.cli.main import cli

DATA = Path(__file__).parent / "data"
SOBEL_X = np.array([[1.0, 0, -1], [2, 0, -2], [1, 0, -1]])


@pytest.fixture
def photos(tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    for name in ("camera-64.png", "astronaut-48x40.png"):
        shutil.copy(DATA / name, folder / name)
    return folder


def run(runner, *args):
    return runner.invoke(cli, [str(a) for a in args])


def test_sobel_x_npy_equals_scipy(runner, photos, camera, tmp_path):
    out = tmp_path / "sx.npy"
    result = run(runner, "filter", photos / "camera-64.png", "--kernel", "sobel-x", "-o", out)
    assert result.exit_code == 0, result.output
    np.testing.assert_allclose(np.load(out), ndi.correlate(camera.astype(float), SOBEL_X, mode="mirror"), atol=1e-3)


def test_convolve_mode_flips_the_kernel(runner, photos, camera, tmp_path):
    out = tmp_path / "c.npy"
    result = run(runner, "filter", photos / "camera-64.png", "-k", "sobel-x", "--mode", "convolve", "-o", out)
    assert result.exit_code == 0, result.output
    np.testing.assert_allclose(np.load(out), ndi.convolve(camera.astype(float), SOBEL_X, mode="mirror"), atol=1e-3)


def test_png_normalize_keeps_negative_values(runner, photos, camera, tmp_path):
    out = tmp_path / "sx.png"
    assert run(runner, "filter", photos / "camera-64.png", "-k", "sobel-x", "-o", out).exit_code == 0
    raw = ndi.correlate(camera.astype(float), SOBEL_X, mode="mirror")
    expected = np.rint((raw - raw.min()) * 255 / (raw.max() - raw.min()))
    np.testing.assert_allclose(np.asarray(Image.open(out), dtype=float), expected, atol=1)


def test_sobel_magnitude_and_chain_stride_pool(runner, photos, camera, tmp_path):
    out = tmp_path / "m.npy"
    args = ["filter", photos / "camera-64.png", "-k", "sobel", "-k", "box", "--padding", "valid",
            "--stride", "2", "--pool", "max:3:2", "-o", out]
    assert run(runner, *args).exit_code == 0
    gx = ndi.correlate(camera.astype(float), SOBEL_X)[1:-1, 1:-1]
    gy = ndi.correlate(camera.astype(float), SOBEL_X.T)[1:-1, 1:-1]
    magnitude = np.hypot(gx, gy)[::2, ::2]
    boxed = ndi.uniform_filter(magnitude, 3)[1:-1, 1:-1][::2, ::2]
    pooled = ndi.maximum_filter(boxed, 3)[1:-1, 1:-1][::2, ::2]
    np.testing.assert_allclose(np.load(out), pooled, rtol=1e-4)


def test_colour_alpha_kept_and_gray(runner, tmp_path, astronaut):
    rgba = np.dstack([astronaut.astype(np.uint8), np.full(astronaut.shape[:2], 77, np.uint8)])
    Image.fromarray(rgba, "RGBA").save(tmp_path / "a.png")
    assert run(runner, "filter", tmp_path / "a.png", "-k", "identity", "-o", tmp_path / "o.png").exit_code == 0
    out = np.asarray(Image.open(tmp_path / "o.png"))
    np.testing.assert_array_equal(out, rgba)
    assert run(runner, "filter", tmp_path / "a.png", "-k", "identity", "--gray", "-o", tmp_path / "g.npy").exit_code == 0
    assert np.load(tmp_path / "g.npy").shape == astronaut.shape[:2]


def test_sixteen_bit_in_sixteen_bit_out(runner, tmp_path):
    data = (np.arange(100, dtype=np.uint16).reshape(10, 10) * 600)
    Image.fromarray(data).save(tmp_path / "d.png")
    assert run(runner, "filter", tmp_path / "d.png", "-k", "identity", "-o", tmp_path / "o.png").exit_code == 0
    np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "o.png")), data)


def test_folder_batch_goes_on_past_a_bad_file(runner, photos, tmp_path):
    (photos / "broken.png").write_bytes(b"not a png at all")
    result = run(runner, "filter", photos, "-k", "gaussian", "-o", tmp_path / "out")
    assert result.exit_code == 1
    assert "broken.png" in result.output and "not an image" in result.output
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["astronaut-48x40-gaussian.png",
                                                                      "camera-64-gaussian.png"]


@pytest.mark.parametrize("args,code,message", [
    (["filter", "{d}/nope.png", "-k", "sobel"], 1, "no such file"),
    (["filter", "{d}/text.png", "-k", "sobel"], 1, "not an image"),
    (["filter", "{d}/empty.png", "-k", "sobel"], 1, "empty"),
    (["filter", "{d}/truncated.png", "-k", "sobel"], 1, "truncated"),
    (["filter", "{d}/camera-64.png", "-k", "sobl"], 2, "did you mean sobel"),
    (["filter", "{d}/camera-64.png", "-k", "{d}/ragged.txt"], 2, "different lengths"),
    (["filter", "{d}/camera-64.png", "-k", "{d}/words.csv"], 2, "must be a number"),
    (["filter", "{d}/camera-64.png", "-k", "[[1, NaN]]"], 2, "NaN or infinity"),
    (["filter", "{d}/camera-64.png", "-k", "{d}/blank.txt"], 2, "empty"),
    (["filter", "{d}/camera-64.png", "-k", "gaussian:sigma=30", "--padding", "valid"], 2, "does not fit the padded input"),
    (["filter", "{d}/camera-64.png", "-k", "sobel", "--stride", "0"], 2, "--stride"),
    (["filter", "{d}/camera-64.png", "-k", "sobel", "--dilation", "-1"], 2, "--dilation"),
    (["filter", "{d}/camera-64.png", "-k", "sobel", "--pool", "max:0"], 2, "--pool"),
    (["filter", "{d}/camera-64.png", "-k", "sobel", "-o", "{d}/camera-64.png"], 1, "one of the inputs"),
    (["filter", "{d}/camera-64.png", "-k", "sobel", "-o", "{d}/text.png/sub/"], 1, "cannot create output folder"),
    (["filter", "{d}/camera-64.png", "-k", "sobel", "--padding", "1,2,3"], 2, "--padding"),
])
def test_bad_inputs_get_one_line_and_exit_code(runner, photos, camera, args, code, message):
    d = photos
    (d / "text.png").write_text("hello")
    (d / "empty.png").write_bytes(b"")
    (d / "truncated.png").write_bytes((d / "camera-64.png").read_bytes()[:-300])
    (d / "ragged.txt").write_text("1 2 3\n4 5\n")
    (d / "words.csv").write_text("1,a\n2,3\n")
    (d / "blank.txt").write_text("# nothing\n")
    before = (d / "camera-64.png").read_bytes()
    result = run(runner, *[a.format(d=d) for a in args])
    assert result.exit_code == code, result.output
    assert message in result.output
    assert "Traceback" not in result.output
    assert (d / "camera-64.png").read_bytes() == before  # the input is never touched
    assert not list(d.glob("*.part"))


def test_existing_output_needs_overwrite(runner, photos, tmp_path):
    out = tmp_path / "o.png"
    out.write_bytes(b"keep me")
    result = run(runner, "filter", photos / "camera-64.png", "-k", "box", "-o", out)
    assert result.exit_code == 1 and "--overwrite" in result.output and out.read_bytes() == b"keep me"
    assert run(runner, "filter", photos / "camera-64.png", "-k", "box", "-o", out, "--overwrite").exit_code == 0
    assert Image.open(out).size == (64, 64)


def test_kernels_command_lists_and_shows(runner):
    listing = run(runner, "kernels")
    assert listing.exit_code == 0 and "blob" in listing.output and "sobel-x" in listing.output
    shown = run(runner, "kernels", "sobel-x")
    assert shown.exit_code == 0
    assert "separable: yes" in shown.output and "Sobel" in shown.output and "sum 0" in shown.output
    blob = run(runner, "kernels", "blob")
    assert "separable: no" in blob.output and "rank 5" in blob.output
    bad = run(runner, "kernels", "sobl")
    assert bad.exit_code == 2 and "did you mean sobel" in bad.output


def test_device_and_backends_are_reported_honestly(runner, photos, tmp_path):
    from convtool.conv.device import cuda_status

    result = run(runner, "filter", photos / "camera-64.png", "-k", "sobel", "-k", "blob", "--backend", "separable",
                 "-v", "-o", tmp_path / "o.png")
    assert result.exit_code == 0, result.output
    assert "sobel: separable back-end on CPU" in result.output
    assert "blob: direct back-end on CPU" in result.output and "rank-1" in result.output  # fell back, and why
    if not cuda_status()[0]:
        cuda = run(runner, "filter", photos / "camera-64.png", "-k", "sobel", "--device", "cuda", "-o", tmp_path / "c.png")
        assert cuda.exit_code == 1 and "CUDA was asked for but is unavailable" in cuda.output
        assert not (tmp_path / "c.png").exists()


def test_warm_alone_warms_the_core_and_needs_no_images(runner, monkeypatch):
    from convtool import batchfilter

    monkeypatch.setattr(batchfilter, "warm_numba", lambda: ["separable uint8 48x64x3: 0.0 s"])
    result = run(runner, "filter", "--warm", "-v")
    assert result.exit_code == 0, result.output
    assert "Numba core warm" in result.output and "separable uint8" in result.output


def test_images_or_warm_and_a_kernel_are_required(runner, photos):
    nothing = run(runner, "filter", "-k", "sobel")
    assert nothing.exit_code == 2 and "INPUTS" in nothing.output and "--warm" in nothing.output
    no_kernel = run(runner, "filter", photos)
    assert no_kernel.exit_code == 2 and "--kernel" in no_kernel.output


def test_verbose_says_a_cold_numba_cache_means_numpy_this_run(runner, photos, tmp_path, monkeypatch):
    from convtool import batchfilter, conv, filtering

    monkeypatch.setattr(conv, "numba_loaded", lambda: False)
    monkeypatch.setattr(batchfilter, "NUMBA_LOAD_SECONDS", 0.0)  # these small photos "pay" for Numba
    monkeypatch.setattr(filtering, "jit_cached", lambda *a: False)
    result = run(runner, "filter", photos / "camera-64.png", "-k", "sobel", "-o", tmp_path / "o.png", "-v")
    assert result.exit_code == 0, result.output
    assert "files: filtered in this process: one image; Numba cache cold: NumPy this run" in result.output
    assert "convtool filter --warm" in result.output and "sobel (numpy on CPU)" in result.output
    quiet = run(runner, "filter", photos / "camera-64.png", "-k", "sobel", "-o", tmp_path / "q.png")
    assert quiet.exit_code == 0 and "tip: Numba's cache was cold, so NumPy ran" in quiet.output
    assert "Numba cache cold" not in quiet.output  # the reasons stay behind -v
