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


def _two_classes(root, count: int = 4, size=(28, 28)):
    rng = np.random.default_rng(1)
    for cls, level in (("dark", 40), ("light", 200)):
        (root / cls).mkdir(parents=True, exist_ok=True)
        for i in range(count):
            pixels = np.clip(rng.normal(level, 20, size), 0, 255).astype(np.uint8)
            Image.fromarray(pixels, "L").save(root / cls / f"{i}.png")


def test_unreadable_files_are_skipped_listed_and_strict_fails(run, tmp_path):
    _two_classes(tmp_path / "pics")
    (tmp_path / "pics" / "dark" / "cut.png").write_bytes((tmp_path / "pics" / "dark" / "0.png").read_bytes()[:60])
    (tmp_path / "pics" / "dark" / "empty.png").write_bytes(b"")
    (tmp_path / "pics" / "light" / "notes.jpg").write_text("not a picture\n")
    result = run("lenet5", "--data", "pics", "--epochs", "1", "-q", "-o", "p.onnx")
    assert result.exit_code == 0, result.output
    assert "3 image files could not be read:" in result.output
    for name in ("cut.png: the image is damaged or truncated", "empty.png: the file is empty (0 bytes)",
                 "notes.jpg: not an image Pillow can read"):
        assert name in result.output
    assert result.output.rstrip().endswith("warning: 3 image files could not be read and were skipped (listed above)")
    strict = run("lenet5", "--data", "pics", "--epochs", "1", "-q", "--strict", "-o", "s.onnx")
    assert strict.exit_code == 1 and "nothing was trained (--strict)" in strict.output
    assert not (tmp_path / "s.onnx").exists()


def test_too_few_readable_images_stop_with_the_reason(run, tmp_path):
    for cls in ("a", "b", "c"):
        (tmp_path / "few" / cls).mkdir(parents=True)
        (tmp_path / "few" / cls / "x.png").write_bytes(b"")
    Image.new("L", (28, 28), 9).save(tmp_path / "few" / "a" / "ok.png")
    Image.new("L", (28, 28), 99).save(tmp_path / "few" / "b" / "ok.png")
    result = run("lenet5", "--data", "few", *QUICK)
    assert result.exit_code == 1 and "only 2 of 5 images in few could be read, fewer than its 3 classes" in result.output
    for cls in ("a", "b"):
        (tmp_path / "few" / cls / "ok.png").unlink()
    result = run("lenet5", "--data", "few", *QUICK)
    assert result.exit_code == 1 and "none of the 3 image files in few could be read" in result.output


def test_a_decompression_bomb_is_refused_and_exif_orientation_applied(tmp_path, monkeypatch):
    from convtool.nn import data as D

    _two_classes(tmp_path / "pics", count=2, size=(4, 6))
    Image.new("L", (60, 60)).save(tmp_path / "pics" / "light" / "bomb.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # 3,600 pixels: more than twice the limit
    wide = np.zeros((4, 6), np.uint8)
    wide[0, 0] = 255  # top-left marker
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90 degrees clockwise to display
    Image.fromarray(wide.T.copy()[::-1].copy(), "L").save(tmp_path / "pics" / "dark" / "turned.png", exif=exif)
    data = D.load_folder(tmp_path / "pics")
    assert len(data.skipped) == 1 and "bomb.png: refused as a possible decompression bomb" in data.skipped[0]
    turned = data.images[2, 0]  # dark/0.png, dark/1.png, dark/turned.png, light/...
    expected = np.asarray(Image.fromarray(wide.T.copy()[::-1].copy(), "L").transpose(Image.Transpose.ROTATE_270))
    np.testing.assert_array_equal(turned, expected)
    assert turned.shape == (4, 6) and turned[0, 0] == 255


def test_resume_continues_a_stopped_run_and_refuses_bad_checkpoints(run, tmp_path, monkeypatch):
    from convtool.nn import train

    real_fit = train.fit

    def fit_then_interrupt(*args, on_batch=None, **kwargs):
        def stop(epoch, step, steps, loss, acc):
            if epoch == 2:
                raise KeyboardInterrupt
        return real_fit(*args, on_batch=stop, **kwargs)

    monkeypatch.setattr(train, "fit", fit_then_interrupt)
    stopped = run("lenet5", "--epochs", "2", "--limit", "200", "--shift", "0", "-q", "-o", "r.onnx")
    assert stopped.exit_code == 130 and "--resume r.checkpoint.npz continues the run" in stopped.output
    monkeypatch.setattr(train, "fit", real_fit)
    resumed = run("--resume", ".", "--threads", "1")
    assert resumed.exit_code == 0, resumed.output
    assert "resuming after epoch 1 of 2 from the checkpoint" in resumed.output
    assert "best epoch" in resumed.output and "of 2:" in resumed.output
    assert [r["epoch"] for r in csv.DictReader(open(tmp_path / "r-metrics.csv"))] == ["1", "2"]
    done = run("--resume", "r.checkpoint.npz")
    assert done.exit_code == 2 and "already holds 2 epochs of 2; raise --epochs" in done.output
    other = run("resnet", "--resume", "r.checkpoint.npz")
    assert other.exit_code == 2 and "the checkpoint is of a lenet5 run, not resnet" in other.output
    changed = run("--resume", "r.checkpoint.npz", "--lr", "0.1")
    assert changed.exit_code == 2 and "--lr cannot change them" in changed.output
    (tmp_path / "none").mkdir()
    empty = run("--resume", "none")
    assert empty.exit_code == 1 and "none holds no training checkpoint" in empty.output
    for result in (done, other, changed, empty):
        assert sum(line.startswith("Error:") for line in result.output.splitlines()) == 1
