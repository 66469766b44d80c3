"""onnxruntime sessions: open a model, choose the device honestly, run batches.

This is the only module that imports onnxruntime. ``get_available_providers()`` lists CUDA whenever
onnxruntime-gpu is installed, GPU or not, so the device is read from the session's own
``get_providers()`` after it is created; onnxruntime's log lines are captured during creation and
turned into one sentence in convtool's words.
"""

from __future__ import annotations

import contextlib
import functools
import io
import math
import os
import re
import sys
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np

from convtool import nvidia
from convtool.errors import DeviceError, ModelError, UsageError
from convtool.io.onnx_file import check_model_file

DEVICES = ("auto", "cpu", "cuda", "cuda:N")
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
    session: Any  # onnxruntime.InferenceSession
    device: str  # "CPU" or "CUDA": what actually runs
    provider: str  # the execution provider's own name
    inputs: list[TensorInfo]
    outputs: list[TensorInfo]
    metadata: dict[str, str] = field(default_factory=dict)
    producer: str = ""
    note: str | None = None  # why the device differs from the one asked for (auto -> CPU)
    bind: bool = False  # run through I/O binding: inputs copied once into a reused device buffer (CUDA)
    _bound: dict = field(default_factory=dict, repr=False)  # (shape, dtype) -> the device buffer

    @property
    def input(self) -> TensorInfo:
        return self.inputs[0]

    def run(self, batch: np.ndarray, names: Sequence[str] | None = None) -> list[np.ndarray]:
        """Run a batch of any length; a model with a fixed batch size gets slices, the last one padded."""
        step, feed = self.inputs[0].shape[0], self.inputs[0].name
        run = self._run_bound if self.bind else self.session.run
        try:
            if step is None or step == len(batch):
                return run(names, {feed: batch})
            parts = []
            for start in range(0, len(batch), step):
                part = batch[start : start + step]
                if len(part) < step:
                    part = np.concatenate([part, np.zeros((step - len(part), *part.shape[1:]), part.dtype)])
                parts.append(run(names, {feed: part}))
        except Exception as exc:  # noqa: BLE001 - onnxruntime raises its own Fail/InvalidArgument classes
            raise ModelError(f"{self.path.name}: onnxruntime failed on a batch of shape {batch.shape}: {_first_line(exc)}") from None
        return [np.concatenate(outputs)[: len(batch)] for outputs in zip(*parts)]

    def _run_bound(self, names: Sequence[str] | None, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        """``session.run`` through I/O binding: the batch goes straight into a device buffer kept per shape.

        Any failure of the binding API turns it off for this session and runs the plain way instead.
        """
        try:
            binding = self.session.io_binding()
            for name, array in feeds.items():
                binding.bind_ortvalue_input(name, self._device_buffer(array))
            for name in names or [output.name for output in self.outputs]:
                binding.bind_output(name, "cpu")  # results land in host memory directly
            self.session.run_with_iobinding(binding)
            return binding.copy_outputs_to_cpu()
        except Exception:  # noqa: BLE001 - binding is an optimisation; the plain run says what is wrong
            self.bind = False
            return self.session.run(names, feeds)

    def _device_buffer(self, array: np.ndarray):
        import onnxruntime as ort

        array = np.ascontiguousarray(array)
        key = (array.shape, array.dtype.str)
        buffer = self._bound.get(key)
        if buffer is None:
            where = "cuda" if self.device.startswith("CUDA") else "cpu"
            gpu = int(self.device.partition(":")[2] or 0)
            buffer = self._bound[key] = ort.OrtValue.ortvalue_from_numpy(array, where, gpu)
        else:
            buffer.update_inplace(array)
        return buffer


def open_session(
    path: str | os.PathLike,
    device: str = "auto",
    *,
    model_bytes: bytes | None = None,
    threads: int | None = None,
) -> ModelSession:
    """Open ``path`` (or ``model_bytes``, a modified copy of it) on ``device``: auto, cpu, cuda or cuda:N.

    ``threads`` sets onnxruntime's CPU threads (default :func:`default_threads`, or one for a model fed
    one small image per run: see :func:`_tiny_runs`).

    ``auto`` uses CUDA only if its provider really initialises, else the CPU with ``note`` saying why
    (no note on a machine without any NVIDIA driver: the CPU is all there is); ``cuda`` without a
    working provider raises DeviceError with the reason.
    """
    import onnxruntime as ort

    path = Path(path)
    kind, gpu = parse_device(device)
    if model_bytes is None:
        check_model_file(path)
    options = ort.SessionOptions()
    options.log_severity_level = 4  # onnxruntime prints nothing itself: its errors come back as exceptions
    options.intra_op_num_threads = threads or default_threads()
    # Idle threads sleep instead of spinning, so that the decoding thread or worker processes get the
    # cycles inference leaves (measured: +14% images/s for a 224x224 model decoding photos meanwhile).
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    # No memory pattern: with it, the second run allocates the planned block anew, so a large model pays
    # its page faults twice (a 224x224 net at batch 64: runs of 6.1, 6.1, then 2.8 ms per image; without:
    # 5.6, 2.8, 2.4). The arena still keeps freed blocks, and small models measured no slower.
    options.enable_mem_pattern = False
    source = model_bytes if model_bytes is not None else str(path)

    reason = None
    if kind == "auto" and not nvidia.driver_present():
        pass  # no NVIDIA driver at all: the CPU, quietly
    elif kind != "cpu":
        if _CUDA not in ort.get_available_providers():
            reason = "this onnxruntime build has no CUDA support (install onnxruntime-gpu)"
        else:
            _check_gpu_index(device, gpu)
            preload_cuda_libraries()
            with _captured_stderr() as log:
                session = _create(ort, path, source, options, [(_CUDA, {"device_id": gpu}), _CPU])
            if session.get_providers()[0] == _CUDA:
                model = _wrap(session, path, f"CUDA:{gpu}" if gpu else "CUDA", None)
                model.bind = True
                return model
            reason = cuda_failure_reason(log.text)
            if kind == "auto":  # onnxruntime already fell back: this session runs on the CPU
                return _wrap(session, path, "CPU", f"running on the CPU because CUDA is not usable: {reason}")
    if kind == "cuda":
        error = DeviceError(f"`device` {device}: CUDA is not usable: {reason}; use `device` cpu or `device` auto")
        error.reason = reason  # the cause alone, for `convtool doctor`
        raise error
    with _captured_stderr():
        session = _create(ort, path, source, options, [_CPU])
        if threads is None and options.intra_op_num_threads > 1 and _tiny_runs(session):
            options.intra_op_num_threads = 1
            session = _create(ort, path, source, options, [_CPU])
    note = f"running on the CPU because CUDA is not usable: {reason}" if reason else None
    return _wrap(session, path, "CPU", note)


TINY_INPUT = 3 * 64 * 64  # values in one image: a fixed-batch-1 model this small runs it in tens of microseconds


def _tiny_runs(session) -> bool:
    """A model fed one small image per run (a fixed batch of 1, at most TINY_INPUT values), where a second
    onnxruntime thread costs more in hand-over than it computes (mnist-12 here: about 60 us per run on 2
    threads against 46 on 1), and the core is better left to decoding."""
    shape = session.get_inputs()[0].shape
    return (len(shape) >= 2 and shape[0] == 1 and all(isinstance(d, int) for d in shape[1:])
            and math.prod(shape[1:]) <= TINY_INPUT)


def parse_device(device: str) -> tuple[str, int]:
    """``auto``/``cpu``/``cuda``/``cuda:N`` -> (kind, GPU number)."""
    if device in ("auto", "cpu"):
        return device, 0
    try:
        return "cuda", nvidia.gpu_index(device)
    except ValueError:
        raise UsageError(f"`device` {device!r}: choose one of auto, cpu, cuda or cuda:N (N = 0, 1, ...)") from None


def _check_gpu_index(device: str, gpu: int) -> None:
    """Refuse ``cuda:N`` beyond the GPUs the driver sees (when it can tell)."""
    count = nvidia.driver().gpus
    if count and gpu >= count:
        have = "1 GPU (cuda:0)" if count == 1 else f"{count} GPUs (cuda:0 to cuda:{count - 1})"
        raise DeviceError(f"`device` {device}: this machine has {have}")


def cuda_libraries() -> list[str]:
    """File names of the CUDA and cuDNN libraries this onnxruntime build loads (CUDA 13 names as fallback)."""
    import onnxruntime as ort

    try:
        paths = ort._get_nvidia_dll_paths(False, True, True)  # onnxruntime's own list; private, so guarded
        return [parts[-1] for parts in paths]
    except Exception:  # noqa: BLE001 - an older or newer onnxruntime without the helper
        return list(_CUDA13_LIBRARIES)


_CUDA13_LIBRARIES = ("libcublasLt.so.13", "libcublas.so.13", "libnvrtc.so.13", "libcurand.so.10", "libcufft.so.12",
                     "libcudart.so.13", "libcudnn.so.9")


@functools.lru_cache(maxsize=1)
def preload_cuda_libraries() -> str:
    """Load the CUDA/cuDNN wheels' libraries (``convtool[gpu]``) before a CUDA session; what it printed."""
    import onnxruntime as ort

    said = io.StringIO()
    if hasattr(ort, "preload_dlls"):
        with contextlib.redirect_stdout(said), _captured_stderr():
            try:
                ort.preload_dlls(cuda=True, cudnn=True, msvc=False)
            except Exception as exc:  # noqa: BLE001 - a failed preload leaves the loader's own search
                said.write(f"{exc}\n")
    return said.getvalue()


def default_threads() -> int:
    """onnxruntime's CPU threads: one per core this process may use.

    Decoding shares the cores: its worker processes run at a lower priority and the session's idle
    threads sleep (no spinning), so inference is never slowed by more than the cycles decoding needs.
    """
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def cuda_failure_reason(log: str) -> str:
    """Turn onnxruntime's captured log lines about a failed CUDA provider into one short reason."""
    log = re.sub(r"\x1b\[[0-9;]*m", "", log)
    missing = re.search(r"error: (lib[\w.+-]+\.so[\w.]*): cannot open shared object file", log)
    if missing and missing.group(1).startswith("libcuda.so"):
        return f"no NVIDIA driver was found ({missing.group(1)}, the driver's library, is not on this machine)"
    if missing:
        needs = re.search(r"Require (cuDNN [\d.*]+ and CUDA [\d.*]+)", log)
        wanted = f" (this onnxruntime needs {needs.group(1).rstrip('.')})" if needs else ""
        return f"the CUDA library {missing.group(1)} is not installed{wanted}; {nvidia.GPU_EXTRA} adds it"
    if re.search(r"no CUDA-capable device|cudaErrorNoDevice|CUDA driver version is insufficient", log):
        return "no usable NVIDIA GPU or driver was found"
    failure = re.search(r"CUDA failure \d+: ([^;\n]+)", log)
    if failure:
        return f"CUDA reported: {failure.group(1).strip()}"
    return "onnxruntime could not start its CUDA provider (no GPU, driver or CUDA libraries found)"


def _create(ort, path: Path, source, options, providers: list):
    try:
        return ort.InferenceSession(source, options, providers=providers)
    except Exception as exc:  # noqa: BLE001 - onnxruntime's loader errors share no importable base class
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


_ORT_PREFIX = re.compile(r"\[ONNXRuntimeError\] : \d+ : \w+ : |Load model from .*? failed:")
# Where in onnxruntime's C++ sources the error was raised, and the function's signature: no use to a user,
# and long enough to push the cause out of a one-line message.
_ORT_SOURCE = re.compile(r"/\S+\.(?:cc|cpp|h|hpp):\d+ (?:[^()]*?::[^()]*\([^()]*\)(?: const)? )?")


def _first_line(exc: BaseException) -> str:
    """onnxruntime's error as one short line: the cause, without its prefixes and C++ source locations."""
    text = _ORT_SOURCE.sub("", _ORT_PREFIX.sub("", str(exc))).strip()
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
    import tempfile

    with tempfile.TemporaryFile() as sink:
        os.dup2(sink.fileno(), 2)
        try:
            yield log
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            sink.seek(0)
            log.text = sink.read().decode("utf-8", "replace")
