"""Detection quality against YOLO-format labels: precision, recall, mAP@0.5 and mAP@0.5:0.95.

Ground truth for ``.../images/a.jpg`` is ``.../labels/a.txt`` (the last ``images`` folder of the path
replaced by ``labels``; for a path without one, ``labels/a.txt`` beside the image), one
``class cx cy w h`` line per box, normalised to 0..1. A missing label file means an image without objects.

Matching follows COCO (pycocotools ``evaluateImg``): per image and class, detections in descending
score each take the unmatched ground-truth box of highest IoU at or above the threshold. AP is COCO's
101-point interpolated precision: the mean, over recall levels 0, 0.01, ..., 1, of the highest precision
at any recall at or above that level (0 beyond the highest recall reached). mAP averages over the
classes that have ground truth; mAP@0.5:0.95 also over IoU 0.50, 0.55, ..., 0.95. Precision and recall
are those of all the detections given (those that passed the score threshold), at IoU 0.5.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from convtool.errors import InputError
from convtool.infer.detect.boxes import iou_matrix, xywh_to_xyxy

IOU_THRESHOLDS = np.linspace(0.5, 0.95, 10)
RECALL_LEVELS = np.linspace(0.0, 1.0, 101)


def label_path(image: str | Path) -> Path:
    """Where the YOLO label file of an image is."""
    image = Path(image)
    parts = image.parts
    if "images" in parts[:-1]:
        last = len(parts) - 2 - parts[:-1][::-1].index("images")
        return Path(*parts[:last], "labels", *parts[last + 1 : -1], image.stem + ".txt")
    return image.parent / "labels" / (image.stem + ".txt")


def read_labels(path: Path, width: int, height: int, classes: int | None) -> tuple[np.ndarray, np.ndarray]:
    """Boxes (corners in pixels, N,4) and classes (N) of a YOLO label file; empty when it does not exist."""
    if not path.exists():
        return np.empty((0, 4)), np.empty(0, np.int64)
    rows = []
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: cannot read the label file ({exc})") from None
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        fields = line.split()
        try:
            values = [float(v) for v in fields[:5]]
        except ValueError:
            values = []
        if len(values) != 5 or len(fields) != 5 or values[0] != int(values[0]) or values[0] < 0:
            raise InputError(f"{path}:{number}: expected 'class cx cy w h' (a class index and four numbers), got {line.strip()!r}")
        if classes is not None and values[0] >= classes:
            raise InputError(f"{path}:{number}: class {int(values[0])} but the model has {classes} classes (0..{classes - 1})")
        rows.append(values)
    if not rows:
        return np.empty((0, 4)), np.empty(0, np.int64)
    table = np.asarray(rows, dtype=np.float64)
    boxes = xywh_to_xyxy(table[:, 1:5]) * np.array([width, height, width, height])
    return boxes, table[:, 0].astype(np.int64)


def match(boxes: np.ndarray, scores: np.ndarray, truth: np.ndarray,
          thresholds: np.ndarray = IOU_THRESHOLDS) -> np.ndarray:
    """True positives D,T for one image and one class: detections greedily, best score first (COCO)."""
    order = np.argsort(-scores, kind="stable")
    hits = np.zeros((len(boxes), len(thresholds)), dtype=bool)
    if not len(truth) or not len(boxes):
        return hits
    ious = iou_matrix(boxes[order], truth)
    for t, threshold in enumerate(thresholds):
        taken = np.zeros(len(truth), dtype=bool)
        for rank, d in enumerate(order):
            candidates = np.where(taken, -1.0, ious[rank])
            best = int(candidates.argmax())
            if candidates[best] >= min(threshold, 1 - 1e-10):
                taken[best] = True
                hits[d, t] = True
    return hits


def average_precision(scores: np.ndarray, hits: np.ndarray, truths: int) -> float:
    """COCO's 101-point interpolated AP of detections with these scores and hit flags, for ``truths`` boxes."""
    if truths == 0:
        return float("nan")
    if not len(scores):
        return 0.0
    order = np.argsort(-scores, kind="mergesort")
    tp = np.cumsum(hits[order])
    fp = np.cumsum(~hits[order])
    recall = tp / truths
    precision = tp / np.maximum(tp + fp, np.finfo(np.float64).eps)
    envelope = np.maximum.accumulate(precision[::-1])[::-1]
    where = np.searchsorted(recall, RECALL_LEVELS, side="left")
    values = np.where(where < len(envelope), envelope[np.minimum(where, len(envelope) - 1)], 0.0)
    return float(values.mean())


