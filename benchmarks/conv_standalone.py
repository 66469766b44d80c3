"""An independent check of ``convtool bench``: the same cases timed by a plain loop, no harness code.

Usage: python benchmarks/conv_standalone.py [--rounds 21] [--threads 2] [--case TEXT ...]
Each case runs a second of untimed rounds, then is timed in interleaved rounds (convtool, then every
OpenCV call, then again, each round starting one call further on); it prints the medians in ms,
convtool's ratio to the best OpenCV call's median (> 1: convtool faster) and the paired ratio (the
median of that call's time / convtool's within each round). Colour images are given to both as the
H,W,3 uint8 array they were read as; both return H,W,3 float32.
"""

from __future__ import annotations

import argparse
import statistics
import time

import cv2
import numpy as np
from scipy import ndimage

from convtool.conv import correlate2d, set_threads

SOBEL = np.array([[1.0, 0, -1], [2, 0, -2], [1, 0, -1]])
BLOB = np.array([
    [0, 0, 3, 2, 2, 2, 3, 0, 0], [0, 2, 3, 5, 5, 5, 3, 2, 0], [3, 3, 5, 3, 0, 3, 5, 3, 3],
    [2, 5, 3, -12, -23, -12, 3, 5, 2], [2, 5, 0, -23, -40, -23, 0, 5, 2], [2, 5, 3, -12, -23, -12, 3, 5, 2],
    [3, 3, 5, 3, 0, 3, 5, 3, 3], [0, 2, 3, 5, 5, 5, 3, 2, 0], [0, 0, 3, 2, 2, 2, 3, 0, 0]], dtype=np.float64)
REFLECT = cv2.BORDER_REFLECT_101


def gaussian_1d(sigma: float, size: int) -> np.ndarray:
    x = np.arange(size) - (size - 1) / 2
    g = np.exp(-0.5 * (x / sigma) ** 2)
    return g / g.sum()


def timed_rounds(calls: dict, rounds: int) -> dict:
    """Seconds of each call in each of ``rounds`` interleaved rounds, after a second of untimed rounds (two-thread
    calls run slower for their first few hundred ms of work); each round starts one call further on, so no call
    always runs right after the same other one."""
    start = time.perf_counter()
    while True:
        for call in calls.values():
            call()
        if time.perf_counter() - start >= 1.0:
            break
    times: dict = {name: [] for name in calls}
    order = list(calls.items())
    for round_ in range(rounds):
        shift = round_ % len(order)
        for name, call in order[shift:] + order[:shift]:
            start = time.perf_counter()
            call()
            times[name].append(time.perf_counter() - start)
    return times


def medians(calls: dict, rounds: int) -> dict:
    """Median seconds of each call over ``rounds`` interleaved rounds (see :func:`timed_rounds`)."""
    return {name: statistics.median(values) for name, values in timed_rounds(calls, rounds).items()}


def kernels() -> dict:
    """name -> (2D kernel, OpenCV's (row, column) factors or None)."""
    found = {"sobel3": (SOBEL, (np.array([1, 0, -1], np.float32), np.array([1, 2, 1], np.float32))),
             "blob9": (BLOB, None)}
    for name, sigma, size in (("gauss5", 1.0, 5), ("gauss31", 5.0, 31)):
        g = gaussian_1d(sigma, size).astype(np.float32)
        found[name] = (np.outer(g, g).astype(np.float64), (g, g))
    return found


def wanted(name: str, cases: list[str]) -> bool:
    """Whether a case is selected: its name contains one of ``cases`` (case-insensitive), or none were given."""
    return not cases or any(text.lower() in name.lower() for text in cases)


def large_cases(rounds: int, cases: list[str]) -> None:
    rng = np.random.default_rng(0)
    images = {"4096^2 gray f32": rng.random((4096, 4096), dtype=np.float32),
              "1920x1080 RGB u8": rng.integers(0, 256, (1080, 1920, 3), dtype=np.uint8)}
    for label, image in images.items():
        for name, (kernel, factors) in kernels().items():
            if wanted(f"{label}, {name}", cases):
                large_case(f"{label}, {name}", image, kernel, factors, rounds,
                           copy=label.startswith("4096") and name == "sobel3")


