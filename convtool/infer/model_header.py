"""An ONNX file's inputs, outputs and metadata, read from its protobuf bytes without onnx or onnxruntime.

Reading them takes well under a millisecond (weights are skipped by their length, never parsed), so a
batch job can start decoding images while onnxruntime loads and builds its session (about 0.1 s).
Only the fields below are read, as the ONNX schema (onnx/onnx.proto) numbers them; every other field
is skipped by its wire type. The result mirrors what an onnxruntime session reports: initializers are
not inputs, a dimension that is not a positive number is None. A file this reader cannot follow gives
None, and the caller waits for the session instead.
"""

from __future__ import annotations

import mmap
import os
from dataclasses import dataclass
from typing import Iterator

from convtool.infer.session import TensorInfo

# field numbers of onnx.proto
_MODEL_GRAPH, _MODEL_METADATA = 7, 14
_GRAPH_INITIALIZER, _GRAPH_INPUT, _GRAPH_OUTPUT, _GRAPH_SPARSE_INITIALIZER = 5, 11, 12, 15
_TENSOR_NAME, _SPARSE_VALUES = 8, 1
_VALUE_NAME, _VALUE_TYPE = 1, 2
_TYPE_TENSOR, _TENSOR_ELEM_TYPE, _TENSOR_SHAPE, _SHAPE_DIM, _DIM_VALUE = 1, 1, 2, 1, 1
_ENTRY_KEY, _ENTRY_VALUE = 1, 2
_VARINT, _FIXED64, _LENGTH, _FIXED32 = 0, 1, 2, 5

# TensorProto.DataType -> the numpy names onnxruntime's types map to in session._ORT_TYPES
ELEMENT_TYPES = {1: "float32", 2: "uint8", 3: "int8", 6: "int32", 7: "int64", 10: "float16", 11: "float64"}


@dataclass(frozen=True)
class ModelHeader:
    """What a session would report about a model, without opening one."""

    inputs: tuple[TensorInfo, ...]  # graph inputs that are not initializers
    outputs: tuple[TensorInfo, ...]
    metadata: dict[str, str]


class _Malformed(Exception):
    pass


def read_header(path: str | os.PathLike) -> ModelHeader | None:
    """The inputs, outputs and metadata of the ONNX file at ``path``, or None if it cannot be read so."""
    try:
        with open(path, "rb") as file, mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_READ) as data:
            header = _parsed(data)  # every view of the mapping is released before it closes
    except (OSError, ValueError):  # missing, unreadable or empty (mmap refuses 0 bytes)
        return None
    return header


def _parsed(data: mmap.mmap) -> ModelHeader | None:
    try:
        return _model(memoryview(data))
    except _Malformed:
        return None


def _model(data: memoryview) -> ModelHeader | None:
    graph = None
    metadata: dict[str, str] = {}
    for number, value in _fields(data):
        if number == _MODEL_GRAPH and isinstance(value, memoryview):
            graph = value
        elif number == _MODEL_METADATA and isinstance(value, memoryview):
            entry = dict(_strings(value, (_ENTRY_KEY, _ENTRY_VALUE)))
            metadata[entry.get(_ENTRY_KEY, "")] = entry.get(_ENTRY_VALUE, "")
    if graph is None:
        return None
    initializers: set[str] = set()
    inputs, outputs = [], []
    for number, value in _fields(graph):
        if not isinstance(value, memoryview):
            continue
        if number == _GRAPH_INITIALIZER:
            initializers.add(dict(_strings(value, (_TENSOR_NAME,))).get(_TENSOR_NAME, ""))
        elif number == _GRAPH_SPARSE_INITIALIZER:
            values = _first(value, _SPARSE_VALUES)
            if values is not None:
                initializers.add(dict(_strings(values, (_TENSOR_NAME,))).get(_TENSOR_NAME, ""))
        elif number == _GRAPH_INPUT:
            inputs.append(_value_info(value))
        elif number == _GRAPH_OUTPUT:
            outputs.append(_value_info(value))
    return ModelHeader(tuple(i for i in inputs if i.name not in initializers), tuple(outputs), metadata)


def _value_info(data: memoryview) -> TensorInfo:
    name, elem_type = "", 0
    shape: tuple[int | None, ...] = ()
    for number, value in _fields(data):
        if number == _VALUE_NAME and isinstance(value, memoryview):
            name = _text(value)
        elif number == _VALUE_TYPE and isinstance(value, memoryview):
            tensor = _first(value, _TYPE_TENSOR)
            if tensor is None:
                raise _Malformed("not a tensor")
            elem_type = next((v for n, v in _fields(tensor) if n == _TENSOR_ELEM_TYPE and isinstance(v, int)), 0)
            shape_field = _first(tensor, _TENSOR_SHAPE)
            if shape_field is not None:
                shape = tuple(_dimension(v) for n, v in _fields(shape_field) if n == _SHAPE_DIM and isinstance(v, memoryview))
    return TensorInfo(name, shape, ELEMENT_TYPES.get(elem_type, f"element type {elem_type}"))


def _dimension(data: memoryview) -> int | None:
    value = next((v for n, v in _fields(data) if n == _DIM_VALUE and isinstance(v, int)), None)
    if value is not None and value >= 1 << 63:  # int64 stored as a varint: negative numbers wrap
        value -= 1 << 64
    return value if value is not None and value > 0 else None


def _first(data: memoryview, wanted: int) -> memoryview | None:
    return next((v for n, v in _fields(data) if n == wanted and isinstance(v, memoryview)), None)


def _strings(data: memoryview, numbers: tuple[int, ...]) -> Iterator[tuple[int, str]]:
    """The text fields ``numbers`` of one message (others, such as a tensor's packed dims, are not decoded)."""
    for number, value in _fields(data):
        if isinstance(value, memoryview) and number in numbers:
            yield number, _text(value)


def _text(value: memoryview) -> str:
    try:
        return bytes(value).decode("utf-8")
    except UnicodeDecodeError:
        raise _Malformed("a name is not UTF-8") from None


def _fields(data: memoryview) -> Iterator[tuple[int, int | memoryview]]:
    """(field number, value) of one protobuf message: a varint as int, a length-delimited field as a view."""
    position, end = 0, len(data)
    while position < end:
        key, position = _varint(data, position)
        number, wire = key >> 3, key & 7
        if wire == _VARINT:
            value, position = _varint(data, position)
            yield number, value
        elif wire == _LENGTH:
            length, position = _varint(data, position)
            if position + length > end:
                raise _Malformed("a field runs past the end")
            yield number, data[position : position + length]
            position += length
        elif wire in (_FIXED64, _FIXED32):
            position += 8 if wire == _FIXED64 else 4
        else:
            raise _Malformed(f"wire type {wire}")
    if position != end:
        raise _Malformed("the last field runs past the end")


def _varint(data: memoryview, position: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if position >= len(data) or shift > 63:
            raise _Malformed("a number runs past the end")
        byte = data[position]
        position += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, position
        shift += 7
