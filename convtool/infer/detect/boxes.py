"""Boxes as N,4 arrays of corners (x1, y1, x2, y2), IoU, and greedy class-wise non-maximum suppression.

``nms`` is vectorised: one IoU row per kept box against all the remaining candidates; ``nms_naive`` is
the obviously-correct double loop it is tested against. Both keep the higher score first (ties: the
earlier box) and drop a box whose IoU with a kept box of the same class is greater than ``iou``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from convtool.errors import UsageError


@dataclass(frozen=True)
class Thresholds:
    """What survives post-processing: score at least ``conf``, NMS at ``iou``, at most ``max_det`` boxes."""

    conf: float = 0.25
    iou: float = 0.45
    max_det: int = 300
    classes: tuple[int, ...] | None = None  # keep only these class indices (None: all)
    agnostic: bool = False  # one NMS over all classes instead of one per class

    def __post_init__(self) -> None:
        for name in ("conf", "iou"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise UsageError(f"{name} threshold {value:g} is outside [0, 1]")
        if self.max_det < 1:
            raise UsageError(f"max detections {self.max_det} must be at least 1")


def xywh_to_xyxy(boxes: np.ndarray) -> np.ndarray:
    """Centre, width, height -> corners (any leading axes)."""
    out = np.empty_like(boxes)
    half_w, half_h = boxes[..., 2] / 2, boxes[..., 3] / 2
    out[..., 0] = boxes[..., 0] - half_w
    out[..., 1] = boxes[..., 1] - half_h
    out[..., 2] = boxes[..., 0] + half_w
    out[..., 3] = boxes[..., 1] + half_h
    return out


def area(boxes: np.ndarray) -> np.ndarray:
    return np.clip(boxes[..., 2] - boxes[..., 0], 0, None) * np.clip(boxes[..., 3] - boxes[..., 1], 0, None)


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of every box in ``a`` (N,4) with every box in ``b`` (M,4): N,M (0 where the union is empty)."""
    top_left = np.maximum(a[:, None, :2], b[None, :, :2])
    bottom_right = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.prod(np.clip(bottom_right - top_left, 0, None), axis=2)
    union = area(a)[:, None] + area(b)[None, :] - inter
    return np.divide(inter, union, out=np.zeros_like(inter, dtype=np.float64), where=union > 0)


def nms(boxes: np.ndarray, scores: np.ndarray, classes: np.ndarray | None = None, *, iou: float = 0.45,
        max_det: int | None = None) -> np.ndarray:
    """Indices of the boxes kept by greedy NMS, best score first; per class unless ``classes`` is None.

    Each step takes the best remaining box and drops the remaining boxes overlapping it more than
    ``iou``, with the corners and areas of all boxes computed once.
    """
    boxes = boxes.astype(np.float64, copy=False)
    if classes is not None and len(boxes):
        # shifting each class to its own region makes one NMS pass act per class
        span = float(np.abs(boxes).max()) * 2 + 1
        boxes = boxes + (classes.astype(np.float64) * span)[:, None]
    x1, y1, x2, y2 = (np.ascontiguousarray(boxes[:, i]) for i in range(4))
    areas = area(boxes)
    order = np.argsort(-scores, kind="stable")
    kept: list[int] = []
    limit = len(order) if max_det is None else max_det
    while order.size and len(kept) < limit:
        best, rest = order[0], order[1:]
        kept.append(int(best))
        width = np.minimum(x2[best], x2[rest]) - np.maximum(x1[best], x1[rest])
        height = np.minimum(y2[best], y2[rest]) - np.maximum(y1[best], y1[rest])
        inter = np.clip(width, 0, None) * np.clip(height, 0, None)
        union = areas[best] + areas[rest] - inter
        overlap = np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)
        order = rest[overlap <= iou]
    return np.asarray(kept, dtype=np.int64)


def nms_naive(boxes: np.ndarray, scores: np.ndarray, classes: np.ndarray | None = None, *,
              iou: float = 0.45) -> list[int]:
    """The reference: visit boxes by score, keep one unless a kept box of its class overlaps it more than ``iou``."""
    def overlap(i: int, j: int) -> float:
        x1, y1 = max(boxes[i, 0], boxes[j, 0]), max(boxes[i, 1], boxes[j, 1])
        x2, y2 = min(boxes[i, 2], boxes[j, 2]), min(boxes[i, 3], boxes[j, 3])
        inter = max(0.0, x2 - x1) * max(0.0, y2 - y1)
        union = _area1(boxes[i]) + _area1(boxes[j]) - inter
        return inter / union if union > 0 else 0.0

    kept: list[int] = []
    for i in sorted(range(len(boxes)), key=lambda k: (-scores[k], k)):
        same = [j for j in kept if classes is None or classes[j] == classes[i]]
        if all(overlap(i, j) <= iou for j in same):
            kept.append(i)
    return kept


def _area1(box: np.ndarray) -> float:
    return max(0.0, float(box[2] - box[0])) * max(0.0, float(box[3] - box[1]))


def select(boxes: np.ndarray, scores: np.ndarray, classes: np.ndarray, thresholds: Thresholds, *,
           suppress: bool = True) -> np.ndarray:
    """Indices kept after the score threshold, the class filter, NMS (unless ``suppress`` is False) and max_det."""
    keep = scores >= thresholds.conf
    if thresholds.classes is not None:
        keep &= np.isin(classes, thresholds.classes)
    candidates = np.flatnonzero(keep)
    if not suppress:
        order = candidates[np.argsort(-scores[candidates], kind="stable")]
        return order[: thresholds.max_det]
    per_class = None if thresholds.agnostic else classes[candidates]
    kept = nms(boxes[candidates], scores[candidates], per_class, iou=thresholds.iou, max_det=thresholds.max_det)
    return candidates[kept]
