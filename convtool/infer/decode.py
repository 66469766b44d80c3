"""The decoding stage: image files -> model-ready batches, inline, in a thread or in worker processes.

:func:`decode_group` is the plain function every mode runs (a Ray actor can call it too): it opens,
converts, resizes and scales a group of files into one array. :func:`plan_decoding` picks where it runs
from the work (file count and sizes); :func:`process_chunks` runs it in worker processes that write
straight into a ring of shared memory slots, one model batch per slot, so a batch reaches onnxruntime
without a copy. JPEG photos larger than the model input are decoded reduced (``Image.draft``, DCT
scaling) when the caller asks for ``draft``: see DRAFT_TOLERANCE.
"""

from __future__ import annotations

import math
import mmap
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
from PIL import Image

from convtool.errors import ConvtoolError
from convtool.infer.preprocess import Preparer
from convtool.io.read import open_image

MODES = ("auto", "inline", "threads", "processes")
DRAFT_TOLERANCE = ("JPEG photos at least twice the model input are decoded reduced (DCT scaling) before the "
                   "resize: 3-4x faster; the model input then differs from a full decode by at most 1/255 "
                   "on average per pixel, and 99% of pixels by at most 8/255")
# Cost model of decoding one file through decode_group, fitted on this machine's 640x480 JPEGs
# (1.4-3.6 ms) and 28x28 PNGs (0.2 ms): a fixed cost plus a cost per byte of file.
FILE_SECONDS = 150e-6
BYTE_SECONDS = 30e-9
PROCESS_SECONDS = 0.02  # forking a worker and handing it its first batch
WORKER_NICENESS = 10  # decoding workers run below the inference, which is what a batch waits for
PROCESS_MIN_TOTAL_SECONDS = 0.2  # below this, two cores save less than workers cost to start
MIN_PART = 8  # files: a group is split among the workers into parts no smaller than this


@dataclass
class Failure:
    """A file that could not be used, and why (one line)."""

    path: Path
    message: str

    def __post_init__(self) -> None:
        self.path = Path(self.path)


@dataclass
class Chunk:
    """Decoded images of one size, ready for the model, with what the post-processing needs.

    A ``batch`` from worker processes lives in a shared slot that is reused once the next chunk is
    asked for: copy it to keep it longer.
    """

    paths: list[str | Path]  # as given to decoded_chunks
    batch: np.ndarray  # N, item_shape
    sizes: list[tuple[int, int]]  # original (width, height) of each image
    images: list[Image.Image] | None  # the decoded originals, when asked for (segment overlays)
    failures: list[Failure]
    decode_seconds: float


@dataclass(frozen=True)
class DecodePlan:
    """Where decoding runs: ``inline`` (in the caller), ``threads`` or ``processes``, and why."""

    mode: str
    workers: int
    reason: str

    def describe(self) -> str:
        where = {"inline": "inline (in the main process)", "threads": f"{self.workers} thread(s)",
                 "processes": f"{self.workers} worker process(es)"}[self.mode]
        return f"decoding: {where}: {self.reason}"


