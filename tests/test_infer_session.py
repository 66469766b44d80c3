"""Sessions: honest device choice, onnxruntime's log lines kept off the terminal, bad model files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from convtool.errors import DeviceError, ModelError, UsageError
from convtool.infer.session import cuda_failure_reason, open_session
from infer_helpers import MNIST_12, lenet


def _cuda_works() -> bool:
    if "CUDAExecutionProvider" not in ort.get_available_providers():
        return False
    options = ort.SessionOptions()
    options.log_severity_level = 4
    session = ort.InferenceSession(str(MNIST_12), options, providers=["CUDAExecutionProvider"])
    return session.get_providers()[0] == "CUDAExecutionProvider"


no_gpu = pytest.mark.skipif(_cuda_works(), reason="this machine has a working CUDA provider")


def test_cpu_session_describes_mnist12():
    model = open_session(MNIST_12, "cpu")
    assert model.device == "CPU" and model.provider == "CPUExecutionProvider" and model.note is None
    assert model.input.shape == (1, 1, 28, 28) and model.input.dtype == "float32"
    assert model.outputs[0].shape == (1, 10)
    assert model.producer == "CNTK"


@no_gpu
def test_auto_falls_back_to_cpu_with_a_reason_and_no_raw_log(capfd):
    model = open_session(MNIST_12, "auto")
    captured = capfd.readouterr()
    assert model.device == "CPU" and model.session.get_providers() == ["CPUExecutionProvider"]
    assert model.note.startswith("running on the CPU because CUDA is not usable: ")
    assert "onnxruntime" not in captured.err and "[E:" not in captured.err and "[W:" not in captured.err


@no_gpu
def test_cuda_without_a_working_provider_is_an_error(capfd):
    with pytest.raises(DeviceError, match=r"^--device cuda: CUDA is not usable: .+; use --device cpu"):
        open_session(MNIST_12, "cuda")
    assert "[E:" not in capfd.readouterr().err


def test_cuda_failure_reasons_in_plain_words():
    missing = (
        "\x1b[1;31m2026 [E:onnxruntime:Default, provider_bridge_ort.cc:2458 operator()] Failed to load library "
        "libonnxruntime_providers_cuda.so with error: libcublasLt.so.13: cannot open shared object file: No such "
        "file or directory\n\x1b[m [W:onnxruntime:Default] Failed to create CUDAExecutionProvider. "
        "Require cuDNN 9.* and CUDA 13.*. Please install all dependencies"
    )
    assert cuda_failure_reason(missing) == (
        "the CUDA library libcublasLt.so.13 is not installed (this onnxruntime needs cuDNN 9.* and CUDA 13.*)"
    )
    assert "no usable NVIDIA GPU" in cuda_failure_reason("CUDA failure 100: no CUDA-capable device is detected")
    assert cuda_failure_reason("CUDA failure 2: out of memory ; GPU=0") == "CUDA reported: out of memory"
    assert "could not start" in cuda_failure_reason("")


def test_session_runs_like_raw_onnxruntime(tmp_path):
    path = lenet(tmp_path / "lenet.onnx")
    x = np.random.default_rng(1).random((5, 1, 28, 28), dtype=np.float32)
    ours = open_session(path, "cpu").run(x)[0]
    raw = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    np.testing.assert_array_equal(ours, raw)


def test_bad_model_files(tmp_path):
    with pytest.raises(ModelError, match="no such model file"):
        open_session(tmp_path / "missing.onnx", "cpu")
    (tmp_path / "empty.onnx").write_bytes(b"")
    with pytest.raises(ModelError, match="empty"):
        open_session(tmp_path / "empty.onnx", "cpu")
    (tmp_path / "text.onnx").write_text("this is not a model\n" * 20)
    with pytest.raises(ModelError, match=r"text.onnx: not a usable ONNX model \("):
        open_session(tmp_path / "text.onnx", "auto")
    with pytest.raises(UsageError, match="--device 'gpu'"):
        open_session(MNIST_12, "gpu")


def test_models_are_found_by_shipped_name(tmp_path, monkeypatch):
    import convtool.resources
    from convtool.infer.session import find_model, shipped_models

    (tmp_path / "digits.onnx").write_bytes(MNIST_12.read_bytes())
    monkeypatch.setattr(convtool.resources, "data_dir", lambda name: tmp_path)
    assert find_model("digits") == tmp_path / "digits.onnx"
    assert find_model("digits.onnx") == tmp_path / "digits.onnx"
    assert find_model("sub/digits") == Path("sub/digits")  # a path with a folder is taken as given
    assert shipped_models() == ["digits"]
    with pytest.raises(ModelError, match=r"nope: no such model file; .* \(shipped models: digits\)"):
        open_session(find_model("nope"), "cpu")
