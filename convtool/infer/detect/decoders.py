"""Detection output layouts -> candidate boxes in model-input pixels, one set per image.

Layouts (B = batch, C = classes, N = candidate boxes):

- ``yolov8``: one output [B, 4+C, N] (YOLOv8/v11 and Ultralytics exports): cx, cy, w, h in input
  pixels, then C class scores in 0..1.
- ``yolov5``: one output [B, N, 5+C]: cx, cy, w, h, objectness, C class scores; score = obj * class.
- ``yolox``: one output [B, N, 5+C] of raw YOLOX head values (exported without decoding):
  cx = (tx + grid x) * stride, w = exp(tw) * stride over strides 8, 16 and 32, row-major cells;
  objectness and class scores already through their sigmoid.
- ``ssd``: two outputs, boxes [B, N, 4] as corners x1, y1, x2, y2 normalised to 0..1 and scores
  [B, N, C] (or [B, C, N]); a first background column is dropped when the labels name C-1 classes.
- ``nms``: models with NMS inside: [B, K, 6] rows x1, y1, x2, y2, score, class, or [B, K, 7] / [K, 7]
  rows batch index, x1, y1, x2, y2, class, score (YOLOv7 end-to-end); zero-score padding rows drop out.

:func:`choose` picks one from Ultralytics metadata (``names``, ``task``, ``end2end``) and the shapes.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

from convtool.errors import ModelError
from convtool.infer.detect.boxes import xywh_to_xyxy

DECODERS = ("yolov8", "yolov5", "yolox", "ssd", "nms")
STRIDES = (8, 16, 32)


class LayoutError(ModelError):
    """The model's outputs fit no detection layout (or not the one asked for)."""


@dataclass
class Candidates:
    """One image's candidate boxes before thresholds: corners in model-input pixels, best class and score."""

    boxes: np.ndarray  # N, 4
    scores: np.ndarray  # N
    classes: np.ndarray  # N, int64


@dataclass(frozen=True)
class Ultralytics:
    """What an Ultralytics export says about itself in its metadata."""

    names: list[str] | None
    task: str | None
    end2end: bool
    imgsz: tuple[int, int] | None


def read_metadata(metadata: dict[str, str]) -> Ultralytics | None:
    """The Ultralytics metadata of a model, or None when it has none (its values are Python literals)."""
    if not ({"names", "stride", "task"} & metadata.keys()):
        return None
    names = _literal(metadata.get("names"))
    if isinstance(names, dict):
        names = [str(names[k]) for k in sorted(names)]
    elif isinstance(names, list):
        names = [str(n) for n in names]
    else:
        names = None
    imgsz = _literal(metadata.get("imgsz"))
    if isinstance(imgsz, int):
        imgsz = (imgsz, imgsz)
    size = (int(imgsz[0]), int(imgsz[1])) if isinstance(imgsz, (list, tuple)) and len(imgsz) == 2 else None
    end2end = str(metadata.get("end2end", "")).lower() == "true"
    return Ultralytics(names, metadata.get("task"), end2end, size)


def _literal(text: str | None):
    if text is None:
        return None
    try:
        return ast.literal_eval(text)  # a literal only: never evaluates code
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        return None


