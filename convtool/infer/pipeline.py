"""Decode images in the background while the model runs, through a bounded queue.

Chunks of ``chunk_size`` files are decoded by a small pool of threads (one by default: decoding tiny
PNGs in several Python threads is slower because of the GIL) while the calling thread runs
onnxruntime, which releases the GIL. At most ``depth`` chunks wait decoded in bounded queues, so
memory stays flat however large the folder.
"""

from __future__ import annotations

import os
import queue
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Iterator, Sequence, TypeVar

import numpy as np
from PIL import Image

from convtool.errors import ConvtoolError, InputError
from convtool.images import open_image
from convtool.infer.preprocess import Preparer


@dataclass
class Failure:
    """A file that could not be used, and why (one line)."""

    path: str | Path
    message: str

    def __post_init__(self) -> None:
        self.path = Path(self.path)


@dataclass
class Chunk:
    """Decoded images of one size, ready for the model, with what the post-processing needs."""

    paths: list[str | Path]  # as given to decoded_chunks
    batch: np.ndarray  # N, item_shape
    sizes: list[tuple[int, int]]  # original (width, height) of each image
    images: list[Image.Image] | None  # the decoded originals, when asked for (segment overlays)
    failures: list[Failure]
    decode_seconds: float


@dataclass
class Timings:
    """Where the time went, summed over a run."""

    images: int = 0
    decode: float = 0.0
    infer: float = 0.0
    post: float = 0.0
    wall: float = 0.0
    max_in_flight: int = 0  # the most decoded chunks seen waiting at once (bounded by the queue depth)

    def summary(self, device: str) -> str:
        n = max(self.images, 1)
        rate = self.images / self.wall if self.wall > 0 else 0.0
        return (
            f"{self.images} image{'' if self.images == 1 else 's'} in {self.wall:.2f} s, {rate:,.0f} img/s "
            f"(decode {self.decode / n * 1e3:.2f} ms, infer {self.infer / n * 1e3:.2f} ms, "
            f"post {self.post / n * 1e3:.2f} ms per image) on {device}"
        )


@dataclass
class Scan:
    """The candidate image files found under the given paths, and the folder each came from."""

    files: list[str] = field(default_factory=list)  # strings: 2,000 Path objects cost ~10 ms to make and sort
    folders: list[tuple[Path, int, int]] = field(default_factory=list)  # (folder, first, end) ranges of files

    def root_of(self) -> dict[str, Path]:
        """file -> the folder given on the command line that it was found under (built on demand)."""
        return {file: folder for folder, first, end in self.folders for file in self.files[first:end]}


def find_images(paths: Iterable[str | os.PathLike], *, recursive: bool = False) -> Scan:
    """Expand files and folders into a sorted list of candidate image files.

    Folders contribute every visible file (a non-image among them fails later, with the others going on);
    ``recursive`` descends into subfolders.
    """
    scan = Scan()
    for given in paths:
        path = Path(given)
        if path.is_dir():
            found = sorted(_walk(str(path), recursive))
            if not found:
                hint = "" if recursive else " (use --recursive for subfolders)"
                raise InputError(f"{path}: no image files in this folder{hint}")
            scan.folders.append((path, len(scan.files), len(scan.files) + len(found)))
            scan.files.extend(found)
        elif path.exists():
            scan.files.append(str(path))
        else:
            raise InputError(f"{path}: no such file or folder")
    if not scan.files:
        raise InputError("no images given")
    return scan


def _walk(folder: str, recursive: bool) -> Iterator[str]:
    with os.scandir(folder) as entries:
        for entry in entries:
            if entry.name.startswith("."):
                continue
            if entry.is_dir():
                if recursive:
                    yield from _walk(entry.path, recursive)
            elif entry.is_file():
                yield entry.path


