"""The CUDA back-end: kernels under Numba's simulator (in a subprocess) and, with NVVM, real PTX."""

import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

CASES = Path(__file__).with_name("conv_cuda_sim_cases.py")


def test_cuda_kernels_under_the_simulator():
    env = dict(os.environ, NUMBA_ENABLE_CUDASIM="1")
    result = subprocess.run([sys.executable, "-m", "pytest", "-o", "addopts=", "-q", "-p", "no:cacheprovider", str(CASES)],
                            env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert " passed" in result.stdout and "skipped" not in result.stdout


def test_kernels_compile_to_ptx_where_nvvm_is_present(monkeypatch):
    from numba import boolean, cuda, float32, int64, uint8
    from numba.cuda import dispatcher

    try:
        from numba.cuda.cudadrv.nvvm import NVVM

        NVVM()
    except Exception as exc:  # noqa: BLE001 - any failure means no NVVM here
        pytest.skip(f"NVVM is not available ({type(exc).__name__})")
    from convtool.conv import cuda as conv_cuda

    # Numba compiles a called device function (the border lookup) for the current device's compute
    # capability even under compile_ptx(cc=...); without a driver, name the one compile_ptx targets.
    monkeypatch.setattr(dispatcher, "get_current_device", lambda: SimpleNamespace(compute_capability=(7, 5)))

    arr3, arr2, arr1, bytes3 = float32[:, :, ::1], float32[:, ::1], float32[::1], uint8[:, :, ::1]
    geometry = (int64,) * 7 + (float32,)  # strides, dilations, top, left, border code; constant value
    signatures = [
        (conv_cuda._direct_kernel, (arr3, arr2, *geometry, int64, int64, boolean, arr3)),
        (conv_cuda._direct_kernel, (bytes3, arr2, *geometry, int64, int64, boolean, arr3)),
        (conv_cuda._row_pass, (bytes3, arr1, int64, int64, int64, int64, int64, float32, arr3)),
        (conv_cuda._column_pass, (arr3, arr1, int64, int64, arr3)),
        (conv_cuda._to_uint8, (arr3, float32, bytes3)),
    ]
    for kernel, signature in signatures:
        ptx, _ = cuda.compile_ptx(kernel.py_func, signature, cc=(7, 5))
        assert ".entry" in ptx
