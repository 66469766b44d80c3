"""`convtool segment` through click: mask and overlay files, the areas table, bad inputs."""

from __future__ import annotations

import numpy as np
from click.testing import CliRunner
from infer_helpers import MNIST_12, blocks, colour_segmenter
from PIL import Image

from convtool.cli.main import cli


def run(*args: str):
    return CliRunner().invoke(cli, ["segment", *args], catch_exceptions=False)


def test_masks_overlays_and_areas(tmp_path):
    pixels, truth = blocks()
    Image.fromarray(pixels).save(tmp_path / "blocks.png")
    labels = tmp_path / "labels.txt"
    labels.write_text("red\ngreen\nblue\n")
    model = colour_segmenter(tmp_path / "seg.onnx")
    out = tmp_path / "out"
    result = run(str(tmp_path / "blocks.png"), "-m", str(model), "-o", str(out), "--labels", str(labels))
    assert result.exit_code == 0, result.output
    mask = Image.open(out / "blocks_mask.png")
    assert mask.mode == "P" and mask.size == (80, 60)
    np.testing.assert_array_equal(np.asarray(mask), truth)
    overlay = Image.open(out / "blocks_overlay.png")
    assert overlay.mode == "RGB" and overlay.height == 60 and overlay.width > 80  # legend on the right
    assert "size (HxW)" in result.stdout.splitlines()[0]
    row = result.stdout.splitlines()[1]
    assert " 60x80 " in row  # height x width, the order of --size and of every other message
    fractions = np.bincount(truth.ravel()) / truth.size
    assert f"red {fractions[0]:.1%}, green {fractions[1]:.1%}, blue {fractions[2]:.1%}" in row
    assert "wrote 1 masks and overlays to" in result.stderr


def test_existing_outputs_need_overwrite(tmp_path):
    Image.fromarray(blocks()[0]).save(tmp_path / "a.png")
    model = colour_segmenter(tmp_path / "seg.onnx")
    out = tmp_path / "out"
    assert run(str(tmp_path / "a.png"), "-m", str(model), "-o", str(out), "--no-overlay").exit_code == 0
    before = (out / "a_mask.png").read_bytes()
    again = run(str(tmp_path / "a.png"), "-m", str(model), "-o", str(out), "--no-overlay")
    assert again.exit_code == 1
    assert "a_mask.png already exist; pass --overwrite to replace them" in again.output
    assert (out / "a_mask.png").read_bytes() == before
    assert run(str(tmp_path / "a.png"), "-m", str(model), "-o", str(out), "--no-overlay", "--overwrite").exit_code == 0


def test_bad_file_in_folder_is_skipped_and_reported(tmp_path):
    images = tmp_path / "in"
    images.mkdir()
    Image.fromarray(blocks()[0]).save(images / "good.png")
    (images / "bad.png").write_bytes(b"")
    model = colour_segmenter(tmp_path / "seg.onnx")
    result = run(str(images), "-m", str(model), "-o", str(tmp_path / "out"))
    assert result.exit_code == 1
    assert "bad.png: the file is empty (0 bytes)" in result.stderr
    assert (tmp_path / "out" / "good_mask.png").exists() and not (tmp_path / "out" / "bad_mask.png").exists()
    assert "Error: 1 of 2 files skipped" in result.stderr


def test_a_classifier_is_refused(tmp_path):
    Image.fromarray(np.zeros((28, 28), np.uint8)).save(tmp_path / "d.png")
    result = run(str(tmp_path / "d.png"), "-m", str(MNIST_12), "-o", str(tmp_path / "out"))
    assert result.exit_code == 1
    assert "is not a per-pixel map" in result.output and "Traceback" not in result.output


def test_same_names_from_two_folders_get_unique_outputs(tmp_path):
    for folder in ("a", "b"):
        (tmp_path / folder).mkdir()
        Image.fromarray(blocks()[0]).save(tmp_path / folder / "x.png")
    model = colour_segmenter(tmp_path / "seg.onnx")
    result = run(str(tmp_path / "a"), str(tmp_path / "b"), "-m", str(model), "-o", str(tmp_path / "out"))
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "x-2_mask.png", "x-2_overlay.png", "x_mask.png", "x_overlay.png"]
