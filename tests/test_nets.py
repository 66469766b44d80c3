"""Network tables against the lecture's LeNet-5 table, LeCun 1998, published parameter/MAC counts and
receptive fields, and ONNX shape inference on equivalent ONNX graphs built here."""

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from convtool import nets
from convtool.errors import ModelError, UsageError

DATA = Path(__file__).parent / "data"
MNIST_12 = DATA / "mnist-12.onnx"  # the ONNX model zoo copy, provenance in tests/data/README.md

# The lecture's LeNet-5 table: layer, units, connections, weights (biases not counted)
LECTURE_LENET = [("C1", 4_704, 117_600, 150), ("S2", 1_176, 4_704, 0), ("C3", 1_600, 240_000, 2_400),
                 ("S4", 400, 1_600, 0), ("F5", 120, 48_000, 48_000), ("F6", 84, 10_080, 10_080),
                 ("output", 10, 840, 840)]


@pytest.mark.parametrize("network", [nets.network_from_builtin("lenet5"), nets.network_from_spec(DATA / "lenet5.net")],
                         ids=["builtin", "spec"])
def test_lenet5_reproduces_the_lecture_table(network):
    rows = [(layer.name, layer.units, layer.connections, layer.weights) for layer in network.layers]
    assert rows == LECTURE_LENET
    assert [layer.shape for layer in network.layers] == [(6, 28, 28), (6, 14, 14), (16, 10, 10), (16, 5, 5),
                                                         (120,), (84,), (10,)]


def test_lenet5_with_biases_matches_lecun_1998_where_the_architectures_agree():
    """The paper: C1 156 parameters and 122,304 connections; F6 10,164 of both (C3, S2, S4 differ by design)."""
    layers = {layer.name: layer for layer in nets.network_from_builtin("lenet5").layers}
    assert (layers["C1"].params, layers["C1"].connections + layers["C1"].bias_connections) == (156, 122_304)
    assert (layers["F6"].params, layers["F6"].connections + layers["F6"].bias_connections) == (10_164, 10_164)


@pytest.mark.parametrize("name, params, gmacs", [
    ("alexnet", 62_378_344, 1.14),  # Krizhevsky 2012 without groups, 227x227 (the widely quoted 62.3M)
    ("vgg16", 138_357_544, 15.47),  # torchvision vgg16: 138,357,544 params, 15.47 GFLOPS (= GMACs)
    ("resnet18", 11_689_512, 1.81),  # torchvision resnet18: 11,689,512 params, 1.81 GFLOPS (= GMACs)
])
def test_builtin_totals_match_published_counts(name, params, gmacs):
    totals = nets.network_from_builtin(name).totals(include_bias=True)
    assert totals.params == params
    assert round(totals.macs / 1e9, 2) == gmacs
    assert totals.flops == 2 * totals.macs


@pytest.mark.parametrize("name, layer, rf", [("vgg16", "conv5_3", 196), ("vgg16", "pool5", 212),
                                             ("alexnet", "pool5", 195), ("resnet18", "layer4.1.add", 435)])
def test_receptive_fields_match_published_values(name, layer, rf):
    """Araujo, Norris and Sim, "Computing Receptive Fields of Convolutional Neural Networks", Distill 2019."""
    layers = {row.name: row for row in nets.network_from_builtin(name).layers}
    assert layers[layer].receptive_field == (rf, rf)


def test_totals_leave_biases_out_unless_asked():
    network = nets.network_from_builtin("lenet5")
    without, with_bias = network.totals(include_bias=False), network.totals(include_bias=True)
    assert without.weights == with_bias.weights == 150 + 2_400 + 48_000 + 10_080 + 840
    assert (without.biases, with_bias.biases) == (0, 6 + 16 + 120 + 84 + 10)
    assert with_bias.connections - without.connections == 4_704 + 1_600 + 120 + 84 + 10


def test_fully_connecting_a_200x200x3_input_to_1000_units_takes_120_million_weights():
    network = nets.parse_spec("input 3x200x200\nfc 1000")
    assert network.layers[0].weights == 120_000_000


# ---- spec files ------------------------------------------------------------------------------


@pytest.mark.parametrize("text, line, fragment", [
    ("conv 6 5", 1, "first line must give the input size"),
    ("input 1x32x32\nconv 6 5x5\npool max two", 3, "expected 'pool max|avg"),
    ("input 1x32x32\n\n# comment\nfrobnicate 3", 4, "unknown layer 'frobnicate'"),
    ("input 1x8x8\nconv 6 9x9", 2, "kernel 9 does not fit the padded input 8; use p=same"),
    ("input 1x8x8\nconv 6", 2, "expected 'conv OUT KxK"),
    ("input 1x8x8\nconv 6 3 s=0", 2, "stride must be positive"),
    ("input 1x8x8\nconv 6 3 colour=red", 2, "unknown option 'colour'"),
    ("input 1x8x8\nfc 10 s=2", 2, "do not apply to fc"),
    ("input 1x8x8\nfc 10\nconv 3 3", 3, "needs an input with spatial axes"),
    ("input 1x8x8\ninput 1x8x8", 2, "already given"),
    ("input 4x8x8\nconv 6 3 g=3", 2, "groups 3 must divide"),
])
def test_spec_errors_name_the_line_and_the_expected_form(text, line, fragment):
    with pytest.raises(UsageError) as info:
        nets.parse_spec(text, where="my.net")
    message = str(info.value)
    assert message.startswith(f"my.net line {line}: ")
    assert fragment in message
    assert "\n" not in message


