"""The correlation and pooling cases of ``convtool bench``: convtool against OpenCV and scipy.ndimage.

Every library gets the same thread count (:func:`timing.same_threads`), the same border (reflect
without repeating the edge: OpenCV's BORDER_REFLECT_101, scipy's "mirror") and the same float32-output
task. Each case also times the memory floor (a converting copy into a new array and into an existing
one) right after the libraries, in rounds of its own, so every figure can be read as a percentage of
what memory allows right now. convtool's call into an existing array (``out=``) is timed in the rounds
of the existing-array floor it is read against: in separate rounds the host's drift moved its percentage
between 77% and 105% (4096^2 Sobel, four runs), in the same rounds 91-96%. The floors are not in the
libraries' rounds: their four copies (two of them fresh 67 MB arrays, two on one thread) slowed
convtool's new-array calls there (4096^2 Gaussian 5x5 ratio 1.41-1.51 in five runs with them, 1.54-1.72
in two without; the standalone script, which has none, 1.58-1.74). A scipy.ndimage call
(single-threaded) that takes longer than ``LONG_CALL`` is also timed in rounds of its own: between rounds
of two-thread calls such calls left the second core idle for 0.4 s at a time, and every two-thread call
after them ran slower (4096^2 Gaussian 5x5: convtool 15 -> 18 ms, OpenCV 19-20 -> 24 ms, medians of 30
rounds in one process each).
OpenCV and scipy are optional anchors: a missing one is named and the run goes on.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from convtool import conv
from convtool.bench_harness.timing import (
    FLOOR_EXISTING,
    FLOOR_NEW,
    Rounds,
    Stats,
    copy_calls,
    fastest_floors,
    interleaved,
    paired_ratio,
)
from convtool.conv import separable

OUT_SUFFIX = ", out="
LONG_CALL = 0.05  # seconds from which a single-threaded anchor is timed in rounds of its own

SOBEL = np.array([[1.0, 0, -1], [2, 0, -2], [1, 0, -1]])
# the course's 9x9 centre-surround blob (filters/blob.toml, an integer LoG); rank 3 in exact arithmetic
BLOB = np.array([
    [0, 0, 3, 2, 2, 2, 3, 0, 0], [0, 2, 3, 5, 5, 5, 3, 2, 0], [3, 3, 5, 3, 0, 3, 5, 3, 3],
    [2, 5, 3, -12, -23, -12, 3, 5, 2], [2, 5, 0, -23, -40, -23, 0, 5, 2], [2, 5, 3, -12, -23, -12, 3, 5, 2],
    [3, 3, 5, 3, 0, 3, 5, 3, 3], [0, 2, 3, 5, 5, 5, 3, 2, 0], [0, 0, 3, 2, 2, 2, 3, 0, 0]], dtype=np.float64)


def gaussian(sigma: float, size: int) -> np.ndarray:
    """Normalised size x size Gaussian (rank 1)."""
    x = np.arange(size) - (size - 1) / 2
    g = np.exp(-0.5 * (x / sigma) ** 2)
    return np.outer(g, g) / g.sum() ** 2


KERNELS = {"sobel3": SOBEL, "gauss5": gaussian(1.0, 5), "blob9": BLOB, "gauss31": gaussian(5.0, 31)}
SIGMAS = {"gauss5": 1.0, "gauss31": 5.0}


@dataclass
class Timing:
    """One library call on one case: Mpix/s from the median and from the fastest of ``runs`` calls."""

    name: str
    mpix_s: float
    best_mpix_s: float
    runs: int
    note: str = ""
    floor_pct: float | None = None  # median Mpix/s as a percentage of the matching floor's

    @classmethod
    def of(cls, name: str, pixels: int, stats: Stats, note: str = "") -> "Timing":
        return cls(name, pixels / stats.median / 1e6, pixels / stats.minimum / 1e6, stats.runs, note)


@dataclass
class CaseResult:
    """All timings of one image x kernel case and convtool's ratios to the best anchors."""

    case: str
    chosen: str
    timings: list[Timing] = field(default_factory=list)
    stats: dict[str, Stats] = field(default_factory=dict)  # every call's rounds, for paired ratios
    max_diff: float | None = None  # max |convtool auto - OpenCV| / max |OpenCV|
    notes: list[str] = field(default_factory=list)

    def best(self, prefix: str) -> Timing | None:
        found = [t for t in self.timings if t.name.startswith(prefix)]
        return max(found, key=lambda t: t.mpix_s) if found else None

    def ratio(self, prefix: str, ours: str = "convtool auto") -> float | None:
        """Median-based ratio of ``ours`` to the best call whose name starts with ``prefix`` (> 1: ours faster)."""
        anchor = self.best(prefix)
        mine = next((t for t in self.timings if t.name == ours), None)
        return mine.mpix_s / anchor.mpix_s if anchor and mine else None

    def paired(self, prefix: str, ours: str = "convtool auto") -> float | None:
        """Like :meth:`ratio`, the median of the per-round ratios to that same best call (timed in the same rounds)."""
        anchor = self.best(prefix)
        if anchor is None or ours not in self.stats or anchor.name not in self.stats:
            return None
        return paired_ratio(self.stats[anchor.name], self.stats[ours])

    def add_floors(self) -> None:
        """Each timing's percentage of its floor: out= rows against the existing-array copy, others the new one."""
        floors = {t.name: t.mpix_s for t in self.timings if t.name.startswith("floor")}
        for timing in self.timings:
            floor = floors.get(FLOOR_EXISTING if timing.name.endswith(OUT_SUFFIX) else FLOOR_NEW)
            if floor and not timing.name.startswith("floor"):
                timing.floor_pct = 100.0 * timing.mpix_s / floor


