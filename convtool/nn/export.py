"""Networks to ONNX (opset 13, dynamic batch, preprocessing and labels in the metadata) and back.

Metadata keys read by ``convtool classify`` / ``segment``:
``convtool.task``, ``convtool.labels`` (JSON list), ``convtool.input`` (JSON: layout, channels,
height, width, scale, mean, std; ``x = (pixel * scale - mean) / std``), ``convtool.trained_on``,
``convtool.val_accuracy`` and, for segmenters, ``convtool.val_miou``; also ``convtool.arch``.
Initializers carry the dotted parameter names (``conv1.weight``), so :func:`load_weights` can read
them back for fine-tuning.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from convtool.errors import ModelError
from convtool.nn import layers as L
from convtool.nn import local
from convtool.nn.models import Network

OPSET = 13


def _node_ops(helper, layer: L.Layer, inputs: list[str], output: str, name: str, weights: list[str]) -> list:
    """The ONNX node(s) of one layer reading ``inputs`` and writing ``output``."""
    make = helper.make_node
    if isinstance(layer, L.Conv2d):
        (kh, kw), (ph, pw) = layer.kernel_size, layer.padding
        return [make("Conv", inputs + weights, [output], name=name, kernel_shape=[kh, kw], strides=list(layer.stride),
                     pads=[ph, pw, ph, pw], dilations=list(layer.dilation))]
    if isinstance(layer, L.ConvTranspose2d):
        (ph, pw) = layer.padding
        return [make("ConvTranspose", inputs + weights, [output], name=name, kernel_shape=list(layer.kernel_size),
                     strides=list(layer.stride), pads=[ph, pw, ph, pw])]
    if isinstance(layer, L.Linear):
        return [make("Gemm", inputs + weights, [output], name=name, transB=1)]
    if isinstance(layer, L.BatchNorm2d):
        return [make("BatchNormalization", inputs + weights, [output], name=name, epsilon=layer.eps)]
    if isinstance(layer, (L.MaxPool2d, L.AvgPool2d)):
        op = "MaxPool" if isinstance(layer, L.MaxPool2d) else "AveragePool"
        return [make(op, inputs, [output], name=name, kernel_shape=list(layer.kernel_size), strides=list(layer.stride))]
    simple = {L.ReLU: "Relu", L.Tanh: "Tanh", L.Sigmoid: "Sigmoid", L.Dropout: "Identity", L.Add: "Add"}
    if type(layer) in simple:
        return [make(simple[type(layer)], inputs, [output], name=name)]
    if isinstance(layer, L.Flatten):
        return [make("Flatten", inputs, [output], name=name, axis=1)]
    if isinstance(layer, L.Concat):
        return [make("Concat", inputs, [output], name=name, axis=1)]
    raise ModelError(f"cannot export a {type(layer).__name__} layer to ONNX")


def to_onnx(net: Network, metadata: dict[str, str]):
    """An ``onnx.ModelProto`` of ``net`` (evaluation mode) with ``metadata`` as metadata_props."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    c, h, w = net.input_shape
    last = net.nodes[-1].name
    out_name = {n.name: ("logits" if n.name == last else n.name) for n in net.nodes}
    out_name["input"] = "input"
    nodes, initializers = [], []
    shapes = net.output_shapes()
    for node in net.nodes:
        weights = []
        order = ["weight", "bias", "running_mean", "running_var"]
        tensors = {**node.layer.params, **node.layer.buffers}
        for key in order:
            if key in tensors:
                full = f"{node.name}.{key}"
                initializers.append(numpy_helper.from_array(tensors[key].astype(np.float32), full))
                weights.append(full)
        inputs = [out_name[i] for i in node.inputs]
        if isinstance(node.layer, local.TiledConv2d):  # no single ONNX op: unfold + per-kernel MatMul
            in_h, in_w = shapes[node.inputs[0]][2:]
            nodes += local.onnx_nodes(helper, node.layer, inputs[0], out_name[node.name], node.name, weights,
                                      (in_h, in_w))
        else:
            nodes += _node_ops(helper, node.layer, inputs, out_name[node.name], node.name, weights)
    out_shape: list[str | int | None] = ["N", *shapes[last][1:]]
    graph = helper.make_graph(
        nodes, f"convtool-{net.arch}",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", c, h, w])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, out_shape)],
        initializers,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="convtool")
    model.ir_version = min(model.ir_version, 8)
    for key, value in metadata.items():
        model.metadata_props.append(onnx.StringStringEntryProto(key=key, value=value))
    onnx.checker.check_model(model, full_check=True)
    return model


def metadata_for(net: Network, labels: list[str], channels: str, scale: float, mean: list[float], std: list[float],
                 trained_on: str, val_accuracy: float, val_miou: float | None = None) -> dict[str, str]:
    """The ``convtool.*`` metadata_props of a trained network."""
    _, h, w = net.input_shape
    meta = {
        "convtool.task": net.task,
        "convtool.arch": net.arch,
        "convtool.labels": json.dumps(labels),
        "convtool.input": json.dumps({"layout": "nchw", "channels": channels, "height": h, "width": w,
                                      "scale": scale, "mean": mean, "std": std}),
        "convtool.trained_on": trained_on,
        "convtool.val_accuracy": f"{val_accuracy:.4f}",
    }
    if val_miou is not None:
        meta["convtool.val_miou"] = f"{val_miou:.4f}"
    return meta


def save(model, path: Path, *, overwrite: bool = False) -> None:
    """Publish the model atomically; an existing file is replaced only with ``overwrite``."""
    from convtool.io.publish import publish_bytes

    publish_bytes(path, model.SerializeToString(), overwrite=overwrite)


def load_weights(net: Network, path: Path) -> list[str]:
    """Copy matching weights from the ONNX model at ``path`` into ``net`` (fine-tuning).

    Every parameter and buffer except the output layer's must be present with the same shape,
    else ModelError names the first mismatch. The output layer is copied when its shape matches
    (same class count) and kept freshly initialised otherwise. Returns the names not copied.
    """
    from onnx import numpy_helper

    from convtool.io.onnx_file import load_onnx

    model = load_onnx(path)
    found = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    state = {**net.parameters(), **net.buffers()}
    kept = []
    for name, value in state.items():
        if name not in found:
            raise ModelError(f"{Path(path).name} does not match {net.arch}: it has no {name} "
                             f"(its weights: {', '.join(list(found)[:6]) or 'none'}); train it with the same --arch")
        if found[name].shape != value.shape:
            if net.group_of(name) == "head":
                kept.append(name)
                continue
            raise ModelError(f"{Path(path).name} does not match {net.arch}: {name} has shape {found[name].shape}, "
                             f"expected {value.shape} (different input channels or layer sizes)")
        state[name] = found[name]
    net.load_state(state)
    return kept


def parity(model, net: Network, x: np.ndarray, batch: int = 500) -> float:
    """Max |onnxruntime - convtool| over the logits of ``x`` (evaluation mode)."""
    from convtool.infer.session import open_session

    session = open_session(Path(f"{net.arch}.onnx"), "cpu", model_bytes=model.SerializeToString())
    worst = 0.0
    for i in range(0, len(x), batch):
        ours = net.forward(x[i : i + batch])[0]
        theirs = session.run(np.ascontiguousarray(x[i : i + batch], np.float32))[0]
        worst = max(worst, float(np.max(np.abs(ours - theirs))))
    return worst
