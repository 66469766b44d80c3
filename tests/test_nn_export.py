"""ONNX export against onnxruntime, metadata, loading weights back, and the models shipped in models/."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest

from convtool.errors import ModelError
from convtool.infer.session import open_session
from convtool.nn import data as D
from convtool.nn import export, models, train
from convtool.resources import data_dir

KEYS = {"convtool.task", "convtool.arch", "convtool.labels", "convtool.input", "convtool.trained_on", "convtool.val_accuracy"}


def _meta(net, labels):
    return export.metadata_for(net, labels, "gray", 1 / 255, [0.1], [0.3], "test data", 0.5,
                               0.25 if net.task == "segment" else None)


@pytest.mark.parametrize("arch, shape, classes", [("lenet5", (1, 28, 28), 10), ("resnet", (3, 16, 12), 4), ("unet", (1, 16, 24), 3)])
def test_onnxruntime_matches_our_forward_pass(tmp_path, arch, shape, classes):
    net = models.build(arch, shape, classes, seed=1)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((6, *shape)).astype(np.float32)
    # one training step so batch-norm statistics and biases are not at their initial values
    y = rng.integers(0, classes, (6, *shape[1:]) if arch == "unet" else 6)
    train.fit(net, x, y, x, y, train.TrainConfig(epochs=1, batch=3, lr=1e-2))
    model = export.to_onnx(net, _meta(net, [f"c{i}" for i in range(classes)]))
    onnx.checker.check_model(model, full_check=True)
    assert model.opset_import[0].version >= 13
    path = tmp_path / "m.onnx"
    export.save(model, path)
    session = open_session(path, "cpu")
    assert [i.name for i in session.inputs] == ["input"] and [o.name for o in session.outputs] == ["logits"]
    for batch in (1, 6):  # dynamic batch dimension
        ours = net.forward(x[:batch])[0]
        theirs = session.run(x[:batch])[0]
        assert theirs.shape == ours.shape
        np.testing.assert_allclose(theirs, ours, atol=1e-4)
    assert export.parity(model, net, x) <= 1e-4


def test_metadata_keys_and_values():
    net = models.build("unet", (1, 16, 16), 3)
    model = export.to_onnx(net, _meta(net, ["background", "a", "b"]))
    meta = {p.key: p.value for p in model.metadata_props}
    assert KEYS | {"convtool.val_miou"} == set(meta)
    assert meta["convtool.task"] == "segment"
    assert json.loads(meta["convtool.labels"]) == ["background", "a", "b"]
    assert json.loads(meta["convtool.input"]) == {"layout": "nchw", "channels": "gray", "height": 16, "width": 16,
                                                  "scale": 1 / 255, "mean": [0.1], "std": [0.3]}
    assert float(meta["convtool.val_accuracy"]) == 0.5 and float(meta["convtool.val_miou"]) == 0.25


def test_load_weights_for_fine_tuning(tmp_path):
    source = models.build("lenet5", (1, 28, 28), 10, seed=1)
    path = tmp_path / "lenet.onnx"
    export.save(export.to_onnx(source, _meta(source, D.DIGITS)), path)
    same = models.build("lenet5", (1, 28, 28), 10, seed=2)
    assert export.load_weights(same, path) == []
    for k, v in source.parameters().items():
        np.testing.assert_array_equal(same.parameters()[k], v)
    fewer = models.build("lenet5", (1, 28, 28), 3, seed=2)
    fresh = fewer.parameters()["fc3.weight"].copy()
    assert export.load_weights(fewer, path) == ["fc3.weight", "fc3.bias"]
    np.testing.assert_array_equal(fewer.parameters()["fc3.weight"], fresh)
    np.testing.assert_array_equal(fewer.parameters()["conv1.weight"], source.parameters()["conv1.weight"])
    with pytest.raises(ModelError, match="does not match resnet: it has no stem.conv.weight"):
        export.load_weights(models.build("resnet", (1, 28, 28), 10), path)
    with pytest.raises(ModelError, match="conv1.weight has shape"):
        export.load_weights(models.build("lenet5", (3, 28, 28), 10), path)
    (tmp_path / "junk.onnx").write_bytes(b"not a model")
    with pytest.raises(ModelError, match="junk.onnx: not an ONNX model"):
        export.load_weights(same, tmp_path / "junk.onnx")


def _shipped(name: str):
    session = open_session(data_dir("models") / name, "cpu")
    meta = session.metadata
    spec = json.loads(meta["convtool.input"])
    return session, meta, spec


def test_shipped_lenet5_scores_on_the_held_out_digits():
    session, meta, spec = _shipped("lenet5-mnist.onnx")
    assert meta["convtool.task"] == "classify" and json.loads(meta["convtool.labels"]) == D.DIGITS
    held_out = D.bundled_mnist()
    x = D.normalize(held_out.images[8000:8500], spec["scale"], spec["mean"], spec["std"])
    accuracy = np.mean(session.run(x)[0].argmax(axis=1) == held_out.labels[8000:8500])
    assert accuracy >= 0.98
    assert abs(float(meta["convtool.val_accuracy"]) - 0.985) < 0.015


def test_shipped_segmenter_scores_on_held_out_canvases():
    session, meta, spec = _shipped("unet-digits.onnx")
    assert meta["convtool.task"] == "segment"
    digits = D.bundled_mnist()
    held_out = D.Dataset(digits.images[8000:], digits.labels[8000:], D.DIGITS, "held out")
    canvases = D.digit_canvases(held_out, 60, spec["height"], seed=123)
    x = D.normalize(canvases.images, spec["scale"], spec["mean"], spec["std"])
    logits = session.run(x)[0]
    assert logits.shape == (60, 11, spec["height"], spec["width"])
    conf = train.confusion_matrix(canvases.labels, logits.argmax(axis=1), 11)
    assert train.mean_iou(conf) >= 0.8
