"""Timing convtool's back-ends against OpenCV and scipy.ndimage in one run (``convtool bench``).

Every library gets the same thread count and the same float32-output task; each timing is the median
of several calls after a warm-up call. OpenCV and scipy are optional anchors: a missing one is named
in ``skipped`` and the run goes on. Nothing here prints; the CLI formats the results.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from convtool import conv
from convtool.conv import cpu, separable

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
    """One library call on one case: Mpix/s from the median of ``runs`` calls."""

    name: str
    mpix_s: float
    runs: int
    note: str = ""


@dataclass
class CaseResult:
    """All timings of one image x kernel case and convtool's ratios to the best anchors."""

    case: str
    chosen: str
    timings: list[Timing] = field(default_factory=list)
    max_diff: float | None = None  # max |convtool auto - OpenCV| / max |OpenCV|
    notes: list[str] = field(default_factory=list)

    def best(self, prefix: str) -> Timing | None:
        found = [t for t in self.timings if t.name.startswith(prefix)]
        return max(found, key=lambda t: t.mpix_s) if found else None

    def ratio(self, prefix: str) -> float | None:
        anchor, auto = self.best(prefix), self.best("convtool auto")
        return auto.mpix_s / anchor.mpix_s if anchor and auto else None


def interleaved(calls: dict[str, Callable[[], object]], repeat: int, budget: float) -> dict[str, tuple[float, int]]:
    """Median seconds and run count of each call, timed round-robin so load changes hit all alike.

    Each call is warmed up once; rounds stop after ``repeat`` or once 3 rounds took ``budget`` s per call.
    """
    for call in calls.values():
        call()
    times: dict[str, list[float]] = {name: [] for name in calls}
    start = time.perf_counter()
    for round_ in range(repeat):
        if round_ >= 3 and time.perf_counter() - start > budget * len(calls):
            break
        for name, call in calls.items():
            t0 = time.perf_counter()
            call()
            times[name].append(time.perf_counter() - t0)
    return {name: (statistics.median(values), len(values)) for name, values in times.items()}


def anchors() -> tuple[dict[str, object], list[str]]:
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


def _planar(image: np.ndarray) -> np.ndarray:
    """convtool filters (..., H, W): an H,W,3 image becomes a contiguous 3,H,W stack."""
    return np.ascontiguousarray(np.moveaxis(image, -1, 0)) if image.ndim == 3 and image.shape[-1] == 3 else image


def _pixels(image: np.ndarray) -> int:
    return image.size


def run_case(label: str, image: np.ndarray, kname: str, kernel: np.ndarray, found: dict, repeat: int,
             budget: float, backends: bool) -> CaseResult:
    """Time convtool (auto and, with ``backends``, every applicable back-end) and the anchors on one case."""
    planes = _planar(image)
    pixels = _pixels(image)
    choice = conv.choose_backend(planes.shape, kernel, device="cpu")
    result = CaseResult(f"{label}, {kname}", choice.backend)

    calls: dict[str, Callable[[], object]] = {}
    notes: dict[str, str] = {}

    def timed(name: str, call: Callable[[], object], note: str = "") -> None:
        if not name.startswith("convtool"):
            try:  # an anchor that cannot run this case is noted, not fatal
                call()
            except Exception as exc:  # noqa: BLE001
                result.notes.append(f"{name} failed: {' '.join(str(exc).split())[:120]}")
                return
        calls[name] = call
        notes[name] = note

    def ours(backend: str):
        return lambda: conv.correlate2d(planes, kernel, padding="same", border="reflect", backend=backend, device="cpu")

    timed("convtool auto", ours("auto"), choice.backend)
    if backends:
        names = ["direct", "fft"] + (["separable"] if separable.factors(kernel) is not None else [])
        if kernel.size <= 25:
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
        if planes is image and image.ndim == 3:  # a batch: one call per image, or the batch as channels
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
            reference_out = _planar(filter2d())
            if factors is not None:
                timed("cv2.sepFilter2D", lambda: cv2.sepFilter2D(image, cv2.CV_32F, row, column, borderType=border))
    ndimage = found.get("ndimage")
    if ndimage is not None:
        k3 = kernel[None] if planes.ndim == 3 else kernel
        if kname in SIGMAS:
            radius = kernel.shape[0] // 2
            timed("scipy gaussian_filter", lambda: ndimage.gaussian_filter(
                planes, SIGMAS[kname], axes=(-2, -1), output=np.float32, mode="mirror", truncate=radius / SIGMAS[kname]))
        if kname not in SIGMAS or kernel.shape[0] <= 5:
            timed("scipy correlate", lambda: ndimage.correlate(planes, k3, output=np.float32, mode="mirror"))
    for name, (seconds, runs) in interleaved(calls, repeat, budget).items():
        result.timings.append(Timing(name, pixels / seconds / 1e6, runs, notes[name]))
    if reference_out is not None:
        ours_out = ours("auto")()
        theirs = reference_out
        scale = max(float(np.abs(theirs).max()), 1e-12)
        result.max_diff = float(np.abs(ours_out - theirs).max()) / scale
    return result


