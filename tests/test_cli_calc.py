"""``convtool calc`` through click: the lecture's examples, --explain, --solve, --net, --json and bad input."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from convtool.cli.main import cli

DATA = Path(__file__).parent / "data"


def run(*args: str):
    return CliRunner().invoke(cli, ["calc", *args])


def ok(*args: str) -> str:
    result = run(*args)
    assert result.exit_code == 0, result.output
    return result.output


def as_json(*args: str) -> dict:
    return json.loads(ok(*args, "--json"))


def test_13_6_5_valid_shows_two_outputs_and_drops_12_and_13():
    output = ok("--n", "13", "--k", "6", "--s", "5")
    row = next(line for line in output.splitlines() if line.startswith("│ conv"))
    assert [cell.strip() for cell in row.strip("│").split("│")] == ["conv", "1", "13", "6", "5", "1", "0+0 (valid)",
                                                                  "2", "12-13"]
    report = as_json("--n", "13", "--k", "6", "--s", "5")
    assert report["conv"]["axes"][0]["dropped"] == [12, 13]


def test_13_6_5_same_explains_the_tensorflow_split_and_the_pytorch_equivalent():
    output = ok("--n", "13", "--k", "6", "--s", "5", "--padding", "same", "--explain")
    assert "p = max(s(ceil(n/s)-1) + span - n, 0) = max(5(ceil(13/5)-1) + 6 - 13, 0) = max(10 + 6 - 13, 0) = 3 " \
           "-> 1 before, 2 after (the extra goes after)" in output
    assert "output = floor((n + p - span)/s) + 1 = floor((13 + 3 - 6)/5) + 1 = floor(10/5) + 1 = 3" in output
    assert "F.pad(x, (1, 2)) then padding=0" in output
    assert "padding=1 gives 2, padding=2 gives 3" in output
    # the diagram: padding cells, 13 inputs, three windows of 6 cells starting 5 apart
    assert "input     p  1  2  3  4  5  6  7  8  9 10 11 12 13  p  p" in output
    assert "win 1   [================]" in output
    assert "win 3                                 [================]" in output


def test_explain_marks_the_dropped_inputs_under_the_strip():
    output = ok("--n", "13", "--k", "6", "--s", "5", "--explain")
    lines = output.splitlines()
    strip = next(line for line in lines if line.strip().startswith("input "))
    marks = next(line for line in lines if line.strip().startswith("unread"))
    assert [strip[i - 2:i + 1].strip() for i, c in enumerate(marks) if c == "x"] == ["12", "13"]
    assert "so inputs 12-13 are dropped" in output


@pytest.mark.parametrize("option", ["--p", "--padding"])
@pytest.mark.parametrize("pad", ["0:1", "1"])
def test_lecture_6_3_2_with_total_padding_1_and_2(option, pad):
    """The lecture's p is the total: 1 (TensorFlow same, after) and 2 (--p 1 is one on each side) both give 3."""
    assert as_json("--n", "6", "--k", "3", "--s", "2", option, pad)["output_shape"] == [1, 3]
    assert as_json("--n", "6", "--k", "3", "--padding", "valid")["output_shape"] == [1, 4]
    assert as_json("--n", "6", "--k", "3", "--padding", "same")["output_shape"] == [1, 6]


def test_the_lecture_sparse_matrix_example():
    output = ok("--n", "320x280", "--k", "2x1")
    assert "1x319x280" in output
    assert "8,003,072,000 (8.0e9)" in output  # dense matrix
    report = as_json("--n", "320x280", "--k", "2x1")
    assert report["matrix"]["kernel_floats"] == 2
    assert report["matrix"]["sparse_floats"] == 178_640
    assert report["matrix"]["float_ops"] == 267_960
    assert report["fully_connected"]["weights"] == 320 * 280 * 319 * 280


def test_ten_kernels_on_a_5x32x32_input():
    report = as_json("--n", "32x32", "--cin", "5", "--cout", "10", "--k", "3x3")
    conv = report["conv"]
    assert conv["output_shape"] == [10, 30, 30]
    assert (conv["units"], conv["weights"], conv["biases"]) == (9_000, 450, 10)
    assert conv["flops"] == 2 * conv["macs"] == 2 * 9_000 * 45
    assert as_json("--n", "32x32", "--cin", "5", "--cout", "10", "--k", "3", "--no-bias")["conv"]["biases"] == 0


