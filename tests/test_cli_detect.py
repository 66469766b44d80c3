"""`convtool detect` through click: table, result files, --save, --eval and the bad inputs."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from click.testing import CliRunner
from detect_helpers import IMAGE, constant_model, detection_image, yolov8_output
from PIL import Image

from convtool.cli.main import cli

NAMES = {"names": "{0: 'cat', 1: 'dog', 2: 'bird'}", "stride": "32", "task": "detect", "imgsz": "[64, 64]"}
ROWS = [["dog", "0.90000", "48.00", "24.00", "80.00", "40.00"], ["cat", "0.80000", "16.00", "8.00", "48.00", "56.00"]]


def run(*args: str):
    return CliRunner().invoke(cli, ["detect", *args, "--device", "cpu"], catch_exceptions=False)


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return str(constant_model(tmp_path_factory.mktemp("m") / "v8.onnx", [yolov8_output()], NAMES))


@pytest.fixture
def image(tmp_path):
    return str(detection_image(tmp_path / "a.png"))


def test_table(model, image):
    result = run(image, "-m", model)
    assert result.exit_code == 0, result.output
    lines = [line.split() for line in result.stdout.splitlines()]
    assert lines[0] == ["file", "class", "score", "x1", "y1", "x2", "y2"]
    assert lines[1:] == [[image, "dog", "0.900", "48.0", "24.0", "80.0", "40.0"],
                         [image, "cat", "0.800", "16.0", "8.0", "48.0", "56.0"]]
    assert "1 image in" in result.stderr and "per image) on CPU" in result.stderr


@pytest.mark.parametrize("suffix", [".csv", ".json", ".jsonl"])
def test_result_files_one_row_per_box(model, image, tmp_path, suffix):
    out = tmp_path / f"boxes{suffix}"
    result = run(image, image, "-m", model, "-o", str(out))  # the same file twice: two images' rows
    assert result.exit_code == 0, result.output
    text = out.read_text()
    if suffix == ".csv":
        rows = list(csv.reader(text.splitlines()))
        assert rows[0] == ["file", "class", "label", "score", "x1", "y1", "x2", "y2"]
        assert [r[2:] for r in rows[1:]] == ROWS * 2 and [r[1] for r in rows[1:]] == ["1", "0"] * 2
    else:
        records = json.loads(text) if suffix == ".json" else [json.loads(line) for line in text.splitlines()]
        assert len(records) == 4
        assert records[0] == {"file": image, "class": 1, "label": "dog", "score": 0.9, "x1": 48.0, "y1": 24.0,
                              "x2": 80.0, "y2": 40.0}
    assert "wrote the boxes of 2 images to" in result.stderr


@pytest.mark.parametrize("suffix, empty", [(".csv", "file,class,label,score,x1,y1,x2,y2\n"), (".json", "]\n"),
                                           (".jsonl", "")])
def test_no_detections_is_a_rowless_result(model, image, tmp_path, suffix, empty):
    out = tmp_path / f"boxes{suffix}"
    result = run(image, "-m", model, "--conf", "0.95", "-o", str(out))
    assert result.exit_code == 0, result.output
    assert out.read_text() == ("[" + empty if suffix == ".json" else empty)
    table = run(image, "-m", model, "--conf", "0.95")
    assert table.exit_code == 0 and "(no objects)" in table.stdout


def test_classes_by_name_and_index(model, image):
    assert [line.split()[1] for line in run(image, "-m", model, "--classes", "cat").stdout.splitlines()[1:]] == ["cat"]
    assert [line.split()[1] for line in run(image, "-m", model, "--classes", "1,2").stdout.splitlines()[1:]] == ["dog"]
    bad = run(image, "-m", model, "--classes", "horse")
    assert bad.exit_code == 2 and "--classes 'horse' is not a class name (the model's classes are cat, dog, bird)" in bad.output


@pytest.mark.parametrize("option, value", [("--iou", "1.5"), ("--conf", "-0.1")])
def test_thresholds_outside_0_1(model, image, option, value):
    result = run(image, "-m", model, option, value)
    assert result.exit_code == 2 and f"{value} is not in the range 0<=x<=1" in result.output


def test_output_matching_no_layout(image, tmp_path):
    bad = constant_model(tmp_path / "bad.onnx", [np.zeros((1, 3, 2), np.float32)])
    result = run(image, "-m", str(bad), "-o", str(tmp_path / "out.csv"))
    assert result.exit_code == 2
    assert "[1, 3, 2] matches no known detection layout" in result.output and "tried yolov8" in result.output
    assert "(--decoder yolov8|yolov5|yolox|ssd|nms)" in result.output
    assert not (tmp_path / "out.csv").exists()


def test_label_count_mismatch_warns(model, image, tmp_path):
    labels = tmp_path / "labels.txt"
    labels.write_text("one\ntwo\n")
    result = run(image, "-m", model, "--labels", str(labels))
    assert result.exit_code == 0
    assert "warning: 2 labels given but the model has 3 classes; showing class indices instead" in result.stderr
    assert result.stdout.splitlines()[1].split()[1] == "1"


def test_corrupt_files_skipped_and_listed(model, tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    detection_image(folder / "good.png")
    (folder / "empty.png").write_bytes(b"")
    (folder / "cut.png").write_bytes((folder / "good.png").read_bytes()[:100])
    out = tmp_path / "boxes.csv"
    result = run(str(folder), "-m", model, "-o", str(out))
    assert result.exit_code == 1
    assert "2 of 3 files could not be used" in result.stderr
    assert "empty.png: the file is empty (0 bytes)" in result.stderr and "cut.png:" in result.stderr
    assert [row[0] for row in csv.reader(out.read_text().splitlines()[1:])] == [str(folder / "good.png")] * 2


def test_a_picture_another_run_made_meanwhile_is_kept_and_the_others_are_saved(model, tmp_path, monkeypatch):
    import convtool.cli.detect as detect_cli

    folder = tmp_path / "in"
    folder.mkdir()
    for name in ("a.png", "b.png"):
        detection_image(folder / name)
    out = tmp_path / "drawn"
    real = detect_cli._save

    def racing(target, *args):
        if target.name == "a.png":
            target.write_bytes(b"the other run's")
        real(target, *args)

    monkeypatch.setattr(detect_cli, "_save", racing)
    result = run(str(folder), "-m", model, "--save", str(out))
    assert result.exit_code == 1
    assert "a.png: already exists; pass --overwrite" in result.stderr and "1 of 2 files skipped" in result.stderr
    assert (out / "a.png").read_bytes() == b"the other run's"
    assert Image.open(out / "b.png").size == IMAGE


def test_save_draws_boxes_and_refuses_to_overwrite(model, image, tmp_path):
    out = tmp_path / "drawn"
    result = run(image, "-m", model, "--save", str(out))
    assert result.exit_code == 0, result.output
    drawn = np.asarray(Image.open(out / "a.png").convert("RGB")).astype(int)
    original = np.asarray(Image.open(image).convert("RGB")).astype(int)
    assert drawn.shape == original.shape == (IMAGE[1], IMAGE[0], 3)
    changed = np.any(drawn != original, axis=2)
    assert changed[40, 60] and changed[30, 80]  # the dog box's bottom edge and right edge
    assert not changed[63, 127] and not changed[60, 100]  # far from every box
    again = run(image, "-m", model, "--save", str(out))
    assert again.exit_code == 1 and "a.png already exist; pass --overwrite to replace them" in again.output
    assert run(image, "-m", model, "--save", str(out), "--overwrite").exit_code == 0


def _dataset(tmp_path, label_text: str):
    images, labels = tmp_path / "data" / "images", tmp_path / "data" / "labels"
    images.mkdir(parents=True)
    labels.mkdir()
    detection_image(images / "a.png")
    (labels / "a.txt").write_text(label_text)
    return images


def test_eval_against_yolo_labels(model, tmp_path):
    # the dog and the cat exactly as detected, plus a bird never found: AP 1, 1, 0 -> mAP 2/3; R 1, 1, 0
    images = _dataset(tmp_path, "1 0.5 0.5 0.25 0.25\n0 0.25 0.5 0.25 0.75\n2 0.9 0.9 0.1 0.1\n")
    result = run(str(images), "-m", model, "--eval")
    assert result.exit_code == 0, result.output
    rows = {line.split()[0]: line.split()[1:] for line in result.stdout.splitlines() if line.split()}
    assert rows["all"] == ["3", "2", "0.667", "0.667", "0.667", "0.667"]
    assert rows["dog"] == ["1", "1", "1.000", "1.000", "1.000", "1.000"]
    assert rows["bird"] == ["1", "0", "0.000", "0.000", "0.000", "0.000"]
    assert "1 images, 1 label files" in result.stdout


def test_eval_label_class_beyond_the_model(model, tmp_path):
    images = _dataset(tmp_path, "7 0.5 0.5 0.25 0.25\n")
    result = run(str(images), "-m", model, "--eval")
    assert result.exit_code == 1
    assert "a.txt:1: class 7 but the model has 3 classes (0..2)" in result.output


def test_eval_without_labels(model, image):
    result = run(image, "-m", model, "--eval")
    assert result.exit_code == 1 and "--eval found no label files" in result.output


def test_dynamic_input_without_imgsz_needs_size(image, tmp_path):
    from infer_helpers import save
    from onnx import TensorProto, helper

    graph = helper.make_graph([helper.make_node("ReduceMean", ["x"], ["y"], axes=[2, 3], keepdims=0)], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, "H", "W"])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 3])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    path = save(model, tmp_path / "dyn.onnx")
    result = run(image, "-m", str(path))
    assert result.exit_code == 2 and "input size is dynamic and its metadata gives no imgsz; pass --size HxW" in result.output


@pytest.mark.parametrize("decoding", ["inline", "processes"])
def test_decoding_modes_give_the_same_boxes(model, tmp_path, decoding):
    folder = tmp_path / "in"
    folder.mkdir()
    for name in ("a", "b", "c"):
        detection_image(folder / f"{name}.png")
    result = run(str(folder), "-m", model, "--decoding", decoding, "--workers", "2", "-v", "-o", str(tmp_path / "b.csv"))
    assert result.exit_code == 0, result.output
    rows = list(csv.reader((tmp_path / "b.csv").read_text().splitlines()))[1:]
    assert [r[2:] for r in rows] == ROWS * 3
    assert {"inline": "decoding: inline", "processes": "2 worker process(es)"}[decoding] in result.stderr  # -v