def plan_decoding(files: Sequence[str | Path], *, workers: int | None = None, mode: str = "auto",
                  fixed_size: bool = True, keep_images: bool = False, overlap: bool = True) -> DecodePlan:
    """Choose inline, threads or processes for decoding ``files``.

    ``fixed_size``: every image becomes the same model input size (needed for shared slots);
    ``keep_images``: the originals travel with the batches (segment overlays), which processes would copy;
    ``overlap``: the consumer releases the GIL for long stretches (batched models), so a thread overlaps.
    """
    if mode not in MODES:
        raise ValueError(f"decoding mode {mode!r}: use one of {', '.join(MODES)}")
    cores = _cores()
    count = len(files)
    per_file = estimate_file_seconds(files)
    total = per_file * count
    work = f"{count:,} file(s), about {per_file * 1e3:.2f} ms of decoding each"
    if mode != "auto":
        return DecodePlan(mode, 1 if mode == "inline" else max(1, workers or cores), f"asked for; {work}")
    if not sys.platform.startswith("linux"):
        return DecodePlan("threads", 1, f"{work}; worker processes share memory by forking, on Linux only")
    if cores > 1 and fixed_size and not keep_images and total >= PROCESS_MIN_TOTAL_SECONDS + PROCESS_SECONDS * cores:
        n = min(workers or cores, max(1, count // 2))
        return DecodePlan("processes", n, f"{work}, {total:.1f} s in all: worth {n} cores")
    why = ("the originals are kept for the outputs" if keep_images else
           "image sizes vary" if not fixed_size else
           "one core" if cores == 1 else
           f"{total:.2f} s in all is less than worker processes cost")
    if overlap:
        return DecodePlan("threads", 1, f"{work}; {why}: one thread decodes while the model runs")
    return DecodePlan("inline", 1, f"{work}; {why}, and a batch-1 model gives a thread nothing to overlap")


def estimate_file_seconds(files: Sequence[str | Path], sample: int = 32) -> float:
    """Estimated decode time per file from the sizes of up to ``sample`` files spread over the list."""
    if not files:
        return 0.0
    step = max(1, len(files) // sample)
    sizes = []
    for file in files[::step][:sample]:
        try:
            sizes.append(os.stat(file).st_size)
        except OSError:
            sizes.append(0)
    return FILE_SECONDS + BYTE_SECONDS * sum(sizes) / len(sizes)


def draft_request(size: tuple[int, int], target: tuple[int, int]) -> tuple[int, int] | None:
    """The (width, height) to ask ``Image.draft`` for, or None when a reduced decode would not help.

    The DCT scale is 1/4 when that still leaves twice the target, else 1/2 when that leaves the target;
    never 1/8, which keeps only each block's mean (about 1.7/255 off on average where 1/4 is 0.3/255).
    """
    (w, h), (tw, th) = size, target
    for scale, factor in ((4, 2), (2, 1)):
        if w >= scale * factor * tw and h >= scale * factor * th:
            return -(-w // scale), -(-h // scale)
    return None


def open_for_model(path: str | Path, preparer: Preparer, *, draft: bool = False) -> tuple[Image.Image, tuple[int, int]]:
    """Open and decode an image, and its original (width, height).

    With ``draft``, a JPEG much larger than the model input is decoded reduced by DCT scaling
    (see DRAFT_TOLERANCE); the size returned is still the original one.
    """
    height, width = preparer.recipe.height, preparer.recipe.width
    if not draft or height is None or width is None:
        image = open_image(path)
        return image, image.size
    target = (width, height)
    original: list[tuple[int, int]] = []

    def reduce(image: Image.Image) -> None:
        original.append(image.size)
        if image.format != "JPEG":
            return
        request = draft_request(image.size, target if "exif" not in image.info else (max(target),) * 2)  # may turn
        if request is not None:
            image.draft(preparer.mode, request)

    image = open_image(path, draft=reduce)
    return image, _oriented(image, original[0])


def _oriented(image: Image.Image, size: tuple[int, int]) -> tuple[int, int]:
    """The file's size as the image is shown: swapped when EXIF turned it by 90 degrees (reduction keeps the aspect)."""
    landscape_now, landscape_then = image.width >= image.height, size[0] >= size[1]
    return size if landscape_now == landscape_then else size[::-1]


def decode_group(paths: Sequence[str | Path], preparer: Preparer, *, keep_images: bool = False,
                 draft: bool = False, out: np.ndarray | None = None) -> list[Chunk]:
    """Decode a group of files into one chunk per run of equal input sizes (usually exactly one).

    ``draft``: reduced JPEG decoding (see open_for_model); never for kept originals. With ``out``
    (capacity x item_shape, the model's dtype), the first chunk is written there, scaled, as it decodes.
    Bad files become Failures on the last chunk; the others go on.
    """
    start = time.perf_counter()
    chunks: list[Chunk] = []
    failures: list[Failure] = []
    raw = _decode_into(paths, preparer, keep_images, draft and not keep_images, chunks, failures, out)
    for chunk, pixels in zip(chunks, raw, strict=False):
        n = len(chunk.paths)
        if pixels is None:  # written into `out` as it was decoded
            assert out is not None
            chunk.batch = out[:n]
        else:
            chunk.batch = preparer.scale(pixels[:n])
    if not chunks:
        chunks.append(Chunk([], np.empty((0,)), [], None, [], 0.0))
    chunks[-1].failures = failures
    chunks[-1].decode_seconds = time.perf_counter() - start
    return chunks


def _decode_into(paths: Sequence[str | Path], preparer: Preparer, keep_images: bool, draft: bool,
                 chunks: list[Chunk], failures: list[Failure], out: np.ndarray | None = None) -> list[np.ndarray | None]:
    """Append chunks (a new one whenever the input size changes) and return their uint8 pixel arrays.

    The first chunk goes straight into ``out``, scaled, when its item shape fits (its array is then None).
    """
    current: Chunk | None = None
    arrays: list[np.ndarray | None] = []
    shape: tuple[int, ...] | None = None
    for path in paths:
        try:
            image, size = open_for_model(path, preparer, draft=draft)
            pixels = preparer.pixels(image)
        except ConvtoolError as exc:
            failures.append(Failure(Path(path), str(exc)))
            continue
        except Exception as exc:  # noqa: BLE001 - a decoder bug or odd mode in Pillow: report it, go on
            failures.append(Failure(Path(path), f"{path}: could not be decoded ({type(exc).__name__}: {exc})"))
            continue
        item = preparer.recipe.item_shape(pixels.shape[0], pixels.shape[1])
        if current is None or item != shape:
            current, shape = Chunk([], np.empty(0), [], [] if keep_images else None, [], 0.0), item
            direct = out is not None and not chunks and out.shape[1:] == item
            chunks.append(current)
            arrays.append(None if direct else np.empty((len(paths), *item), dtype=np.uint8))
        target = arrays[-1]
        if target is None:
            assert out is not None
            preparer.place_scaled(pixels, out[len(current.paths)])
        else:
            preparer.place(pixels, target[len(current.paths)])
        current.paths.append(path)
        current.sizes.append(size)
        if current.images is not None:
            current.images.append(image)
    return arrays


# --- worker processes writing into shared slots -------------------------------------------------

_RINGS: dict[int, mmap.mmap] = {}  # ring id -> anonymous shared mapping, inherited by forked workers


@dataclass(frozen=True)
class _Task:
    ring: int
    slot: int
    offset: int  # first row of the slot this part of the group fills
    capacity: int
    paths: list[str]  # os.fspath of the caller's paths
    preparer: Preparer
    draft: bool


def _slot(ring: mmap.mmap, index: int, capacity: int, item: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
    size = capacity * math.prod(item) * dtype.itemsize
    return np.frombuffer(ring, dtype=dtype, count=capacity * math.prod(item), offset=index * size).reshape(
        (capacity, *item))


def fixed_item_shape(preparer: Preparer) -> tuple[int, ...]:
    """The shape of one model input for a recipe with a fixed height and width."""
    height, width = preparer.recipe.height, preparer.recipe.width
    if height is None or width is None:
        raise ValueError("shared slots need a fixed model input size; decode in threads instead")
    return preparer.recipe.item_shape(height, width)


def _decode_task(task: _Task) -> Chunk:
    """Run in a worker: decode ``task.paths`` into its rows of the task's slot; the reply carries no pixels."""
    item = fixed_item_shape(task.preparer)
    out = _slot(_RINGS[task.ring], task.slot, task.capacity, item, task.preparer.dtype)[task.offset:]
    (chunk,) = decode_group(task.paths, task.preparer, draft=task.draft, out=out)
    chunk.batch = np.empty((0,))  # the pixels are in the slot already
    return chunk


def split_group(size: int, workers: int) -> list[tuple[int, int]]:
    """(start, stop) of the parts one group is decoded in: one per worker, at least MIN_PART files each,
    so every worker helps with the first batch and none waits alone at the end."""
    parts = max(1, min(workers, size // MIN_PART))
    bounds = [size * k // parts for k in range(parts + 1)]
    return list(zip(bounds[:-1], bounds[1:], strict=True))


def process_chunks(groups: Sequence[Sequence[str | Path]], preparer: Preparer, *, workers: int, depth: int,
                   draft: bool = False) -> "ChunkStream":
    """(chunk, groups in the workers) in order, decoded by ``workers`` processes at most ``depth`` groups ahead.

    The workers start, and get the first groups, when this is called: the caller may open its model
    meanwhile. Each group is decoded in parts (split_group), each written straight into its rows of
    the group's slot. The recipe must have a fixed height and width. A part whose worker died twice
    comes back as failures. Iterate to the end or ``close()`` the stream: that stops the workers.
    """
    return ChunkStream(groups, preparer, workers, depth, draft)


class ChunkStream:
    """The iterator :func:`process_chunks` returns; see there."""

    def __init__(self, groups: Sequence[Sequence[str | Path]], preparer: Preparer, workers: int, depth: int,
                 draft: bool) -> None:
        from convtool.workers import WorkerPool, ordered

        self.item = fixed_item_shape(preparer)
        self.groups, self.preparer = groups, preparer
        self.capacity = max((len(g) for g in groups), default=1)
        self.depth = max(1, min(depth, len(groups)))
        self.parts = [split_group(len(group), workers) for group in groups]
        self.ring = mmap.mmap(-1, max(1, self.depth * self.capacity * math.prod(self.item) * preparer.dtype.itemsize))
        self.key = id(self.ring)
        _RINGS[self.key] = self.ring  # before the fork: the workers inherit the mapping
        # A group's slot is reused by the group `depth` later: at most that many groups' parts in flight.
        in_flight = (self.depth - 1) * max(len(p) for p in self.parts) + 1 if self.parts else 1
        # Paths travel as plain strings: a pathlib path costs 5 us to pickle and unpickle, a string 0.1.
        tasks = (_Task(self.key, index % self.depth, start, self.capacity, [os.fspath(p) for p in group[start:stop]],
                       preparer, draft)
                 for index, group in enumerate(groups) for start, stop in self.parts[index])
        Image.preinit()  # Pillow's PNG, JPEG, ... readers load once, here, not in every worker (25 ms each)
        self.pool = WorkerPool(workers, initializer=set_up_worker)
        try:
            self.replies = ordered(self.pool, _decode_task, tasks, in_flight=in_flight)
        except BaseException:
            self.close()
            raise
        self._chunks = self._in_order()

    def __iter__(self) -> "ChunkStream":
        return self

    def __next__(self) -> tuple[Chunk, int]:
        try:
            return next(self._chunks)
        except BaseException:
            self.close()
            raise

    def _in_order(self) -> Iterator[tuple[Chunk, int]]:
        for index, group in enumerate(self.groups):
            pieces = [(start, group[start:stop], *next(self.replies)) for start, stop in self.parts[index]]
            slot = _slot(self.ring, index % self.depth, self.capacity, self.item, self.preparer.dtype)
            yield _assemble(pieces, slot), -(-self.pool.pending // len(self.parts[index]))

    def close(self) -> None:
        """Stop the workers and forget the shared ring (a second close does nothing)."""
        pool = getattr(self, "pool", None)
        if pool is not None:
            pool.close()
        _RINGS.pop(self.key, None)
        self._chunks = iter(())


def _assemble(pieces: list, slot: np.ndarray) -> Chunk:
    """One chunk from its parts' replies ``(start, paths, ok, reply)``: rows of files that failed leave
    gaps in the slot, closed by moving the later rows up (only then is anything copied)."""
    from convtool.workers import Lost

    chunk = Chunk([], np.empty((0,)), [], None, [], 0.0)
    for start, paths, ok, reply in pieces:
        if not ok and isinstance(reply, Lost):
            chunk.failures += [Failure(Path(p), f"{p}: {reply.reason}") for p in paths]
            continue
        if not ok:
            raise ConvtoolError(f"decoding failed in a worker ({reply.kind}: {reply.message})")
        row, count = len(chunk.paths), len(reply.paths)
        if row != start and count:
            slot[row : row + count] = slot[start : start + count]
        chunk.paths += _decoded(paths, reply.paths)
        chunk.sizes += reply.sizes
        chunk.failures += reply.failures
        chunk.decode_seconds += reply.decode_seconds
    chunk.batch = slot[: len(chunk.paths)]
    return chunk


def _decoded(paths: Sequence[str | Path], decoded: Sequence[str | Path]) -> list[str | Path]:
    """The caller's own ``paths`` that a worker decoded (``decoded``: their strings, in order, failures left out)."""
    if len(decoded) == len(paths):
        return list(paths)
    kept: list[str | Path] = []
    for path in paths:
        if len(kept) < len(decoded) and os.fspath(path) == decoded[len(kept)]:
            kept.append(path)
    return kept


def set_up_worker() -> None:
    """In a decoding worker (or a Ray actor): yield to the main process's inference when both want a
    core, and keep freed memory for the next group (no page faults for each image's buffers)."""
    from convtool.heap import keep_freed_memory

    os.nice(WORKER_NICENESS)
    keep_freed_memory()


def _cores() -> int:
    from convtool.workers import default_workers

    return default_workers()
