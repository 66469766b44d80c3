"""onnxruntime sessions: open a model, choose the device honestly, run batches.

This is the only module that imports onnxruntime. ``get_available_providers()`` lists CUDA whenever
onnxruntime-gpu is installed, GPU or not, so the device is read from the session's own
``get_providers()`` after it is created; onnxruntime's log lines are captured during creation and
turned into one sentence in convtool's words.
"""

from __future__ import annotations

import os
import re
import sys
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np

from convtool.errors import DeviceError, ModelError, UsageError

DEVICES = ("auto", "cpu", "cuda")
_CUDA = "CUDAExecutionProvider"
_CPU = "CPUExecutionProvider"
_ORT_TYPES = {
    "tensor(float)": "float32",
    "tensor(float16)": "float16",
    "tensor(double)": "float64",
    "tensor(uint8)": "uint8",
    "tensor(int8)": "int8",
    "tensor(int32)": "int32",
    "tensor(int64)": "int64",
}


@dataclass(frozen=True)
class TensorInfo:
    """A graph input or output: name, shape (None for a dynamic axis) and numpy dtype name."""

    name: str
    shape: tuple[int | None, ...]
    dtype: str

    def describe(self) -> str:
        dims = ", ".join("?" if d is None else str(d) for d in self.shape)
        return f"{self.name} {self.dtype}[{dims}]"


@dataclass
class ModelSession:
    """An open model: the onnxruntime session plus what convtool needs to know about it."""

    path: Path
    session: object
    device: str  # "CPU" or "CUDA": what actually runs
    provider: str  # the execution provider's own name
    inputs: list[TensorInfo]
    outputs: list[TensorInfo]
    metadata: dict[str, str] = field(default_factory=dict)
    producer: str = ""
    note: str | None = None  # why the device differs from the one asked for (auto -> CPU)

    @property
    def input(self) -> TensorInfo:
        return self.inputs[0]

    def run(self, batch: np.ndarray, names: Sequence[str] | None = None) -> list[np.ndarray]:
        """Run a batch of any length; a model with a fixed batch size gets slices, the last one padded."""
        step, feed = self.inputs[0].shape[0], self.inputs[0].name
        run = self.session.run
        try:
            if step is None or step == len(batch):
                return run(names, {feed: batch})
            parts = []
            for start in range(0, len(batch), step):
                part = batch[start : start + step]
                if len(part) < step:
                    part = np.concatenate([part, np.zeros((step - len(part), *part.shape[1:]), part.dtype)])
                parts.append(run(names, {feed: part}))
        except Exception as exc:  # onnxruntime raises its own Fail/InvalidArgument classes
            raise ModelError(f"{self.path.name}: onnxruntime failed on a batch of shape {batch.shape}: {_first_line(exc)}") from None
        return [np.concatenate(outputs)[: len(batch)] for outputs in zip(*parts)]


def open_session(
    path: str | os.PathLike,
    device: str = "auto",
    *,
    model_bytes: bytes | None = None,
    threads: int | None = None,
) -> ModelSession:
    """Open ``path`` (or ``model_bytes``, a modified copy of it) on ``device``: auto, cpu or cuda.

    ``threads`` sets onnxruntime's CPU threads (default :func:`default_threads`).

    ``auto`` uses CUDA only if its provider really initialises, else the CPU with ``note`` saying why;
    ``cuda`` without a working provider raises DeviceError with the reason.
    """
    import onnxruntime as ort

    path = Path(path)
    if device not in DEVICES:
        raise UsageError(f"--device {device!r}: choose one of {', '.join(DEVICES)}")
    if model_bytes is None:
        _check_model_file(path)
    options = ort.SessionOptions()
    options.log_severity_level = 4  # onnxruntime prints nothing itself: its errors come back as exceptions
    options.intra_op_num_threads = threads or default_threads()
    source = model_bytes if model_bytes is not None else str(path)

    reason = None
    if device != "cpu":
        if _CUDA not in ort.get_available_providers():
            reason = "this onnxruntime build has no CUDA support (install onnxruntime-gpu)"
        else:
            with _captured_stderr() as log:
                session = _create(ort, path, source, options, [_CUDA, _CPU])
            if session.get_providers()[0] == _CUDA:
                return _wrap(session, path, "CUDA", None)
            reason = cuda_failure_reason(log.text)
            if device == "auto":  # onnxruntime already fell back: this session runs on the CPU
                return _wrap(session, path, "CPU", f"running on the CPU because CUDA is not usable: {reason}")
    if device == "cuda":
        raise DeviceError(f"--device cuda: CUDA is not usable: {reason}; use --device cpu or --device auto")
    with _captured_stderr():
        session = _create(ort, path, source, options, [_CPU])
    note = f"running on the CPU because CUDA is not usable: {reason}" if reason else None
    return _wrap(session, path, "CPU", note)


