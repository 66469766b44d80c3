"""Network tables of ONNX models through onnx shape inference (onnx is imported only when called)."""

from __future__ import annotations

import json
import math
from pathlib import Path

from convtool import geometry
from convtool.errors import ModelError
from convtool.layer_kinds import ONNX_LAYER, ONNX_PART
from convtool.nets.builder import compact
from convtool.nets.table import LayerRow, NetworkTable

ONNX_ELEMENTWISE = {"Relu", "LeakyRelu", "PRelu", "Sigmoid", "Tanh", "Softmax", "LogSoftmax", "Dropout", "Identity",
                    "Clip", "Elu", "Selu", "HardSigmoid", "HardSwish", "Gelu", "Erf", "Sqrt", "Exp", "Log",
                    "Abs", "Neg", "Cast", "LRN", "Softplus", "Mish"}
ONNX_BINARY = {"Add", "Sub", "Mul", "Div", "Max", "Min", "Sum", "Pow"}
ONNX_PLUMBING = {"Reshape", "Flatten", "Transpose", "Squeeze", "Unsqueeze", "Concat", "Shape", "Gather", "Slice",
                 "Constant", "Pad", "Split", "Expand", "ConstantOfShape", "Resize", "Upsample", "ReduceMean",
                 "Tile", "ArgMax"}
ONNX_GLOBAL = {"GlobalAveragePool", "GlobalMaxPool", "Flatten", "Reshape", "Gemm", "MatMul", "ReduceMean"}
ONNX_KNOWN = ONNX_ELEMENTWISE | ONNX_BINARY | ONNX_PLUMBING | ONNX_GLOBAL | {
    "Conv", "ConvTranspose", "MaxPool", "AveragePool", "LpPool", "BatchNormalization", "InstanceNormalization"}
FLOAT_TYPES = {1, 10, 11, 16}  # FLOAT, FLOAT16, DOUBLE, BFLOAT16


def network_from_onnx(path: str | Path) -> NetworkTable:
    """Per-layer table of an ONNX model using onnx shape inference; nodes of unknown ops are listed, not fatal.

    Weights are the float initializers a node reads (each counted once; for BatchNormalization
    scale and shift only); MACs come from Conv, ConvTranspose, Gemm and MatMul. Symbolic dimensions
    (a dynamic batch) count as 1. Raises ModelError if the file is missing or not an ONNX model.
    """
    import onnx  # heavy: imported only here

    from convtool.io.onnx_file import load_onnx

    path = Path(path)
    model = load_onnx(path, weights=False)  # only shapes are needed, not the weights
    note = ""
    try:
        model = onnx.shape_inference.infer_shapes(model)
    except Exception as exc:  # noqa: BLE001 - onnx raises several kinds; the stored shapes still help
        note = f"onnx shape inference failed ({type(exc).__name__}); shapes are those stored in the model"
    network = _onnx_network(model, path)
    if note:
        network.notes.append(note)
    return network


