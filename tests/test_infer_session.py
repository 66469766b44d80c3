"""Sessions: honest device choice, onnxruntime's log lines kept off the terminal, bad model files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
from infer_helpers import MNIST_12, lenet

from convtool import nvidia
from convtool.errors import DeviceError, ModelError, UsageError
from convtool.infer.session import cuda_failure_reason, open_session


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


def test_auto_without_any_nvidia_driver_is_the_cpu_without_a_warning(monkeypatch, capfd):
    monkeypatch.setattr(nvidia, "driver_present", lambda: False)
    model = open_session(MNIST_12, "auto")
    assert model.device == "CPU" and model.note is None
    assert capfd.readouterr().err == ""


@no_gpu
def test_auto_with_a_driver_that_cannot_run_cuda_falls_back_with_a_reason_and_no_raw_log(monkeypatch, capfd):
    monkeypatch.setattr(nvidia, "driver_present", lambda: True)
    monkeypatch.setattr(nvidia, "driver", lambda: nvidia.Driver(True, "test driver", None, None))
    model = open_session(MNIST_12, "auto")
    captured = capfd.readouterr()
    assert model.device == "CPU" and model.session.get_providers() == ["CPUExecutionProvider"]
    assert model.note.startswith("running on the CPU because CUDA is not usable: ")
    assert "onnxruntime" not in captured.err and "[E:" not in captured.err and "[W:" not in captured.err


@no_gpu
def test_cuda_without_a_working_provider_is_an_error(capfd):
    with pytest.raises(DeviceError, match=r"^`device` cuda: CUDA is not usable: .+; use `device` cpu"):
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
        "the CUDA library libcublasLt.so.13 is not installed (this onnxruntime needs cuDNN 9.* and CUDA 13.*); "
        f"{nvidia.GPU_EXTRA} adds it"
    )
    no_driver = "with error: libcuda.so.1: cannot open shared object file: No such file or directory"
    assert cuda_failure_reason(no_driver).startswith("no NVIDIA driver was found (libcuda.so.1")
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
    with pytest.raises(UsageError, match="`device` 'gpu'"):
        open_session(MNIST_12, "gpu")


def test_a_model_too_new_for_onnxruntime_says_why_in_one_short_line(tmp_path):
    """onnxruntime's own text puts a C++ source path and signature before the cause; the cause must show."""
    import onnx

    model = onnx.load(str(lenet(tmp_path / "lenet.onnx")))
    model.ir_version = 99
    onnx.save(model, str(tmp_path / "future.onnx"))
    with pytest.raises(ModelError) as caught:
        open_session(tmp_path / "future.onnx", "cpu")
    message = str(caught.value)
    assert "IR version: 99" in message and "onnxruntime_src" not in message and "::" not in message
    assert message.count("future.onnx") == 1 and "\n" not in message


def test_models_are_found_by_shipped_name(tmp_path, monkeypatch):
    import convtool.resources
    from convtool.infer.session import find_model
    from convtool.io.onnx_file import shipped_models

    (tmp_path / "digits.onnx").write_bytes(MNIST_12.read_bytes())
    monkeypatch.setattr(convtool.resources, "data_dir", lambda name: tmp_path)
    assert find_model("digits") == tmp_path / "digits.onnx"
    assert find_model("digits.onnx") == tmp_path / "digits.onnx"
    assert find_model("sub/digits") == Path("sub/digits")  # a path with a folder is taken as given
    assert shipped_models() == ["digits"]
    with pytest.raises(ModelError, match=r"nope: no such model file; .* \(shipped models: digits\)"):
        open_session(find_model("nope"), "cpu")


def test_cuda_n_beyond_the_gpus_says_how_many_there_are(monkeypatch):
    monkeypatch.setattr(nvidia, "driver_present", lambda: True)
    monkeypatch.setattr(nvidia, "driver", lambda: nvidia.Driver(True, "test driver", 2, None))
    with pytest.raises(DeviceError, match=r"^`device` cuda:7: this machine has 2 GPUs \(cuda:0 to cuda:1\)$"):
        open_session(MNIST_12, "cuda:7")
    monkeypatch.setattr(nvidia, "driver", lambda: nvidia.Driver(True, "test driver", 1, None))
    with pytest.raises(DeviceError, match=r"this machine has 1 GPU \(cuda:0\)$"):
        open_session(MNIST_12, "cuda:1")


@pytest.mark.parametrize("device", ["gpu", "cuda:", "cuda:x", "cuda:-1"])
def test_unknown_devices_are_refused(device):
    with pytest.raises(UsageError, match="choose one of auto, cpu, cuda or cuda:N"):
        open_session(MNIST_12, device)


def test_io_binding_gives_the_plain_results_and_reuses_its_buffer(tmp_path):
    path = lenet(tmp_path / "lenet.onnx")
    x = np.random.default_rng(2).random((5, 1, 28, 28), dtype=np.float32)
    plain = open_session(path, "cpu").run(x)[0]
    bound = open_session(path, "cpu")
    bound.bind = True  # on the CPU the binding API runs the same code path as on CUDA, with host buffers
    first = bound.run(x)[0]
    second = bound.run(x[::-1].copy())[0]
    assert bound.bind and len(bound._bound) == 1
    np.testing.assert_array_equal(first, plain)
    np.testing.assert_array_equal(second, plain[::-1])


def test_io_binding_that_fails_falls_back_to_plain_runs(tmp_path):
    path = lenet(tmp_path / "lenet.onnx")
    x = np.random.default_rng(3).random((3, 1, 28, 28), dtype=np.float32)
    model = open_session(path, "cpu")
    plain = model.run(x)[0]

    class Broken:
        def __init__(self, session):
            self.session = session

        def io_binding(self):
            raise RuntimeError("binding unsupported")

        def run(self, names, feeds):
            return self.session.run(names, feeds)

    model.session, model.bind = Broken(model.session), True
    np.testing.assert_array_equal(model.run(x)[0], plain)
    assert model.bind is False


def test_threads_every_core_except_one_image_per_run_of_a_tiny_model(tmp_path, monkeypatch):
    """mnist-12 (fixed batch 1, 1x28x28) runs on one thread; LeNet with a dynamic batch gets every core."""
    from convtool.infer import session as sessions

    monkeypatch.setattr(sessions, "default_threads", lambda: 2)
    tiny = open_session(MNIST_12, "cpu").session.get_session_options()
    batched = open_session(lenet(tmp_path / "lenet.onnx"), "cpu").session.get_session_options()
    asked = open_session(MNIST_12, "cpu", threads=2).session.get_session_options()
    assert (tiny.intra_op_num_threads, batched.intra_op_num_threads, asked.intra_op_num_threads) == (1, 2, 2)
