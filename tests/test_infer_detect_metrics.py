"""Detection metrics on hand-made cases, with the expected values worked out by hand in the comments."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from convtool.errors import InputError
from convtool.infer.detect.metrics import IOU_THRESHOLDS, DetectionEvaluation, label_path, match, read_labels

A = [0.0, 0.0, 10.0, 10.0]
B = [20.0, 20.0, 30.0, 30.0]


def evaluate(images, classes=1) -> DetectionEvaluation:
    """images: (detections [(box, score, class)], truths [(box, class)])."""
    evaluation = DetectionEvaluation(classes)
    for dets, truths in images:
        evaluation.add(np.array([d[0] for d in dets], float).reshape(-1, 4), np.array([d[1] for d in dets], float),
                       np.array([d[2] for d in dets], np.int64),
                       np.array([t[0] for t in truths], float).reshape(-1, 4), np.array([t[1] for t in truths], np.int64))
    return evaluation


def test_one_false_positive_between_two_hits():
    # scores 0.9 hit, 0.8 miss, 0.7 hit; 2 truths: recall .5 .5 1, precision 1 .5 .667 -> envelope 1 .667 .667
    # recall levels 0..0.50 (51) take 1, 0.51..1 (50) take 2/3: AP = (51 + 50 * 2/3) / 101 at every IoU
    e = evaluate([([(A, 0.9, 0), ([50, 50, 60, 60], 0.8, 0), (B, 0.7, 0)], [(A, 0), (B, 0)])])
    score = e.scores()[0]
    expected = (51 + 50 * 2 / 3) / 101
    assert score.ap50 == pytest.approx(expected) and score.ap == pytest.approx(expected)
    assert (score.precision, score.recall, score.truths, score.detections) == (pytest.approx(2 / 3), 1.0, 2, 3)


def test_loose_box_counts_only_at_low_iou():
    # IoU 72/100 = 0.72: a hit at 0.50, 0.55, 0.60, 0.65, 0.70 (AP 1), a miss at 0.75..0.95 (AP 0)
    e = evaluate([([([0, 0, 10, 7.2], 0.9, 0)], [(A, 0)])])
    score = e.scores()[0]
    assert score.ap50 == 1.0 and score.ap == pytest.approx(0.5)


def test_missed_object_halves_recall():
    # one hit, one truth never found: recall reaches 0.5 only, so 51 of 101 levels have precision 1
    e = evaluate([([(A, 0.9, 0)], [(A, 0)]), ([], [(B, 0)])])
    assert e.scores()[0].ap50 == pytest.approx(51 / 101)
    assert e.images == 2


def test_mean_over_classes_with_truth():
    # class 0: hit then a miss (the class-1 object called class 0) -> AP 1 (the envelope is 1 up to recall 1)
    # class 1: no detection of its own -> AP 0; class 2 has no truth and is left out: mAP = 0.5
    e = evaluate([([(A, 0.9, 0), (B, 0.8, 0), ([40, 40, 50, 50], 0.7, 2)], [(A, 0), (B, 1)])], classes=3)
    scores = e.scores()
    assert sorted(scores) == [0, 1]
    assert scores[0].ap50 == 1.0 and scores[1].ap50 == 0.0
    summary = e.summary()
    assert summary.ap50 == 0.5 and summary.precision == pytest.approx(0.25) and summary.recall == 0.5


def test_greedy_matching_by_score_not_by_iou():
    # the 0.9 box (IoU .8) takes the truth at low thresholds; from 0.85 on only the 0.8 box (IoU 1) fits
    hits = match(np.array([[0, 0, 10, 8], A], float), np.array([0.9, 0.8]), np.array([A]))
    low = IOU_THRESHOLDS < 0.8 + 1e-9
    assert hits[0].tolist() == low.tolist()
    assert hits[1].tolist() == (~low).tolist()


def test_label_path_rule():
    assert label_path("/d/images/train/a.jpg") == Path("/d/labels/train/a.txt")
    assert label_path("/d/images/x/images/b.png") == Path("/d/images/x/labels/b.txt")
    assert label_path("/d/photos/c.png") == Path("/d/photos/labels/c.txt")


def test_read_labels(tmp_path):
    path = tmp_path / "a.txt"
    path.write_text("1 0.5 0.5 0.2 0.4\n\n0 0.1 0.1 0.2 0.2\n")
    boxes, classes = read_labels(path, 200, 100, 2)
    np.testing.assert_allclose(boxes, [[80, 30, 120, 70], [0, 0, 40, 20]])
    assert classes.tolist() == [1, 0]
    assert read_labels(tmp_path / "missing.txt", 10, 10, 2)[0].shape == (0, 4)
    with pytest.raises(InputError, match="a.txt:1: class 1 but the model has 1 classes"):
        read_labels(path, 200, 100, 1)
    path.write_text("0 0.5 0.5 0.2\n")
    with pytest.raises(InputError, match="a.txt:1: expected 'class cx cy w h'"):
        read_labels(path, 200, 100, 2)
