"""convtool doctor: the report on this machine, with the CUDA libraries unfindable, and rendered by the CLI."""

from __future__ import annotations

import importlib.metadata
import json
import os
import sys

import pytest
from click.testing import CliRunner

from convtool import doctor, nvidia
from convtool.cli.main import cli


@pytest.fixture
def no_driver(monkeypatch):
    monkeypatch.setattr(nvidia, "driver_present", lambda: False)
    monkeypatch.setattr(nvidia, "driver", lambda: nvidia.Driver(False, None, None, None))


@pytest.fixture
def no_libraries(monkeypatch):
    """Nothing findable: no NVIDIA wheels, no LD_LIBRARY_PATH, an empty loader cache."""
    monkeypatch.setattr(nvidia, "_wheel_folders", lambda: [])
    monkeypatch.setattr(nvidia, "_ldconfig", lambda: {})
    monkeypatch.delenv("LD_LIBRARY_PATH", raising=False)


def test_report_without_a_driver_says_cpu_only_and_how_to_fix(no_driver):
    report = doctor.diagnose(try_cuda=False)
    assert not report.driver.present
    assert report.python == sys.version.split()[0]
    assert report.packages["numpy"] == importlib.metadata.version("numpy")
    assert report.cpu_cores == len(os.sched_getaffinity(0))
    assert doctor.DRIVER_FIX in report.fixes
    assert [lib.name for lib in report.numba_libraries] == list(nvidia.NUMBA_CUDA_LIBRARIES)
    assert doctor.try_numba_cuda() == doctor.Trial("numba CUDA kernel", False, "not tried: no NVIDIA driver on this machine")


@pytest.mark.skipif(nvidia.driver_present(), reason="this machine has an NVIDIA driver")
def test_onnxruntime_trial_on_this_gpu_less_machine_fails_with_a_reason():
    trial = doctor.try_onnxruntime_cuda()
    assert not trial.ok
    assert "driver" in trial.detail or "not installed" in trial.detail
    assert "--device" not in trial.detail


def test_unfindable_libraries_are_each_missing_and_the_gpu_extra_is_the_fix(no_driver, no_libraries):
    report = doctor.diagnose(try_cuda=False)
    libraries = report.onnxruntime_libraries + report.numba_libraries
    assert libraries and all(lib.path is None and lib.source == "missing" for lib in libraries)
    assert report.fixes[0] == nvidia.GPU_EXTRA


def test_libraries_are_found_in_nvidia_wheels_and_on_ld_library_path(tmp_path, monkeypatch):
    site = tmp_path / "site"
    (site / "nvidia" / "cu13" / "lib").mkdir(parents=True)
    (site / "nvidia" / "cu13" / "lib" / "libcublasLt.so.13").write_bytes(b"")
    (site / "nvidia" / "cu13" / "lib" / "libnvvm.so.4").write_bytes(b"")
    elsewhere = tmp_path / "opt"
    elsewhere.mkdir()
    (elsewhere / "libcudnn.so.9").write_bytes(b"")
    monkeypatch.setattr(sys, "path", [str(site)])
    monkeypatch.setattr(nvidia, "_ldconfig", lambda: {})
    monkeypatch.setenv("LD_LIBRARY_PATH", str(elsewhere))
    found = {lib.name: lib for lib in nvidia.find_libraries(["libcublasLt.so.13", "libnvvm.so", "libcudnn.so.9",
                                                             "libcublasLt.so.12"])}
    assert found["libcublasLt.so.13"] == nvidia.Library(
        "libcublasLt.so.13", str(site / "nvidia/cu13/lib/libcublasLt.so.13"), "nvidia wheel")
    assert found["libnvvm.so"].path == str(site / "nvidia/cu13/lib/libnvvm.so.4")
    assert found["libcudnn.so.9"].source == "LD_LIBRARY_PATH"
    assert not found["libcublasLt.so.12"].found  # another major version does not count


def test_ray_cluster_from_ray_address(monkeypatch):
    monkeypatch.setenv("RAY_ADDRESS", "10.0.0.5:6379")
    monkeypatch.setenv("RAY_AUTH_TOKEN", "secret")
    info = doctor.ray_info("2.60.0")
    assert info.cluster.startswith("RAY_ADDRESS=10.0.0.5:6379") and info.token == "RAY_AUTH_TOKEN (environment)"
    assert "secret" not in json.dumps(info.__dict__)


def test_cli_json_and_screen(no_driver, no_libraries):
    runner = CliRunner()
    result = runner.invoke(cli, ["doctor", "--json", "--no-try"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["driver"]["present"] is False and data["trials"] == []
    assert all(lib["source"] == "missing" for lib in data["onnxruntime_libraries"])
    screen = runner.invoke(cli, ["doctor", "--no-try"])
    assert screen.exit_code == 0, screen.output
    assert "NVIDIA driver: not found" in screen.output and "pip install 'convtool[gpu]'" in screen.output
    assert "GPU cost estimate uses " in screen.output and "GB/s" in screen.output


@pytest.mark.skipif(os.path.exists("/proc/driver/nvidia/version"), reason="this machine has an NVIDIA kernel driver")
def test_driver_is_found_in_the_loader_cache_or_ld_library_path(tmp_path, monkeypatch):
    """The cheap driver check reads the loader's cache file and LD_LIBRARY_PATH instead of running ldconfig."""
    monkeypatch.delenv("LD_LIBRARY_PATH", raising=False)
    cache = tmp_path / "ld.so.cache"
    cache.write_bytes(b"glibc-ld.so.cache1.1\0libz.so.1\0/usr/lib/libz.so.1\0")
    monkeypatch.setattr(nvidia, "LOADER_CACHE", str(cache))
    assert not nvidia.driver_present()
    cache.write_bytes(b"glibc-ld.so.cache1.1\0libcuda.so.1\0/usr/lib/x86_64-linux-gnu/libcuda.so.1\0")
    assert nvidia.driver_present()
    cache.unlink()
    monkeypatch.setattr(nvidia, "_ldconfig", lambda: {})  # no cache file: ldconfig is asked
    assert not nvidia.driver_present()
    (tmp_path / "lib").mkdir()
    (tmp_path / "lib" / "libcuda.so.1").write_bytes(b"")
    monkeypatch.setenv("LD_LIBRARY_PATH", str(tmp_path / "lib"))
    assert nvidia.driver_present()
