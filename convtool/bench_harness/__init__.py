"""The harness behind ``convtool bench`` and ``benchmarks/conv_vs_anchors.py``: convtool's core against
OpenCV and scipy.ndimage, timed in one run.

It sits outside :mod:`convtool.conv` on purpose: the core never imports cv2 or scipy, and nothing here
changes the core's settings except through its public ``set_threads`` for the length of a run.
Nothing here prints; the CLI formats the results.
"""

from __future__ import annotations

import json
from typing import Any

from convtool.bench_harness import cases
from convtool.bench_harness.small import SIZES as SMALL_SIZES
from convtool.bench_harness.small import small_images
from convtool.bench_harness.startup import jit_times
from convtool.bench_harness.timing import same_threads


def run(*, quick: bool = False, threads: int = 2, repeat: int = 11, budget: float = 3.0, backends: bool = True,
        jit: bool = True, small: bool = True) -> dict:
    """The whole benchmark as a JSON-ready dict: cases, small images, pooling, JIT times, skipped anchors."""
    found, skipped = cases.anchors()
    with same_threads(threads, found):
        correlations = [cases.run_case(label, image, kname, kernel, found, repeat, budget, backends, threads)
                        for label, image in cases.images(quick).items() for kname, kernel in cases.KERNELS.items()
                        if "batch" not in label or kname == "sobel3"]
        smalls = small_images(found, 11 if quick else 51, budget / 10, (28, 64) if quick else SMALL_SIZES) \
            if small else []
        pools = cases.pooling(found, quick, repeat, budget)
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
            "ratio_to_best_opencv": case.ratio("cv2"), "ratio_to_best_scipy": case.ratio("scipy"),
            "ratio_to_numpy": case.ratio("numpy"),
            "out_ratio_to_best_opencv": case.ratio("cv2", "convtool auto, out="),
            "max_rel_diff_vs_opencv": case.max_diff, "notes": case.notes}


def dumps(results: dict) -> str:
    """The results as indented JSON."""
    return json.dumps(results, indent=2)