def grid_cells(height: int, width: int, strides: Sequence[int] = STRIDES) -> int:
    """Cells of the YOLOX/YOLOv8 grids for an input of height x width."""
    return sum((height // s) * (width // s) for s in strides)


def choose(shapes: Sequence[tuple[int, ...]], input_hw: tuple[int, int], meta: Ultralytics | None,
           classes: int | None = None) -> str:
    """The decoder for outputs of these shapes, or LayoutError listing what was tried.

    ``classes`` is the class count when known (from labels or metadata); it settles ambiguous shapes.
    """
    if meta is not None and meta.names is not None:
        classes = len(meta.names)
    if len(shapes) >= 2 and any(len(s) == 3 and s[-1] == 4 for s in shapes[:2]):
        return "ssd"
    shape = tuple(shapes[0])
    if len(shape) == 2 and shape[-1] == 7:
        return "nms"
    if len(shape) == 3:
        _, rows, cols = shape
        cells = grid_cells(*input_hw)
        if meta is not None and meta.end2end and cols in (6, 7):
            return "nms"
        if classes is not None:
            if rows == 4 + classes or (meta is not None and rows > 4 + classes and rows < cols):
                return "yolov8"
            if cols == 5 + classes:
                return "yolov5" if rows != cells else "yolox"
        if 5 <= rows < cols:
            return "yolov8"
        if cols >= 6 and rows == 3 * cells:
            return "yolov5"
        if cols >= 6 and rows == cells:
            return "yolox"
        if cols in (6, 7):
            return "nms"
    raise LayoutError(_no_layout(shapes, input_hw))


def _no_layout(shapes: Sequence[tuple[int, ...]], input_hw: tuple[int, int]) -> str:
    h, w = input_hw
    cells = grid_cells(h, w)
    shown = ", ".join("[" + ", ".join(str(d) for d in s) + "]" for s in shapes)
    return (
        f"the model's output {shown} matches no known detection layout for a {h}x{w} input; tried "
        f"yolov8 [batch, 4+classes, boxes], yolov5 [batch, {3 * cells}, 5+classes], "
        f"yolox [batch, {cells}, 5+classes], ssd (two outputs: boxes [batch, N, 4] and scores [batch, N, classes]), "
        "nms [batch, K, 6 or 7]; choose the decoder that fits the model"
    )


def decode(name: str, outputs: Sequence[np.ndarray], input_hw: tuple[int, int], batch: int, *,
           classes: int | None = None, background: bool = False) -> list[Candidates]:
    """Candidates for each of the ``batch`` images from the raw outputs of one batch, with decoder ``name``.

    ``classes`` limits the class columns of yolov8 (Ultralytics segment/pose heads append mask or
    keypoint columns after them); ``background`` drops an SSD background column.
    """
    decoder = _DECODERS[name]
    try:
        found = decoder(outputs, input_hw, classes=classes, background=background)
    except (ValueError, IndexError) as exc:
        shapes = ", ".join(str(list(o.shape)) for o in outputs)
        raise LayoutError(f"the model's output {shapes} does not fit the {name} layout ({exc})") from None
    empty = Candidates(np.empty((0, 4), np.float32), np.empty(0, np.float32), np.empty(0, np.int64))
    return (found + [empty] * batch)[:batch]  # [K, 7] outputs omit trailing images without boxes


def class_count(name: str, shapes: Sequence[tuple[int, ...]], *, background: bool = False) -> int | None:
    """Classes the model scores, read from its output shapes (None for NMS-included outputs)."""
    if name == "yolov8":
        return shapes[0][1] - 4
    if name in ("yolov5", "yolox"):
        return shapes[0][2] - 5
    if name == "ssd":
        scores = shapes[1] if shapes[0][-1] == 4 else shapes[0]
        boxes = shapes[0] if shapes[0][-1] == 4 else shapes[1]
        count = scores[2] if scores[1] == boxes[1] else scores[1]
        return count - 1 if background else count
    return None


def _best_class(scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """B,N,C class scores -> (B,N best score, B,N class index)."""
    if scores.shape[-1] == 0:
        raise ValueError("no class columns")
    best = scores.argmax(axis=-1)
    return np.take_along_axis(scores, best[..., None], axis=-1)[..., 0], best


def _rank3(output: np.ndarray, min_cols: int) -> np.ndarray:
    if output.ndim != 3 or output.shape[-1] < min_cols:
        raise ValueError(f"expected [batch, boxes, >= {min_cols}]")
    return output.astype(np.float32, copy=False)


def _split(boxes: np.ndarray, scores: np.ndarray, classes: np.ndarray) -> list[Candidates]:
    return [Candidates(b, s, c.astype(np.int64)) for b, s, c in zip(boxes, scores, classes, strict=True)]


def _yolov8(outputs, input_hw, *, classes=None, background=False) -> list[Candidates]:
    rows = _rank3(outputs[0], 1).transpose(0, 2, 1)  # B, N, 4+C
    if rows.shape[-1] < 5:
        raise ValueError("expected [batch, 4+classes, boxes]")
    end = rows.shape[-1] if classes is None else 4 + classes
    score, best = _best_class(rows[..., 4:end])
    return _split(xywh_to_xyxy(rows[..., :4]), score, best)


def _yolov5(outputs, input_hw, *, classes=None, background=False) -> list[Candidates]:
    rows = _rank3(outputs[0], 6)
    score, best = _best_class(rows[..., 5:] * rows[..., 4:5])
    return _split(xywh_to_xyxy(rows[..., :4]), score, best)


def yolox_grid(height: int, width: int, strides: Sequence[int] = STRIDES) -> tuple[np.ndarray, np.ndarray]:
    """Cell offsets (x, y) N,2 and strides N,1 of the YOLOX grids, row-major within each stride."""
    grids, steps = [], []
    for stride in strides:
        ys, xs = np.meshgrid(np.arange(height // stride), np.arange(width // stride), indexing="ij")
        grids.append(np.stack([xs.ravel(), ys.ravel()], axis=1))
        steps.append(np.full((xs.size, 1), stride))
    return np.concatenate(grids).astype(np.float32), np.concatenate(steps).astype(np.float32)


def _yolox(outputs, input_hw, *, classes=None, background=False) -> list[Candidates]:
    rows = _rank3(outputs[0], 6)
    grid, stride = yolox_grid(*input_hw)
    if rows.shape[1] != len(grid):
        raise ValueError(f"{rows.shape[1]} rows, but strides 8, 16, 32 on this input give {len(grid)} cells")
    centres = (rows[..., :2] + grid) * stride
    sizes = np.exp(np.minimum(rows[..., 2:4], 20.0)) * stride  # no overflow on wild values
    score, best = _best_class(rows[..., 5:] * rows[..., 4:5])
    return _split(xywh_to_xyxy(np.concatenate([centres, sizes], axis=-1)), score, best)


def _ssd(outputs, input_hw, *, classes=None, background=False) -> list[Candidates]:
    if len(outputs) < 2:
        raise ValueError("expected two outputs, boxes and scores")
    first, second = outputs[0], outputs[1]
    boxes, scores = (first, second) if first.ndim == 3 and first.shape[-1] == 4 else (second, first)
    boxes, scores = _rank3(boxes, 4), _rank3(scores, 1)
    if scores.shape[1] != boxes.shape[1]:
        scores = scores.transpose(0, 2, 1)
    if scores.shape[1] != boxes.shape[1]:
        raise ValueError("boxes and scores have different box counts")
    if background:
        scores = scores[..., 1:]
    score, best = _best_class(scores)
    h, w = input_hw
    return _split(boxes * np.array([w, h, w, h], dtype=np.float32), score, best)


def _nms(outputs, input_hw, *, classes=None, background=False) -> list[Candidates]:
    rows = outputs[0].astype(np.float32, copy=False)
    if rows.ndim == 2 and rows.shape[-1] == 7:  # [K, 7] over the whole batch: split by the batch column
        count = int(rows[:, 0].max()) + 1 if len(rows) else 1
        rows = [rows[rows[:, 0] == i] for i in range(count)]
    elif rows.ndim != 3 or rows.shape[-1] not in (6, 7):
        raise ValueError("expected [batch, K, 6] or [batch, K, 7]")
    found = []
    for r in rows:
        if r.shape[-1] == 6:
            found.append(Candidates(r[:, :4], r[:, 4], np.rint(r[:, 5]).astype(np.int64)))
        else:
            found.append(Candidates(r[:, 1:5], r[:, 6], np.rint(r[:, 5]).astype(np.int64)))
    return found


_DECODERS: dict[str, Callable[..., list[Candidates]]] = {
    "yolov8": _yolov8, "yolov5": _yolov5, "yolox": _yolox, "ssd": _ssd, "nms": _nms,
}
