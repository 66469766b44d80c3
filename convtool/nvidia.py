"""What this machine offers for CUDA, found without importing numba or onnxruntime.

The NVIDIA driver (``libcuda.so.1``, ``/proc/driver/nvidia``), the number of GPUs it sees, and where
each CUDA runtime library would be loaded from: the NVIDIA wheels that ``convtool[gpu]`` installs
(``site-packages/nvidia/*/lib``), ``LD_LIBRARY_PATH``, or the system loader's cache.
"""

from __future__ import annotations

import functools
import os
import sys
from dataclasses import dataclass
from pathlib import Path

GPU_EXTRA = "pip install 'convtool[gpu]'  (uv: uv pip install 'convtool[gpu]', or uv sync --extra gpu in a checkout)"

# Libraries numba's CUDA target (numba-cuda) loads besides the driver, as file-name prefixes.
NUMBA_CUDA_LIBRARIES = ("libnvvm.so", "libcudart.so", "libnvrtc.so", "libnvJitLink.so")


@dataclass(frozen=True)
class Library:
    """A shared library wanted by a CUDA back-end: where it was found (None: missing) and how."""

    name: str  # a file name (libcublasLt.so.13) or a prefix (libnvvm.so) that any version satisfies
    path: str | None
    source: str  # "nvidia wheel", "LD_LIBRARY_PATH", "system", or "missing"

    @property
    def found(self) -> bool:
        return self.path is not None


@dataclass(frozen=True)
class Driver:
    """The NVIDIA driver: present or not, its version, and how many GPUs it can use (None: unknown)."""

    present: bool
    version: str | None
    gpus: int | None
    error: str | None  # why the driver did not answer, when it is present but fails


LOADER_CACHE = "/etc/ld.so.cache"


def driver_present() -> bool:
    """True when an NVIDIA kernel driver or its user-space library (libcuda) is on this machine.

    Cheap (well under a millisecond), since every run with device ``auto`` asks: the loader's cache
    file is searched for the name instead of running ``ldconfig -p``.
    """
    if os.path.exists("/proc/driver/nvidia/version"):
        return True
    folders = filter(None, os.environ.get("LD_LIBRARY_PATH", "").split(os.pathsep))
    if any(_match(Path(folder), "libcuda.so") for folder in folders):
        return True
    try:
        with open(LOADER_CACHE, "rb") as cache:
            return b"libcuda.so" in cache.read()
    except OSError:  # no loader cache (not glibc): ask ldconfig
        return _system_library("libcuda.so") is not None


@functools.lru_cache(maxsize=1)
def driver() -> Driver:
    """Ask libcuda directly (cuInit, cuDriverGetVersion, cuDeviceGetCount): cheap, no CUDA runtime needed."""
    if not driver_present():
        return Driver(False, None, None, None)
    import ctypes

    try:
        cuda = ctypes.CDLL("libcuda.so.1")
    except OSError as exc:
        return Driver(True, _proc_version(), None, f"libcuda.so.1 cannot be loaded ({exc})")
    status = cuda.cuInit(0)
    if status != 0:
        return Driver(True, _proc_version(), 0, f"cuInit failed with CUDA error {status}")
    version, count = ctypes.c_int(0), ctypes.c_int(0)
    cuda.cuDriverGetVersion(ctypes.byref(version))
    cuda.cuDeviceGetCount(ctypes.byref(count))
    text = f"CUDA {version.value // 1000}.{version.value % 1000 // 10}" if version.value else _proc_version()
    return Driver(True, text, count.value, None)


def gpu_index(device: str) -> int:
    """The GPU number in ``cuda`` (0) or ``cuda:N``; raises ValueError for anything else."""
    if device == "cuda":
        return 0
    prefix, _, number = device.partition(":")
    if prefix != "cuda" or not number.isdigit():
        raise ValueError(f"{device!r} is not cuda or cuda:N")
    return int(number)


def find_library(name: str) -> Library:
    """Where the loader would find ``name`` (an exact file name, or a prefix such as ``libnvvm.so``)."""
    for folder in _wheel_folders():
        hit = _match(folder, name)
        if hit:
            return Library(name, hit, "nvidia wheel")
    for entry in filter(None, os.environ.get("LD_LIBRARY_PATH", "").split(os.pathsep)):
        hit = _match(Path(entry), name)
        if hit:
            return Library(name, hit, "LD_LIBRARY_PATH")
    hit = _system_library(name)
    return Library(name, hit, "system") if hit else Library(name, None, "missing")


def find_libraries(names: list[str] | tuple[str, ...]) -> list[Library]:
    return [find_library(name) for name in names]


def _wheel_folders() -> list[Path]:
    """``nvidia/<package>/lib`` (and ``lib64``, ``bin``) folders of the installed NVIDIA wheels."""
    folders = []
    for entry in sys.path:
        root = Path(entry or ".") / "nvidia"
        if root.is_dir():
            for package in sorted(root.iterdir()):
                folders += [package / sub for sub in ("lib", "lib64", "nvvm/lib64", "bin") if (package / sub).is_dir()]
    return folders


def _match(folder: Path, name: str) -> str | None:
    exact = folder / name
    if exact.is_file():
        return str(exact)
    try:
        versions = sorted(p for p in folder.glob(f"{name}*") if p.is_file())
    except OSError:
        return None
    return str(versions[0]) if versions and not name[-1].isdigit() else None


@functools.lru_cache(maxsize=1)
def _ldconfig() -> dict[str, str]:
    """The system loader's cache: file name -> path (empty when ldconfig is not there)."""
    import subprocess

    for command in ("/sbin/ldconfig", "/usr/sbin/ldconfig", "ldconfig"):
        try:
            text = subprocess.run([command, "-p"], capture_output=True, text=True, timeout=5).stdout
        except (OSError, subprocess.SubprocessError):
            continue
        cache: dict[str, str] = {}
        for line in text.splitlines()[1:]:
            name, _, path = line.strip().partition(" => ")
            cache.setdefault(name.split(" ")[0], path)
        return cache
    return {}


def _system_library(name: str) -> str | None:
    cache = _ldconfig()
    if name in cache:
        return cache[name]
    if not name[-1].isdigit():
        matches = sorted(key for key in cache if key.startswith(name))
        return cache[matches[0]] if matches else None
    return None


def _proc_version() -> str | None:
    try:
        return Path("/proc/driver/nvidia/version").read_text().splitlines()[0].strip()
    except (OSError, IndexError):
        return None
