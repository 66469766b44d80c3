"""Nothing lost, with real processes: signals remove temporaries, concurrent runs never replace each
other's files, training saves its best model on SIGTERM (issue 15, defects 2, 3 and 10)."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from infer_helpers import MNIST_12, write_mnist_pngs
from PIL import Image

CONVTOOL = Path(sys.executable).with_name("convtool")


def start(*args: str, cwd: Path | None = None) -> subprocess.Popen:
    return subprocess.Popen([str(CONVTOOL), *args], cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)


def wait_for_temporary(folder: Path, process: subprocess.Popen, timeout: float = 60.0) -> Path:
    """Poll until a hidden .part file appears in ``folder`` (the run is writing), and return it."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = [p for p in folder.iterdir() if p.name.startswith(".") and ".part" in p.name]
        if found:
            return found[0]
        if process.poll() is not None:
            pytest.fail(f"the run ended before writing: {process.communicate()}")
        time.sleep(0.002)
    process.kill()
    pytest.fail("no temporary file appeared")


@pytest.fixture(scope="module")
def noise(tmp_path_factory) -> Path:
    """A 3000x3000 noise image: its PNG output takes long enough to compress that a signal meets it."""
    path = tmp_path_factory.mktemp("big") / "noise.png"
    pixels = np.random.default_rng(0).integers(0, 256, (3000, 3000), dtype=np.uint8)
    Image.fromarray(pixels).save(path, compress_level=0)
    return path


@pytest.fixture(scope="module")
def digits(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("digits")
    write_mnist_pngs(folder, 1500)
    return folder


@pytest.mark.parametrize("signo", [signal.SIGTERM, signal.SIGHUP])
def test_a_signal_while_filter_writes_leaves_no_temporary(tmp_path, noise, signo):
    out = tmp_path / "out"
    out.mkdir()
    process = start("filter", str(noise), "-k", "[[1]]", "-o", str(out / "o.png"))
    wait_for_temporary(out, process)
    process.send_signal(signo)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 128 + signo, stderr
    assert f"interrupted ({signal.Signals(signo).name})" in stderr and "Traceback" not in stderr
    assert list(out.iterdir()) == []


def test_a_signal_while_classify_streams_its_csv_leaves_no_temporary(tmp_path, digits):
    process = start("classify", str(digits), "-m", str(MNIST_12), "--batch", "8", "-o", str(tmp_path / "r.csv"))
    wait_for_temporary(tmp_path, process)
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 128 + signal.SIGTERM, stderr
    assert list(tmp_path.iterdir()) == []


def test_two_filter_runs_into_one_folder_never_replace_each_others_files(tmp_path, camera):
    for i in range(30):
        Image.fromarray(np.roll(camera, i, axis=1).astype(np.uint8)).save(tmp_path / f"{i:02}.png")
    out = tmp_path / "out"
    runs = [start("filter", str(tmp_path), "-k", "gaussian:sigma=1", "-k", "sobel", "-o", str(out))
            for _ in range(2)]
    results = [run.communicate(timeout=120) for run in runs]
    written = [int(re.search(r"Filtered (\d+) of 30", stderr).group(1)) for _, stderr in results]
    assert sum(written) == 30, results  # each output reported written by exactly one run
    refused = sum(stderr.count("already exists") for _, stderr in results)
    assert refused == 30 and len(list(out.iterdir())) == 30, results


def test_two_classify_runs_with_one_output_lose_nothing(tmp_path, digits):
    out = tmp_path / "r.csv"
    runs = [start("classify", str(digits), "-m", str(MNIST_12), "-o", str(out)) for _ in range(2)]
    results = [run.communicate(timeout=120) for run in runs]
    codes = sorted(run.returncode for run in runs)
    assert codes == [0, 1], results
    loser = [stderr for run, (_, stderr) in zip(runs, results) if run.returncode == 1][0]
    assert "r.csv: already exists" in loser
    assert len(out.read_text().splitlines()) == 1501
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.csv"]


def test_sigterm_during_training_saves_the_best_model(tmp_path):
    process = start("train", "lenet5", "--epochs", "30", "--limit", "300", "-o", "t.onnx", cwd=tmp_path)
    assert process.stdout is not None
    for line in process.stdout:
        if re.match(r"\s+1\s", line):  # the table row of the first finished epoch
            break
    process.send_signal(signal.SIGTERM)
    stdout, stderr = process.communicate(timeout=120)
    assert process.returncode == 128 + signal.SIGTERM, stderr
    assert "saved the best model so far (epoch" in stdout
    assert (tmp_path / "t.onnx").stat().st_size > 0
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]
