"""`convtool features` through click: the grid file, --list, --layer, bad inputs."""

from __future__ import annotations

import numpy as np
from click.testing import CliRunner
from infer_helpers import MNIST_12, colour_segmenter, mnist
from PIL import Image

from convtool.cli.main import cli


def run(*args: str):
    return CliRunner().invoke(cli, ["features", *args], catch_exceptions=False)


def test_grid_of_the_identity_layer_is_the_image(tmp_path, monkeypatch):
    from convtool import plots

    drawn = {}
    draw = plots.feature_grid

    def spy(maps, **options):
        drawn["maps"], drawn["options"] = maps, options
        return draw(maps, **options)

    monkeypatch.setattr(plots, "feature_grid", spy)
    rgb = np.random.default_rng(3).integers(0, 256, (12, 12, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(tmp_path / "x.png")
    model = colour_segmenter(tmp_path / "seg.onnx")
    out = tmp_path / "grid.png"
    result = run(str(model), str(tmp_path / "x.png"), "--layer", "s", "-o", str(out), "--columns", "3", "--device", "cpu")
    assert result.exit_code == 0, result.output
    assert "s (Conv, 3x12x12): 3 maps" in result.stdout and str(out) in result.stdout
    np.testing.assert_allclose(drawn["maps"], rgb.transpose(2, 0, 1) / 255, atol=1e-6)  # the image's planes
    assert drawn["options"]["columns"] == 3 and drawn["options"]["title"].startswith("s (Conv")
    assert Image.open(out).format == "PNG" and Image.open(out).width > 3 * 48


def test_list_and_default_layer_of_mnist12(tmp_path):
    listing = run(str(MNIST_12), "--list")
    assert listing.exit_code == 0
    assert "Convolution28_Output_0" in listing.stdout and "1x16x4x4" in listing.stdout
    Image.fromarray(mnist(1)[0][0]).save(tmp_path / "digit.png")
    out = tmp_path / "maps.png"
    result = run(str(MNIST_12), str(tmp_path / "digit.png"), "-o", str(out))
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("Convolution28_Output_0 (Conv, 8x28x28): 8 maps")
    assert Image.open(out).format == "PNG"


def test_bad_inputs(tmp_path):
    Image.fromarray(mnist(1)[0][0]).save(tmp_path / "digit.png")
    digit = str(tmp_path / "digit.png")
    unknown = run(str(MNIST_12), digit, "--layer", "nope")
    assert unknown.exit_code == 2 and "--layer 'nope': no such tensor or node" in unknown.output
    no_image = run(str(MNIST_12))
    assert no_image.exit_code == 2 and "give an IMAGE" in no_image.output
    (tmp_path / "g.png").write_bytes(b"keep")
    exists = run(str(MNIST_12), digit, "-o", str(tmp_path / "g.png"))
    assert exists.exit_code == 1 and "already exists; pass --overwrite" in exists.output
    assert (tmp_path / "g.png").read_bytes() == b"keep"
    onto_input = run(str(MNIST_12), digit, "-o", digit, "--overwrite")
    assert onto_input.exit_code == 1 and "is one of the input files" in onto_input.output
    (tmp_path / "empty.png").write_bytes(b"")
    empty = run(str(MNIST_12), str(tmp_path / "empty.png"), "-o", str(tmp_path / "e.png"))
    assert empty.exit_code == 1 and "empty.png: the file is empty" in empty.output
    for result in (unknown, no_image, exists, onto_input, empty):
        assert "Traceback" not in result.output
