"""``convtool train`` through click: outputs, messages and exit codes for every bad input of the issue."""

from __future__ import annotations

import csv
import gzip
import json
import struct

import numpy as np
import onnx
import pytest
from click.testing import CliRunner
from PIL import Image

from convtool.cli.main import cli

QUICK = ["--epochs", "1", "--limit", "300", "-q"]


@pytest.fixture()
def run(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)

    def invoke(*args: str):
        return CliRunner().invoke(cli, ["train", *args])

    return invoke


def test_lenet5_writes_model_reports_and_metadata(run, tmp_path):
    result = run("lenet5", *QUICK, "-o", "m.onnx")
    assert result.exit_code == 0, result.output
    assert "export check: onnxruntime matches convtool on 60 validation images" in result.output
    model = onnx.load(str(tmp_path / "m.onnx"))
    meta = {p.key: p.value for p in model.metadata_props}
    assert meta["convtool.task"] == "classify"
    assert json.loads(meta["convtool.input"])["height"] == 28
    assert (tmp_path / "m.labels.txt").read_text().split() == [str(d) for d in range(10)]
    rows = list(csv.DictReader(open(tmp_path / "m-metrics.csv")))
    assert [r["epoch"] for r in rows] == ["1"] and 0 <= float(rows[0]["val_accuracy"]) <= 1
    for png in ("m-curves.png", "m-confusion.png"):
        with Image.open(tmp_path / png) as im:
            assert im.format == "PNG" and im.width > 300
    again = run("lenet5", *QUICK, "-o", "m.onnx")
    assert again.exit_code == 1 and "m.onnx: already exists; pass --overwrite" in again.output
    assert run("lenet5", *QUICK, "-o", "m.onnx", "--overwrite").exit_code == 0


def test_progress_table_and_summary(run):
    result = run("lenet5", "--epochs", "2", "--limit", "200", "-o", "t.onnx")
    assert result.exit_code == 0, result.output
    assert "epoch" in result.output and "val acc" in result.output
    assert "best epoch" in result.output and "training time" in result.output


def test_segment_and_fine_tune(run, tmp_path):
    seg = run("unet", "--epochs", "1", "--limit", "200", "--canvases", "24", "--canvas", "32", "-q", "-o", "s.onnx")
    assert seg.exit_code == 0, seg.output
    assert "mean IoU" in seg.output and not (tmp_path / "s-confusion.png").exists()
    assert run("lenet5", *QUICK, "-o", "base.onnx").exit_code == 0
    tuned = run("lenet5", *QUICK, "--init-from", "base.onnx", "--freeze", "features", "-o", "tuned.onnx")
    assert tuned.exit_code == 0, tuned.output
    wrong = run("resnet", *QUICK, "--init-from", "base.onnx", "-o", "r.onnx")
    assert wrong.exit_code == 1
    assert wrong.output.startswith("Error: base.onnx does not match resnet: it has no stem.conv.weight")