def anchors() -> tuple[dict[str, Any], list[str]]:
    """The optional anchor modules that import, and a note for each one that does not."""
    found, skipped = {}, []
    try:
        import cv2

        found["cv2"] = cv2
    except ImportError:
        skipped.append("OpenCV (cv2.filter2D, cv2.sepFilter2D): not installed; pip install 'convtool[bench]'")
    try:
        from scipy import ndimage

        found["ndimage"] = ndimage
    except ImportError:
        skipped.append("scipy.ndimage (correlate, gaussian_filter): not installed; pip install 'convtool[bench]'")
    return found, skipped


def images(quick: bool) -> dict[str, np.ndarray]:
    """Benchmark images: float32 gray, uint8 RGB (H,W,3 as read), a batch of 28x28 digits-sized images."""
    rng = np.random.default_rng(0)
    gray, rgb, batch = ((512, 512), (240, 320), 16) if quick else ((4096, 4096), (1080, 1920), 256)
    return {
        f"{gray[0]}^2 gray f32": rng.random(gray, dtype=np.float32),
        f"{rgb[1]}x{rgb[0]} RGB u8": rng.integers(0, 256, rgb + (3,), dtype=np.uint8),
        f"{batch}x28x28 batch f32": rng.random((batch, 28, 28), dtype=np.float32),
    }


def _colour(image: np.ndarray) -> bool:
    """An H,W,3 image as read (every library gets it as it is), not a stack of gray images."""
    return image.ndim == 3 and image.shape[-1] == 3


