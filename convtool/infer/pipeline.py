"""Decode images in the background while the model runs, through a bounded queue.

Chunks of ``chunk_size`` files are decoded by :mod:`convtool.infer.decode`'s stage, inline, in threads
or in worker processes (:func:`~convtool.infer.decode.plan_decoding` picks from the work), while the
calling thread runs onnxruntime, which releases the GIL. At most ``depth`` chunks wait decoded, so
memory stays flat however large the folder.
"""

from __future__ import annotations

import queue
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Sequence, TypeVar

from convtool.infer.decode import Chunk, ChunkStream, DecodePlan, Failure, decode_group, plan_decoding
from convtool.infer.preprocess import Preparer

__all__ = ["Chunk", "DecodePlan", "Failure", "Job", "Timings", "decoded_chunks", "model_step", "plan_decoding", "run_job",
           "timed_results"]


UPSCALE_WARNING = 1.5  # enlarging an image more than this to fit a model invents its detail


@dataclass
class Timings:
    """Where the time went, summed over a run."""

    images: int = 0
    decode: float = 0.0
    infer: float = 0.0
    post: float = 0.0
    wall: float = 0.0
    max_in_flight: int = 0  # the most decoded chunks seen waiting at once (bounded by the queue depth)
    notes: list[str] = field(default_factory=list)  # how the run was set up and why (shown by -v)
    upscaled: int = 0  # images enlarged more than UPSCALE_WARNING times to fit the model's input
    smallest: tuple[int, int] | None = None  # (height, width) of the most enlarged of them
    input_hw: tuple[int, int] | None = None  # the model's fixed input size, when it has one

    def count_upscaled(self, sizes: Sequence[tuple[int, int]], input_hw: tuple[int, int] | None) -> None:
        """Count the images (original (width, height)) that a fixed ``input_hw`` enlarges by more than 1.5x."""
        if input_hw is None:
            return
        self.input_hw = input_hw
        for width, height in sizes:
            factor = max(input_hw[0] / max(height, 1), input_hw[1] / max(width, 1))
            if factor > UPSCALE_WARNING:
                self.upscaled += 1
                if self.smallest is None or height * width < self.smallest[0] * self.smallest[1]:
                    self.smallest = (height, width)

    def upscale_warning(self) -> str | None:
        """One line when images were enlarged a lot to fit the model (their detail is invented), else None."""
        if not self.upscaled or self.input_hw is None or self.smallest is None:
            return None
        (h, w), (sh, sw) = self.input_hw, self.smallest
        some = "every image was" if self.upscaled == self.images else f"{self.upscaled} of {self.images} images were"
        return (f"{some} scaled up more than {UPSCALE_WARNING:g}x to fit the model's {h}x{w} input (the smallest "
                f"was {sh}x{sw}); a model made for that size, or larger images, would see real detail")

    def summary(self, device: str) -> str:
        n = max(self.images, 1)
        rate = self.images / self.wall if self.wall > 0 else 0.0
        return (
            f"{self.images} image{'' if self.images == 1 else 's'} in {self.wall:.2f} s, {rate:,.0f} img/s "
            f"(decode {self.decode / n * 1e3:.2f} ms, infer {self.infer / n * 1e3:.2f} ms, "
            f"post {self.post / n * 1e3:.2f} ms per image) on {device}"
        )


def decoded_chunks(
    files: Sequence[str | Path],
    preparer: Preparer,
    *,
    chunk_size: int = 64,
    depth: int = 3,
    workers: int = 1,
    keep_images: bool = False,
    timings: Timings | None = None,
    plan: DecodePlan | None = None,
    draft: bool = False,
) -> Iterator[Chunk]:
    """Yield prepared chunks in file order, decoded up to ``depth`` chunks ahead as ``plan`` says.

    Without a plan, ``workers`` threads decode (the behaviour before plans existed). ``draft`` turns
    on reduced JPEG decoding (see decode.DRAFT_TOLERANCE); chunk sizes stay the originals'.
    """
    plan = plan or DecodePlan("threads", workers, "one thread per worker asked for")
    groups = [files[i : i + chunk_size] for i in range(0, len(files), chunk_size)]
    stream = _worker_stream(groups, preparer, plan, depth, keep_images, draft)
    if stream is not None:
        yield from _from_stream(stream, timings)
    elif plan.mode == "inline":
        for group in groups:
            yield from decode_group(group, preparer, keep_images=keep_images, draft=draft)
    else:
        yield from _threaded(groups, preparer, depth, max(1, plan.workers), keep_images, draft, timings)


