"""Feature maps: intermediate tensors exposed as outputs, channel layout, the grid picture."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
from infer_helpers import MNIST_12, colour_segmenter, lenet
from PIL import Image

from convtool.errors import UsageError
from convtool.infer.features import (
    as_channels_first,
    default_layer,
    feature_layers,
    find_layer,
    layer_tensors,
    with_outputs,
)
from convtool.infer.model_info import describe_model
from convtool.io.onnx_file import load_onnx


def test_mnist12_layers_and_default():
    tensors = feature_layers(load_onnx(MNIST_12))
    assert [t.node for t in tensors][:4] == ["Convolution28", "Plus30", "ReLU32", "Pooling66"]
    assert tensors[0].shape == (1, 8, 28, 28) and tensors[-1].shape == (1, 16, 4, 4)
    assert default_layer(tensors).name == "Convolution28_Output_0"
    assert find_layer(tensors, "ReLU114").name == "ReLU114_Output_0"
    with pytest.raises(UsageError, match="did you mean ReLU32_Output_0, ReLU114_Output_0"):
        find_layer(tensors, "relu")


def test_exposed_tensor_equals_a_numpy_convolution_of_the_input():
    """Oracle: the first conv of mnist-12 computed here with a NumPy loop from its initializers."""
    model = load_onnx(MNIST_12)
    weights = {t.name: t for t in model.graph.initializer}
    conv = model.graph.node[0]
    from onnx import numpy_helper

    kernel = numpy_helper.to_array(weights[conv.input[1]])  # 8,1,5,5
    x = np.random.default_rng(0).random((1, 1, 28, 28), dtype=np.float32)
    session = ort.InferenceSession(with_outputs(model, [conv.output[0]]), providers=["CPUExecutionProvider"])
    got = session.run([conv.output[0]], {"Input3": x})[0][0]
    padded = np.pad(x[0, 0].astype(np.float64), 2)  # auto_pad SAME_UPPER, 5x5
    expected = np.zeros((8, 28, 28))
    for dy in range(5):
        for dx in range(5):
            expected += kernel[:, 0, dy, dx][:, None, None] * padded[dy : dy + 28, dx : dx + 28]
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4)


def test_nhwc_activations_become_channels_first():
    maps = np.arange(2 * 3 * 4, dtype=float).reshape(2, 3, 4)
    assert as_channels_first(maps, (2, 3), "nchw") is maps
    nhwc = np.zeros((8, 8, 3))
    assert as_channels_first(nhwc, (32, 32), "nhwc").shape == (3, 8, 8)


def test_layer_tensors_of_a_built_model(tmp_path):
    path = lenet(tmp_path / "lenet.onnx", nhwc=True)
    names = [t.name for t in layer_tensors(load_onnx(path))]
    assert names[:3] == ["x_nchw", "c1", "r1"]
    assert [t.shape for t in feature_layers(load_onnx(path))][:2] == [(None, 1, 28, 28), (None, 6, 28, 28)]


def test_describe_model_reads_metadata_and_preprocessing(tmp_path):
    meta = {"convtool.task": "segment", "convtool.labels": ["r", "g", "b"],
            "convtool.input": {"layout": "nchw", "channels": "rgb", "height": 16, "width": 16, "scale": 1 / 255,
                               "mean": [0, 0, 0], "std": [1, 1, 1]}}
    path = colour_segmenter(tmp_path / "seg.onnx", size=(16, 16), metadata=meta)
    info = describe_model(path)
    assert info.opsets == {"ai.onnx": 13} and info.producer == "convtool-tests" and info.parameters == 9
    assert info.inputs[0].shape == (None, 3, 16, 16)
    assert info.metadata["convtool.task"] == "segment"
    assert info.preprocess.endswith("(from the model's metadata)") and "16x16" in info.preprocess
    mnist = describe_model(MNIST_12)
    assert mnist.preprocess.startswith("NCHW gray 28x28") and mnist.ir_version == 7


def test_channel_maps_of_the_identity_segmenter_are_the_image(tmp_path):
    rgb = np.random.default_rng(1).integers(0, 256, (10, 12, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(tmp_path / "x.png")
    path = colour_segmenter(tmp_path / "seg.onnx")
    model = load_onnx(path)
    session = ort.InferenceSession(with_outputs(model, ["s"]), providers=["CPUExecutionProvider"])
    x = (rgb.transpose(2, 0, 1)[None] / 255).astype(np.float32)
    maps = session.run(["s"], {"x": x})[0][0]
    np.testing.assert_allclose(maps, rgb.transpose(2, 0, 1) / 255, atol=1e-6)