def decoded_chunks(
    files: Sequence[str | Path],
    preparer: Preparer,
    *,
    chunk_size: int = 64,
    depth: int = 3,
    workers: int = 1,
    keep_images: bool = False,
    timings: Timings | None = None,
) -> Iterator[Chunk]:
    """Yield prepared chunks in file order while ``workers`` threads decode up to ``depth`` chunks ahead.

    Worker ``w`` decodes chunks ``w, w + workers, ...`` into its own bounded queue, so reading the queues
    in turn keeps the file order.
    """
    groups = [files[i : i + chunk_size] for i in range(0, len(files), chunk_size)]
    queues: list[queue.Queue] = [queue.Queue(maxsize=max(1, depth // workers)) for _ in range(workers)]
    stop = threading.Event()

    def work(worker: int) -> None:
        for index in range(worker, len(groups), workers):
            try:
                item: list[Chunk] | BaseException = _decode_group(groups[index], preparer, keep_images)
            except BaseException as exc:  # noqa: BLE001 - handed to the consumer thread, raised there
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
                  on_progress: Callable[[int], None] | None = None) -> Iterator[Result]:
    """Yield ``process(chunk)`` for each chunk, adding decode, post-processing and wall time to ``timings``.

    The caller's time with each result (writing files, tables) counts as post-processing.
    """
    started = time.perf_counter()
    for chunk in chunks:
        timings.decode += chunk.decode_seconds
        result = process(chunk)
        handed_over = time.perf_counter()
        yield result
        timings.post += time.perf_counter() - handed_over
        if on_progress is not None:
            on_progress(len(chunk.paths) + len(chunk.failures))
    timings.wall += time.perf_counter() - started


def _decode_group(paths: Sequence[str | Path], preparer: Preparer, keep_images: bool) -> list[Chunk]:
    """Decode a group of files into one chunk per run of equal input sizes (usually exactly one)."""
    start = time.perf_counter()
    chunks: list[Chunk] = []
    failures: list[Failure] = []
    _decode_into(paths, preparer, keep_images, chunks, failures)  # open_image refuses decompression bombs
    for chunk in chunks:
        chunk.batch = preparer.scale(chunk.batch[: len(chunk.paths)])
    if not chunks:
        chunks.append(Chunk([], np.empty((0,)), [], None, [], 0.0))
    chunks[-1].failures = failures
    chunks[-1].decode_seconds = time.perf_counter() - start
    return chunks


def _decode_into(paths: Sequence[str | Path], preparer: Preparer, keep_images: bool, chunks: list[Chunk],
                 failures: list[Failure]) -> None:
    """Append decoded images to ``chunks`` (a new chunk whenever the input size changes), bad files to ``failures``."""
    current: Chunk | None = None
    for path in paths:
        try:
            image = open_image(path)
            pixels = preparer.pixels(image)
        except ConvtoolError as exc:
            failures.append(Failure(path, str(exc)))
            continue
        except Exception as exc:  # noqa: BLE001 - a decoder bug or odd mode in Pillow: report the file, go on
            failures.append(Failure(path, f"{path}: could not be decoded ({type(exc).__name__}: {exc})"))
            continue
        if current is None or current.batch.shape[1:] != _item_shape(preparer, pixels):
            current = _new_chunk(preparer, pixels, len(paths), keep_images)
            chunks.append(current)
        preparer.place(pixels, current.batch[len(current.paths)])
        current.paths.append(path)
        current.sizes.append(image.size)
        if current.images is not None:
            current.images.append(image)


def _item_shape(preparer: Preparer, pixels: np.ndarray) -> tuple[int, ...]:
    return preparer.recipe.item_shape(pixels.shape[0], pixels.shape[1])


def _new_chunk(preparer: Preparer, pixels: np.ndarray, capacity: int, keep_images: bool) -> Chunk:
    batch = np.empty((capacity, *_item_shape(preparer, pixels)), dtype=np.uint8)  # scaled once per chunk
    return Chunk([], batch, [], [] if keep_images else None, [], 0.0)