def large_case(label: str, image: np.ndarray, kernel: np.ndarray, factors: tuple | None, rounds: int,
               copy: bool) -> None:
    channel_axis = -1 if image.ndim == 3 else None
    out = np.empty(image.shape, np.float32)
    k32 = kernel.astype(np.float32)
    calls = {
        "convtool": lambda: correlate2d(image, kernel, padding="same", border="reflect", device="cpu",
                                        channel_axis=channel_axis),
        "convtool out=": lambda: correlate2d(image, kernel, padding="same", border="reflect", device="cpu",
                                             channel_axis=channel_axis, out=out),
        "cv2.filter2D": lambda: cv2.filter2D(image, cv2.CV_32F, k32, borderType=REFLECT),
    }
    if factors is not None:
        calls["cv2.sepFilter2D"] = lambda: cv2.sepFilter2D(image, cv2.CV_32F, factors[0], factors[1], borderType=REFLECT)
    if copy:
        calls["np.copyto (existing array)"] = lambda: np.copyto(out, image, casting="unsafe")
    times = timed_rounds(calls, rounds)
    got = {name: statistics.median(values) for name, values in times.items()}
    best = min((k for k in got if k.startswith("cv2")), key=got.__getitem__)
    paired = statistics.median(a / b for a, b in zip(times[best], times["convtool"]))
    line = "  ".join(f"{k} {v * 1e3:.2f}" for k, v in got.items())
    extra = f"  out= at {100 * got['np.copyto (existing array)'] / got['convtool out=']:.0f}% of copyto" if copy else ""
    print(f"{label}: {line} ms  ratio {got[best] / got['convtool']:.2f} (paired {paired:.2f}), "
          f"out= {got[best] / got['convtool out=']:.2f}{extra}")


def small_cases(rounds: int, cases: list[str]) -> None:
    k32 = SOBEL.astype(np.float32)
    for size in (28, 64, 256, 512, 1024):
        if not wanted(f"small {size}^2", cases):
            continue
        image = np.random.default_rng(size).random((size, size), dtype=np.float32)
        repeat = max(1, 20_000 // size)

        def ours(image=image, repeat=repeat):
            for _ in range(repeat):
                correlate2d(image, SOBEL, padding="same", border="reflect", device="cpu")

        def theirs(image=image, repeat=repeat):
            for _ in range(repeat):
                cv2.filter2D(image, cv2.CV_32F, k32, borderType=REFLECT)

        got = medians({"convtool": ours, "cv2.filter2D": theirs}, rounds)
        print(f"small {size}^2 Sobel: convtool {got['convtool'] / repeat * 1e6:.1f} us, "
              f"cv2.filter2D {got['cv2.filter2D'] / repeat * 1e6:.1f} us, ratio {got['cv2.filter2D'] / got['convtool']:.2f}")


def stack_case(rounds: int) -> None:
    stack = np.random.default_rng(1).random((256, 28, 28), dtype=np.float32)
    k32 = SOBEL.astype(np.float32)
    got = medians({
        "convtool": lambda: correlate2d(stack, SOBEL, padding="same", border="reflect", device="cpu"),
        "cv2 loop": lambda: np.stack([cv2.filter2D(i, cv2.CV_32F, k32, borderType=REFLECT) for i in stack]),
        "scipy": lambda: ndimage.correlate(stack, SOBEL[None], output=np.float32, mode="mirror"),
    }, rounds * 3)
    print(f"256x28x28 stack Sobel: {'  '.join(f'{k} {v * 1e3:.3f}' for k, v in got.items())} ms  "
          f"vs scipy {got['scipy'] / got['convtool']:.2f}, vs cv2 loop {got['cv2 loop'] / got['convtool']:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=21)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--case", action="append", default=[], metavar="TEXT",
                        help="only cases whose name contains TEXT (repeatable), e.g. 'RGB u8, gauss31', stack, 'small 64'")
    args = parser.parse_args()
    set_threads(args.threads)
    cv2.setNumThreads(args.threads)
    large_cases(args.rounds, args.case)
    if wanted("256x28x28 stack", args.case):
        stack_case(args.rounds)
    small_cases(args.rounds, args.case)


if __name__ == "__main__":
    main()
