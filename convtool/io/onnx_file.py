"""The one way convtool loads an ONNX file; every failure is a one-line ModelError."""

from __future__ import annotations

import os
from pathlib import Path

from convtool.errors import ModelError


def load_onnx(path: str | os.PathLike, *, weights: bool = True):
    """Load an ONNX model with ``onnx`` (an ``onnx.ModelProto``).

    ``weights=False`` leaves external weight files unread (enough for shapes). Raises ModelError for
    a missing, empty or non-ONNX file, or one without a graph.
    """
    path = Path(path)
    check_model_file(path)
    import onnx  # heavy: imported only when a model is read

    try:
        model = onnx.load(str(path), load_external_data=weights)
    except Exception as exc:  # noqa: BLE001 - protobuf raises DecodeError and others for non-ONNX bytes
        detail = str(exc).splitlines()[0][:120] if str(exc) else ""
        raise ModelError(f"{path}: not an ONNX model ({type(exc).__name__}{': ' + detail if detail else ''}); "
                         "give a .onnx file") from None
    if not model.graph.node or not model.ir_version:
        raise ModelError(f"{path}: not an ONNX model (no graph); give a .onnx file")
    return model


def check_model_file(path: str | os.PathLike) -> None:
    """Refuse a model path that is missing, a folder or empty (before any ONNX library reads it)."""
    path = Path(path)
    if not path.exists():
        shipped = shipped_models()
        hint = f" (shipped models: {', '.join(shipped)})" if shipped else ""
        raise ModelError(f"{path}: no such model file; check the path{hint}")
    if path.is_dir():
        raise ModelError(f"{path}: is a folder, not an ONNX model file")
    if path.stat().st_size == 0:
        raise ModelError(f"{path}: the model file is empty (0 bytes)")


def shipped_models() -> list[str]:
    from convtool.resources import data_dir

    try:
        return sorted(p.stem for p in data_dir("models").glob("*.onnx"))
    except FileNotFoundError:
        return []