def test_table_and_json_show_the_same_numbers():
    args = ("--n", "28x28", "--k", "5", "--cin", "3", "--cout", "8", "--s", "2", "--padding", "same", "--pool", "2")
    output, report = ok(*args), as_json(*args)
    for key in ("units", "weights", "params", "macs", "flops", "connections"):
        assert f"{report['conv'][key]:,}" in output
    assert report["output_shape"] == [8, 7, 7]
    assert report["receptive_field"] == [5 + (2 - 1) * 2] * 2
    assert "MACs (multiply-accumulates)" in output and "FLOPs (= 2 x MACs)" in output


def test_dilation_gaps_are_reported_as_never_read():
    report = as_json("--n", "9", "--k", "2", "--d", "3", "--s", "4")
    axis = report["conv"]["axes"][0]
    assert axis["output"] == 2 and axis["unused"] == [2, 3, 6, 7, 9] and axis["dropped"] == [9]


def test_transposed_convolution_and_pooling_alone():
    report = as_json("--n", "4", "--k", "3", "--s", "2", "--transpose", "--p", "1", "--output-padding", "1")
    assert report["output_shape"] == [1, 8]  # (4-1)*2 - 2 + 3 + 1, as torch.nn.ConvTranspose1d
    assert as_json("--n", "8", "--pool", "2")["output_shape"] == [1, 4]
    assert as_json("--n", "7", "--pool", "3:2")["output_shape"] == [1, 3]


def test_pool_is_spelled_as_in_filter_too():
    """calc --pool 3:2 --pool-kind avg and the filter's avg:3:2 say the same; the kind defaults to max."""
    old, new = as_json("--n", "7", "--pool", "3:2", "--pool-kind", "avg"), as_json("--n", "7", "--pool", "avg:3:2")
    assert old == new and new["pool"]["kind"] == "avg" and new["output_shape"] == [1, 3]
    assert as_json("--n", "7", "--pool", "3:2")["pool"]["kind"] == "max"
    result = run("--n", "7", "--pool", "avg:3:2", "--pool-kind", "max")
    assert result.exit_code == 2 and "give the kind once" in result.output


def test_solve_lists_settings_that_give_the_wanted_size():
    output = ok("--n", "13", "--solve", "3", "--k", "6", "--s", "5")
    assert "1+2" in output and "same" in output
    report = as_json("--n", "32x32", "--solve", "16", "--padding", "same")
    solutions = report["axes"][0]["solutions"]
    assert solutions and all(row["s"] == 2 and "same" in row["modes"] for row in solutions)


def test_solve_offers_the_symmetric_padding_pytorch_needs():
    (row,) = as_json("--n", "32", "--solve", "16", "--k", "3")["axes"][0]["solutions"]
    assert (row["pad_before"], row["pad_after"], row["symmetric_padding"]) == (0, 1, 1)
    assert (32 + 2 * 1 - 3) // 2 + 1 == 16  # torch.nn.Conv1d(kernel_size=3, stride=2, padding=1) on 32 inputs


def test_stride_1_same_padding_names_pytorch_padding_same():
    output = ok("--n", "8x8", "--k", "4", "--padding", "same")
    assert "F.pad(x, (1, 2, 1, 2)) then padding=0 or padding='same'" in output
    assert "each axis: padding=1 gives 7, padding=2 gives 9" in output


def test_solve_says_when_nothing_fits():
    output = ok("--n", "13", "--solve", "20", "--k", "3", "--s", "2")
    assert "none" in output


LECTURE_ROWS = ["C1", "6x28x28", "4,704", "150", "117,600", "S2", "6x14x14", "1,176", "4,704",
                "C3", "16x10x10", "1,600", "2,400", "240,000", "S4", "16x5x5", "400", "1,600",
                "F5", "120", "48,000", "F6", "84", "10,080", "output", "10", "840"]


def test_net_lenet5_prints_the_lecture_table():
    output = ok("--net", "lenet5")
    rows = [line for line in output.splitlines() if line.startswith("│")]
    cells = [cell.strip() for row in rows for cell in row.strip("│").split("│")]
    assert ["C1", "conv 6@5x5", "6x28x28", "4,704", "150", "117,600", "117,600", "5x5"] == cells[:8]
    assert ["output", "fc 84->10", "10", "10", "840", "840", "840", "32x32"] == cells[48:56]
    assert all(value in cells for value in LECTURE_ROWS)
    assert "weights exclude biases" in output and "FLOPs = 2 x MACs = 833,040" in output


def test_net_bias_counts_biases_in_params_and_connections():
    report = as_json("--net", "lenet5", "--bias")
    c1 = report["layers"][0]
    assert (c1["weights"], c1["biases"], c1["params"], c1["connections"]) == (150, 6, 156, 122_304)
    assert report["totals"]["params"] == 61_706
    assert as_json("--net", "lenet5")["totals"]["biases"] == 0


