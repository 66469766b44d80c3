"""Detector on constant-output models of every layout: the boxes known by hand come back in original pixels."""

from __future__ import annotations

import numpy as np
import pytest
from detect_helpers import (
    CLASSES,
    EXPECTED,
    constant_model,
    detection_image,
    nms_output,
    ssd_outputs,
    yolov5_output,
    yolov8_output,
    yolox_output,
)

from convtool.errors import ModelError
from convtool.infer.detect.boxes import Thresholds
from convtool.infer.detect.decoders import LayoutError, choose, grid_cells
from convtool.infer.detect.detector import Detector
from convtool.infer.preprocess import preprocess_for
from convtool.infer.session import open_session

ULTRALYTICS = {"names": "{0: 'cat', 1: 'dog', 2: 'bird'}", "stride": "32", "task": "detect", "imgsz": "[64, 64]"}
LAYOUTS = {
    "yolov8": ([yolov8_output()], None),
    "yolov8-ultralytics": ([yolov8_output()], ULTRALYTICS),
    "yolov8-segment-head": ([yolov8_output(extra_columns=32)], {**ULTRALYTICS, "task": "segment"}),
    "yolov5": ([yolov5_output()], None),
    "yolox": ([yolox_output()], None),
    "ssd": (ssd_outputs(), None),
    "ssd-classes-first": ([ssd_outputs()[0], ssd_outputs()[1].transpose(0, 2, 1)], None),
    "nms6": ([nms_output(6)], None),
    "nms7": ([nms_output(7)], None),
}


def detector(tmp_path, outputs, metadata=None, labels=None, **options) -> Detector:
    session = open_session(constant_model(tmp_path / "m.onnx", outputs, metadata), "cpu")
    return Detector(session, preprocess_for(session.input, session.metadata), labels=labels, **options)


def boxes_of(found):
    return [(int(c), round(float(s), 4), tuple(np.round(b, 3))) for b, s, c in zip(found.boxes, found.scores, found.classes, strict=True)]


@pytest.mark.parametrize("name", sorted(LAYOUTS))
def test_every_layout_gives_the_hand_computed_boxes(tmp_path, name):
    outputs, metadata = LAYOUTS[name]
    det = detector(tmp_path, outputs, metadata)
    image = detection_image(tmp_path / "a.png")
    chunks = list(det.run([image, image], batch=1 if name == "nms7" else 2))  # [K, 7] models run one image
    results = [found for chunk in chunks for found in chunk.results]
    assert not any(chunk.failures for chunk in chunks) and len(results) == 2
    for found in results:
        assert found.size == (128, 64)
        assert boxes_of(found) == [(c, s, tuple(float(v) for v in b)) for c, s, b in EXPECTED]
    assert det.decoder == name.split("-")[0].rstrip("67")
    if metadata:
        assert det.labels == ["cat", "dog", "bird"]


def test_ssd_background_column_dropped_when_labels_say_so(tmp_path):
    det = detector(tmp_path, ssd_outputs(background=True), labels=["cat", "dog", "bird"])
    [chunk] = list(det.run([detection_image(tmp_path / "a.png")]))
    assert det.background and det.classes == CLASSES
    assert boxes_of(chunk.results[0]) == [(c, s, tuple(float(v) for v in b)) for c, s, b in EXPECTED]


def test_thresholds_reach_the_results(tmp_path):
    image = detection_image(tmp_path / "a.png")
    loose = detector(tmp_path, [yolov8_output()], thresholds=Thresholds(conf=0.05, iou=0.95))
    assert len(list(loose.run([image]))[0].results[0].boxes) == 4  # A' survives a 0.95 IoU, C a 0.05 score
    only_b = detector(tmp_path, [yolov8_output()], thresholds=Thresholds(classes=(0,)))
    assert boxes_of(list(only_b.run([image]))[0].results[0])[0][0] == 0
    nothing = detector(tmp_path, [yolov8_output()], thresholds=Thresholds(conf=0.95))
    result = list(nothing.run([image]))[0].results[0]
    assert result.boxes.shape == (0, 4) and result.scores.shape == (0,)


def test_unknown_layout_says_what_was_tried(tmp_path):
    det = detector(tmp_path, [np.zeros((1, 3, 2), np.float32)])
    with pytest.raises(LayoutError) as caught:
        list(det.run([detection_image(tmp_path / "a.png")]))
    message = str(caught.value)
    assert "[1, 3, 2] matches no known detection layout for a 64x64 input" in message
    for tried in ("yolov8 [batch, 4+classes, boxes]", f"yolov5 [batch, {3 * grid_cells(64, 64)}, 5+classes]",
                  "yolox [batch, 84, 5+classes]", "ssd (two outputs", "nms [batch, K, 6 or 7]"):
        assert tried in message


def test_forced_decoder_that_does_not_fit(tmp_path):
    det = detector(tmp_path, [yolov8_output()], decoder="yolox")
    with pytest.raises(LayoutError, match=r"does not fit the yolox layout \(7 rows, but strides 8, 16, 32"):
        list(det.run([detection_image(tmp_path / "a.png")]))


def test_label_count_mismatch_warns_and_shows_indices(tmp_path):
    det = detector(tmp_path, [yolov8_output()], labels=["only", "two"])
    list(det.run([detection_image(tmp_path / "a.png")]))
    assert det.warnings == ["2 labels given but the model has 3 classes; showing class indices instead"]
    assert det.label(1) == "1"


def test_classify_task_refused(tmp_path):
    with pytest.raises(ModelError, match="task is 'classify', not detection; use `convtool classify`"):
        detector(tmp_path, [yolov8_output()], {**ULTRALYTICS, "task": "classify"})


def test_choose_from_shapes():
    cells = grid_cells(640, 640)
    assert cells == 8400
    assert choose([(1, 84, 8400)], (640, 640), None) == "yolov8"
    assert choose([(1, 25200, 85)], (640, 640), None) == "yolov5"
    assert choose([(1, 8400, 85)], (640, 640), None) == "yolox"
    assert choose([(1, 300, 6)], (640, 640), None) == "nms"
    assert choose([(1, 8732, 4), (1, 8732, 91)], (300, 300), None) == "ssd"