def _onnx_network(model, path: Path) -> NetworkTable:
    """Walk the nodes in order, tracking per-image shapes, receptive fields and which weights were counted."""
    graph = model.graph
    inits = {t.name: t for t in graph.initializer}
    shapes_by_name = _tensor_shapes(graph)
    inputs = [i for i in graph.input if i.name not in inits]
    if not inputs:
        raise ModelError(f"{path} has no graph input")
    first = shapes_by_name.get(inputs[0].name, ())
    # N,C,... : tensors computed from the input lose their batch axis; weights keep their shape
    batched = {inputs[0].name} if len(first) >= 3 else set()

    def per_image(name: str) -> tuple:
        shape = shapes_by_name.get(name, ())
        return shape[1:] if name in batched and len(shape) >= 2 else shape

    network = NetworkTable(graph.name or path.stem, per_image(inputs[0].name), source=str(path))
    symbolic = [d for d in first[1:] if not isinstance(d, int) or d <= 0]
    if symbolic:
        network.notes.append(f"the input has symbolic sizes ({', '.join(map(str, symbolic))}); each counts as 1 "
                             "in units and MACs, so multiply by them for a real input")
    spatial_rank = max(len(first) - 2, 0)
    # tensor -> (receptive field, jump); jump None once a layer has read the whole input (fc, global pool)
    fields: dict[str, tuple[tuple[int, ...], tuple[int, ...] | None]] = {
        inputs[0].name: ((1,) * spatial_rank, (1,) * spatial_rank)}
    counted: set[str] = set()
    for index, node in enumerate(graph.node):
        if node.op_type == "Constant":
            continue
        tag = json.loads(node.doc_string[len(ONNX_LAYER):]) if node.doc_string.startswith(ONNX_LAYER) else None
        data = [tag["input"]] if tag else [i for i in node.input if i and i not in inits]
        on_data_path = any(i in batched for i in data) or not batched
        if on_data_path:
            batched.update(node.output)
        if node.doc_string == ONNX_PART:  # inside a layer exported as several nodes: its last node has the row
            continue
        out_shape = per_image(node.output[0]) if node.output else ()
        in_shape = per_image(data[0]) if data else ()
        units = _units(out_shape) if on_data_path else 0  # reshaping a weight makes no units
        attrs = {a.name: onnx_attribute(a) for a in node.attribute}
        if tag:  # a locally connected or tiled layer: a convolution's cost, weights per kernel set
            window = ("Conv", tuple(tag["kernel"]), tuple(tag["strides"]), tuple(tag["dilations"]))
            macs = connections = units * (in_shape[0] if in_shape else 0) * math.prod(window[1])
            detail, sizes = tag["detail"], [math.prod(inits[p].dims) for p in tag["params"] if p in inits]
            weights, biases = sizes[0], sum(sizes[1:])
            bias_connections = units if biases else 0
        else:
            macs, connections, detail, window = _onnx_cost(node, attrs, in_shape, out_shape, units, shapes_by_name)
            weights, biases, bias_connections = _onnx_parameters(node, inits, counted, units)
        field = _onnx_field(node.op_type, _merge_fields([fields[i] for i in data if i in fields]), window, in_shape)
        if node.op_type == "BatchNormalization":
            connections = bias_connections = units  # one scale and one shift per unit, like Builder.batchnorm
        if node.op_type not in ONNX_KNOWN and node.op_type not in network.unknown_ops:
            network.unknown_ops.append(node.op_type)
        if field is not None:
            fields.update((out, field) for out in node.output)
        name = node.name.split("/")[0] if tag else node.name or f"{node.op_type}_{index}"
        network.layers.append(LayerRow(name, tag["op"] if tag else node.op_type, out_shape, units, weights,
                                    biases, macs, connections, bias_connections, field[0] if field else None,
                                    detail))
    return network


def _tensor_shapes(graph) -> dict[str, tuple]:
    """Shapes of the graph's inputs, inferred values, outputs and initializers; symbolic sizes by name."""
    found: dict[str, tuple] = {}
    for info in list(graph.input) + list(graph.value_info) + list(graph.output):
        tensor_type = info.type.tensor_type
        if tensor_type.HasField("shape"):
            found[info.name] = tuple(d.dim_value if d.HasField("dim_value") else (d.dim_param or "?")
                                     for d in tensor_type.shape.dim)
    for tensor in graph.initializer:
        found[tensor.name] = tuple(tensor.dims)
    return found


