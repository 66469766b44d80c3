"""--preset, fractions in --scale and bundled --labels through click."""

from __future__ import annotations

import json

import numpy as np
from click.testing import CliRunner
from infer_helpers import linear_rgb
from PIL import Image

from convtool.cli.main import cli

WEIGHTS = np.random.default_rng(5).normal(size=(3 * 4 * 4, 10)).astype(np.float32)


def _scores(tmp_path, *options: str) -> list[float]:
    image = tmp_path / "x.png"
    if not image.exists():
        Image.fromarray(np.random.default_rng(1).integers(0, 256, (4, 4, 3), dtype=np.uint8)).save(image)
    model = tmp_path / "m.onnx"
    if not model.exists():
        linear_rgb(model, WEIGHTS, size=(4, 4))
    out = tmp_path / f"r{len(list(tmp_path.glob('r*.jsonl')))}.jsonl"
    result = CliRunner().invoke(cli, ["classify", str(image), "-m", str(model), "-o", str(out), "--top-k", "10",
                                      "--device", "cpu", *options])
    assert result.exit_code == 0, result.output
    record = json.loads(out.read_text().splitlines()[0])
    return [entry["probability"] for entry in sorted(record["top_k"], key=lambda e: e["index"])]


def test_preset_tf_equals_mean_and_std_of_one_half(tmp_path):
    tf = _scores(tmp_path, "--preset", "tf")
    np.testing.assert_allclose(tf, _scores(tmp_path, "--mean", "0.5", "--std", "0.5"), atol=1e-6)
    np.testing.assert_allclose(tf, _scores(tmp_path, "--scale", "1/127.5", "--mean", "1"), atol=1e-6)
    assert not np.allclose(tf, _scores(tmp_path), atol=1e-3)  # the default (0..1) really differs


def test_options_given_with_a_preset_win(tmp_path):
    mixed = _scores(tmp_path, "--preset", "imagenet", "--mean", "0.5", "--std", "0.5")
    np.testing.assert_allclose(mixed, _scores(tmp_path, "--preset", "tf"), atol=1e-6)


def test_bad_scale_and_preset_values(tmp_path):
    runner = CliRunner()
    for value, expected in (("nan", "'nan' is not a finite number"), ("1/0", "'1/0' is not a finite number"),
                            ("x", "'x' is not a finite number")):
        result = runner.invoke(cli, ["classify", str(tmp_path), "-m", "lenet5-mnist", "--scale", value])
        assert result.exit_code == 2 and expected in result.output, result.output
    result = runner.invoke(cli, ["classify", str(tmp_path), "-m", "lenet5-mnist", "--preset", "keras"])
    assert result.exit_code == 2 and "'keras' is not one of 'imagenet'" in result.output
