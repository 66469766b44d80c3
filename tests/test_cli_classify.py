"""`convtool classify` through click: tables, result files, --eval, devices and every bad input."""

from __future__ import annotations

import csv
import json

import numpy as np
import onnx
import pytest
from click.testing import CliRunner
from infer_helpers import MNIST_12, linear_rgb, write_mnist_pngs
from PIL import Image

from convtool import nvidia
from convtool.cli.main import cli


@pytest.fixture(scope="module")
def digits(tmp_path_factory):
    folder = tmp_path_factory.mktemp("digits")
    paths, labels = write_mnist_pngs(folder, 40)
    return folder, paths, labels


def run(*args: str):
    return CliRunner().invoke(cli, ["classify", *args], catch_exceptions=False)


def test_table_for_a_small_run(digits):
    folder, paths, labels = digits
    result = run(*map(str, paths[:3]), "-m", str(MNIST_12), "--top-k", "3", "--device", "cpu")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["file", "top-1", "prob", "top-2..3"]
    for line, path, label in zip(lines[1:], paths, labels):
        assert line.split()[:2] == [str(path), str(label)]
    assert "3 images in" in result.stderr and "per image) on CPU" in result.stderr


def test_csv_json_jsonl_hold_every_top_k_entry(digits, tmp_path):
    folder, paths, labels = digits
    out = {}
    for suffix in ("csv", "json", "jsonl"):
        target = tmp_path / f"results.{suffix}"
        result = run(str(folder), "-m", str(MNIST_12), "-o", str(target), "--top-k", "2", "--device", "cpu")
        assert result.exit_code == 0, result.output
        assert f"wrote 40 results to {target}" in result.stderr
        out[suffix] = target
    rows = list(csv.DictReader(out["csv"].open()))
    assert [r["file"] for r in rows] == [str(p) for p in paths]
    assert [int(r["index_1"]) for r in rows] == labels.tolist()
    assert all(float(r["probability_1"]) >= float(r["probability_2"]) for r in rows)
    records = json.loads(out["json"].read_text())
    lines = [json.loads(line) for line in out["jsonl"].read_text().splitlines()]
    assert records == lines and len(records) == 40
    assert [len(r["top_k"]) for r in records] == [2] * 40
    assert [r["top_k"][0]["label"] for r in records] == [str(v) for v in labels]
    assert records[0]["top_k"][0]["probability"] == pytest.approx(float(rows[0]["probability_1"]), rel=1e-5)


def test_top_k_beyond_the_classes_gives_every_class_once(digits, tmp_path):
    _, paths, _ = digits
    target = tmp_path / "r.csv"
    assert run(str(paths[0]), "-m", str(MNIST_12), "--top-k", "12", "-o", str(target)).exit_code == 0
    header, row = list(csv.reader(target.open()))
    assert header[-1] == "probability_10" and len(row) == len(header) == 1 + 3 * 10
    assert sorted(int(v) for v in row[2::3]) == list(range(10))


def test_existing_output_needs_overwrite_and_is_left_untouched(digits, tmp_path):
    folder, _, _ = digits
    target = tmp_path / "r.csv"
    target.write_text("keep me")
    result = run(str(folder), "-m", str(MNIST_12), "-o", str(target))
    assert result.exit_code == 1
    assert result.output.strip().endswith(f"Error: {target}: already exists; pass --overwrite to replace it")
    assert target.read_text() == "keep me"
    assert run(str(folder), "-m", str(MNIST_12), "-o", str(target), "--overwrite").exit_code == 0
    assert target.read_text().startswith("file,label_1")


def test_eval_on_class_subfolders_with_confusion_png(tmp_path):
    root = tmp_path / "test"
    _, labels = write_mnist_pngs(root, 60, by_class=True)
    picture = tmp_path / "confusion.png"
    result = run(str(root), "-m", str(MNIST_12), "--eval", "--confusion", str(picture), "--device", "cpu")
    assert result.exit_code == 0, result.output
    first = result.stdout.splitlines()[0]
    correct = int(first.split("(")[1].split(" of ")[0])
    assert first.startswith("accuracy ") and first.endswith(" of 60)") and correct >= 58
    assert "confusion matrix" in result.stdout
    image = Image.open(picture)
    assert image.format == "PNG" and image.width > 200


