"""The harness behind ``convtool bench`` and ``benchmarks/conv_vs_anchors.py``: convtool's core against
OpenCV and scipy.ndimage, timed in one run.

It sits outside :mod:`convtool.conv` on purpose: the core never imports cv2 or scipy, and nothing here
changes the core's settings except through its public ``set_threads`` for the length of a run.
Nothing here prints; the CLI formats the results.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

from convtool.bench_harness import cases
from convtool.bench_harness.small import SIZES as SMALL_SIZES
from convtool.bench_harness.small import small_images
from convtool.bench_harness.startup import jit_times
from convtool.bench_harness.timing import Rounds, same_threads
from convtool.errors import UsageError

DEFAULT_ROUNDS = Rounds()


def run(*, quick: bool = False, threads: int = 2, rounds: Rounds = DEFAULT_ROUNDS, backends: bool = True,
        jit: bool = True, small: bool = True, only: tuple[str, ...] = ()) -> dict:
    """The whole benchmark as a JSON-ready dict: cases, small images, pooling, JIT times, skipped anchors.

    The small images take ``rounds`` with 51 rounds (11 with ``quick``) of a tenth of the budget each.

    ``only``: run just the correlation, pooling and small-image cases whose name contains one of these
    texts (case-insensitive; e.g. "RGB u8, sobel3", "pool", "small 64^2"); empty runs every case.
    """
    found, skipped = cases.anchors()
    wanted = cases.selection(only)
    with same_threads(threads, found):
        correlations = [cases.run_case(label, image, kname, kernel, found, rounds, backends, threads)
                        for label, image in cases.images(quick).items() for kname, kernel in cases.KERNELS.items()
                        if ("batch" not in label or kname == "sobel3") and wanted(f"{label}, {kname}")]
        sizes = [size for size in ((28, 64) if quick else SMALL_SIZES) if wanted(f"small {size}^2")]
        small_rounds = dataclasses.replace(rounds, repeat=11 if quick else 51, budget=rounds.budget / 10)
        smalls = small_images(found, small_rounds, tuple(sizes)) if small and sizes else []
        pools = cases.pooling(found, quick, rounds, wanted)
    if only and not (correlations or smalls or pools):
        raise UsageError(f"no benchmark case matches {', '.join(repr(text) for text in only)}; names look like "
                         f"'4096^2 gray f32, sobel3', '1920x1080 RGB u8, gauss5', 'pool 2x2 max', 'small 64^2'")
    results: dict[str, Any] = {
        "threads": threads,
        "quick": quick,
        "skipped": skipped + (["scipy.ndimage is single-threaded: it runs on 1 thread"] if "ndimage" in found else []),
        "cases": [_case_dict(c) for c in correlations],
        "small": smalls,
        "pooling": [_case_dict(c) for c in pools],
    }
    if jit and not quick:
        results["jit_seconds"] = jit_times()
    elif jit:
        results["skipped"].append("JIT cold/warm process timings: skipped in --quick")
    return results


def _case_dict(case: cases.CaseResult) -> dict:
    return {"case": case.case, "chosen": case.chosen,
            "timings": [t.__dict__ for t in case.timings],
            "ratio_to_best_opencv": case.ratio("cv2"), "paired_ratio_to_best_opencv": case.paired("cv2"),
            "ratio_to_best_scipy": case.ratio("scipy"),
            "ratio_to_numpy": case.ratio("numpy"),
            "out_ratio_to_best_opencv": case.ratio("cv2", "convtool auto, out="),
            "max_rel_diff_vs_opencv": case.max_diff, "notes": case.notes}


def dumps(results: dict) -> str:
    """The results as indented JSON."""
    return json.dumps(results, indent=2)
