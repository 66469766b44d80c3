"""``convtool bench``: the quick smoke run, JSON output, missing anchors and bad options."""

import json
import subprocess
import sys

import numpy as np
from click.testing import CliRunner

from convtool.bench_harness import cases as benchmark
from convtool.cli.main import cli


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


def test_every_case_has_both_floors_timed_as_often_and_a_percentage_of_them(monkeypatch):
    from convtool import conv

    monkeypatch.setattr(benchmark, "images", lambda quick: {"64^2 gray f32": np.ones((64, 64), np.float32)})
    threads_before = conv.set_threads(3)
    result = CliRunner().invoke(cli, ["bench", "--quick", "--auto-only", "--json", "--threads", "1", "--no-jit"])
    assert result.exit_code == 0, result.output
    assert conv.set_threads(threads_before) == 3  # the run restored the core's thread count
    data = json.loads(result.output)
    for case in data["cases"]:
        names = {t["name"]: t for t in case["timings"]}
        new, existing = names["floor: copy into a new array"], names["floor: copy into an existing array"]
        assert new["runs"] == names["convtool auto"]["runs"] == existing["runs"]
        auto = names["convtool auto"]
        assert auto["best_mpix_s"] >= auto["mpix_s"] > 0
        assert abs(auto["floor_pct"] - 100 * auto["mpix_s"] / new["mpix_s"]) < 1e-6
        into = names["convtool auto, out="]
        assert abs(into["floor_pct"] - 100 * into["mpix_s"] / existing["mpix_s"]) < 1e-6
    assert [row["size"] for row in data["small"]] == [28, 64]
    assert all(row["median_us"]["convtool auto"] >= row["min_us"]["convtool auto"] > 0 for row in data["small"])


def test_the_out_call_is_timed_in_the_rounds_of_the_floor_it_is_read_against(monkeypatch):
    from convtool.bench_harness import timing

    groups: list[set[str]] = []

    def recording(calls, rounds):
        groups.append(set(calls))
        return timing.interleaved(calls, rounds)

    monkeypatch.setattr(benchmark, "interleaved", recording)
    monkeypatch.setattr(benchmark, "images", lambda quick: {"64^2 gray f32": np.ones((64, 64), np.float32)})
    result = CliRunner().invoke(cli, ["bench", "--quick", "--auto-only", "--json", "--threads", "2", "--no-jit",
                                      "--no-small"])
    assert result.exit_code == 0, result.output
    existing = {f"floor: copy into an existing array [{n}]" for n in ("1 thread", "2 threads")}
    new = {f"floor: copy into a new array [{n}]" for n in ("1 thread", "2 threads")}
    assert {"convtool auto, out="} | existing in groups  # the same rounds: the host's drift moves both
    assert new in groups
    assert all("convtool auto, out=" not in group for group in groups if "convtool auto" in group)


def test_the_core_imports_neither_opencv_nor_scipy():
    script = ("import sys, numpy as np; from convtool.conv import correlate2d, pool2d; "
              "correlate2d(np.ones((9, 9), np.float32), np.ones((3, 3)), backend='numpy'); pool2d(np.ones((4, 4)), 2); "
              "print(sorted(m for m in ('cv2', 'scipy') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


def test_case_selects_cases_by_name_and_one_matching_nothing_is_a_usage_error():
    result = CliRunner().invoke(cli, ["bench", "--quick", "--auto-only", "--json", "--case", "rgb u8, SOBEL3",
                                      "--case", "small 64"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert [case["case"] for case in data["cases"]] == ["320x240 RGB u8, sobel3"]
    assert [row["size"] for row in data["small"]] == [64] and data["pooling"] == []
    names = [t["name"] for t in data["cases"][0]["timings"]]
    assert "convtool auto" in names and "convtool auto, out=" in names
    if data["cases"][0]["max_rel_diff_vs_opencv"] is not None:  # H,W,3 in, H,W,3 out, like OpenCV's
        assert data["cases"][0]["max_rel_diff_vs_opencv"] < 1e-5
    missing = CliRunner().invoke(cli, ["bench", "--quick", "--case", "nothing like this"])
    assert missing.exit_code != 0
    assert "no benchmark case matches 'nothing like this'" in missing.output


def test_loading_the_numba_kernels_does_not_import_scipy_linalg_and_jitted_dot_still_works():
    script = ("import sys, numpy as np, numba; from convtool.conv import correlate2d; "
              "correlate2d(np.ones((9, 9), np.float32), np.ones((3, 3)), backend='direct'); "
              "print('scipy.linalg' in sys.modules); "
              "print(numba.njit(lambda a: np.dot(a, a))(np.ones(3)))")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert done.stdout.split() == ["False", "3.0"]


def test_each_round_starts_one_call_further_so_every_call_follows_every_other():
    from convtool.bench_harness.timing import Rounds, interleaved

    seen: list[str] = []
    calls = {name: (lambda name=name: seen.append(name)) for name in "abc"}
    stats = interleaved(calls, Rounds(repeat=3, budget=1.0, warmup=0.0))
    assert {name: s.runs for name, s in stats.items()} == {"a": 3, "b": 3, "c": 3}
    assert seen[3:] == list("abc" "bca" "cab")  # after one warm-up call each


def test_warm_up_rounds_last_the_warm_up_time_and_are_not_timed():
    import time

    from convtool.bench_harness.timing import Rounds, interleaved

    seen: list[str] = []

    def call(name: str) -> None:
        seen.append(name)
        time.sleep(0.01)

    stats = interleaved({"a": lambda: call("a"), "b": lambda: call("b")}, Rounds(repeat=2, budget=1e9, warmup=0.05))
    assert {name: s.runs for name, s in stats.items()} == {"a": 2, "b": 2}
    warm_up = seen[:-4]
    assert len(warm_up) >= 6 and warm_up == ["a", "b"] * (len(warm_up) // 2)  # whole rounds for >= 0.05 s
    assert seen[-4:] == ["a", "b", "b", "a"]


def test_paired_ratio_is_the_median_of_the_per_round_ratios():
    import statistics

    from convtool.bench_harness.timing import Stats, paired_ratio

    def stats(times: tuple[float, ...]) -> Stats:
        return Stats(statistics.median(times), min(times), len(times), times)

    theirs, ours = stats((2.0, 3.0, 10.0)), stats((1.0, 3.0, 4.0))  # per-round ratios 2, 1, 2.5
    assert paired_ratio(theirs, ours) == 2.0
    assert theirs.median / ours.median == 1.0  # the ratio of medians says something else: the oracle tells them apart
    slow_round = stats((1.0, 8.0, 2.0)), stats((0.5, 4.0, 1.0))  # round 2 slowed both calls alike
    assert paired_ratio(*slow_round) == 2.0