def test_pool_lines_take_the_filter_spelling_too():
    old = nets.parse_spec("input 1x9x9\npool max 3:2\npool avg 2 s=1")
    new = nets.parse_spec("input 1x9x9\npool max:3:2\npool avg:2 s=1")
    assert [(layer.op, layer.shape) for layer in old.layers] == [(layer.op, layer.shape) for layer in new.layers]
    assert [layer.shape for layer in new.layers] == [(1, 4, 4), (1, 3, 3)]  # floor((9-3)/2)+1, then 4-2+1


def test_an_empty_spec_is_an_error():
    with pytest.raises(UsageError, match="has no layers"):
        nets.parse_spec("# nothing\ninput 1x4x4\n")


def test_load_network_rejects_unknown_names():
    with pytest.raises(UsageError, match="neither a built-in network"):
        nets.load_network("vgg19")


# ---- ONNX: equivalent graphs through onnx shape inference ----------------------------------------


def _init(name, *shape):
    return numpy_helper.from_array(np.random.default_rng(0).standard_normal(shape).astype(np.float32), name)


def _save(tmp_path, nodes, inits, input_shape, name="model", extra_opsets=()):
    graph = helper.make_graph(nodes, name, [helper.make_tensor_value_info("x", TensorProto.FLOAT, input_shape)],
                              [helper.make_tensor_value_info(nodes[-1].output[0], TensorProto.FLOAT, None)], inits)
    opsets = [helper.make_opsetid("", 13), *extra_opsets]
    model = helper.make_model(graph, opset_imports=opsets)
    path = tmp_path / f"{name}.onnx"
    onnx.save(model, str(path))
    return path


def lenet_onnx(tmp_path) -> Path:
    n = helper.make_node
    nodes = [n("Conv", ["x", "w1", "b1"], ["c1"], kernel_shape=[5, 5]), n("Relu", ["c1"], ["r1"]),
             n("MaxPool", ["r1"], ["s2"], kernel_shape=[2, 2], strides=[2, 2]),
             n("Conv", ["s2", "w3", "b3"], ["c3"], kernel_shape=[5, 5]), n("Relu", ["c3"], ["r3"]),
             n("MaxPool", ["r3"], ["s4"], kernel_shape=[2, 2], strides=[2, 2]), n("Flatten", ["s4"], ["flat"]),
             n("Gemm", ["flat", "w5", "b5"], ["f5"], transB=1), n("Gemm", ["f5", "w6", "b6"], ["f6"], transB=1),
             n("Gemm", ["f6", "w7", "b7"], ["y"], transB=1)]
    inits = [_init("w1", 6, 1, 5, 5), _init("b1", 6), _init("w3", 16, 6, 5, 5), _init("b3", 16),
             _init("w5", 120, 400), _init("b5", 120), _init("w6", 84, 120), _init("b6", 84),
             _init("w7", 10, 84), _init("b7", 10)]
    return _save(tmp_path, nodes, inits, ["N", 1, 32, 32], "lenet")


def test_onnx_lenet_agrees_with_the_builtin_table(tmp_path):
    network = nets.network_from_onnx(lenet_onnx(tmp_path))
    assert network.input_shape == (1, 32, 32)
    counted = [layer for layer in network.layers if layer.op in ("Conv", "MaxPool", "Gemm")]
    builtin = nets.network_from_builtin("lenet5").layers
    for ours, reference in zip(counted, builtin, strict=True):
        assert (ours.shape, ours.units, ours.weights, ours.biases, ours.macs, ours.connections,
                ours.receptive_field) == (reference.shape, reference.units, reference.weights, reference.biases,
                                          reference.macs, reference.connections, reference.receptive_field)
    assert network.totals().params == nets.network_from_builtin("lenet5").totals().params == 61_706
    assert network.unknown_ops == []


