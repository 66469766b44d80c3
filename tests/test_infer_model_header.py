"""read_header against onnxruntime's own view of the same files (its session is the oracle)."""

import numpy as np
import onnx
import pytest
from infer_helpers import MNIST_12, colour_segmenter, lenet, linear_rgb, save
from onnx import TensorProto, helper, numpy_helper

from convtool.infer.model_header import read_header
from convtool.infer.session import open_session
from convtool.resources import data_dir


def _same_as_session(path):
    header, session = read_header(path), open_session(path, "cpu")
    assert header is not None
    assert list(header.inputs) == session.inputs
    assert list(header.outputs) == session.outputs
    assert header.metadata == session.metadata
    return header


@pytest.mark.parametrize("make", [
    lambda p: lenet(p),
    lambda p: lenet(p, batch=1, metadata={"convtool.labels": ["zero", "one"], "note": "ünïcode"}),
    lambda p: lenet(p, nhwc=True, batch=4, softmax=True),
    lambda p: linear_rgb(p, np.ones((3 * 8 * 6, 2), np.float32), size=(8, 6), nhwc=True),
    lambda p: colour_segmenter(p, stride=2),
])
def test_inputs_outputs_and_metadata_match_onnxruntime(tmp_path, make):
    _same_as_session(make(tmp_path / "model.onnx"))


def test_models_shipped_and_the_model_zoos_match_onnxruntime():
    for path in [MNIST_12, *sorted(data_dir("models").glob("*.onnx"))]:
        header = _same_as_session(path)
        assert header.inputs[0].shape[1:] in ((1, 28, 28), (1, 48, 48))


def test_initializers_listed_as_inputs_are_not_inputs(tmp_path):
    """IR version 3 files list every weight among the graph inputs; onnxruntime does not count them."""
    weight = numpy_helper.from_array(np.eye(4, dtype=np.float32), "w")
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"])], "old",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4]),
         helper.make_tensor_value_info("w", TensorProto.FLOAT, [4, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4])], [weight])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 9)])
    model.ir_version = 3
    header = _same_as_session(save(model, tmp_path / "old.onnx"))
    assert [i.name for i in header.inputs] == ["x"] and header.inputs[0].shape == (None, 4)


def test_files_it_cannot_follow_give_none(tmp_path):
    whole = lenet(tmp_path / "lenet.onnx").read_bytes()
    graph_at = whole.index(onnx.load_from_string(whole).graph.SerializeToString()[:16])
    cases = {"empty.onnx": b"", "text.onnx": b"# not a model\n" * 10, "cut.onnx": whole[: graph_at + 100],
             "group.onnx": b"\x0b\x0c"}  # wire type 3 (a group): never used by ONNX
    for name, data in cases.items():
        (tmp_path / name).write_bytes(data)
        assert read_header(tmp_path / name) is None, name
    assert read_header(tmp_path / "missing.onnx") is None
    assert read_header(tmp_path) is None  # a folder