def test_net_spec_file_and_onnx_model(tmp_path):
    assert as_json("--net", str(DATA / "lenet5.net"))["totals"] == as_json("--net", "lenet5")["totals"]
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    weight = numpy_helper.from_array(np.ones((6, 1, 5, 5), np.float32), "w")
    bias = numpy_helper.from_array(np.zeros(6, np.float32), "b")
    graph = helper.make_graph(
        [helper.make_node("Conv", ["x", "w", "b"], ["c"], kernel_shape=[5, 5]), helper.make_node("Relu", ["c"], ["y"])],
        "c1", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 1, 32, 32])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], [weight, bias])
    path = tmp_path / "c1.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), str(path))
    report = as_json("--net", str(path), "--bias")
    c1 = as_json("--net", "lenet5", "--bias")["layers"][0]
    assert report["layers"][0]["shape"] == c1["shape"] == [6, 28, 28]
    for key in ("units", "weights", "biases", "params", "macs", "connections", "receptive_field"):
        assert report["layers"][0][key] == c1[key], key
    assert "Conv" in ok("--net", str(path)) and report["unknown_ops"] == []


@pytest.mark.parametrize("args, message", [
    (["--n", "5", "--k", "6"], "kernel 6 does not fit the padded input 5; use --padding same"),
    (["--n", "13", "--k", "3", "--d", "7"], "kernel 3 dilated by 7 (span 15) does not fit the padded input 13"),
    (["--n", "13", "--k", "6", "--s", "0"], "stride (--s) must be positive, got '0'"),
    (["--n", "13", "--k", "6", "--d", "-1"], "dilation (--d) must be positive, got '-1'"),
    (["--n", "13", "--k", "2.5"], "kernel size (--k) must be an integer"),
    (["--n", "32xx32", "--k", "3"], "input size (--n) must be an integer or integers joined by 'x'"),
    (["--n", "32x32", "--k", "3x3x3"], "--k has 3 axes (3x3x3) but the input has 2"),
    (["--n", "13", "--k", "3", "--p", "-1"], "padding must be valid, same, full"),
    (["--n", "13", "--k", "3", "--p", "1", "--padding", "same"], "give either --p or --padding"),
    (["--k", "3"], "give the input size with --n"),
    (["--n", "13"], "give the kernel size with --k"),
    (["--n", "13", "--k", "3", "--cin", "4", "--groups", "3"], "groups 3 must divide"),
    (["--n", "13", "--k", "3", "--transpose", "--padding", "full"], "no meaning for a transposed convolution"),
    (["--n", "13", "--solve", "0"], "wanted output size (--solve) must be positive"),
    (["--net", "vgg19"], "neither a built-in network"),
    (["--net", "lenet5", "--k", "3"], "leave out the one-layer options"),
    (["--net", "missing.onnx"], "no such model file"),
    (["--net", "lenet5", "--explain"], "--explain shows the working of one layer"),
    (["--n", "13", "--k", "3", "--padding", "sam"], "padding must be valid, same, full"),
    (["--n", "13", "--pool", "2", "--pool-kind", "median"], "--pool-kind must be max or avg"),
    (["--n", "8", "--k", "3", "--output-padding", "1"], "add --transpose"),
])
def test_bad_input_exits_2_with_one_line(args, message):
    result = run(*args)
    assert result.exit_code == 2, result.output
    assert result.output.startswith("Error: ") and message in result.output
    assert result.output.count("\n") == 1


def test_bad_files_exit_2_with_one_line(tmp_path):
    broken = tmp_path / "broken.onnx"
    broken.write_text("not an onnx model")
    spec = tmp_path / "bad.net"
    spec.write_text("input 1x32x32\nconv 6 5x5\npool max two\n")
    image = tmp_path / "photo.png"
    image.write_bytes(b"\x89PNG\r\n\x1a\n\xff\xfe")
    for path, message in ((broken, ": not an ONNX model"), (spec, "line 3: pool size must be an integer"),
                          (image, "cannot read the network spec"), (tmp_path, "Is a directory")):
        result = run("--net", str(path))
        assert result.exit_code == 2 and message in result.output and result.output.count("\n") == 1


def test_calc_imports_neither_numba_nor_onnxruntime_nor_onnx_for_a_layer_or_lenet():
    code = ("import sys\nfrom convtool.cli.main import cli\n"
            "for args in (['calc', '--n', '13', '--k', '6', '--explain'], ['calc', '--net', 'lenet5']):\n"
            "    try:\n        cli(args, standalone_mode=False)\n    except SystemExit:\n        pass\n"
            "print(sorted(m for m in ('numba', 'onnxruntime', 'onnx', 'numpy') if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip().splitlines()[-1] == "[]"