def run_case(label: str, image: np.ndarray, kname: str, kernel: np.ndarray, found: dict, rounds: Rounds,
             backends: bool, threads: int) -> CaseResult:
    """Time convtool (auto and, with ``backends``, every applicable back-end) and OpenCV on one case in the
    same interleaved rounds, then the new-array floor, then convtool's ``out=`` call in the rounds of the
    existing-array floor it is read against, then long scipy calls.

    A colour image is given to every library as the interleaved H,W,3 array it was read as, and every
    library returns H,W,3 float32 (convtool with ``channel_axis=-1``): the same task for all.
    """
    colour = _colour(image)
    pixels = image.size
    choice = conv.choose_backend(image.shape[-1:] + image.shape[:-1] if colour else image.shape, kernel, device="cpu")
    result = CaseResult(f"{label}, {kname}", choice.backend)

    calls: dict[str, Callable[[], object]] = {}
    single: dict[str, Callable[[], object]] = {}  # long single-threaded calls, timed on their own
    notes: dict[str, str] = {}

    def timed(name: str, call: Callable[[], object], note: str = "") -> None:
        if not name.startswith("convtool"):
            try:  # an anchor that cannot run this case is noted, not fatal
                start = time.perf_counter()
                call()
            except Exception as exc:  # noqa: BLE001
                result.notes.append(f"{name} failed: {' '.join(str(exc).split())[:120]}")
                return
            if name.startswith("scipy") and time.perf_counter() - start > LONG_CALL:
                single[name] = call
                return
        calls[name] = call
        notes[name] = note

    def ours(backend: str, out: np.ndarray | None = None):
        return lambda: conv.correlate2d(image, kernel, padding="same", border="reflect", backend=backend, device="cpu",
                                        channel_axis=-1 if colour else None, out=out)

    timed("convtool auto", ours("auto"), choice.backend + (", H,W,3 read in place" if colour else ""))
    timed("convtool auto" + OUT_SUFFIX, ours("auto", np.empty(image.shape, dtype=np.float32)), "into an existing array")
    if backends:
        names = ["direct", "fft"] + (["separable"] if separable.factors(kernel) is not None else [])
        if kernel.size <= 25 and image.size <= 1 << 22:  # im2col's columns of a 4096^2 image: 600 MB
            names.append("im2col")
        for name in names:
            if name != choice.backend:
                timed(f"convtool {name}", ours(name))
    reference_out = None
    cv2 = found.get("cv2")
    if cv2 is not None:
        k32 = kernel.astype(np.float32)
        border = cv2.BORDER_REFLECT_101
        factors = separable.factors(kernel)
        column, row = (f.astype(np.float32) for f in factors) if factors is not None else (None, None)
        if image.ndim == 3 and not colour:  # a batch: one call per image, or the batch as channels
            channels = np.ascontiguousarray(np.moveaxis(image, 0, -1))
            loop = lambda: np.stack([cv2.filter2D(i, cv2.CV_32F, k32, borderType=border) for i in image])  # noqa: E731
            timed("cv2.filter2D loop", loop)
            timed("cv2.filter2D as channels", lambda: cv2.filter2D(channels, cv2.CV_32F, k32, borderType=border),
                  "N,H,W transposed to H,W,N beforehand")
            if factors is not None:
                timed("cv2.sepFilter2D as channels", lambda: cv2.sepFilter2D(channels, cv2.CV_32F, row, column,
                                                                            borderType=border))
            reference_out = loop()
        else:
            filter2d = lambda: cv2.filter2D(image, cv2.CV_32F, k32, borderType=border)  # noqa: E731
            timed("cv2.filter2D", filter2d)
            reference_out = filter2d()
            if factors is not None:
                timed("cv2.sepFilter2D", lambda: cv2.sepFilter2D(image, cv2.CV_32F, row, column, borderType=border))
    ndimage = found.get("ndimage")
    if ndimage is not None:
        k3 = kernel[:, :, None] if colour else kernel[None] if image.ndim == 3 else kernel
        axes = (0, 1) if colour else (-2, -1)
        if kname in SIGMAS:
            radius = kernel.shape[0] // 2
            timed("scipy gaussian_filter", lambda: ndimage.gaussian_filter(
                image, SIGMAS[kname], axes=axes, output=np.float32, mode="mirror", truncate=radius / SIGMAS[kname]))
        if kname not in SIGMAS or kernel.shape[0] <= 5:
            timed("scipy correlate", lambda: ndimage.correlate(image, k3, output=np.float32, mode="mirror"))
    into = "convtool auto" + OUT_SUFFIX  # timed beside the existing-array floor it is read against
    floors = copy_calls(image, threads)
    existing = {name: call for name, call in floors.items() if name.startswith(FLOOR_EXISTING)}
    timed_rounds = interleaved({name: call for name, call in calls.items() if name != into}, rounds)
    timed_rounds.update(interleaved({name: call for name, call in floors.items() if name not in existing}, rounds))
    timed_rounds.update(interleaved({into: calls[into], **existing}, rounds))
    if single:  # single-threaded: no warm-up drift to wait out (the check above was its warm-up call)
        timed_rounds.update(interleaved(single, dataclasses.replace(rounds, warmup=0.0)))
    for name, (stats, variant) in fastest_floors(timed_rounds).items():
        result.timings.append(Timing.of(name, pixels, stats, notes.get(name, variant)))
        result.stats[name] = stats
    result.add_floors()
    if reference_out is not None:
        ours_out = ours("auto")()
        theirs = reference_out
        scale = max(float(np.abs(theirs).max()), 1e-12)
        result.max_diff = float(np.abs(ours_out - theirs).max()) / scale
    return result


def selection(only: tuple[str, ...]) -> Callable[[str], bool]:
    """Whether a case name is wanted: it contains one of the texts ``only`` (case-insensitive), or ``only`` is empty."""
    texts = [text.lower() for text in only]
    return lambda name: not texts or any(text in name.lower() for text in texts)


def pooling(found: dict, quick: bool, rounds: Rounds,
            wanted: Callable[[str], bool] = selection(())) -> list[CaseResult]:
    """2x2 max and average pooling on the gray image against NumPy (and OpenCV's area resize for avg)."""
    size = 512 if quick else 4096
    image = np.random.default_rng(1).random((size, size), dtype=np.float32)
    results = []
    for kind in ("max", "avg"):
        if not wanted(f"{size}^2 gray f32, pool 2x2 {kind}"):
            continue
        result = CaseResult(f"{size}^2 gray f32, pool 2x2 {kind}", "direct")
        for name, stats in interleaved(dict(_pool_calls(image, kind, found)), rounds).items():
            result.timings.append(Timing.of(name, image.size, stats))
        results.append(result)
    return results


def _pool_calls(image: np.ndarray, kind: str, found: dict) -> list[tuple[str, Callable[[], object]]]:
    h, w = image.shape
    blocks = lambda: image.reshape(h // 2, 2, w // 2, 2)  # noqa: E731
    calls = [("convtool auto", lambda: conv.pool2d(image, 2, kind=kind, device="cpu")),
             ("numpy reshape", (lambda: blocks().max(axis=(1, 3))) if kind == "max" else (lambda: blocks().mean(axis=(1, 3))))]
    cv2 = found.get("cv2")
    if cv2 is not None and kind == "avg":
        calls.append(("cv2.resize INTER_AREA", lambda: cv2.resize(image, (w // 2, h // 2), interpolation=cv2.INTER_AREA)))
    return calls