def test_device_messages_without_a_gpu(digits):
    folder, paths, _ = digits
    auto = run(str(paths[0]), "-m", str(MNIST_12))
    assert auto.exit_code == 0
    if "on CUDA" in auto.stderr:
        pytest.skip("this machine has a working CUDA provider")
    if nvidia.driver_present():  # a driver that cannot run CUDA: say why the CPU runs
        assert "convtool: running on the CPU because CUDA is not usable: " in auto.stderr
    else:  # no NVIDIA driver at all: the CPU, without a CUDA warning
        assert "CUDA" not in auto.stderr and "on CPU (CPUExecutionProvider)" in auto.stderr
    assert "[E:onnxruntime" not in auto.output and "[W:onnxruntime" not in auto.output
    cuda = run(str(paths[0]), "-m", str(MNIST_12), "--device", "cuda")
    assert cuda.exit_code == 1
    assert cuda.output.startswith("Error: --device cuda: CUDA is not usable: ")
    assert len(cuda.output.strip().splitlines()) == 1
    cpu = run(str(paths[0]), "-m", str(MNIST_12), "--device", "cpu")
    assert "CUDA" not in cpu.stderr
    unknown = run(str(paths[0]), "-m", str(MNIST_12), "--device", "gpu1")
    assert unknown.exit_code == 2 and "'gpu1' is not auto, cpu, cuda or cuda:N" in unknown.output


def test_corrupt_and_non_image_files_are_skipped_and_reported(digits, tmp_path):
    _, paths, labels = digits
    folder = tmp_path / "mixed"
    folder.mkdir()
    for p in paths[:3]:
        (folder / p.name).write_bytes(p.read_bytes())
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 30)
    (folder / "readme.txt").write_text("hello")
    out = tmp_path / "r.csv"
    result = run(str(folder), "-m", str(MNIST_12), "-o", str(out))
    assert result.exit_code == 1
    assert "1 non-image file in the folders skipped" in result.stderr  # readme.txt: quietly, counted
    assert "1 of 4 files could not be used:" in result.stderr
    assert "broken.png:" in result.stderr and "readme.txt" not in result.stderr
    assert result.stderr.strip().endswith("Error: 1 of 4 files skipped (listed above); the others were processed")
    assert len(list(csv.reader(out.open()))) == 4  # header + the three good digits
    assert "Traceback" not in result.output
    only_bad = tmp_path / "bad"
    only_bad.mkdir()
    (only_bad / "readme.txt").write_text("hello")
    none = run(str(only_bad), "-m", str(MNIST_12), "-o", str(tmp_path / "none.csv"))
    assert none.exit_code == 1 and "no image files in this folder" in none.output
    assert not (tmp_path / "none.csv").exists() and not list(tmp_path.glob(".none*"))


def _make_folder(path):
    path.mkdir()
    return str(path)


def _not_onnx(path):
    path.write_text("hello")
    return str(path)


def _segmenter(path):
    from infer_helpers import colour_segmenter

    return str(colour_segmenter(path, size=(28, 28)))


# case -> (setup(tmp_path) -> {"image": ..., "model": ..., "extra": [...]}, message, exit code)
BAD_INPUTS = {
    "missing_model": (lambda t: {"model": str(t / "missing.onnx")}, "missing.onnx: no such model file", 1),
    "not_onnx": (lambda t: {"model": _not_onnx(t / "model.onnx")}, "not a usable ONNX model", 1),
    "flat_input": (lambda t: {"model": str(_flat_model(t / "flat.onnx"))}, "is not an image tensor", 1),
    "channels": (lambda t: {"extra": ["--channels", "rgb"]}, "rgb images have 3 channel(s) but the model's input", 2),
    "empty_folder": (lambda t: {"image": _make_folder(t / "empty")}, "no image files in this folder", 1),
    "missing_input": (lambda t: {"image": str(t / "nowhere.png")}, "nowhere.png: no such file or folder", 1),
    "bad_suffix": (lambda t: {"extra": ["-o", str(t / "r.xlsx")]}, "unknown result format '.xlsx'", 2),
    "output_folder": (lambda t: {"extra": ["-o", _make_folder(t / "out")]}, "out: is a folder; give a file name", 1),
    "bad_size": (lambda t: {"extra": ["--size", "big"]}, "Invalid value for '--size': 'big' is not HEIGHTxWIDTH", 2),
    "confusion_alone": (lambda t: {"extra": ["--confusion", str(t / "c.png")]}, "--confusion needs --eval", 2),
    "segmenter": (lambda t: {"model": _segmenter(t / "seg.onnx"), "extra": ["--channels", "rgb"]},
                  "is not [batch, classes]", 1),
    "eval_file": (lambda t: {"extra": ["--eval"]}, "--eval needs a folder with one subfolder of images per class", 2),
    "mean": (lambda t: {"extra": ["--mean", "0.1,0.2,0.3"]}, "--mean has 3 values; give 1 for gray images", 2),
}


@pytest.mark.parametrize("case", BAD_INPUTS)
def test_bad_inputs_get_one_line(case, tmp_path, digits):
    setup, message, code = BAD_INPUTS[case]
    _, paths, _ = digits
    given = setup(tmp_path)
    image, model = given.get("image", str(paths[0])), given.get("model", str(MNIST_12))
    result = run(image, "-m", model, *given.get("extra", []))
    assert result.exit_code == code, result.output
    assert message in result.output
    assert "Traceback" not in result.output
    assert len([line for line in result.output.splitlines() if line.startswith("Error")]) == 1


