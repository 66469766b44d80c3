"""What an ONNX file holds: inputs, outputs, opset, producer, metadata, and how convtool would feed it.

Reads the file with ``onnx`` (no session is created, so no device is touched).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from convtool.errors import ConvtoolError
from convtool.infer.session import TensorInfo
from convtool.io.onnx_file import load_onnx

_ELEMENT_TYPES = {1: "float32", 2: "uint8", 3: "int8", 5: "int16", 6: "int32", 7: "int64", 9: "bool",
                  10: "float16", 11: "float64", 16: "bfloat16"}


@dataclass
class ModelInfo:
    path: Path
    ir_version: int
    opsets: dict[str, int]
    producer: str
    graph_name: str
    doc: str
    inputs: list[TensorInfo]
    outputs: list[TensorInfo]
    metadata: dict[str, str]
    nodes: int
    parameters: int
    preprocess: str  # how classify/segment would prepare images, or why it cannot
    ops: dict[str, int] = field(default_factory=dict)


def describe_model(path: str | Path) -> ModelInfo:
    """Inputs, outputs, opset, producer, metadata and the preprocessing convtool would use."""
    from convtool.infer.preprocess import preprocess_for

    model = load_onnx(path)
    graph = model.graph
    initializers = {t.name for t in graph.initializer}
    inputs = [_tensor(v) for v in graph.input if v.name not in initializers]
    outputs = [_tensor(v) for v in graph.output]
    metadata = {p.key: p.value for p in model.metadata_props}
    try:
        preprocess = preprocess_for(inputs[0], metadata).describe() if inputs else "the model has no inputs"
    except ConvtoolError as exc:
        preprocess = f"not an image model for convtool: {exc}"
    ops: dict[str, int] = {}
    for node in graph.node:
        ops[node.op_type] = ops.get(node.op_type, 0) + 1
    parameters = 0
    for tensor in graph.initializer:
        count = 1
        for d in tensor.dims:
            count *= d
        parameters += count
    return ModelInfo(
        path=Path(path),
        ir_version=model.ir_version,
        opsets={(o.domain or "ai.onnx"): o.version for o in model.opset_import},
        producer=f"{model.producer_name} {model.producer_version}".strip(),
        graph_name=graph.name,
        doc=model.doc_string.strip(),
        inputs=inputs,
        outputs=outputs,
        metadata=metadata,
        nodes=len(graph.node),
        parameters=parameters,
        preprocess=preprocess,
        ops=ops,
    )


def _tensor(value) -> TensorInfo:
    tensor_type = value.type.tensor_type
    dims = tuple(d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else None for d in tensor_type.shape.dim)
    return TensorInfo(value.name, dims, _ELEMENT_TYPES.get(tensor_type.elem_type, f"type {tensor_type.elem_type}"))
