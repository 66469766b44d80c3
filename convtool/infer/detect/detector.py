"""Run an ONNX detector over files on the shared inference pipeline: one ``Detections`` per image.

Images are letterboxed (or stretched) to the model's fixed input size while they decode in the
background; each batch's outputs are decoded (layout chosen on the first batch), thresholded, put
through class-wise NMS and mapped back to the original pixels through the same placement.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Sequence

import numpy as np
from PIL import Image

from convtool.errors import ModelError
from convtool.infer.detect import decoders
from convtool.infer.detect.boxes import Thresholds, select
from convtool.infer.detect.letterbox import LetterboxPreparer
from convtool.infer.pipeline import Chunk, Failure, Timings, model_step, run_job
from convtool.infer.preprocess import Preprocess
from convtool.infer.session import ModelSession


@dataclass
class Detections:
    """One image's boxes in its original pixels (x1, y1, x2, y2), best score first."""

    path: str | Path
    size: tuple[int, int]  # original (width, height)
    boxes: np.ndarray  # K, 4 float64
    scores: np.ndarray  # K
    classes: np.ndarray  # K, int64
    image: Image.Image | None = None  # the decoded original, when asked for (--save)


@dataclass
class DetectChunk:
    results: list[Detections]
    failures: list[Failure]


class Detector:
    """Decodes, thresholds and maps back the boxes of a detection model, batch by batch."""

    def __init__(self, model: ModelSession, recipe: Preprocess, *, labels: list[str] | None = None,
                 decoder: str = "auto", thresholds: Thresholds | None = None, resize: str = "letterbox",
                 pad: int = 114) -> None:
        if decoder != "auto" and decoder not in decoders.DECODERS:
            raise ModelError(f"decoder {decoder!r}: use auto or one of {', '.join(decoders.DECODERS)}")
        if recipe.height is None or recipe.width is None:
            raise ModelError("the model's input size is dynamic and its metadata gives no imgsz; give the input size")
        self.model, self.recipe = model, recipe
        self.thresholds = thresholds if thresholds is not None else Thresholds()
        self.preparer = LetterboxPreparer(recipe, mode=resize, pad=pad)
        self.meta = decoders.read_metadata(model.metadata)
        self.warnings: list[str] = []
        task = self.meta.task if self.meta is not None else None
        if task in ("classify", "obb"):
            raise ModelError(f"the model's metadata says its task is {task!r}, not detection"
                             + ("; use `convtool classify`" if task == "classify" else " (rotated boxes are not decoded)"))
        if task in ("segment", "pose"):
            self.warnings.append(f"the model's task is {task!r}: only its boxes are decoded")
        if labels is None and self.meta is not None:
            labels = self.meta.names
        self.labels = labels
        self.decoder = None if decoder == "auto" else decoder
        self.classes: int | None = None
        self.background = False
        self._settled = False

    @property
    def input_hw(self) -> tuple[int, int]:
        return self.preparer.size

    def label(self, index: int) -> str:
        return self.labels[index] if self.labels and 0 <= index < len(self.labels) else str(index)

    def detect(self, outputs: Sequence[np.ndarray], sizes: Sequence[tuple[int, int]], paths: Sequence[str | Path],
               images: Sequence[Image.Image] | None = None) -> list[Detections]:
        """Detections for one batch of raw model outputs, with each image's original (width, height)."""
        if not self._settled:
            self._settle([tuple(o.shape) for o in outputs])
        assert self.decoder is not None  # set by _settle
        limit = self.classes if self.decoder == "yolov8" else None
        found = decoders.decode(self.decoder, outputs, self.input_hw, len(sizes), classes=limit,
                                background=self.background)
        results = []
        for i, (candidates, (width, height)) in enumerate(zip(found, sizes, strict=True)):
            kept = select(candidates.boxes, candidates.scores, candidates.classes, self.thresholds,
                          suppress=self.decoder != "nms")
            where = self.preparer.placement(width, height)
            results.append(Detections(
                paths[i], (width, height), where.to_original(candidates.boxes[kept]),
                candidates.scores[kept].astype(np.float64), candidates.classes[kept],
                images[i] if images is not None else None,
            ))
        return results

    def run(self, files: Sequence[str | Path], *, batch: int = 8, workers: int | None = None, depth: int = 2,
            keep_images: bool = False, decoding: str = "auto", timings: Timings | None = None,
            on_progress: Callable[[int], None] | None = None) -> Iterator[DetectChunk]:
        """Detect objects in ``files`` chunk by chunk while the next chunks decode in the background.

        ``decoding``: auto, inline, threads or processes (see :func:`~convtool.infer.decode.plan_decoding`).
        JPEGs are always decoded at full size, so the letterbox and its inverse see the true pixels.
        """
        timings = timings if timings is not None else Timings()
        fixed = self.model.input.shape[0]
        yield from run_job(files, self.preparer, lambda chunk: self._detect_chunk(chunk, timings), timings,
                           batch=batch, depth=depth, workers=workers, decoding=decoding, fixed_batch=fixed,
                           keep_images=keep_images, overlap=fixed != 1, on_progress=on_progress)

    def _detect_chunk(self, chunk: Chunk, timings: Timings) -> DetectChunk:
        if not chunk.paths:
            return DetectChunk([], chunk.failures)
        results = model_step(chunk, self.model.run,
                             lambda outputs: self.detect(outputs, chunk.sizes, chunk.paths, chunk.images), timings)
        return DetectChunk(results, chunk.failures)

    def _settle(self, shapes: list[tuple[int, ...]]) -> None:
        """Choose the decoder (unless given) and learn the class count from the first batch's outputs."""
        self._settled = True
        known = len(self.labels) if self.labels else None
        if self.decoder is None:
            self.decoder = decoders.choose(shapes, self.input_hw, self.meta, known)
        if self.decoder == "ssd" and known is not None:
            self.background = decoders.class_count("ssd", shapes) == known + 1
        if self.meta is not None and self.meta.names and self.decoder == "yolov8":
            self.classes = len(self.meta.names)
        else:
            try:
                self.classes = decoders.class_count(self.decoder, shapes, background=self.background)
            except IndexError:  # shapes that do not fit: decode() says so with the layout's name
                self.classes = None
        if self.labels is not None and self.classes is not None and len(self.labels) != self.classes:
            self.warnings.append(f"{len(self.labels)} labels given but the model has {self.classes} classes; "
                                 "showing class indices instead")
            self.labels = None
