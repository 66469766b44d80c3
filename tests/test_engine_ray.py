"""--ray: classify, segment and filter on a local Ray (2 CPUs) give what the local path gives.

One Ray for the whole module (each start costs seconds); the two-node cluster is in test_engine_ray_cluster.py.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from infer_helpers import blocks, colour_segmenter, lenet, write_mnist_pngs
from PIL import Image

from convtool.cli.main import cli
from convtool.infer import engine_ray

os.environ.setdefault("RAY_ENABLE_UV_RUN_RUNTIME_ENV", "0")  # read when ray is imported: no `uv run` workers
ray = pytest.importorskip("ray")


@pytest.fixture(scope="module")
def local_ray(tmp_path_factory):
    """A 2-CPU Ray whose workers see CONVTOOL_RAY_FAIL_ONCE (a marker file a test may create)."""
    marker = tmp_path_factory.mktemp("ray") / "fail-once"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(engine_ray.FAIL_ONCE_ENV, str(marker))
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
        try:
            yield marker
        finally:
            ray.shutdown()


@pytest.fixture(scope="module")
def digits(tmp_path_factory):
    folder = tmp_path_factory.mktemp("digits")
    paths, _ = write_mnist_pngs(folder, 150)
    (folder / "00007.png").write_bytes(b"not a png")  # a bad file among them
    (folder / "00093.png").write_bytes(paths[0].read_bytes()[:40])  # truncated
    model = lenet(folder.parent / "lenet.onnx")
    return folder, model


def run(*args: str):
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def test_classify_on_ray_writes_the_local_rows_and_lists_the_same_bad_files(local_ray, digits, tmp_path):
    folder, model = digits
    local = run("classify", str(folder), "-m", str(model), "--batch", "32", "-o", str(tmp_path / "local.csv"))
    on_ray = run("classify", str(folder), "-m", str(model), "--batch", "32", "-o", str(tmp_path / "ray.csv"), "--ray")
    assert local.exit_code == on_ray.exit_code == 1
    assert (tmp_path / "ray.csv").read_text() == (tmp_path / "local.csv").read_text()
    assert len((tmp_path / "ray.csv").read_text().splitlines()) == 1 + 148
    failures = [line for line in local.stderr.splitlines() if line.startswith("  ")]
    assert len(failures) == 2 and failures == [line for line in on_ray.stderr.splitlines() if line.startswith("  ")]
    assert "148 images in" in on_ray.stderr and "on CPU (CPUExecutionProvider) on Ray at " in on_ray.stderr


def test_an_actor_killed_mid_run_costs_no_row_and_repeats_none(local_ray, digits, tmp_path):
    folder, model = digits
    local = run("classify", str(folder), "-m", str(model), "--batch", "16", "-o", str(tmp_path / "local.csv"))
    local_ray.write_text("")  # the first model call that sees it removes it and kills its worker (os._exit)
    on_ray = run("classify", str(folder), "-m", str(model), "--batch", "16", "-o", str(tmp_path / "ray.csv"), "--ray")
    assert not local_ray.exists(), "no actor ran the fault"
    assert on_ray.exit_code == local.exit_code == 1
    assert (tmp_path / "ray.csv").read_text() == (tmp_path / "local.csv").read_text()


def test_segment_on_ray_writes_the_local_masks_and_overlays_bit_for_bit(local_ray, tmp_path):
    images = tmp_path / "images"
    images.mkdir()
    for i, (height, width) in enumerate([(60, 80), (48, 64), (60, 80), (30, 90)]):  # mixed sizes
        Image.fromarray(np.roll(blocks(height, width)[0], i * 7, axis=1)).save(images / f"b{i}.png")
    (images / "broken.png").write_bytes(b"\x89PNG nothing")
    model = colour_segmenter(tmp_path / "seg.onnx")
    local = run("segment", str(images), "-m", str(model), "-o", str(tmp_path / "local"), "--batch", "2")
    on_ray = run("segment", str(images), "-m", str(model), "-o", str(tmp_path / "ray"), "--batch", "2", "--ray")
    assert local.exit_code == on_ray.exit_code == 1
    assert "broken.png" in on_ray.stderr
    _assert_same_files(tmp_path / "local", tmp_path / "ray", 8)
    assert on_ray.stdout == local.stdout  # the areas table


def _assert_same_files(local: Path, on_ray: Path, count: int) -> None:
    """Both folders hold the same ``count`` file names, byte for byte."""
    written = sorted(p.name for p in local.iterdir())
    assert len(written) == count and written == sorted(p.name for p in on_ray.iterdir())
    for name in written:
        assert (on_ray / name).read_bytes() == (local / name).read_bytes(), name


def test_filter_on_ray_writes_the_local_images_bit_for_bit(local_ray, tmp_path):
    images = tmp_path / "images"
    images.mkdir()
    rng = np.random.default_rng(5)
    for i in range(5):
        Image.fromarray(rng.integers(0, 256, (40 + i, 50), dtype=np.uint8)).save(images / f"n{i}.png")
    (images / "bad.png").write_bytes(b"nope")
    # the back-end pinned: `auto` picks NumPy or Numba by whether Numba is loaded in the process yet, and
    # those agree only to float rounding (the same computation gives the same bits)
    args = ["filter", str(images), "-k", "sobel", "-k", "gaussian:sigma=1", "--backend", "numpy"]
    local = run(*args, "-o", str(tmp_path / "local"))
    on_ray = run(*args, "-o", str(tmp_path / "ray"), "--ray")
    assert local.exit_code == on_ray.exit_code == 1
    assert "bad.png" in on_ray.output
    _assert_same_files(tmp_path / "local", tmp_path / "ray", 5)


@pytest.mark.parametrize("command", [["classify", "-m", "M"], ["segment", "-m", "M", "-o", "out"], ["filter", "-k", "sobel"]])
def test_without_ray_the_flag_names_the_install_command(monkeypatch, digits, command, tmp_path):
    folder, model = digits
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` raises ImportError, as when it is not installed
    args = [str(model) if arg == "M" else str(tmp_path / arg) if arg == "out" else arg for arg in command]
    result = run(args[0], str(folder), *args[1:], "--ray")
    assert result.exit_code == 2, result.output
    assert "--ray needs Ray, which is not installed: pip install 'convtool[ray]'" in result.output


def test_an_address_nothing_answers_at_is_refused_at_once():
    import socket

    with socket.socket() as probe:  # a port that was free a moment ago: connecting is refused
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(engine_ray.UsageError, match=rf"^`ray` 127.0.0.1:{port}: nothing answers there"):
        engine_ray._check_reachable(f"127.0.0.1:{port}")
    with pytest.raises(engine_ray.UsageError, match="not HOST:PORT"):
        engine_ray._check_reachable("head-node")
    engine_ray._check_reachable("auto")  # left to Ray


def test_joining_by_address_without_token_auth_here_says_how_to_turn_it_on(monkeypatch):
    monkeypatch.delenv("RAY_AUTH_MODE", raising=False)
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    assert "set RAY_AUTH_MODE=token" in engine_ray._auth_hint("10.0.0.1:6379")
    assert engine_ray._auth_hint("auto") == engine_ray._auth_hint(None) == ""  # Ray turns it on by itself there
    monkeypatch.setenv("RAY_ADDRESS", "10.0.0.1:6379")  # an address after all
    assert "set RAY_AUTH_MODE=token" in engine_ray._auth_hint("auto")
    monkeypatch.setenv("RAY_AUTH_MODE", "token")
    assert engine_ray._auth_hint("10.0.0.1:6379") == ""
