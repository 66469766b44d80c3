"""Detections as result rows: one per box (file, class index and label, score, corners in original pixels)."""

from __future__ import annotations

from typing import Callable, TextIO

from convtool.infer.detect.detector import Detections
from convtool.infer.results import RecordWriter
from convtool.io.discover import shown_name

HEADER = ["file", "class", "label", "score", "x1", "y1", "x2", "y2"]


class BoxWriter(RecordWriter):
    """Writes every box of each image as a row of CSV, JSON or JSONL; an image without boxes adds no row."""

    def __init__(self, stream: TextIO, fmt: str) -> None:
        super().__init__(stream, fmt, HEADER)

    def write(self, found: Detections, label: Callable[[int], str]) -> None:
        file = shown_name(found.path)
        for box, score, cls in zip(found.boxes.tolist(), found.scores.tolist(), found.classes.tolist(), strict=True):
            corners = [round(v, 2) for v in box]
            record = {"file": file, "class": cls, "label": label(cls), "score": round(score, 5)}
            record.update(zip(HEADER[4:], corners, strict=True))
            self.write_record([file, cls, label(cls), f"{score:.5f}", *(f"{v:.2f}" for v in corners)], record)