def default_threads() -> int:
    """onnxruntime's CPU threads: all cores but one, which is left to the image-decoding thread."""
    return max(1, (os.cpu_count() or 2) - 1)


def cuda_failure_reason(log: str) -> str:
    """Turn onnxruntime's captured log lines about a failed CUDA provider into one short reason."""
    log = re.sub(r"\x1b\[[0-9;]*m", "", log)
    missing = re.search(r"error: (lib[\w.+-]+\.so[\w.]*): cannot open shared object file", log)
    if missing:
        needs = re.search(r"Require (cuDNN [\d.*]+ and CUDA [\d.*]+)", log)
        wanted = f" (this onnxruntime needs {needs.group(1).rstrip('.')})" if needs else ""
        return f"the CUDA library {missing.group(1)} is not installed{wanted}"
    if re.search(r"no CUDA-capable device|cudaErrorNoDevice|CUDA driver version is insufficient", log):
        return "no usable NVIDIA GPU or driver was found"
    failure = re.search(r"CUDA failure \d+: ([^;\n]+)", log)
    if failure:
        return f"CUDA reported: {failure.group(1).strip()}"
    return "onnxruntime could not start its CUDA provider (no GPU, driver or CUDA libraries found)"


def _create(ort, path: Path, source, options, providers: list[str]):
    try:
        return ort.InferenceSession(source, options, providers=providers)
    except Exception as exc:
        raise ModelError(f"{path}: not a usable ONNX model ({_first_line(exc)})") from None


def _wrap(session, path: Path, device: str, note: str | None) -> ModelSession:
    meta = session.get_modelmeta()
    return ModelSession(
        path=path,
        session=session,
        device=device,
        provider=session.get_providers()[0],
        inputs=[_tensor_info(t) for t in session.get_inputs()],
        outputs=[_tensor_info(t) for t in session.get_outputs()],
        metadata=dict(meta.custom_metadata_map),
        producer=meta.producer_name,
        note=note,
    )


def _tensor_info(arg) -> TensorInfo:
    shape = tuple(d if isinstance(d, int) and d > 0 else None for d in (arg.shape or ()))
    return TensorInfo(arg.name, shape, _ORT_TYPES.get(arg.type, arg.type))


def find_model(path: str | os.PathLike) -> Path:
    """``path`` itself, or a model shipped with convtool of that name (``lenet5-mnist`` or ``lenet5-mnist.onnx``)."""
    path = Path(path)
    if path.exists() or path.parent != Path("."):
        return path
    try:
        from convtool.resources import data_dir

        folder = data_dir("models")
    except FileNotFoundError:
        return path
    for candidate in (folder / path.name, folder / f"{path.name}.onnx"):
        if candidate.is_file():
            return candidate
    return path


def shipped_models() -> list[str]:
    """Names of the models shipped with convtool."""
    try:
        from convtool.resources import data_dir

        return sorted(p.stem for p in data_dir("models").glob("*.onnx"))
    except FileNotFoundError:
        return []


def _check_model_file(path: Path) -> None:
    if not path.exists():
        shipped = shipped_models()
        hint = f" (shipped models: {', '.join(shipped)})" if shipped else ""
        raise ModelError(f"{path}: no such model file; check the path given to --model{hint}")
    if path.is_dir():
        raise ModelError(f"{path}: is a folder, not an ONNX model file")
    if path.stat().st_size == 0:
        raise ModelError(f"{path}: the model file is empty (0 bytes)")


def _first_line(exc: BaseException) -> str:
    text = re.sub(r"\[ONNXRuntimeError\] : \d+ : \w+ : ", "", str(exc)).strip()
    return (text.splitlines() or [type(exc).__name__])[0][:200]


class _Log:
    text = ""


@contextmanager
def _captured_stderr() -> Iterator[_Log]:
    """Send file descriptor 2 (where onnxruntime's C++ logger writes) to a temp file for a moment."""
    log = _Log()
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError, AttributeError):  # no stderr at all (a closed descriptor): nothing to keep clean
        yield log
        return
    with tempfile.TemporaryFile() as sink:
        os.dup2(sink.fileno(), 2)
        try:
            yield log
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            sink.seek(0)
            log.text = sink.read().decode("utf-8", "replace")
