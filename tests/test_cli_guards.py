"""Issue 15 through click: modes, -r names, internal errors, full disks, non-finite numbers, size
guards, train's up-front output check, messages, output types and multi-frame images."""

from __future__ import annotations

import errno
import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from click.testing import CliRunner
from infer_helpers import MNIST_12, blocks, colour_segmenter
from onnx import TensorProto, helper
from PIL import Image

from convtool.cli.main import cli
from convtool.io import publish


def run(*args: str):
    result = CliRunner().invoke(cli, [str(a) for a in args])
    assert "internal error" not in result.output and "Traceback" not in result.output, result.output
    return result


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.rglob("*") if p.name.startswith("."))


@pytest.fixture
def digit(tmp_path) -> Path:
    from infer_helpers import mnist

    path = tmp_path / "digit.png"
    Image.fromarray(mnist(1)[0][0]).save(path)
    return path


@pytest.fixture
def umask022():
    previous = os.umask(0o022)
    yield
    os.umask(previous)


def _model(path: Path, input_shape: list, output_shape: list, node) -> Path:
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, input_shape)
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, output_shape)
    model = helper.make_model(helper.make_graph([node], "m", [x], [y]), opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


# 1. modes from the umask --------------------------------------------------------------------------

def test_outputs_of_every_command_are_0644_under_umask_022(tmp_path, digit, umask022):
    pixels, _ = blocks()
    Image.fromarray(pixels).save(tmp_path / "blocks.png")
    assert run("filter", digit, "-k", "sobel", "-o", tmp_path / "f.png").exit_code == 0
    assert run("classify", digit, "-m", MNIST_12, "-o", tmp_path / "r.csv").exit_code == 0
    assert run("segment", tmp_path / "blocks.png", "-m", colour_segmenter(tmp_path / "seg.onnx"),
               "-o", tmp_path / "seg").exit_code == 0
    assert run("features", MNIST_12, digit, "-o", tmp_path / "maps.png").exit_code == 0
    for path in [tmp_path / "f.png", tmp_path / "r.csv", tmp_path / "maps.png", *(tmp_path / "seg").iterdir()]:
        assert stat.S_IMODE(path.stat().st_mode) == 0o644, path


# 4. -r with the same names in two sub-folders ----------------------------------------------------

def test_recursive_filter_keeps_subfolders_so_same_names_do_not_collide(tmp_path, digit):
    for sub in ("a", "b"):
        (tmp_path / "in" / sub).mkdir(parents=True)
        Image.open(digit).rotate(90 if sub == "b" else 0).save(tmp_path / "in" / sub / "x.png")
    result = run("filter", tmp_path / "in", "-r", "-k", "sobel", "-o", tmp_path / "out")
    assert result.exit_code == 0 and "Filtered 2 of 2" in result.output, result.output
    a, b = (np.asarray(Image.open(tmp_path / "out" / sub / "x-sobel.png")) for sub in ("a", "b"))
    assert not np.array_equal(a, b)
    again = run("filter", tmp_path / "in", "-r", "-k", "sobel", "-o", tmp_path / "out")
    assert again.exit_code == 1 and again.output.count("already exists") == 2


# 5. what used to be "internal error" --------------------------------------------------------------

def test_a_kernel_file_with_an_unknown_generator(tmp_path, digit):
    (tmp_path / "k.toml").write_text('name = "k"\ngenerator = "nope"\n[params]\nsigma = 1\n')
    result = run("filter", digit, "-k", tmp_path / "k.toml", "-o", tmp_path / "o.png")
    assert result.exit_code == 2 and "unknown generator 'nope'" in result.output


@pytest.mark.parametrize("command", ["filter", "classify", "segment"])
def test_symlink_loops_given_or_met_under_recursion(tmp_path, digit, command):
    folder = tmp_path / "in"
    folder.mkdir()
    Image.open(digit).convert("RGB").save(folder / "d.png")
    os.symlink("loop", folder / "loop")
    os.symlink(folder, folder / "back")
    model = {"filter": ["-k", "sobel"], "classify": ["-m", MNIST_12],
             "segment": ["-m", colour_segmenter(tmp_path / "seg.onnx")]}[command]
    out = ["-o", tmp_path / ("out.csv" if command == "classify" else "out")]
    deep = run(command, folder, "-r", *model, *out)
    assert deep.exit_code == 0, deep.output
    given = run(command, folder / "loop", *model, *out)
    assert given.exit_code == 1 and "symlink loop" in given.output


def test_a_huge_padding_is_refused_not_crashed(tmp_path, digit):
    result = run("filter", digit, "-k", "sobel", "--padding", "2147483648", "-o", tmp_path / "o.png")
    assert result.exit_code == 2 and "--max-pixels" in result.output


@pytest.mark.parametrize("command", ["classify", "segment"])
def test_a_model_with_a_scalar_output(tmp_path, digit, command):
    model = _model(tmp_path / "s.onnx", ["N", 1, 28, 28], [], helper.make_node("ReduceMean", ["x"], ["y"], keepdims=0))
    result = run(command, digit, "-m", model, "-o", tmp_path / ("r.csv" if command == "classify" else "out"))
    assert result.exit_code in (1, 2) and "output has shape ()" in result.output


def test_an_output_name_that_is_a_folder_fails_alone(tmp_path, digit):
    (tmp_path / "in").mkdir()
    for name in ("a", "b"):
        Image.open(digit).save(tmp_path / "in" / f"{name}.png")
    (tmp_path / "out" / "a-sobel.png").mkdir(parents=True)
    result = run("filter", tmp_path / "in", "-k", "sobel", "-o", tmp_path / "out", "--overwrite")
    assert result.exit_code == 1 and "a-sobel.png: is a folder" in result.output
    assert (tmp_path / "out" / "b-sobel.png").is_file() and (tmp_path / "out" / "a-sobel.png").is_dir()


# 6. a full disk ---------------------------------------------------------------------------------

def _full_disk(monkeypatch):
    def fail(temporary):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(publish, "fault_hook", fail)


@pytest.mark.parametrize("command", ["filter", "classify", "segment"])
def test_a_full_disk_is_one_line_naming_the_output(tmp_path, digit, monkeypatch, command):
    _full_disk(monkeypatch)
    Image.open(digit).convert("RGB").save(tmp_path / "rgb.png")
    args = {"filter": ["-k", "sobel", "-o", tmp_path / "o.png"], "classify": ["-m", MNIST_12, "-o", tmp_path / "r.csv"],
            "segment": ["-m", colour_segmenter(tmp_path / "seg.onnx"), "-o", tmp_path / "out"]}[command]
    result = run(command, tmp_path / "rgb.png", *args)
    assert result.exit_code == 1 and "cannot write: the disk is full" in result.output, result.output
    assert leftovers(tmp_path) == []


def test_train_on_a_full_disk_leaves_no_temporary(tmp_path, monkeypatch):
    _full_disk(monkeypatch)
    monkeypatch.chdir(tmp_path)
    result = run("train", "lenet5", "--epochs", "1", "--limit", "200", "-q", "-o", "m.onnx")
    assert result.exit_code == 1 and "cannot write: the disk is full" in result.output  # the first file it writes
    assert leftovers(tmp_path) == [] and not (tmp_path / "m.onnx").exists()


# 7. non-finite numbers ----------------------------------------------------------------------------

@pytest.mark.parametrize("args, flag", [
    (["filter", "{d}", "-k", "sobel", "--border", "constant", "--cval", "nan"], "--cval"),
    (["filter", "{d}", "-k", "sobel", "--cval", "inf"], "--cval"),
    (["classify", "{d}", "-m", str(MNIST_12), "--scale", "nan"], "--scale"),
    (["classify", "{d}", "-m", str(MNIST_12), "--mean", "0,nan"], "--mean"),
    (["segment", "{d}", "-m", str(MNIST_12), "-o", "x", "--alpha", "nan"], "--alpha"),
    (["train", "--weight-decay", "nan"], "--weight-decay"),
    (["train", "--momentum", "inf"], "--momentum"),
])
def test_non_finite_numbers_are_refused_naming_their_flag(digit, args, flag):
    result = run(*[a.format(d=digit) for a in args])
    assert result.exit_code == 2 and flag in result.output and "finite" in result.output, result.output
    assert flag == "--lr" or "--lr" not in result.output


def test_a_kernel_beyond_float32_is_refused(tmp_path, digit):
    result = run("filter", digit, "-k", "[[1e308]]", "-o", tmp_path / "o.png")
    assert result.exit_code == 2 and "do not fit float32" in result.output
    overflow = run("filter", digit, "-k", "[[1e37, 1e37]]", "-o", tmp_path / "o.png")
    assert overflow.exit_code == 2 and "overflow float32" in overflow.output
    assert not (tmp_path / "o.png").exists()
    as_a_user_sees_it = subprocess.run(  # outside pytest, which would record NumPy's warnings itself
        [sys.executable, "-c", "import sys; from convtool.cli.main import main; sys.argv[0] = 'convtool'; main()",
         "filter", str(digit), "-k", "[[1e37, 1e37]]", "-o", str(tmp_path / "o.png")], capture_output=True, text=True)
    assert as_a_user_sees_it.returncode == 2
    assert as_a_user_sees_it.stderr.splitlines() == [overflow.output.strip()]  # one line: no RuntimeWarning


# 8. size guards ---------------------------------------------------------------------------------

def test_padding_beyond_the_pixel_limit_is_refused_before_any_work(tmp_path, digit):
    result = run("filter", digit, "-k", "sobel", "--padding", "10000", "-o", tmp_path / "o.png")
    assert result.exit_code == 2 and "20,028 x 20,028" in result.output and "--max-pixels" in result.output
    small = run("filter", digit, "-k", "sobel", "--padding", "30", "--max-pixels", "1000", "-o", tmp_path / "o.png")
    assert small.exit_code == 2
    raised = run("filter", digit, "-k", "sobel", "--padding", "30", "--max-pixels", "10000", "-o", tmp_path / "o.png")
    assert raised.exit_code == 0 and Image.open(tmp_path / "o.png").size == (86, 86)  # 28 + 2*30, then 3x3


def test_a_model_declaring_a_huge_input_is_refused_before_decoding(tmp_path, digit):
    model = _model(tmp_path / "h.onnx", [1, 3, 100000, 100000], [1, 3],
                   helper.make_node("ReduceMean", ["x"], ["y"], axes=[2, 3], keepdims=0))
    result = run("classify", digit, "-m", model, "-o", tmp_path / "r.csv")
    assert result.exit_code == 2 and "--max-input" in result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["digit.png", "h.onnx"]


def test_the_solver_refuses_a_search_space_above_its_limit():
    result = run("calc", "--n", "1000000000000", "--solve", "7")
    assert result.exit_code == 2 and "--max-search" in result.output
    assert run("calc", "--n", "224", "--solve", "112").exit_code == 0


# 9. train checks its output before training ------------------------------------------------------

def test_train_checks_its_output_folder_before_training(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = run("train", "lenet5", "--epochs", "1", "--limit", "200", "-o", "/proc/m.onnx")
    assert result.exit_code == 1 and "/proc/m" in result.output and "cannot write" in result.output
    assert "epoch" not in result.output  # refused before the first epoch


# 11. messages ------------------------------------------------------------------------------------

def test_a_bad_size_in_the_model_metadata_is_named_as_such(tmp_path, digit):
    from infer_helpers import lenet

    model = lenet(tmp_path / "m.onnx", metadata={"convtool.input": json.dumps({"height": 0, "width": -5})})
    result = run("classify", digit, "-m", model)
    assert result.exit_code in (1, 2) and "None" not in result.output and "metadata" in result.output, result.output


def test_features_says_a_layer_exists_but_is_not_a_feature_map(digit):
    result = run("features", MNIST_12, digit, "--layer", "Plus214_Output_0")
    assert result.exit_code == 2 and "not a feature map" in result.output and "no such tensor" not in result.output


def test_a_huge_generated_kernel_is_refused_by_size_not_memory(tmp_path, digit):
    result = run("filter", digit, "-k", "gaussian:size=100001", "-o", tmp_path / "o.png")
    assert result.exit_code == 2 and "100,001 x 100,001 kernel" in result.output and "memory" not in result.output


# 12. output types and frames ---------------------------------------------------------------------

@pytest.mark.parametrize("name", ["out.gif", "out.xyz"])
def test_an_output_type_convtool_does_not_write_is_refused(tmp_path, digit, name):
    result = run("filter", digit, "-k", "sobel", "-o", tmp_path / name)
    assert result.exit_code == 2 and "does not write" in result.output
    assert not (tmp_path / name).exists()


@pytest.mark.parametrize("suffix", [".gif", ".tif"])
def test_a_multi_frame_image_is_warned_about(tmp_path, suffix):
    frames = [Image.fromarray(np.full((8, 8), v, np.uint8)) for v in (10, 200, 90)]
    frames[0].save(tmp_path / f"a{suffix}", save_all=True, append_images=frames[1:])
    result = run("filter", tmp_path / f"a{suffix}", "-k", "box", "-o", tmp_path / "o.png")
    assert result.exit_code == 0 and f"warning: {tmp_path / ('a' + suffix)}: has 3 frames" in result.output
