"""``convtool bench``: the quick smoke run, JSON output, missing anchors and bad options."""

import json
import sys

import numpy as np
from click.testing import CliRunner

from convtool.cli.main import cli
from convtool.conv import benchmark


def test_quick_bench_prints_every_case_with_ratios():
    result = CliRunner().invoke(cli, ["bench", "--quick", "--auto-only"])
    assert result.exit_code == 0, result.output
    for case in ("512^2 gray f32, sobel3", "320x240 RGB u8, blob9", "16x28x28 batch f32, sobel3",
                 "pool 2x2 max"):
        assert case in result.output
    assert "convtool auto / best anchor" in result.output
    assert "JIT cold/warm process timings: skipped in --quick" in result.output


def test_quick_bench_json_has_timings_and_agrees_with_opencv_when_present():
    result = CliRunner().invoke(cli, ["bench", "--quick", "--auto-only", "--json", "--threads", "1"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["threads"] == 1 and data["quick"] is True
    assert len(data["cases"]) == 9 and all(t["mpix_s"] > 0 for c in data["cases"] for t in c["timings"])
    for case in data["cases"]:
        if case["max_rel_diff_vs_opencv"] is not None:  # OpenCV's output is an independent oracle
            assert case["max_rel_diff_vs_opencv"] < 1e-5, case["case"]


def test_bench_without_opencv_or_scipy_still_runs_and_names_what_it_skipped(monkeypatch):
    monkeypatch.setitem(sys.modules, "cv2", None)  # import cv2 -> ImportError
    monkeypatch.setitem(sys.modules, "scipy", None)
    monkeypatch.setattr(benchmark, "images", lambda quick: {"64^2 gray f32": np.ones((64, 64), np.float32)})
    result = CliRunner().invoke(cli, ["bench", "--quick", "--auto-only"])
    assert result.exit_code == 0, result.output
    assert "OpenCV (cv2.filter2D, cv2.sepFilter2D): not installed" in result.output
    assert "scipy.ndimage (correlate, gaussian_filter): not installed" in result.output
    assert "cv2.filter2D" not in result.output.split("Skipped:")[0]


def test_bad_thread_count_is_a_usage_error():
    result = CliRunner().invoke(cli, ["bench", "--threads", "0"])
    assert result.exit_code == 2
    assert "--threads and --repeat must be at least 1, got 0" in result.output