def _flat_model(path):
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Identity", ["x"], ["y"])], "flat",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 784])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 784])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def test_labels_file_of_the_wrong_length_warns_and_uses_indices(digits, tmp_path):
    _, paths, labels = digits
    names = tmp_path / "labels.txt"
    names.write_text("\n".join(f"digit {i}" for i in range(9)) + "\n")
    result = run(str(paths[0]), "-m", str(MNIST_12), "--labels", str(names), "--top-k", "1")
    assert result.exit_code == 0
    assert "warning: 9 labels given but the model has 10 classes; showing class indices instead" in result.stderr
    assert result.stdout.splitlines()[1].split()[1] == str(labels[0])
    names.write_text("\n".join(f"digit-{i}" for i in range(10)))
    good = run(str(paths[0]), "-m", str(MNIST_12), "--labels", str(names), "--top-k", "1")
    assert good.stdout.splitlines()[1].split()[1] == f"digit-{labels[0]}"


def test_metadata_of_convtool_models_gives_labels_and_preprocessing(tmp_path):
    """A model with convtool's metadata: 0..1 pixels standardised, named classes, NHWC."""
    rng = np.random.default_rng(4)
    weights = rng.normal(0, 0.05, (3 * 4 * 4, 3))
    meta = {
        "convtool.task": "classify",
        "convtool.labels": ["red", "green", "blue"],
        "convtool.input": {"layout": "nhwc", "channels": "rgb", "height": 4, "width": 4, "scale": 1 / 255,
                           "mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25]},
    }
    model = linear_rgb(tmp_path / "meta.onnx", weights, size=(4, 4), nhwc=True, metadata=meta)
    pixels = rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)  # resized to 4x4 by the recipe
    Image.fromarray(pixels).save(tmp_path / "x.png")
    result = run(str(tmp_path / "x.png"), "-m", str(model), "--top-k", "3")
    assert result.exit_code == 0, result.output
    small = np.asarray(Image.fromarray(pixels).resize((4, 4), Image.Resampling.BILINEAR), dtype=np.float64)
    scores = (((small / 255 - 0.5) / 0.25).reshape(-1)) @ weights
    best = ["red", "green", "blue"][int(np.argmax(scores))]
    assert result.stdout.splitlines()[1].split()[1] == best


def test_a_failing_run_prints_convtools_line_only(tmp_path, capfd):
    """onnxruntime's own error log line (it prints one before raising) stays off the terminal."""
    from onnx import TensorProto, helper, numpy_helper

    graph = helper.make_graph(
        [helper.make_node("Conv", ["x", "w"], ["c"], kernel_shape=[5, 5]),
         helper.make_node("GlobalAveragePool", ["c"], ["p"]), helper.make_node("Flatten", ["p"], ["y"])], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 1, "H", "W"])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4])],
        [numpy_helper.from_array(np.ones((4, 1, 5, 5), np.float32), "w")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.save(model, str(tmp_path / "dyn.onnx"))
    Image.fromarray(np.zeros((3, 3), np.uint8)).save(tmp_path / "tiny.png")  # smaller than the 5x5 kernel
    result = run(str(tmp_path / "tiny.png"), "-m", str(tmp_path / "dyn.onnx"), "--device", "cpu")
    assert result.exit_code == 1
    assert "Error: dyn.onnx: onnxruntime failed on a batch of shape (1, 1, 3, 3): " in result.output
    assert "[E:onnxruntime" not in capfd.readouterr().err


def test_ctrl_c_stops_every_worker_and_leaves_no_output(digits, tmp_path):
    import os
    import signal
    import time

    from process_helpers import children, start_slowed

    folder, _, _ = digits
    out = tmp_path / "results.csv"
    child = start_slowed("convtool.infer.decode", "open_for_model", 0.05,
                         ["classify", str(folder), "-m", str(MNIST_12), "-o", str(out), "--decoding", "processes",
                          "--workers", "2", "--batch", "4", "--device", "cpu"])
    deadline = time.monotonic() + 60
    while len(children(child.pid)) < 2 and time.monotonic() < deadline:  # both workers started
        time.sleep(0.05)
    workers = children(child.pid)
    assert len(workers) == 2
    os.killpg(child.pid, signal.SIGINT)  # what a terminal's Ctrl-C does: the whole foreground group
    _, err = child.communicate(timeout=30)
    assert child.returncode != 0 and "Traceback" not in err
    for pid in workers:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
    with pytest.raises(ProcessLookupError):
        os.killpg(child.pid, 0)  # nothing left in the group
    assert list(tmp_path.iterdir()) == []  # no results file, no temporary
