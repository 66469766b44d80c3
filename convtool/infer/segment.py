"""Per-pixel segmentation with any ONNX segmenter: class masks at the input's size, overlays, areas.

The model's output may be N,C,h,w or N,h,w,C scores (logits or probabilities) or N,h,w class ids, and
smaller than its input: scores are resized bilinearly to each image's original size, then argmax'd.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Generator, Iterable, Iterator, Sequence

import numpy as np
from PIL import Image

from convtool.errors import ModelError, OutputError, UsageError
from convtool.infer.overlay import overlay, overlay_palette, with_legend
from convtool.infer.pipeline import Chunk, Failure, Timings, model_step, run_job
from convtool.infer.preprocess import Preparer, Preprocess
from convtool.infer.session import ModelSession
from convtool.infer.upsample import argmax_resized

OUTPUT_LAYOUTS = ("auto", "nchw", "nhwc")


@dataclass
class Segmentation:
    """One image's result: the class of each pixel at the original size, and the original image."""

    path: str | Path
    mask: np.ndarray  # H, W uint8 (or uint16 beyond 256 classes)
    image: Image.Image | None  # the decoded original, when kept for an overlay

    def areas(self, classes: int) -> np.ndarray:
        """Fraction of the image's pixels in each class."""
        return np.bincount(self.mask.ravel(), minlength=classes)[:classes] / self.mask.size


@dataclass
class Published:
    """What was written for one image: its path, size (height, width) and the fraction of pixels per class."""

    path: str | Path
    shape: tuple[int, int]
    areas: np.ndarray


def output_paths(file: str | Path, folder: Path, overlay: bool) -> tuple[Path, Path | None]:
    """Where an image's mask and overlay go: ``<stem>_mask.png`` and ``<stem>_overlay.png`` in ``folder``."""
    stem = Path(file).stem
    return folder / f"{stem}_mask.png", (folder / f"{stem}_overlay.png" if overlay else None)


def publish(segmenter: "Segmenter", result: Segmentation, mask_path: Path, overlay_path: Path | None,
            alpha: float, *, overwrite: bool = True) -> Published:
    """Publish one image's mask (and overlay) atomically; writing it again (a retried task) gives the same files.

    ``overwrite=False`` (the CLI without --overwrite) never replaces a file, even one another run just made.
    """
    from convtool.io.publish import publish_bytes, publish_with
    from convtool.png import encode_png

    classes = segmenter.classes
    assert classes is not None  # known once a chunk has run
    mask_png = mask_image(result.mask, classes)
    publish_with(mask_path, lambda tmp: mask_png.save(tmp, format="PNG"), overwrite=overwrite)
    if overlay_path is not None:
        if result.image is None:
            raise ValueError("an overlay needs the original image: segment with keep_images=True")
        blended = overlay_image(result.image, result.mask, classes, alpha,
                                names=[segmenter.label(i) for i in range(classes)])
        # convtool's PNG encoder, as `filter` writes: 5 ms for a 640x480 overlay where Pillow's takes 118
        publish_bytes(overlay_path, encode_png(np.asarray(blended)), overwrite=overwrite)
    return Published(result.path, result.mask.shape, result.areas(classes))


def publish_all(segmenter: "Segmenter", results: Iterable[Segmentation],
                targets: Callable[[Segmentation], tuple[Path, Path | None]], alpha: float, *, overwrite: bool = True,
                threads: int = 1) -> Generator[tuple[Segmentation, Published | OutputError], None, None]:
    """:func:`publish` each result on ``threads`` threads (overlays and PNG encoding release the GIL for most
    of their time), yielding ``(result, what was published or the OutputError that stopped it)`` in order.

    At most ``2 * threads`` results wait at once; the threads finish what they hold when iteration stops.
    """
    if threads <= 1:
        for result in results:
            yield result, _published_or_error(segmenter, result, targets(result), alpha, overwrite)
        return
    from collections import deque
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(threads, thread_name_prefix="convtool-publish") as pool:
        pending: deque = deque()
        for result in results:
            pending.append((result, pool.submit(_published_or_error, segmenter, result, targets(result), alpha,
                                                overwrite)))
            if len(pending) >= 2 * threads:
                done, future = pending.popleft()
                yield done, future.result()
        while pending:
            done, future = pending.popleft()
            yield done, future.result()


