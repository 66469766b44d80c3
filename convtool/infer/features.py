"""Feature maps of any layer of an ONNX model, shown as one image grid (as in Zeiler and Fergus, 2014).

The chosen intermediate tensor is exposed as an extra graph output (the file on disk is untouched) and
the model is run once on the prepared image.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from convtool.errors import ModelError, UsageError


@dataclass(frozen=True)
class LayerTensor:
    """An intermediate tensor: its name, the op that makes it, and its inferred shape (None if unknown)."""

    name: str
    op: str
    node: str
    shape: tuple[int | None, ...] | None


def layer_tensors(model) -> list[LayerTensor]:
    """Every node output of the graph in order, with shapes from onnx shape inference where it works."""
    import onnx

    try:
        inferred = onnx.shape_inference.infer_shapes(model)
    except Exception:  # noqa: BLE001 - shape inference fails many ways (onnx has no common error); shapes are a help
        inferred = model
    shapes = {}
    for value in list(inferred.graph.value_info) + list(inferred.graph.output):
        dims = value.type.tensor_type.shape.dim
        shapes[value.name] = tuple(d.dim_value if d.HasField("dim_value") else None for d in dims)
    return [
        LayerTensor(out, node.op_type, node.name or out, shapes.get(out))
        for node in model.graph.node
        for out in node.output
        if out
    ]


def feature_layers(model) -> list[LayerTensor]:
    """The intermediate tensors of a loaded ONNX model that can be feature maps: 4 axes, or a shape unknown."""
    return [t for t in layer_tensors(model) if t.shape is None or len(t.shape) == 4]


def default_layer(tensors: list[LayerTensor]) -> LayerTensor:
    """The first convolution's output, else the first 4-axis tensor."""
    for tensor in tensors:
        if tensor.op == "Conv" and (tensor.shape is None or len(tensor.shape) == 4):
            return tensor
    for tensor in tensors:
        if tensor.shape is not None and len(tensor.shape) == 4:
            return tensor
    raise ModelError("the model has no 4-axis intermediate tensors to show; list them with `list`")


def find_layer(tensors: list[LayerTensor], name: str) -> LayerTensor:
    """A tensor by its name or by the name of the node that makes it."""
    for tensor in tensors:
        if name in (tensor.name, tensor.node):
            return tensor
    close = [t.name for t in tensors if name.lower() in t.name.lower() or name.lower() in t.node.lower()][:5]
    hint = f"; did you mean {', '.join(close)}?" if close else "; see `list` for the names"
    raise UsageError(f"`layer` {name!r}: no such tensor or node in the model{hint}")


def find_feature_map(tensors: list[LayerTensor], name: str) -> LayerTensor:
    """Like :func:`find_layer`, but the tensor must be a 4-axis feature map (batch, channels, height, width)."""
    chosen = find_layer(tensors, name)
    if chosen.shape is not None and len(chosen.shape) != 4:
        shape = "x".join("?" if d is None else str(d) for d in chosen.shape)
        raise UsageError(f"--layer {name!r}: tensor {chosen.name} has shape {shape} ({len(chosen.shape)} axes), "
                         "not a feature map of 4 axes (batch, channels, height, width); see --list for those")
    return chosen


def with_outputs(model, names: list[str]) -> bytes:
    """The model serialised with ``names`` added as graph outputs (shapes left to onnxruntime)."""
    from onnx import helper

    copy = type(model)()
    copy.CopyFrom(model)
    existing = {o.name for o in copy.graph.output}
    for name in names:
        if name not in existing:
            copy.graph.output.append(helper.ValueInfoProto(name=name))
    return copy.SerializeToString()


def as_channels_first(maps: np.ndarray, input_hw: tuple[int, int], layout: str) -> np.ndarray:
    """One image's 3-axis activation as C,H,W, guessing where the channels are for NHWC models."""
    if maps.ndim != 3:
        raise ModelError(f"the layer's output has shape {maps.shape[:]} per image; pick a layer with channels x height x width")
    if layout == "nhwc":
        from convtool.infer.segment import guess_output_layout

        if guess_output_layout((1, *maps.shape), input_hw) == "nhwc":
            return maps.transpose(2, 0, 1)
    return maps