def small_net_onnx(tmp_path) -> Path:
    """The layers of tests/data/small.net written as ONNX nodes (auto_pad SAME_UPPER is TensorFlow's same)."""
    n = helper.make_node
    nodes = [n("Conv", ["x", "w0"], ["a"], kernel_shape=[3, 3], strides=[2, 2], auto_pad="SAME_UPPER"),
             n("BatchNormalization", ["a", "g", "beta", "mean", "var"], ["b"]), n("Relu", ["b"], ["c"]),
             n("MaxPool", ["c"], ["d"], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1]),
             n("Conv", ["d", "w1", "b1"], ["e"], kernel_shape=[3, 1], pads=[1, 0, 1, 0], dilations=[2, 2]),
             n("Conv", ["e", "w2", "b2"], ["f"], kernel_shape=[3, 3], pads=[1, 1, 1, 1], group=4),
             n("ConvTranspose", ["f", "w3", "b3"], ["g2"], kernel_shape=[4, 4], strides=[2, 2], pads=[1, 1, 1, 1]),
             n("GlobalAveragePool", ["g2"], ["h"]), n("Flatten", ["h"], ["i"]), n("Dropout", ["i"], ["j"]),
             n("Gemm", ["j", "w4", "b4"], ["y"], transB=1)]
    inits = [_init("w0", 16, 3, 3, 3), _init("g", 16), _init("beta", 16), _init("mean", 16), _init("var", 16),
             _init("w1", 32, 16, 3, 1), _init("b1", 32), _init("w2", 32, 8, 3, 3), _init("b2", 32),
             _init("w3", 32, 16, 4, 4), _init("b3", 16), _init("w4", 10, 16), _init("b4", 10)]
    return _save(tmp_path, nodes, inits, [1, 3, 64, 48], "small")


def test_spec_file_agrees_with_onnx_shape_inference_layer_by_layer(tmp_path):
    spec = nets.network_from_spec(DATA / "small.net").layers
    model = nets.network_from_onnx(small_net_onnx(tmp_path)).layers
    assert len(spec) == len(model) == 11
    for ours, theirs in zip(spec, model):
        assert (ours.shape, ours.units, ours.weights, ours.biases, ours.macs, ours.receptive_field) == \
            (theirs.shape, theirs.units, theirs.weights, theirs.biases, theirs.macs, theirs.receptive_field), ours.name


def test_unknown_onnx_ops_are_listed_not_fatal(tmp_path):
    n = helper.make_node
    nodes = [n("Conv", ["x", "w"], ["a"], kernel_shape=[3, 3]),
             n("Sparkle", ["a"], ["b"], domain="example.custom"), n("Relu", ["b"], ["y"])]
    path = _save(tmp_path, nodes, [_init("w", 4, 1, 3, 3)], [1, 1, 8, 8], "custom",
                 extra_opsets=[helper.make_opsetid("example.custom", 1)])
    network = nets.network_from_onnx(path)
    assert network.unknown_ops == ["Sparkle"]
    assert [layer.op for layer in network.layers] == ["Conv", "Sparkle", "Relu"]
    assert network.layers[0].macs == 4 * 6 * 6 * 9


def test_a_residual_add_takes_the_larger_receptive_field_of_its_inputs(tmp_path):
    n = helper.make_node
    nodes = [n("Conv", ["x", "w"], ["a"], kernel_shape=[3, 3], pads=[1, 1, 1, 1]), n("Add", ["x", "a"], ["y"])]
    network = nets.network_from_onnx(_save(tmp_path, nodes, [_init("w", 1, 1, 3, 3)], [1, 1, 8, 8], "residual"))
    assert [layer.receptive_field for layer in network.layers] == [(3, 3), (3, 3)]
    builder = nets.Builder("residual", (1, 8, 8))
    entry = builder.state
    builder.conv(1, 3, padding=1)
    assert builder.add(entry).rf == (3, 3)


def test_symbolic_input_sizes_are_noted(tmp_path):
    n = helper.make_node
    path = _save(tmp_path, [n("Conv", ["x", "w"], ["y"], kernel_shape=[3, 3])], [_init("w", 4, 3, 3, 3)],
                 ["N", 3, "H", "W"], "dynamic")
    network = nets.network_from_onnx(path)
    assert network.layers[0].weights == 108
    assert network.notes and "symbolic sizes (H, W)" in network.notes[0]


@pytest.mark.parametrize("content", [b"not an onnx model at all", b"", b"\x08\x07\x12"])
def test_a_file_that_is_not_onnx_raises_model_error_in_one_line(tmp_path, content):
    path = tmp_path / "broken.onnx"
    path.write_bytes(content)
    with pytest.raises(ModelError, match="not an ONNX model|the model file is empty") as info:
        nets.network_from_onnx(path)
    assert "\n" not in str(info.value)


def test_a_truncated_onnx_file_raises_model_error(tmp_path):
    data = lenet_onnx(tmp_path).read_bytes()
    path = tmp_path / "cut.onnx"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelError):
        nets.network_from_onnx(path)


def test_a_missing_onnx_file_raises_model_error(tmp_path):
    with pytest.raises(ModelError, match="no such model file"):
        nets.network_from_onnx(tmp_path / "missing.onnx")


def test_mnist12_parameters_equal_its_float_initializers():
    model = onnx.load(str(MNIST_12))
    expected = sum(int(np.prod(t.dims)) for t in model.graph.initializer if t.data_type == TensorProto.FLOAT)
    network = nets.network_from_onnx(MNIST_12)
    assert network.totals(include_bias=True).params == expected == 5_994
    assert [layer.shape for layer in network.layers if layer.op == "Conv"] == [(8, 28, 28), (16, 14, 14)]
    assert network.unknown_ops == []
