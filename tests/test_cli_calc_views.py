"""``convtool calc`` --kind, --matrix and --animate through click: the lecture's numbers, files and bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image
from test_cli_calc import ok, run

from convtool.layer_kinds import Kind, compare, parse_kind


def test_lecture_counts_local_dense_conv_on_6x5_with_3x3_fields():
    """Locally connected: 4x3 units x 9 weights = 108 (+12 biases); dense to the same 12 units: 360; conv: 9."""
    rows = {r["kind"]: r for r in json.loads(ok("--n", "6x5", "--k", "3", "--json"))["kinds"]}
    assert (rows["local"]["weights"], rows["local"]["biases"]) == (108, 12)
    assert (rows["dense"]["weights"], rows["dense"]["biases"]) == (360, 12)
    assert (rows["conv"]["weights"], rows["conv"]["biases"]) == (9, 1)
    assert {r["connections"] for k, r in rows.items() if k != "dense"} == {108}
    assert rows["conv"]["units_per_weight"] == 12 and rows["local"]["units_per_weight"] == 1
    table = ok("--n", "6x5", "--k", "3")
    assert "locally connected" in table and "360" in table


def test_tiled_counts_sit_between_conv_and_local():
    """Hand count: 4x4 outputs, period 2x2 -> 4 kernel sets of cout x cin x 9 = 2 x 3 x 9."""
    (tiled,) = compare(3, 2, (6, 6), (3, 3), (4, 4), kinds=[parse_kind("tiled:2")])
    assert (tiled.kernel_sets, tiled.weights, tiled.biases, tiled.units_per_weight) == (4, 4 * 54, 8, 4)
    rows = json.loads(ok("--n", "6x6", "--k", "3", "--cin", "3", "--cout", "2", "--kind", "tiled:2", "--json"))["kinds"]
    assert [r["kind"] for r in rows] == ["tiled:2x2"] and rows[0]["weights"] == 216
    assert parse_kind("tiled:1x4") == Kind("tiled", (1, 4))


@pytest.mark.parametrize("args, message", [
    (["--n", "6x5", "--k", "3", "--kind", "lokal"], "unknown layer kind 'lokal'"),
    (["--n", "6x5", "--k", "3", "--kind", "tiled"], "tiled needs its tiling period"),
    (["--n", "6x5", "--k", "3", "--kind", "tiled:4"], "a tiling period of 4 does not divide the 3 output positions"),
    (["--n", "6x5", "--k", "3", "--kind", "tiled:0"], "tiling period"),
    (["--n", "40x40", "--k", "3", "--matrix"], "W is 1,444 x 1,600 (2,310,400 entries), too large to print"),
    (["--n", "40x40", "--k", "3", "--animate", "a.gif"], "the animation would have 1,444 frames"),
    (["--n", "6", "--k", "3", "--animate", "a.mp4"], "unknown animation type '.mp4'"),
    (["--n", "6x5", "--k", "3", "--input", "[[1,2]]", "--matrix"], "the input is 1x2 but the layer expects 6x5"),
    (["--n", "6x5", "--k", "3", "--input", "[[1,2],[3]]", "--matrix"], "rows of different lengths"),
    (["--n", "6x5", "--k", "3", "--input", "nothere.txt", "--matrix"], "neither a matrix"),
    (["--n", "6x5", "--k", "3", "--kernel", "nosuch", "--matrix"], "unknown kernel 'nosuch'"),
    (["--n", "6x5", "--k", "3", "--kernel", "[[1,2],[3,4]]", "--matrix"], "kernel is 2x2 but the layer's kernel size is 3x3"),
    (["--n", "6x5", "--k", "3", "--input", "[[1]]"], "add one of them"),
    (["--n", "6x5", "--k", "3", "-o", "w.png"], "-o writes the picture of --matrix"),
    (["--n", "6x5", "--k", "3", "--transpose", "--kind", "local"], "--kind compares kinds of convolution layer"),
])
def test_bad_input_is_one_line(args, message, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = run(*args)
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and message in lines[0] and "Traceback" not in result.output
    assert not list(tmp_path.iterdir())  # nothing written


def test_matrix_prints_w_and_checks_it():
    output = ok("--n", "4x4", "--k", "3", "--matrix", "--kernel", "[[1,0,-1],[1,0,-1],[1,0,-1]]",
                "--input", "[[1,2,3,4],[5,6,7,8],[1,1,1,1],[0,0,0,0]]")
    rows = [line.split()[1:] for line in output.splitlines() if line.startswith("y[")]
    assert rows[0] == ["1", ".", "-1", ".", "1", ".", "-1", ".", "1", ".", "-1", ".", ".", ".", ".", "."]
    assert rows[3][-1] == "-1" and len(rows) == 4
    assert "y = W x (1x2x2): -4 -4 / -2 -2" in output  # by hand: (1-3)+(5-7)+(1-1) = -4, ...
    assert "y = W x equals convtool.conv.correlate2d" in output and "W^T g equals ConvTranspose2d forward and col2im" in output
    report = json.loads(ok("--n", "6x5", "--k", "3", "--matrix", "--kind", "local", "--json"))
    assert (report["rows"], report["columns"], report["nonzero"], report["distinct_weights"]) == (12, 30, 108, 108)
    assert report["forward"]["equal"] and report["transpose"]["equal"]


def test_matrix_picture_of_a_large_layer(tmp_path):
    out = tmp_path / "w.png"
    output = ok("--n", "20x20", "--k", "3", "--s", "2", "--padding", "same", "--matrix", "-o", str(out))
    assert "100 rows" in output and "400 columns" in output
    with Image.open(out) as image:
        pixels = np.asarray(image)
    scale = pixels.shape[1] // 400
    assert pixels.shape[:2] == (100 * scale, 400 * scale)
    coloured = (pixels != 255).any(axis=2)[::scale, ::scale]
    assert coloured.sum() == json.loads(ok("--n", "20x20", "--k", "3", "--s", "2", "--padding", "same", "--matrix",
                                           "-o", str(tmp_path / "w2.png"), "--json"))["nonzero"]
    assert run("--n", "20x20", "--k", "3", "--matrix", "-o", str(out)).exit_code == 2  # exists: not replaced


def test_animate_the_lecture_edge_example(tmp_path):
    edge = tmp_path / "edge.txt"
    edge.write_text("\n".join(["10 10 10 0 0 0"] * 5))
    out = tmp_path / "edge.gif"
    output = ok("--input", str(edge), "--kernel", "[[1,0,-1],[1,0,-1],[1,0,-1]]", "--animate", str(out))
    assert output.startswith("wrote ") and out.stat().st_size < 200_000
    with Image.open(out) as gif:
        assert gif.n_frames == 12  # 3x4 outputs
    again = run("--input", str(edge), "--kernel", "[[1,0,-1],[1,0,-1],[1,0,-1]]", "--animate", str(out))
    assert again.exit_code == 2 and "already exists" in again.output
    ok("--n", "5", "--k", "3", "--s", "2", "--p", "1", "--transpose", "--animate", str(tmp_path / "t.svg"))
    assert ok("--n", "7x7", "--pool", "3:2", "--animate", str(tmp_path / "p.png")).startswith("wrote 9 frames")


def test_net_tables_count_local_and_tiled_layers(tmp_path):
    """Spec lines and an exported lenet5-local give the same row; tiled weights are sets x cout x cin x k."""
    from convtool.nn import export, models

    spec = tmp_path / "l.net"
    spec.write_text("input 1x28x28\nlocal1: local 6 5x5 p=2\nrelu\npool max 2\ntiled 4 3x3 t=2\nconv 2 3\n")
    rows = {r["name"]: r for r in json.loads(ok("--net", str(spec), "--bias", "--json"))["layers"]}
    assert (rows["local1"]["weights"], rows["local1"]["biases"], rows["local1"]["macs"]) == (784 * 150, 784 * 6,
                                                                                           784 * 150)
    assert (rows["tiled1"]["weights"], rows["tiled1"]["biases"]) == (4 * 4 * 6 * 9, 4 * 4)
    assert rows["conv1"]["weights"] == 2 * 4 * 9  # counters: the local and tiled rows are not convolutions
    net = models.build("lenet5-local", (1, 28, 28), 10)
    model = tmp_path / "m.onnx"
    export.save(export.to_onnx(net, {}), model)
    onnx_rows = json.loads(ok("--net", str(model), "--bias", "--json"))["layers"]
    assert onnx_rows[0]["name"] == "local1" and onnx_rows[0]["op"] == "local"
    for key in ("weights", "biases", "macs", "connections", "receptive_field", "shape"):
        assert onnx_rows[0][key] == rows["local1"][key], key
    bad = tmp_path / "bad.net"
    bad.write_text("input 1x6x5\ntiled 1 3x3 t=3\n")
    result = run("--net", str(bad))
    assert result.exit_code == 2 and "line 2: a tiling period of 3 does not divide" in result.output


def test_matrix_of_a_1d_strided_layer_by_hand():
    output = ok("--n", "7", "--k", "3", "--s", "2", "--matrix", "--input", "[1,2,3,4,5,6,7]", "--kernel", "[[1,2,1]]")
    rows = [line.split() for line in output.splitlines() if line.startswith("y[")]
    assert rows == [["y[0]", "1", "2", "1", ".", ".", ".", "."], ["y[1]", ".", ".", "1", "2", "1", ".", "."],
                    ["y[2]", ".", ".", ".", ".", "1", "2", "1"]]
    assert "y = W x (1x3): 8 16 24" in output  # 1+4+3, 3+8+5, 5+12+7
