"""Filter many image files: one plain job per file (decode -> filter -> encode), inline or in worker processes.

:func:`run_job` is the whole work of one file and writes its output to a temporary name; it runs the
same in the calling process and in a worker (or a Ray actor), so outputs are identical either way.
:func:`plan_filtering` chooses where jobs run and whether Numba is worth loading for the batch;
:func:`filter_files` runs the jobs and publishes each output under its real name in input order, so a
stop (Ctrl-C, SIGTERM, a dead worker) leaves complete outputs and no temporary files.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterator, Sequence

import numpy as np

from convtool.errors import ConvtoolError, OutputError, UsageError
from convtool.filtering import FilterSettings, chain_out_scale, filter_pixels, read_only, scale_for_output
from convtool.heap import keep_freed_memory

if TYPE_CHECKING:
    from convtool.io.read import ImageArray

QUALITY = 90  # JPEG and WebP quality unless asked otherwise
PROCESS_MIN_SECONDS = 0.15  # estimated work below which worker processes (about 20 ms to fork) cost more than they save
PIXEL_SECONDS = 12e-9  # decode + scale + encode per pixel and channel, measured on 640x480 photos in one worker
# Filter multiply-adds per second on one core with both cores busy (a rank-1 kernel counted as its two passes),
# 640x480 RGB in a worker: NumPy's rank-1 passes 1.2e9 (Sobel 7.6 ms, 5x5 Gaussian 5.5 ms), its tap-by-tap direct
# path 0.75e9 (9x9 blob, 65 taps: 80 ms: memory-bound, two workers share the bandwidth), Numba 4e9 or more (Sobel
# 2.2 ms, Gaussian 0.8 ms, blob 2.7 ms).
NUMPY_RATE, NUMPY_DIRECT_RATE, NUMBA_RATE = 1.2e9, 0.75e9, 4e9
# Loading the Numba core costs a process about 0.85 s while the other core idles (import 0.43 s, conv's CPU kernels 0.12 s,
# the batch's kernels from the cache 0.3 s; Numba's BLAS probe skipped). It pays when NumPy would take longer than
# that more: 200 photos give each of 2 workers 0.5 s more with NumPy for Sobel or the 5x5 Gaussian (NumPy: 200
# Sobel 2.7-3.3 s against 2.9-3.4 s with Numba), 6.5 s for the blob (Numba); one 4000x3000 RGB Gaussian sigma 3
# 0.8 s (NumPy: 0.96 s in all against 1.55-1.75 s loading Numba, and nothing to compile on an empty cache).
NUMBA_LOAD_SECONDS = 0.85
# Compiling the kernels one filter needs into an empty Numba cache (measured: a 4000x3000 RGB Gaussian's first run
# 13.5 s over the warm one; uint8 separable large planes alone 11.6 s). On a cold cache NumPy runs instead unless it
# would cost more than this; `filter --warm` compiles every kernel once.
COMPILE_SECONDS = 12.0


@dataclass(frozen=True)
class Encoding:
    """How outputs are encoded: PNG compression level 0-9, JPEG/WebP quality 1-100, PNG bit depth (None: input's)."""

    png_compression: int = 1
    quality: int = QUALITY
    depth: int | None = None
    out_scale: str | None = None  # None: the kernels' default (normalize for derivatives)


@dataclass(frozen=True)
class FileJob:
    """One input file, its output name and the temporary file its output is written to first."""

    path: Path
    target: Path
    temp: Path
    settings: FilterSettings
    encoding: Encoding
    gray: bool = False
    threads: int = 1  # threads for encoding one large image (the filter's threads are the core's)


@dataclass
class FileResult:
    """What became of one job: seconds per stage, the back-ends that ran, or the error message."""

    job: FileJob
    seconds: dict[str, float] = field(default_factory=dict)  # decode, filter, encode
    steps: list[tuple[str, str, str, str]] = field(default_factory=list)  # (step, back-end, device, reason)
    error: str | None = None
    exit_code: int = 1  # of the error: 2 for a usage problem (a kernel larger than the padded image, ...)
    limit: str | None = None  # the limit a ResourceError met ("pixels"), so the CLI can name its flag


@dataclass(frozen=True)
class FilterPlan:
    """Where jobs run (``inline`` or ``processes``), whether Numba is loaded for them, and why.

    ``backend`` is the back-end the jobs run with (:func:`planned_settings`): the caller's, or ``numpy``
    when Numba's cache is cold and compiling would cost more than NumPy does (``why_backend`` says so).
    """

    mode: str
    workers: int
    numba: bool
    reason: str
    sample: tuple[int, ...] | None = None  # H,W(,C) of the first image: the shape Numba's kernels are warmed on
    backend: str | None = None  # None: the settings' own
    why_backend: str | None = None
    hint: str | None = None  # for the user after the run (how to make the next one faster), even without -v

    def describe(self) -> list[str]:
        where = "in this process" if self.mode == "inline" else f"in {self.workers} worker processes"
        return [f"files: filtered {where}: {self.reason}"]


def plan_filtering(files: Sequence[Path], settings: FilterSettings, *, workers: int | None = None,
                   gray: bool = False) -> FilterPlan:
    """Inline or processes from the number and size of the images; Numba when the batch's work pays for loading
    it and, if its cache is cold, for compiling its kernels too (otherwise NumPy this run)."""
    from convtool import conv
    from convtool.workers import default_workers

    width, height, bands, dtype = _first_image_header(files)
    channels = 1 if gray or bands < 3 else 3  # as read: alpha is kept aside
    values = width * height * channels  # per image
    taps = [_taps(m) for k in settings.kernels for m in k.matrices]
    per_image = values * max(sum(count for count, _ in taps), 1)  # multiply-adds
    numpy_image = values * sum(count / (NUMPY_RATE if rank1 else NUMPY_DIRECT_RATE) for count, rank1 in taps)
    numba_image = per_image / NUMBA_RATE  # seconds of filtering per image on one core
    cores = default_workers()
    pixel_seconds = len(files) * values * PIXEL_SECONDS
    seconds = pixel_seconds + len(files) * numpy_image  # at most: Numba, if loaded, is faster
    spread = len(files) > 1 and cores > 1 and sys.platform.startswith("linux") and seconds >= PROCESS_MIN_SECONDS
    processes = min(workers or cores, len(files)) if spread else 1
    extra = len(files) / processes * (numpy_image - numba_image)  # NumPy's extra seconds per process
    numba, why_numba = _numba_pays(conv.numba_loaded() and not spread, extra, per_image, len(files))
    sample = (height, width) if channels == 1 else (height, width, channels)
    backend = why_backend = hint = None
    if _auto_on_cpu(settings):
        from convtool.filtering import jit_cached

        if numba and not jit_cached(sample, dtype, settings):
            numba, why_numba = _on_cold_cache(extra, why_numba)
            if not numba:
                hint = (f"Numba's cache was cold, so NumPy ran (about {extra:.0f} s slower here than the Numba "
                        "core); `convtool filter --warm` compiles its kernels once")
        if not numba:  # every job, however large its image: the core alone would load Numba from 50 M on
            backend, why_backend = "numpy", why_numba
    seconds = pixel_seconds + len(files) * (numba_image if numba else numpy_image)
    if spread:
        return FilterPlan("processes", processes, numba, f"{len(files)} images of {width}x{height}, about "
                                                         f"{seconds:.1f} s of work: one per core; {why_numba}", sample,
                          backend, why_backend, hint)
    why = "one image" if len(files) == 1 else ("one core" if cores == 1 else f"about {seconds:.2f} s of work")
    return FilterPlan("inline", 1, numba, f"{why}; {why_numba}", sample, backend, why_backend, hint)


def _taps(matrix: np.ndarray) -> tuple[int, bool]:
    """(multiply-adds per output value, rank 1): non-zero taps, or a rank-1 kernel's two passes (19x19 Gaussian: 38)."""
    from convtool.conv import separable

    nonzero = int(np.count_nonzero(matrix))
    found = separable.factors(matrix)
    if found is None:
        return nonzero, False
    return min(nonzero, sum(int(np.count_nonzero(f)) for f in found)), True


def _auto_on_cpu(settings: FilterSettings) -> bool:
    """Whether the back-end is the plan's to choose: ``auto`` on the CPU (one asked for by name runs as asked)."""
    from convtool.conv.device import resolve_device

    return settings.backend == "auto" and resolve_device(settings.device)[0] == "cpu"


def _on_cold_cache(extra: float, why_numba: str) -> tuple[bool, str]:
    """(numba, why) when Numba's cache lacks the batch's kernels: NumPy this run unless its ``extra`` seconds per
    process are more than compiling the kernels costs."""
    if extra >= COMPILE_SECONDS:
        return True, (f"{why_numba}; Numba's cache is cold: its kernels are compiled first (about "
                      f"{COMPILE_SECONDS:.0f} s, once; NumPy would take about {extra:.0f} s longer)")
    return False, (f"Numba cache cold: NumPy this run (compiling its kernels would take about "
                   f"{COMPILE_SECONDS:.0f} s, NumPy about {extra:.1f} s more); `convtool filter --warm` compiles "
                   "them once")


def planned_settings(settings: FilterSettings, plan: FilterPlan) -> FilterSettings:
    """``settings`` with the back-end ``plan`` chose for this run's correlations (NumPy when Numba does not pay
    or its cache is cold)."""
    if plan.backend is None:
        return settings
    return dataclasses.replace(settings, backend=plan.backend, why_backend=plan.why_backend)


def _numba_pays(loaded: bool, extra: float, per_image: float, count: int) -> tuple[bool, str]:
    """Whether each process should load the Numba core, NumPy taking ``extra`` seconds longer in each, and why."""
    sizes = f"{count} image(s) of about {per_image / 1e6:,.0f} M multiply-adds"
    if loaded:
        return True, f"Numba already loaded in this process; {sizes}"
    if extra >= NUMBA_LOAD_SECONDS:
        return True, (f"Numba loaded: {sizes}; NumPy would take about {extra:.1f} s more per process, more than "
                      f"loading Numba costs (about {NUMBA_LOAD_SECONDS} s)")
    return False, (f"NumPy: {sizes}; about {extra:.1f} s more per process than the Numba core, less than "
                   f"loading it costs (about {NUMBA_LOAD_SECONDS} s)")


def _first_image_header(files: Sequence[Path]) -> tuple[int, int, int, type]:
    """(width, height, bands, dtype as read) of the first readable image header; (1, 1, 1, uint8) if none."""
    from PIL import Image

    for file in files[:8]:
        try:
            with Image.open(file) as image:
                wide = image.mode.startswith("I") or image.mode == "F"  # 16-bit and float images are read as float32
                return image.width, image.height, len(image.getbands()), np.float32 if wide else np.uint8
        except Exception:  # noqa: BLE001 - a bad file is reported by its job; try the next one
            continue
    return 1, 1, 1, np.uint8


def run_job(job: FileJob, read: Callable[[], tuple[ImageArray | BaseException, float]] | None = None) -> FileResult:
    """Read, filter, scale, encode and write one file to ``job.temp``; errors become ``result.error``.

    ``read``, if given, returns the job's image (or the exception reading it raised) and the seconds it
    took, read ahead by :func:`_read_ahead`.
    """
    from convtool.io.read import read_image

    result = FileResult(job)
    try:
        started = time.perf_counter()
        if read is None:
            image = read_image(job.path, gray=job.gray, native=True)
        else:
            got, seconds = read()
            if isinstance(got, BaseException):
                raise got
            image, started = got, started - seconds
        decoded = time.perf_counter()
        steps: list = []
        values = filter_pixels(image.pixels, job.settings, steps)
        result.steps = [(step, c.backend, c.device, c.reason) for step, c in steps]
        output = _output_values(values, image, job)
        filtered = time.perf_counter()
        _encode_to(job.temp, output, job)
        result.seconds = {"decode": decoded - started, "filter": filtered - decoded,
                          "encode": time.perf_counter() - filtered}
    except ConvtoolError as exc:
        result.error, result.exit_code = str(exc), exc.exit_code
        result.limit = getattr(exc, "limit", None)
    except MemoryError:
        result.error = f"{job.path}: out of memory while filtering; try a smaller image"
    except OSError as exc:  # writing the temporary: a full disk, a quota, ...
        from convtool.io.publish import describe

        result.error = describe(job.target, exc)
    return result


def _output_values(values: np.ndarray, image, job: FileJob) -> np.ndarray:
    """float32 H,W(,C) values for .npy/.tif; otherwise integer pixels (uint8/uint16) with alpha stacked on.

    ``values`` (H,W or H,W,C float32, this job's own) are scaled and rounded in place, then cast in one pass.
    """
    suffix = job.target.suffix.lower()
    if suffix in (".npy", ".tif", ".tiff"):
        return values
    enc = job.encoding
    bits = enc.depth or (16 if image.bit_depth == 16 and values.ndim == 2 and suffix == ".png" else 8)
    if bits == 16 and (values.ndim == 3 or suffix != ".png"):
        raise OutputError("16-bit output is for gray PNG images; use `gray`, 8-bit PNG, .tif or .npy for colour")
    scaled = scale_for_output(values, enc.out_scale or chain_out_scale(job.settings.kernels), image.max_value,
                              2.0**bits - 1, out=values)
    np.rint(scaled, out=scaled)
    height, width = scaled.shape[:2]
    channels = scaled.shape[2] if scaled.ndim == 3 else 1
    alpha = _resize_alpha(image.alpha, (height, width))
    alpha = None if bits != 8 or suffix in (".jpg", ".jpeg") else alpha
    dtype = np.uint16 if bits == 16 else np.uint8
    if alpha is None:
        return scaled.astype(dtype)
    data = np.empty((height, width, channels + 1), dtype=dtype)
    np.copyto(data[..., :channels], scaled.reshape(height, width, channels), casting="unsafe")
    data[..., channels] = np.rint(alpha) if alpha.dtype != np.uint8 else alpha
    return data


def _encode_to(temp: Path, output: np.ndarray, job: FileJob) -> None:
    suffix = job.target.suffix.lower()
    if suffix == ".npy":
        with open(temp, "wb") as handle:
            np.save(handle, np.asarray(output, dtype=np.float32), allow_pickle=False)
    elif suffix in (".tif", ".tiff"):
        from convtool.io.tiff import write_float_tiff

        write_float_tiff(temp, np.asarray(output, dtype=np.float32))
    elif suffix == ".png":
        from convtool.png import encode_png

        temp.write_bytes(encode_png(output, level=job.encoding.png_compression, threads=job.threads))
    elif suffix in (".jpg", ".jpeg", ".webp", ".bmp"):
        from PIL import Image

        fmt = {".jpg": "JPEG", ".jpeg": "JPEG", ".webp": "WEBP", ".bmp": "BMP"}[suffix]
        options = {"quality": job.encoding.quality} if fmt in ("JPEG", "WEBP") else {}
        Image.fromarray(output).save(temp, format=fmt, **options)
    else:
        raise OutputError(f"{job.target}: unknown output type {suffix!r}; use .png, .tif, .npy, .jpg, .webp or .bmp")


def _resize_alpha(alpha: np.ndarray | None, shape: tuple[int, int]) -> np.ndarray | None:
    if alpha is None or alpha.shape == shape:
        return alpha
    from PIL import Image

    resized = Image.fromarray(alpha.astype(np.uint8)).resize((shape[1], shape[0]), Image.Resampling.BOX)
    return np.asarray(resized, dtype=np.float32)


def make_jobs(files: Sequence[Path], targets: Sequence[Path], settings: FilterSettings, encoding: Encoding, *,
              gray: bool = False, threads: int = 1) -> list[FileJob]:
    """One job per file, each with a fresh temporary file beside its target (removed by filter_files)."""
    from convtool.io.publish import reserve

    jobs = []
    try:
        for path, target in zip(files, targets, strict=False):
            temp = reserve(target)  # registered: removed on SIGINT/SIGTERM/SIGHUP too
            jobs.append(FileJob(Path(path), Path(target), temp, settings, encoding, gray, threads))
    except BaseException:
        remove_temps(jobs)
        raise
    return jobs


def remove_temps(jobs: Sequence[FileJob]) -> None:
    from convtool.io.cleanup import discard

    for job in jobs:
        discard(job.temp)


def publish(job: FileJob, *, overwrite: bool) -> None:
    """Give the finished temporary file its real name; without ``overwrite`` an existing file is never replaced."""
    from convtool.io.publish import publish_reserved

    publish_reserved(job.temp, job.target, overwrite=overwrite)


def filter_files(jobs: Sequence[FileJob], plan: FilterPlan, *, overwrite: bool = False) -> Iterator[FileResult]:
    """Run every job as ``plan`` says and publish its output, yielding results in input order.

    Temporary files of jobs that did not finish are removed however the run ends.
    """
    try:
        if plan.mode == "processes":
            yield from _in_processes(jobs, plan, overwrite)
        else:
            read = None
            if plan.numba and jobs:  # decode the first image (Pillow releases the GIL) while Numba loads
                read = _read_ahead(jobs[0], functools.partial(_load_numba, jobs[0].settings, plan.sample))
            for index, job in enumerate(jobs):
                yield _finish(run_job(job, read if index == 0 else None), overwrite)
    finally:
        remove_temps(jobs)


def _read_ahead(job: FileJob, meanwhile: Callable[[], None]) -> Callable[[], tuple[ImageArray | BaseException, float]]:
    """Read ``job``'s image on a thread while ``meanwhile()`` runs here; returns the :func:`run_job` ``read``."""
    import threading

    from convtool.io.read import read_image

    box: list = [None, 0.0]

    def read() -> None:
        started = time.perf_counter()
        try:
            box[0] = read_image(job.path, gray=job.gray, native=True)
        except Exception as exc:  # noqa: BLE001 - handed to run_job, which reports it as it would its own
            box[0] = exc
        box[1] = time.perf_counter() - started

    thread = threading.Thread(target=read, name="convtool-read", daemon=True)
    thread.start()
    try:
        meanwhile()
    finally:
        thread.join()
    return lambda: (box[0], box[1])


def _finish(result: FileResult, overwrite: bool) -> FileResult:
    if result.error is None:
        try:
            publish(result.job, overwrite=overwrite)
        except ConvtoolError as exc:
            result.error = str(exc)
    return result


def _in_processes(jobs: Sequence[FileJob], plan: FilterPlan, overwrite: bool) -> Iterator[FileResult]:
    """Jobs in worker processes. With Numba, forked workers inherit the core loaded and warmed once here (one
    load instead of one per worker: the same wall time on idle cores, less CPU, and a cold JIT cache compiles
    each kernel once); spawned workers load it themselves."""
    from convtool import conv
    from convtool.workers import Lost, WorkerPool, forks, ordered

    numba_for = jobs[0].settings if plan.numba and jobs else None
    if numba_for is not None and forks():
        threads = conv.set_threads(1)  # no thread pool is started in a process about to fork
        try:
            _load_numba(numba_for, plan.sample)
        finally:
            conv.set_threads(threads)
        numba_for = None
    setup = functools.partial(_worker_setup, numba_for, plan.sample)
    with WorkerPool(plan.workers, initializer=setup) as pool:
        for job, (ok, value) in zip(jobs, ordered(pool, run_job, jobs, in_flight=2 * plan.workers), strict=False):
            if ok:
                yield _finish(value, overwrite)
            elif isinstance(value, Lost):
                yield FileResult(job, error=f"{job.path}: {value.reason}")
            else:
                yield FileResult(job, error=f"{job.path}: could not be filtered ({value.kind}: {value.message})")


def _worker_setup(numba_for: FilterSettings | None, sample: tuple[int, ...] | None) -> None:
    """Worker set-up: one Numba thread (the workers already fill the cores), freed memory kept for the next
    image, and with ``numba_for`` the Numba core loaded and its kernels for these settings warmed."""
    os.environ["NUMBA_NUM_THREADS"] = "1"
    if "convtool.conv.cpu" in sys.modules:
        sys.modules["convtool.conv.cpu"].set_threads(1)
    keep_freed_memory()  # each image's arrays reuse the last one's pages: 9 -> 5 ms of a 640x480 Sobel
    if numba_for is not None:
        _load_numba(numba_for, sample)


def _load_numba(settings: FilterSettings, sample: tuple[int, ...] | None) -> None:
    """Load the Numba core now (so the cost model picks its back-ends for every image of the batch) and warm
    the kernels these settings use on an image as wide as ``sample``, loading them from Numba's cache.

    The warm-up image has just enough rows for the core's row path (what images this size take), not all of them.
    """
    from convtool.conv import cpu  # its import skips Numba's scipy BLAS probe (0.3-0.6 s)

    if sample is not None:
        rows = min(sample[0], cpu.FLAT_PIXELS // max(sample[1], 1) + 64)
        try:
            filter_pixels(np.zeros((rows,) + tuple(sample[1:]), dtype=np.uint8), settings)
        except ConvtoolError:  # e.g. a kernel larger than the image: its job reports it
            pass


# What `filter --warm` runs so that every CPU kernel `auto` can pick is in Numba's cache: 8-bit pixels and float
# values (a chain's second kernel reads floats), small planes (padded whole: up to conv/cpu.py's FLAT_PIXELS; a
# small gray image's direct kernel reads it in place) and large ones (a ring of rows; a large float32 gray plane's
# direct kernel of few taps is read in place on threads, from conv/cpu.py's SERIAL_WORK), separable and direct
# kernels, and pooling. Shapes are just past each limit: gray in place; 48x192 interleaved samples whole;
# 400x1200 rows; 1000x1000 in place on threads.
WARM_SHAPES = ((48, 64), (48, 64, 3), (400, 400, 3), (1000, 1000))
WARM_KERNELS = (("separable", np.outer([1.0, 2.0, 1.0], [1.0, 0.0, -1.0])), ("direct", np.eye(3)))


def warm_numba() -> list[str]:
    """Load every CPU kernel of the Numba core from Numba's cache, compiling those that are not in it (once
    per install or change to the core: about a minute), so later runs can pick the fast core from the first image.

    Returns what ran, one line per kernel kind (the kernels themselves take milliseconds here).
    """
    from convtool import conv

    ran = []
    for dtype in (np.uint8, np.float32):
        for shape in WARM_SHAPES:
            image = read_only(np.zeros(shape, dtype=dtype))  # as filter_pixels gives the core its images
            for backend, kernel in WARM_KERNELS:
                started = time.perf_counter()
                conv.correlate2d(image, kernel, padding="same", border="reflect", backend=backend, device="cpu",
                                 channel_axis=-1 if len(shape) == 3 else None)
                ran.append(f"{backend} {np.dtype(dtype).name} {'x'.join(map(str, shape))}: "
                           f"{time.perf_counter() - started:.1f} s")
    started = time.perf_counter()
    conv.pool2d(np.zeros(WARM_SHAPES[0][:2], dtype=np.float32), 2, backend="direct", device="cpu")
    ran.append(f"pool float32: {time.perf_counter() - started:.1f} s")
    return ran


def check_settings(encoding: Encoding) -> None:
    if not 0 <= encoding.png_compression <= 9:
        raise UsageError(f"PNG compression {encoding.png_compression}: use 0 (fastest) to 9 (smallest)")
    if not 1 <= encoding.quality <= 100:
        raise UsageError(f"quality {encoding.quality}: use 1 to 100")


def per_image_split(results: Sequence[FileResult]) -> str:
    """'decode X ms, filter Y ms, encode Z ms per image' over the finished results."""
    done = [r.seconds for r in results if r.seconds]
    if not done:
        return "no image finished"
    mean = {k: math.fsum(s[k] for s in done) / len(done) * 1e3 for k in ("decode", "filter", "encode")}
    return f"decode {mean['decode']:.1f} ms, filter {mean['filter']:.1f} ms, encode {mean['encode']:.1f} ms per image"
