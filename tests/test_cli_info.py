"""`convtool info` through click: facts, metadata, the layer table shared with calc --net, bad files."""

from __future__ import annotations

import json

from click.testing import CliRunner
from infer_helpers import MNIST_12, lenet

from convtool.cli.main import cli


def run(*args: str):
    return CliRunner().invoke(cli, ["info", *args], catch_exceptions=False)


def test_mnist12_facts_and_layers():
    result = run(str(MNIST_12))
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert "producer  CNTK 2.5.1; IR 7, opset ai.onnx 12" in out
    assert "input     Input3 float32[1, 1, 28, 28]" in out
    assert "output    Plus214_Output_0 float32[1, 10]" in out
    assert "metadata  (none)" in out and "NCHW gray 28x28" in out
    # the layer table: 5x5x1x8 + 5x5x8x16 + 256x10 weights; MACs 28*28*8*25 + 14*14*16*200 + 2560
    assert "5,960" in out and f"{28 * 28 * 8 * 25 + 14 * 14 * 16 * 200 + 2560:,}" in out


def test_json_with_metadata(tmp_path):
    meta = {"convtool.task": "classify", "convtool.labels": [str(i) for i in range(10)], "convtool.val_accuracy": "0.987"}
    path = lenet(tmp_path / "lenet.onnx", metadata=meta)
    result = run(str(path), "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["inputs"] == [{"name": "x", "type": "float32", "shape": [None, 1, 28, 28]}]
    assert data["metadata"]["convtool.val_accuracy"] == "0.987"
    assert data["parameters"] == 6 * 25 + 6 + 16 * 150 + 16 + 400 * 120 + 120 + 120 * 84 + 84 + 84 * 10 + 10
    assert data["layers"]["totals"]["weights"] == 6 * 25 + 16 * 150 + 400 * 120 + 120 * 84 + 84 * 10
    text = run(str(path), "--no-layers")
    assert "metadata  convtool.task = classify" in text.stdout and "MACs" not in text.stdout


def test_bad_model_files(tmp_path):
    missing = run(str(tmp_path / "none.onnx"))
    assert missing.exit_code == 1 and "none.onnx: no such model file" in missing.output
    (tmp_path / "text.onnx").write_text("not a model at all")
    bad = run(str(tmp_path / "text.onnx"))
    assert bad.exit_code == 1 and "text.onnx: not an ONNX model" in bad.output
    assert len(bad.output.strip().splitlines()) == 1 and "Traceback" not in bad.output