def pooling(found: dict, quick: bool, repeat: int, budget: float) -> list[CaseResult]:
    """2x2 max and average pooling on the gray image against NumPy (and OpenCV's area resize for avg)."""
    size = 512 if quick else 4096
    image = np.random.default_rng(1).random((size, size), dtype=np.float32)
    results = []
    for kind in ("max", "avg"):
        result = CaseResult(f"{size}^2 gray f32, pool 2x2 {kind}", "direct")
        for name, (seconds, runs) in interleaved(dict(_pool_calls(image, kind, found)), repeat, budget).items():
            result.timings.append(Timing(name, image.size / seconds / 1e6, runs))
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


JIT_SCRIPT = """
import time, numpy as np
t0 = time.perf_counter()
from convtool.conv import correlate2d
image = np.random.default_rng(0).random((512, 512), dtype=np.float32)
for kernel in ({kernels}):
    correlate2d(image, np.array(kernel), padding="same", border="reflect", device="cpu", backend="{backend}")
print(time.perf_counter() - t0)
"""


HELP_SCRIPT = "import sys; from convtool.cli.main import main; sys.argv = ['convtool', '--help']; main()"


def jit_times(kernel_names: tuple[str, ...] = ("sobel3", "gauss5", "blob9")) -> dict[str, float]:
    """First-call cost in fresh processes on a 512x512 image.

    ``direct``/``separable`` with an empty Numba cache (compile), then with that cache (load); ``auto``,
    which uses NumPy for such small jobs while Numba is not loaded; and ``convtool --help``.
    """
    kernels = ", ".join(repr(KERNELS[name].tolist()) for name in kernel_names)
    out = {}
    with tempfile.TemporaryDirectory(prefix="convtool-jit-") as cache:
        env = dict(os.environ, NUMBA_CACHE_DIR=cache)
        runs = [("Numba direct+separable, cold (empty cache)", "direct"), ("Numba direct+separable, warm (cached)", "direct"),
                ("auto (NumPy while Numba is not loaded)", "auto")]
        for label, backend in runs:
            script = JIT_SCRIPT.format(kernels=kernels, backend=backend)
            if backend == "direct":  # compile the separable kernel too
                script += "correlate2d(image, np.ones((3, 3)), backend='separable', device='cpu')\n"
            t0 = time.perf_counter()
            done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, check=True)
            out[f"{label}: whole process"] = time.perf_counter() - t0
            out[f"{label}: import + calls"] = float(done.stdout.split()[-1])
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-c", HELP_SCRIPT], capture_output=True, check=False)
    out["convtool --help: whole process"] = time.perf_counter() - t0
    return out


def run(*, quick: bool = False, threads: int = 2, repeat: int = 5, budget: float = 3.0, backends: bool = True,
        jit: bool = True) -> dict:
    """The whole benchmark as a JSON-ready dict: cases, pooling, JIT times, skipped anchors."""
    found, skipped = anchors()
    previous = cpu.THREADS
    cpu.set_threads(threads)
    if "cv2" in found:
        found["cv2"].setNumThreads(threads)
    for variable in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ.setdefault(variable, str(threads))
    try:
        cases = [run_case(label, image, kname, kernel, found, repeat, budget, backends)
                 for label, image in images(quick).items() for kname, kernel in KERNELS.items()
                 if "batch" not in label or kname == "sobel3"]
        pools = pooling(found, quick, repeat, budget)
    finally:
        cpu.set_threads(previous)
    results = {
        "threads": threads,
        "quick": quick,
        "skipped": skipped + (["scipy.ndimage is single-threaded: it runs on 1 thread"] if "ndimage" in found else []),
        "cases": [_case_dict(c) for c in cases],
        "pooling": [_case_dict(c) for c in pools],
    }
    if jit and not quick:
        results["jit_seconds"] = jit_times()
    elif jit:
        results["skipped"].append("JIT cold/warm process timings: skipped in --quick")
    return results


def _case_dict(case: CaseResult) -> dict:
    return {"case": case.case, "chosen": case.chosen,
            "timings": [t.__dict__ for t in case.timings],
            "ratio_to_best_opencv": case.ratio("cv2"), "ratio_to_best_scipy": case.ratio("scipy"),
            "ratio_to_numpy": case.ratio("numpy"), "max_rel_diff_vs_opencv": case.max_diff, "notes": case.notes}


def dumps(results: dict) -> str:
    """The results as indented JSON."""
    return json.dumps(results, indent=2)