def _onnx_cost(node, attrs, in_shape, out_shape, units, shapes_by_name):
    """MACs, connections, a short description and the sliding window ``(kernel, strides, dilations)`` if any."""
    op = node.op_type
    if op in ("Gemm", "MatMul"):
        macs = units * _contracted(node, attrs, shapes_by_name)
        return macs, macs, "", None
    if op not in ("Conv", "ConvTranspose", "MaxPool", "AveragePool", "LpPool"):
        return 0, 0, "", None
    kernel = tuple(attrs.get("kernel_shape") or _weight_kernel(node, shapes_by_name))
    strides = tuple(attrs.get("strides") or (1,) * len(kernel))
    dilations = tuple(attrs.get("dilations") or (1,) * len(kernel))
    group = int(attrs.get("group", 1))
    cin = in_shape[0] if in_shape and isinstance(in_shape[0], int) else 0
    if op == "Conv":
        macs = units * (cin // group) * math.prod(kernel)
        connections = macs
    elif op == "ConvTranspose":  # every input position scatters through every tap into cout/group channels
        cout = out_shape[0] if out_shape and isinstance(out_shape[0], int) else 0
        macs = connections = _units(in_shape) * (cout // group) * math.prod(kernel)
    else:
        macs, connections = 0, units * math.prod(kernel)
    detail = "x".join(map(str, kernel)) + (f" s{compact(strides)}" if any(s != 1 for s in strides) else "") \
        + (f" d{compact(dilations)}" if any(d != 1 for d in dilations) else "") + (f" g{group}" if group != 1 else "")
    return macs, connections, detail, (op, kernel, strides, dilations)


def _merge_fields(found: list):
    """The field of a node with several inputs (Add, Concat): the largest receptive field per axis."""
    if not found:
        return None
    rank = len(found[0][0])
    if any(len(rf) != rank for rf, _ in found):
        return found[0]
    rf = tuple(max(f[0][a] for f in found) for a in range(rank))
    jumps = [jump for _, jump in found]
    return rf, None if any(j is None for j in jumps) else jumps[0]


def _onnx_field(op: str, field, window, in_shape):
    """Receptive field and jump after this node, from those of its first input that has them."""
    if field is None:
        return None
    rf, jump = field
    if window is not None and jump is not None and len(rf) == len(window[1]):
        kind, kernel, strides, dilations = window
        if kind == "ConvTranspose":  # at most ceil(span / s) inputs feed one output
            rf = tuple(r + (-(-geometry.effective_kernel(k, d) // s) - 1) * j
                       for r, j, k, s, d in zip(rf, jump, kernel, strides, dilations))
            jump = tuple(max(j // s, 1) for j, s in zip(jump, strides))
        else:
            rf = tuple(r + (geometry.effective_kernel(k, d) - 1) * j for r, j, k, d in zip(rf, jump, kernel, dilations))
            jump = tuple(j * s for j, s in zip(jump, strides))
    if op in ONNX_GLOBAL and jump is not None:
        spatial = in_shape[1:] if len(in_shape) == len(rf) + 1 else ()
        if all(isinstance(n, int) for n in spatial):
            rf = tuple(r + (n - 1) * j for r, j, n in zip(rf, jump, spatial))
        jump = None  # every later unit reads the whole (collapsed) field
    return rf, jump


def _onnx_parameters(node, inits, counted: set[str], units: int) -> tuple[int, int, int]:
    """Weights, biases and bias connections: the float initializers this node reads, each counted once."""
    op = node.op_type
    weights = biases = bias_connections = 0
    for position, name in enumerate(node.input):
        if name not in inits or inits[name].data_type not in FLOAT_TYPES or name in counted:
            continue
        size = math.prod(inits[name].dims)
        if op == "BatchNormalization":
            if position == 1:
                weights += size
            elif position == 2:
                biases += size
            else:
                continue  # running mean and variance are statistics, not parameters
        elif op in ("Conv", "ConvTranspose", "Gemm") and position == 2 or op in ("Add", "Sub"):
            biases += size
            bias_connections = units
        else:
            weights += size
        counted.add(name)
    return weights, biases, bias_connections


def onnx_attribute(attribute):
    """The Python value of an ONNX node attribute (ints, floats, strings and their lists)."""
    from onnx import helper

    return helper.get_attribute_value(attribute)


def _units(shape: tuple) -> int:
    return math.prod(d if isinstance(d, int) and d > 0 else 1 for d in shape) if shape else 0


def _weight_kernel(node, shapes_by_name) -> tuple[int, ...]:
    weight = shapes_by_name.get(node.input[1], ()) if len(node.input) > 1 else ()
    return tuple(weight[2:]) if len(weight) > 2 else (1,)


def _contracted(node, attrs, shapes_by_name) -> int:
    """Length of the summed axis of a Gemm or MatMul (K)."""
    a = shapes_by_name.get(node.input[0], ())
    if not a:
        return 0
    if node.op_type == "Gemm" and attrs.get("transA", 0):
        k = a[0]
    else:
        k = a[-1]
    return k if isinstance(k, int) else 0