def _write_idx(path, array):
    header = struct.pack(">BBBB", 0, 0, 8, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    path.write_bytes(gzip.compress(header + array.astype(np.uint8).tobytes()))


@pytest.mark.parametrize("args, code, message", [
    (["vgg16"], 2, "Error: unknown architecture 'vgg16'; choose one of: lenet5, lenet5-local, resnet, unet"),
    (["--lr", "0"], 2, "Invalid value for '--lr': 0.0 is not a positive number"),
    (["--lr", "-1e-3"], 2, "Invalid value for '--lr': -0.001 is not a positive number"),
    (["--epochs", "0"], 2, "Invalid value for '--epochs'"),
    (["lenet5", "--task", "segment"], 2, "Error: lenet5 is a classify architecture"),
    (["--init-from", "missing.onnx"], 2, "Error: --init-from missing.onnx: no such model file"),
    (["--data", "nowhere"], 1, "Error: data path nowhere does not exist"),
    (["-o", "model.txt"], 2, "must end in .onnx"),
    (["--val-fraction", "1.5"], 2, "the validation fraction must be between 0 and 1"),
])
def test_bad_options(run, args, code, message):
    result = run(*args)
    assert result.exit_code == code, result.output
    assert message in result.output
    assert "Traceback" not in result.output
    assert sum(line.startswith("Error:") for line in result.output.splitlines()) == 1


def test_bad_data(run, tmp_path):
    (tmp_path / "empty").mkdir()
    result = run("--data", "empty", *QUICK)
    assert result.exit_code == 1 and "Error: no images in empty" in result.output
    (tmp_path / "one" / "cat").mkdir(parents=True)
    for i in range(3):
        Image.new("L", (8, 8), i).save(tmp_path / "one" / "cat" / f"{i}.png")
    result = run("--data", "one", *QUICK)
    assert result.exit_code == 1 and "only one class (cat)" in result.output
    (tmp_path / "one" / "dog").mkdir()
    Image.new("L", (9, 8)).save(tmp_path / "one" / "dog" / "0.png")
    result = run("--data", "one", *QUICK)
    assert result.exit_code == 1 and "different sizes (8x8, 8x9); pass --size HxW" in result.output
    idx = tmp_path / "idx"
    idx.mkdir()
    _write_idx(idx / "x-images-idx3-ubyte.gz", np.zeros((4, 28, 28)))
    _write_idx(idx / "x-labels-idx1-ubyte.gz", np.array([1, 2, 10, 3]))
    result = run("--data", "idx", *QUICK)
    assert result.exit_code == 1 and "label 10 at index 2 is out of range 0..9" in result.output


def test_nan_loss_is_reported(run, tmp_path):
    result = run("lenet5", "--epochs", "2", "--limit", "300", "--optimizer", "sgd", "--lr", "1e9", "-q", "-o", "n.onnx")
    assert result.exit_code == 1
    assert "Error: the loss became NaN in epoch 1; try a lower --lr; no model was saved" in result.output
    assert not (tmp_path / "n.onnx").exists()


def test_folder_classifier_resized(run, tmp_path):
    rng = np.random.default_rng(0)
    for cls, level in (("dark", 40), ("light", 200)):
        (tmp_path / "pics" / cls).mkdir(parents=True)
        for i in range(12):
            size = (10, 12) if i % 2 else (12, 12)
            Image.fromarray(np.clip(rng.normal(level, 20, size), 0, 255).astype(np.uint8), "L").save(tmp_path / "pics" / cls / f"{i}.png")
    result = run("lenet5", "--data", "pics", "--size", "16x16", "--epochs", "3", "-q", "-o", "p.onnx")
    assert result.exit_code == 0, result.output
    assert (tmp_path / "p.labels.txt").read_text().split() == ["dark", "light"]


def test_ctrl_c_saves_the_last_good_model(run, tmp_path, monkeypatch):
    from convtool.nn import train

    real_fit = train.fit

    def fit_then_interrupt(*args, on_batch=None, **kwargs):
        def on_batch_interrupting(epoch, step, steps, loss, acc):
            if epoch == 2:
                raise KeyboardInterrupt
        return real_fit(*args, on_batch=on_batch_interrupting, **kwargs)

    monkeypatch.setattr(train, "fit", fit_then_interrupt)
    result = run("lenet5", "--epochs", "3", "--limit", "300", "-q", "-o", "c.onnx")
    assert result.exit_code == 130
    assert "Interrupted in epoch 2: saved the best model so far (epoch 1) to c.onnx" in result.output
    assert (tmp_path / "c.onnx").exists()


def test_arch_option_and_unet_size(run):
    result = run("--arch", "vgg", *QUICK)
    assert result.exit_code == 2 and "unknown architecture 'vgg'; choose one of: lenet5, lenet5-local, resnet, unet" in result.output
    result = run("lenet5", "--arch", "resnet", *QUICK)
    assert result.exit_code == 2 and "two architectures given" in result.output
    result = run("unet", "--canvas", "30", "--canvases", "20", *QUICK)
    assert result.exit_code == 2 and "unet needs a height and width that are multiples of 8, got 30x30" in result.output


def test_images_too_small_for_the_architecture(run, tmp_path):
    for cls in ("a", "b"):
        (tmp_path / "tiny" / cls).mkdir(parents=True)
        for i in range(3):
            Image.new("L", (8, 8), 30 * i).save(tmp_path / "tiny" / cls / f"{i}.png")
    result = run("lenet5", "--data", "tiny", *QUICK)
    assert result.exit_code == 2
    assert "Error: lenet5 cannot take 8x8 inputs (a kernel would be larger than its input); resize the images with --size" in result.output
    corrupt = tmp_path / "tiny" / "a" / "3.png"
    corrupt.write_bytes(b"not a png")
    result = run("lenet5", "--data", "tiny", "--size", "28x28", *QUICK)
    assert result.exit_code == 0 and "3.png: not an image Pillow can read" in result.output
    assert "warning: 1 image files could not be read and were skipped" in result.output