def _published_or_error(segmenter: "Segmenter", result: Segmentation, paths: tuple[Path, Path | None], alpha: float,
                        overwrite: bool) -> Published | OutputError:
    try:
        return publish(segmenter, result, *paths, alpha, overwrite=overwrite)
    except OutputError as exc:  # e.g. created meanwhile by another run: the others go on
        return exc


@dataclass
class SegmentChunk:
    results: list[Segmentation]
    failures: list[Failure]


class Segmenter:
    """Runs a segmenter on prepared batches and turns its output into full-size class masks."""

    def __init__(self, model: ModelSession, recipe: Preprocess, *, labels: list[str] | None = None,
                 output_layout: str = "auto") -> None:
        if output_layout not in OUTPUT_LAYOUTS:
            raise UsageError(f"output layout {output_layout!r}: use auto, nchw or nhwc")
        self.model = model
        self.recipe = recipe
        self.preparer = Preparer(recipe)
        self.output = model.outputs[0]
        if len(self.output.shape) not in (0, 3, 4):  # 0: rank not recorded; checked on the first batch
            raise ModelError(
                f"the model's output {self.output.describe()} is not a per-pixel map (N,C,H,W, N,H,W,C or N,H,W); "
                "for one label per image use `convtool classify`"
            )
        if output_layout == "auto" and model.metadata.get("convtool.task") == "segment":
            output_layout = "nchw"  # convtool's own segmenters say so
        self.output_layout = output_layout
        self.labels = labels
        self.classes: int | None = None
        self.warnings: list[str] = []

    def class_scores(self, raw: np.ndarray, input_hw: tuple[int, int]) -> np.ndarray:
        """A 4-axis score map as N,C,h,w."""
        layout = self.output_layout
        if layout == "auto":
            layout = guess_output_layout(raw.shape, input_hw)
        return raw if layout == "nchw" else raw.transpose(0, 3, 1, 2)

    def masks(self, batch: np.ndarray, sizes: list[tuple[int, int]]) -> list[np.ndarray]:
        """Class masks at each image's original (width, height) for a prepared batch."""
        return self._masks(self.model.run(batch, [self.output.name])[0], self._input_hw(batch), sizes)

    def _masks(self, raw: np.ndarray, input_hw: tuple[int, int], sizes: list[tuple[int, int]]) -> list[np.ndarray]:
        if raw.ndim not in (3, 4):
            raise ModelError(f"the model's output has shape {raw.shape}, not a per-pixel map; "
                             "for one label per image use `convtool classify`")
        if raw.ndim == 3:
            labels = np.rint(raw).astype(np.int64)
            self._set_classes(max(self.classes or 0, int(labels.max(initial=0)) + 1))
            return [_resize_labels(m, size) for m, size in zip(labels, sizes, strict=False)]
        scores = self.class_scores(raw, input_hw)
        self._set_classes(scores.shape[1])
        return [argmax_resized(s, size) for s, size in zip(scores, sizes, strict=False)]

    def _input_hw(self, batch: np.ndarray) -> tuple[int, int]:
        return tuple(batch.shape[2:4] if self.recipe.layout == "nchw" else batch.shape[1:3])

    def run(self, files: Sequence[str | Path], *, batch: int = 8, workers: int | None = None, depth: int = 2,
            timings: Timings | None = None, on_progress: Callable[[int], None] | None = None,
            decoding: str = "auto", keep_images: bool = True) -> Iterator[SegmentChunk]:
        """Segment ``files`` chunk by chunk while the next chunks decode in the background (see Classifier.run).

        ``keep_images``: each result carries its decoded original (for overlays); without them, the
        decoding may run in worker processes.
        """
        timings = timings if timings is not None else Timings()
        yield from run_job(files, self.preparer, lambda chunk: self._segment_chunk(chunk, timings), timings,
                           batch=batch, depth=depth, workers=workers, decoding=decoding, keep_images=keep_images,
                           on_progress=on_progress)

    def _segment_chunk(self, chunk: Chunk, timings: Timings) -> SegmentChunk:
        if not chunk.paths:
            return SegmentChunk([], chunk.failures)
        masks = model_step(chunk, lambda batch: self.model.run(batch, [self.output.name])[0],
                           lambda raw: self._masks(raw, self._input_hw(chunk.batch), chunk.sizes), timings)
        images = chunk.images if chunk.images is not None else [None] * len(masks)
        results = [Segmentation(p, m, im) for p, m, im in zip(chunk.paths, masks, images, strict=True)]
        return SegmentChunk(results, chunk.failures)


    def label(self, index: int) -> str:
        return self.labels[index] if self.labels else str(index)

    def _set_classes(self, count: int) -> None:
        if self.classes == count:
            return
        self.classes = count
        if self.labels is not None and len(self.labels) != count:
            self.warnings.append(
                f"{len(self.labels)} labels given but the model has {count} classes; showing class indices instead"
            )
            self.labels = None


