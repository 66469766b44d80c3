"""Small images, where a call's fixed cost dominates: Sobel 3x3 on one float32 gray image, repeated calls.

Times per call (microseconds) of convtool auto (new array and ``out=``), convtool direct and
cv2.filter2D (new array and ``dst=``), interleaved. Each sample is a batch of calls lasting about
``SAMPLE_SECONDS`` (the same count for every library), so a median of samples is not at the mercy of
the timer's resolution or of one preempted call: single-call samples of a 64x64 call (8 us) had
medians from 9 to 22 us in runs minutes apart.
"""

from __future__ import annotations

import time
from typing import Any, Callable

import numpy as np

from convtool import conv
from convtool.bench_harness.cases import SOBEL
from convtool.bench_harness.timing import Rounds, interleaved

SIZES = (28, 64, 256, 512, 1024)
SAMPLE_SECONDS = 2e-3  # length of one timed batch of calls


def small_images(found: dict, rounds: Rounds, sizes: tuple[int, ...] = SIZES) -> list[dict]:
    """One row per size: median and minimum microseconds per call of each library, and auto's ratio to OpenCV."""
    rows = []
    for size in sizes:
        image = np.random.default_rng(size).random((size, size), dtype=np.float32)
        calls = _calls(image, found)
        count = _batch_size(calls["convtool auto"])
        stats = interleaved({name: _batch(call, count) for name, call in calls.items()}, rounds)
        row: dict[str, Any] = {"size": size, "runs": min(s.runs for s in stats.values()), "calls_per_run": count,
               "median_us": {name: s.median / count * 1e6 for name, s in stats.items()},
               "min_us": {name: s.minimum / count * 1e6 for name, s in stats.items()}}
        anchor = min((v for k, v in row["median_us"].items() if k.startswith("cv2")), default=None)
        row["ratio_to_opencv"] = anchor / row["median_us"]["convtool auto"] if anchor else None
        rows.append(row)
    return rows


def _batch_size(call: Callable[[], object]) -> int:
    """Calls per timed sample: about SAMPLE_SECONDS of ``call`` (fastest of a few warm calls), 1 to 1000."""
    call()
    fastest = float("inf")
    for _ in range(5):
        start = time.perf_counter()
        call()
        fastest = min(fastest, time.perf_counter() - start)
    return int(min(1000, max(1, SAMPLE_SECONDS // max(fastest, 1e-7))))


def _batch(call: Callable[[], object], count: int) -> Callable[[], None]:
    def batch() -> None:
        for _ in range(count):
            call()

    return batch


def _calls(image: np.ndarray, found: dict) -> dict[str, Callable[[], object]]:
    out = np.empty_like(image)
    options: dict[str, Any] = dict(padding="same", border="reflect", device="cpu")
    calls: dict[str, Callable[[], object]] = {
        "convtool auto": lambda: conv.correlate2d(image, SOBEL, **options),
        "convtool auto, out=": lambda: conv.correlate2d(image, SOBEL, out=out, **options),
        "convtool direct": lambda: conv.correlate2d(image, SOBEL, backend="direct", **options),
    }
    cv2 = found.get("cv2")
    if cv2 is not None:
        kernel, dst = SOBEL.astype(np.float32), np.empty_like(image)
        calls["cv2.filter2D"] = lambda: cv2.filter2D(image, cv2.CV_32F, kernel, borderType=cv2.BORDER_REFLECT_101)
        calls["cv2.filter2D, dst="] = lambda: cv2.filter2D(image, cv2.CV_32F, kernel, dst=dst,
                                                           borderType=cv2.BORDER_REFLECT_101)
    return calls