def _worker_stream(groups: list, preparer: Preparer, plan: DecodePlan, depth: int, keep_images: bool,
                   draft: bool) -> ChunkStream | None:
    """Worker processes decoding ``groups`` (started now) when the plan says so and shared slots can hold
    the images (a fixed input size, no originals kept); else None."""
    recipe = preparer.recipe
    if plan.mode != "processes" or keep_images or not (recipe.height and recipe.width):
        return None
    from convtool.infer.decode import process_chunks

    return process_chunks(groups, preparer, workers=plan.workers, depth=depth, draft=draft)


def _from_stream(stream: ChunkStream, timings: Timings | None) -> Iterator[Chunk]:
    try:
        for chunk, waiting in stream:
            if timings is not None:
                timings.max_in_flight = max(timings.max_in_flight, waiting)
            yield chunk
    finally:
        stream.close()


def _threaded(groups: list, preparer: Preparer, depth: int, workers: int, keep_images: bool, draft: bool,
              timings: Timings | None) -> Iterator[Chunk]:
    """Worker ``w`` decodes groups ``w, w + workers, ...`` into its own bounded queue; reading the queues
    in turn keeps the file order."""
    queues: list[queue.Queue] = [queue.Queue(maxsize=max(1, depth // workers)) for _ in range(workers)]
    stop = threading.Event()

    def work(worker: int) -> None:
        for index in range(worker, len(groups), workers):
            try:
                item: list[Chunk] | BaseException = decode_group(groups[index], preparer, keep_images=keep_images,
                                                                 draft=draft)
            except BaseException as exc:  # noqa: BLE001 - handed to the consumer, raised there
                item = exc
            while not stop.is_set():
                try:
                    queues[worker].put(item, timeout=0.05)
                    break
                except queue.Full:
                    continue
            if stop.is_set():
                return

    threads = [threading.Thread(target=work, args=(w,), name=f"convtool-decode-{w}", daemon=True) for w in range(workers)]
    for thread in threads:
        thread.start()
    try:
        for index in range(len(groups)):
            if timings is not None:
                timings.max_in_flight = max(timings.max_in_flight, sum(q.qsize() for q in queues))
            item = queues[index % workers].get()
            if isinstance(item, BaseException):
                raise item
            yield from item
    finally:
        stop.set()
        for thread in threads:
            thread.join()


Result = TypeVar("Result")


def timed_results(chunks: Iterable[Chunk], process: Callable[[Chunk], Result], timings: Timings,
                  on_progress: Callable[[int], None] | None = None, *,
                  input_hw: tuple[int | None, int | None] | None = None, since: float | None = None) -> Iterator[Result]:
    """Yield ``process(chunk)`` for each chunk, adding decode, post-processing and wall time to ``timings``.

    The caller's time with each result (writing files, tables) counts as post-processing. With the
    model's fixed ``input_hw``, images enlarged a lot to fit it are counted (``Timings.upscale_warning``).
    The wall time counts from ``since`` (a ``time.perf_counter()`` value; default: now).
    """
    started = time.perf_counter() if since is None else since
    fixed: tuple[int, int] | None = None
    if input_hw is not None and input_hw[0] and input_hw[1]:
        fixed = (int(input_hw[0]), int(input_hw[1]))
    for chunk in chunks:
        timings.decode += chunk.decode_seconds
        timings.count_upscaled(chunk.sizes, fixed)
        result = process(chunk)
        handed_over = time.perf_counter()
        yield result
        timings.post += time.perf_counter() - handed_over
        if on_progress is not None:
            on_progress(len(chunk.paths) + len(chunk.failures))
    timings.wall += time.perf_counter() - started


def run_job(files: Sequence[str | Path], preparer: Preparer, process: Callable[[Chunk], Result], timings: Timings, *,
            batch: int, depth: int, workers: int | None, decoding: str, fixed_batch: int | None = None,
            keep_images: bool = False, overlap: bool = True, draft: bool = False,
            on_progress: Callable[[int], None] | None = None, started: Job | None = None) -> Iterator[Result]:
    """The job of every model command: plan the decoding (its reason goes to ``timings.notes``), decode
    chunks of ``batch`` files ahead (a multiple of a ``fixed_batch`` above 1) and yield ``process(chunk)``, timed.

    ``decoding``, ``workers``, ``keep_images`` and ``overlap`` are :func:`plan_decoding`'s; ``draft`` is
    :func:`decoded_chunks`'. A Job ``started`` for the same files and recipe (see :class:`Job`) is used
    instead of a new one; one for another recipe is stopped.
    """
    settings: dict[str, Any] = dict(batch=batch, depth=depth, workers=workers, decoding=decoding,
                                    fixed_batch=fixed_batch, keep_images=keep_images, overlap=overlap, draft=draft)
    job = started
    if job is None or not job.serves(files, preparer, settings):
        if job is not None:
            job.close()
            timings.notes.append("decoding restarted: the model's session reports another input than its file's header")
        job = Job(files, preparer, timings, **settings)
    yield from job.results(process, on_progress)


class Job:
    """A batch job's decoding, planned, and already running when it runs in worker processes.

    Made before the model's session exists (from the file's header, :mod:`model_header`), it decodes
    while onnxruntime loads; :meth:`results` then feeds the model. Takes :func:`run_job`'s settings.
    """

    def __init__(self, files: Sequence[str | Path], preparer: Preparer, timings: Timings, *, batch: int, depth: int,
                 workers: int | None, decoding: str, fixed_batch: int | None = None, keep_images: bool = False,
                 overlap: bool = True, draft: bool = False) -> None:
        self.files, self.preparer, self.timings = files, preparer, timings
        self.started = time.perf_counter()  # the wall time of the run counts from here
        self.settings = dict(batch=batch, depth=depth, workers=workers, decoding=decoding, fixed_batch=fixed_batch,
                             keep_images=keep_images, overlap=overlap, draft=draft)
        recipe = preparer.recipe
        plan = plan_decoding(files, workers=workers, mode=decoding, keep_images=keep_images,
                             fixed_size=bool(recipe.height and recipe.width), overlap=overlap)
        timings.notes.append(plan.describe())
        size = chunk_size(batch, fixed_batch)
        groups = [files[i : i + size] for i in range(0, len(files), size)]
        self._stream = _worker_stream(groups, preparer, plan, depth, keep_images, draft)  # started here
        if self._stream is not None:
            self._chunks = _from_stream(self._stream, timings)
        else:
            self._chunks = decoded_chunks(files, preparer, chunk_size=size, depth=depth, keep_images=keep_images,
                                          plan=plan, draft=draft, timings=timings)

    def serves(self, files: Sequence[str | Path], preparer: Preparer, settings: dict) -> bool:
        """True if this job decodes ``files`` as ``preparer`` and ``settings`` ask."""
        return files is self.files and preparer.recipe == self.preparer.recipe and settings == self.settings

    def results(self, process: Callable[[Chunk], Result],
                on_progress: Callable[[int], None] | None = None) -> Iterator[Result]:
        """``process(chunk)`` for each chunk in file order, timed into the job's Timings."""
        recipe = self.preparer.recipe
        try:
            yield from timed_results(self._chunks, process, self.timings, on_progress,
                                     input_hw=(recipe.height, recipe.width), since=self.started)
        finally:
            self.close()

    def __enter__(self) -> Job:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Stop decoding (workers included); what was decoded is dropped. Closing twice does nothing."""
        if self._stream is not None:
            self._stream.close()
        close = getattr(self._chunks, "close", None)
        if close is not None:
            close()


def chunk_size(batch: int, fixed_batch: int | None) -> int:
    """Files per chunk for ``batch``: a whole number of a model's fixed batch above 1, if it has one."""
    if fixed_batch is not None and fixed_batch > 1:
        return max(fixed_batch, batch - batch % fixed_batch)
    return batch


Output = TypeVar("Output")


def model_step(chunk: Chunk, infer: Callable[[Any], Output], post: Callable[[Output], Result], timings: Timings) -> Result:
    """``post(infer(chunk.batch))`` with the model's time counted as inference and the rest as post-processing."""
    t0 = time.perf_counter()
    raw = infer(chunk.batch)
    t1 = time.perf_counter()
    result = post(raw)
    timings.infer += t1 - t0
    timings.post += time.perf_counter() - t1
    timings.images += len(chunk.paths)
    return result
