"""Timing that can be trusted on a shared machine: interleaved rounds, median and minimum, one thread count.

The calls of a comparison run round-robin for a warm-up second, then are timed round-robin, so a
load spike hits all of them alike; each keeps its median and its minimum (the minimum is what the
machine can do when nobody else is running, the median what a user would see now) and its time in
every round, so two calls can also be compared round by round (:func:`paired_ratio`).
"""

from __future__ import annotations

import functools
import statistics
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Callable, Iterator

import numpy as np

FLOOR_NEW, FLOOR_EXISTING = "floor: copy into a new array", "floor: copy into an existing array"


@dataclass(frozen=True)
class Rounds:
    """How a comparison is timed: at most ``repeat`` rounds, fewer (but at least 5) once they have taken
    ``budget`` seconds per call, after ``warmup`` seconds of untimed rounds."""

    repeat: int = 21
    budget: float = 3.0
    warmup: float = 1.0


QUICK_ROUNDS = Rounds(repeat=2, budget=0.2, warmup=0.0)  # a smoke run (--quick)


@dataclass(frozen=True)
class Stats:
    """Seconds per call: median and minimum of ``runs`` interleaved calls, and each round's time in order."""

    median: float
    minimum: float
    runs: int
    times: tuple[float, ...] = ()


def paired_ratio(theirs: Stats, ours: Stats) -> float:
    """Median over the rounds of ``theirs`` time / ``ours`` in the same round (> 1: ours faster).

    A drift that slows every call of a round alike (another tenant, the second core waking) cancels
    in each round's ratio, where it moves the two medians by different amounts.
    """
    return statistics.median(a / b for a, b in zip(theirs.times, ours.times))


def interleaved(calls: dict[str, Callable[[], object]], rounds: Rounds) -> dict[str, Stats]:
    """Median and minimum seconds of each call, timed round-robin after ``rounds.warmup`` seconds of untimed rounds.

    The warm-up is rounds, not one call each: on this kind of machine two-thread calls run 20-40%
    slower for their first few hundred milliseconds of work (4096^2 Gaussian 5x5: convtool 21 -> 15 ms,
    OpenCV 29 -> 19 ms over the first 6-8 rounds of a fresh process; a single-threaded copy does not drift).

    Each round starts one call further on, so every call takes its turn right after the slowest one:
    the first call after a long single-threaded one (scipy, 60 ms) or an idle gap pays for waking the
    idle core (1080p RGB Sobel 4.3 -> 6.4 ms, whichever library comes first), and a fixed order put
    that cost on convtool's row in every round.
    """
    start = time.perf_counter()
    while True:  # at least one warm-up call each
        for call in calls.values():
            call()
        if time.perf_counter() - start >= rounds.warmup:
            break
    times: dict[str, list[float]] = {name: [] for name in calls}
    order = list(calls.items())
    start = time.perf_counter()
    for round_ in range(rounds.repeat):
        if round_ >= 5 and time.perf_counter() - start > rounds.budget * len(calls):
            break
        shift = round_ % len(order)
        for name, call in order[shift:] + order[:shift]:
            t0 = time.perf_counter()
            call()
            times[name].append(time.perf_counter() - t0)
    return {name: Stats(statistics.median(values), min(values), len(values), tuple(values))
            for name, values in times.items()}


@contextmanager
def same_threads(threads: int, found: dict) -> Iterator[None]:
    """Run convtool's core and OpenCV on ``threads`` threads; restore both afterwards.

    Only the libraries' own settings are touched (environment variables read at import time would
    come too late to matter). scipy.ndimage is single-threaded whatever is set.
    """
    from convtool import conv

    previous = conv.set_threads(threads)
    cv2 = found.get("cv2")
    previous_cv2 = cv2.getNumThreads() if cv2 is not None else None
    if cv2 is not None:
        cv2.setNumThreads(threads)
    try:
        yield
    finally:
        conv.set_threads(previous)
        if cv2 is not None:
            cv2.setNumThreads(previous_cv2)


def copy_calls(image: np.ndarray, threads: int) -> dict[str, Callable[[], object]]:
    """The memory floor of a filter returning float32: a converting copy into a new array and into an existing one.

    Each is timed with NumPy's ``copyto`` on one thread and split over ``threads`` threads (it releases
    the GIL); :func:`fastest_floors` keeps the faster of the two (small images lose to the hand-off).
    """
    existing = np.empty(image.shape, dtype=np.float32)
    source = np.ascontiguousarray(image).reshape(-1)
    bounds = [source.size * k // threads for k in range(threads + 1)]
    pool = ThreadPoolExecutor(threads) if threads > 1 else None

    def copy(target: np.ndarray, split: bool) -> np.ndarray:
        flat = target.reshape(-1)
        if pool is None or not split:
            np.copyto(flat, source, casting="unsafe")
        else:
            list(pool.map(lambda k: np.copyto(flat[bounds[k]: bounds[k + 1]], source[bounds[k]: bounds[k + 1]],
                                              casting="unsafe"), range(threads)))
        return target

    calls: dict[str, Callable[[], object]] = {}
    for split in (False, True)[: 2 if pool else 1]:
        suffix = f" [{threads if split else 1} thread{'s' if split else ''}]"
        calls[FLOOR_NEW + suffix] = functools.partial(_copy_new, copy, image.shape, split)
        calls[FLOOR_EXISTING + suffix] = functools.partial(copy, existing, split)
    return calls


def _copy_new(copy: Callable[[np.ndarray, bool], np.ndarray], shape: tuple[int, ...], split: bool) -> np.ndarray:
    return copy(np.empty(shape, dtype=np.float32), split)


def fastest_floors(stats: dict[str, Stats]) -> dict[str, tuple[Stats, str]]:
    """Replace the per-thread-count floor timings by the faster of each kind, noting its thread count."""
    kept: dict[str, tuple[Stats, str]] = {}
    for name, value in stats.items():
        kind, _, variant = name.partition(" [")
        if kind in (FLOOR_NEW, FLOOR_EXISTING) and variant:
            if kind not in kept or value.median < kept[kind][0].median:
                kept[kind] = (value, variant.rstrip("]"))
        else:
            kept[name] = (value, "")
    return kept