def guess_output_layout(shape: tuple[int, ...], input_hw: tuple[int, int]) -> str:
    """nchw or nhwc for a 4-axis score map: the reading whose h:w matches the input's aspect (ties: nchw)."""
    _, a, b, c = shape
    aspect = math.log(input_hw[0] / input_hw[1])
    nchw = abs(math.log(b / c) - aspect)
    nhwc = abs(math.log(a / b) - aspect)
    if nhwc < nchw or (nhwc == nchw and c < a):
        return "nhwc"
    return "nchw"


def _resize_labels(labels: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    width, height = size
    if labels.shape != (height, width):
        rows = (np.arange(height) * labels.shape[0] // height)[:, None]
        cols = (np.arange(width) * labels.shape[1] // width)[None, :]
        labels = labels[rows, cols]
    return labels.astype(np.uint8 if labels.max(initial=0) < 256 else np.uint16)


def palette(classes: int) -> np.ndarray:
    """Distinct colours per class (class 0 black), by spreading the bits of the class index over R, G, B."""
    colours = np.zeros((max(classes, 1), 3), dtype=np.uint8)
    for index in range(classes):
        value, r, g, b = index, 0, 0, 0
        for shift in range(7, -1, -1):
            r |= (value & 1) << shift
            g |= ((value >> 1) & 1) << shift
            b |= ((value >> 2) & 1) << shift
            value >>= 3
        colours[index] = (r, g, b)
    return colours


def mask_image(mask: np.ndarray, classes: int) -> Image.Image:
    """The mask as a palette PNG image (pixel value = class index)."""
    if classes > 256:
        raise ModelError(f"{classes} classes do not fit a palette PNG (at most 256)")
    image = Image.fromarray(mask.astype(np.uint8), mode="P")
    image.putpalette(palette(classes).ravel().tolist())
    return image


def overlay_image(image: Image.Image, mask: np.ndarray, classes: int, alpha: float = 0.5,
                  names: Sequence[str] | None = None) -> Image.Image:
    """The input in RGB with each class's colour blended in and outlined (class 0 left as it is).

    With ``names`` (one per class), a legend of the classes present and their share of the image is added
    on the right.
    """
    pixels = overlay(image, mask, classes, alpha)
    if names is None:
        return Image.fromarray(pixels)
    count = max(classes, int(mask.max(initial=0)) + 1)
    areas = np.bincount(mask.ravel(), minlength=count) / mask.size
    colours = overlay_palette(count)
    entries = [(names[i] if i < len(names) else str(i), (int(colours[i][0]), int(colours[i][1]), int(colours[i][2])), float(areas[i]))
               for i in np.argsort(-areas) if i > 0 and areas[i] > 0]
    return with_legend(pixels, entries)
