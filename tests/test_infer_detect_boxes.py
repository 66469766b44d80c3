"""Boxes and NMS: IoU by hand, vectorised NMS against the naive loop, thresholds."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from convtool.errors import UsageError
from convtool.infer.detect.boxes import Thresholds, iou_matrix, nms, nms_naive, select, xywh_to_xyxy


def test_iou_by_hand():
    a = np.array([[0, 0, 10, 10]], float)
    b = np.array([[5, 0, 15, 10], [20, 20, 30, 30], [0, 0, 10, 10], [3, 3, 3, 8]], float)
    # half overlap: 50 / (100 + 100 - 50); disjoint; identical; zero-area box
    np.testing.assert_allclose(iou_matrix(a, b), [[50 / 150, 0.0, 1.0, 0.0]])


def test_centre_boxes_to_corners():
    np.testing.assert_array_equal(xywh_to_xyxy(np.array([[10.0, 20.0, 4.0, 6.0]])), [[8, 17, 12, 23]])


def test_nms_by_hand():
    boxes = np.array([[0, 0, 10, 10], [1, 0, 11, 10], [20, 20, 30, 30], [0, 0, 10, 10]], float)
    scores = np.array([0.9, 0.8, 0.7, 0.95])
    classes = np.array([0, 0, 0, 1])
    # class-wise: box 3 is another class, box 1 overlaps box 0 by 90/110 > 0.5
    assert nms(boxes, scores, classes, iou=0.5).tolist() == [3, 0, 2]
    assert nms(boxes, scores, None, iou=0.5).tolist() == [3, 2]  # agnostic: box 3 suppresses 0 and 1
    assert nms(boxes, scores, classes, iou=0.5, max_det=2).tolist() == [3, 0]


boxes_strategy = st.lists(
    st.tuples(st.integers(0, 40), st.integers(0, 40), st.integers(1, 25), st.integers(1, 25),
              st.integers(0, 5), st.integers(0, 2)),
    max_size=30,
)


@settings(max_examples=40, deadline=None)
@given(boxes_strategy, st.sampled_from([0.0, 0.3, 0.5, 0.7, 1.0]), st.booleans())
def test_nms_matches_naive_loop(rows, iou, per_class):
    table = np.array(rows, dtype=np.float64).reshape(-1, 6)
    boxes = np.column_stack([table[:, 0], table[:, 1], table[:, 0] + table[:, 2], table[:, 1] + table[:, 3]])
    scores = table[:, 4] / 5  # few distinct values, so ties happen
    classes = table[:, 5].astype(np.int64) if per_class else None
    assert nms(boxes, scores, classes, iou=iou).tolist() == nms_naive(boxes, scores, classes, iou=iou)


def test_select_applies_conf_classes_and_max_det():
    boxes = np.array([[0, 0, 10, 10], [50, 50, 60, 60], [100, 0, 110, 10], [0, 100, 10, 110]], float)
    scores = np.array([0.9, 0.2, 0.6, 0.8])
    classes = np.array([0, 1, 2, 2])
    assert select(boxes, scores, classes, Thresholds(conf=0.25)).tolist() == [0, 3, 2]
    assert select(boxes, scores, classes, Thresholds(conf=0.25, classes=(2,))).tolist() == [3, 2]
    assert select(boxes, scores, classes, Thresholds(conf=0.1, max_det=2)).tolist() == [0, 3]


@pytest.mark.parametrize("field, value", [("conf", 1.5), ("iou", -0.1), ("max_det", 0)])
def test_thresholds_out_of_range(field, value):
    with pytest.raises(UsageError, match="outside \\[0, 1\\]|at least 1"):
        Thresholds(**{field: value})