@dataclass
class ClassScore:
    truths: int
    detections: int
    precision: float
    recall: float
    ap50: float
    ap: float  # mean over IoU 0.50:0.95


@dataclass
class DetectionEvaluation:
    """Accumulates detections and ground truth image by image; :meth:`scores` gives the metrics.

    ``classes`` (when known) is the model's class count: a label naming a class beyond it is an error.
    """

    classes: int | None = None
    images: int = 0
    label_files: int = 0  # images whose label file existed
    _scores: list[np.ndarray] = field(default_factory=list)
    _classes: list[np.ndarray] = field(default_factory=list)
    _hits: list[np.ndarray] = field(default_factory=list)
    truths: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))  # boxes per class

    def add_image(self, path: str | Path, size: tuple[int, int], boxes: np.ndarray, scores: np.ndarray,
                  classes: np.ndarray) -> None:
        """One image's detections (corners in its original pixels) against its YOLO label file."""
        labels = label_path(path)
        self.label_files += labels.exists()
        truth_boxes, truth_classes = read_labels(labels, size[0], size[1], self.classes)
        self.add(boxes, scores, classes, truth_boxes, truth_classes)

    def add(self, boxes: np.ndarray, scores: np.ndarray, classes: np.ndarray,
            truth_boxes: np.ndarray, truth_classes: np.ndarray) -> None:
        """One image's detections and ground truth (corners in the same pixels)."""
        self.images += 1
        counts = np.bincount(truth_classes, minlength=len(self.truths))
        counts[: len(self.truths)] += self.truths
        self.truths = counts
        hits = np.zeros((len(boxes), len(IOU_THRESHOLDS)), dtype=bool)
        for c in np.unique(classes):
            mine = classes == c
            hits[mine] = match(boxes[mine], scores[mine], truth_boxes[truth_classes == c])
        self._scores.append(scores)
        self._classes.append(classes)
        self._hits.append(hits)

    def scores(self) -> dict[int, ClassScore]:
        """Per class with ground truth: counts, precision and recall at IoU 0.5, AP@0.5 and AP@0.5:0.95."""
        scores = np.concatenate(self._scores) if self._scores else np.empty(0)
        classes = np.concatenate(self._classes) if self._classes else np.empty(0, np.int64)
        hits = np.concatenate(self._hits) if self._hits else np.empty((0, len(IOU_THRESHOLDS)), bool)
        result = {}
        for c in np.flatnonzero(self.truths):
            mine = classes == c
            s, h, n = scores[mine], hits[mine], int(self.truths[c])
            aps = [average_precision(s, h[:, t], n) for t in range(len(IOU_THRESHOLDS))]
            tp = int(h[:, 0].sum())
            result[int(c)] = ClassScore(n, len(s), tp / len(s) if len(s) else 0.0, tp / n, aps[0], float(np.mean(aps)))
        return result

    def summary(self) -> ClassScore | None:
        """The 'all' row: truths and detections summed, the rest averaged over classes with ground truth."""
        per_class = list(self.scores().values())
        if not per_class:
            return None

        def mean(name: str) -> float:
            return float(np.mean([getattr(s, name) for s in per_class]))

        return ClassScore(sum(s.truths for s in per_class), sum(s.detections for s in per_class),
                          mean("precision"), mean("recall"), mean("ap50"), mean("ap"))
