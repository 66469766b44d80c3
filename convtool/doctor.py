"""What this machine can run, and why: versions, CPU, NVIDIA driver, CUDA libraries, CUDA trials, Ray.

:func:`diagnose` returns a :class:`Report` of plain data (``as_dict`` for JSON); ``convtool doctor``
renders it. The CUDA back-ends are not only looked for but tried: a tiny kernel through numba's CUDA
target and a tiny model through onnxruntime's CUDA provider, each reporting its own failure.
"""

from __future__ import annotations

import dataclasses
import importlib.metadata
import os
import platform
import sys
from dataclasses import dataclass, field
from pathlib import Path

from convtool import __version__, nvidia

RAY_EXTRA = "pip install 'convtool[ray]'  (uv: uv pip install 'convtool[ray]', or uv sync --extra ray in a checkout)"
DRIVER_FIX = "install the NVIDIA driver for your GPU (without a GPU, convtool runs everything on the CPU)"
PACKAGES = ("numpy", "numba", "llvmlite", "numba-cuda", "onnxruntime-gpu", "onnxruntime", "onnx", "pillow",
            "click", "rich", "ray")
SIMD_FLAGS = ("sse4_2", "avx", "avx2", "fma", "avx512f", "avx512bw", "avx512_vnni", "amx_tile", "asimd", "sve")


@dataclass
class Trial:
    """A CUDA back-end tried for real: did it run, and on what (or why not)."""

    name: str
    ok: bool
    detail: str


@dataclass
class RayInfo:
    version: str | None
    cluster: str  # the cluster ``--ray`` would join, in words
    token: str  # where Ray's authentication token would come from


@dataclass
class Report:
    python: str
    platform: str
    convtool: str
    packages: dict[str, str | None]
    cpu_cores: int
    cpu_model: str
    simd: list[str]
    driver: nvidia.Driver
    onnxruntime_libraries: list[nvidia.Library]
    numba_libraries: list[nvidia.Library]
    trials: list[Trial]
    ray: RayInfo
    gpu_cost: dict[str, object] | None = None  # the figures convtool's GPU cost estimate uses, when it has them
    fixes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


def diagnose(*, try_cuda: bool = True) -> Report:
    """Look at this machine; with ``try_cuda``, also run a tiny CUDA kernel and a tiny CUDA session."""
    cores, model, simd = cpu_info()
    packages = {name: package_version(name) for name in PACKAGES}
    report = Report(
        python=sys.version.split()[0],
        platform=f"{platform.system()} {platform.machine()}",
        convtool=__version__,
        packages=packages,
        cpu_cores=cores,
        cpu_model=model,
        simd=simd,
        driver=nvidia.driver(),
        onnxruntime_libraries=nvidia.find_libraries(onnxruntime_cuda_libraries()),
        numba_libraries=nvidia.find_libraries(nvidia.NUMBA_CUDA_LIBRARIES),
        trials=[try_numba_cuda(), try_onnxruntime_cuda()] if try_cuda else [],
        ray=ray_info(packages["ray"]),
        gpu_cost=gpu_cost_figures(),
    )
    report.fixes = fixes(report)
    return report


def fixes(report: Report) -> list[str]:
    """The commands that would fix what is missing, most fundamental first."""
    wanted = []
    libraries = report.onnxruntime_libraries + report.numba_libraries
    if any(not lib.found for lib in libraries) or report.packages["numba-cuda"] is None:
        wanted.append(nvidia.GPU_EXTRA)
    if not report.driver.present:
        wanted.append(DRIVER_FIX)
    if report.ray.version is None:
        wanted.append(RAY_EXTRA)
    return wanted


def package_version(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def cpu_info() -> tuple[int, str, list[str]]:
    """(usable cores, model name, SIMD extensions of interest) from the OS and /proc/cpuinfo."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    model, flags = platform.processor() or platform.machine(), set[str]()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            key = key.strip()
            if key in ("model name", "Model") and model in ("", platform.machine()):
                model = value.strip()
            elif key in ("flags", "Features") and not flags:
                flags = set(value.split())
    except OSError:
        pass
    return cores, model, [flag for flag in SIMD_FLAGS if flag in flags]


def onnxruntime_cuda_libraries() -> list[str]:
    from convtool.infer.session import cuda_libraries

    return cuda_libraries()


def try_numba_cuda() -> Trial:
    """Compile and launch a one-thread kernel through numba's CUDA target (skipped without a driver)."""
    name = "numba CUDA kernel"
    if not nvidia.driver_present():
        return Trial(name, False, "not tried: no NVIDIA driver on this machine")
    try:
        import numpy as np
        from numba import cuda

        @cuda.jit
        def add_one(values):  # pragma: no cover - runs on a GPU
            values[0] += 1.0

        values = cuda.to_device(np.zeros(1, dtype=np.float32))
        add_one[1, 1](values)
        result = float(values.copy_to_host()[0])
        device = cuda.get_current_device().name
    except Exception as exc:  # noqa: BLE001 - the back-end's own words are the reason
        return Trial(name, False, " ".join(str(exc).split())[:300] or type(exc).__name__)
    device = device.decode() if isinstance(device, bytes) else str(device)
    return Trial(name, result == 1.0, f"ran on {device}" if result == 1.0 else f"wrong result {result} on {device}")


def try_onnxruntime_cuda() -> Trial:
    """Open a shipped model on onnxruntime's CUDA provider and run one batch."""
    from convtool.errors import ConvtoolError
    from convtool.infer.session import find_model, open_session

    name = "onnxruntime CUDA session"
    try:
        model = open_session(find_model("lenet5-mnist"), "cuda")
        import numpy as np

        shape = tuple(d or 1 for d in model.input.shape)
        model.run(np.zeros(shape, dtype=np.float32))
    except ConvtoolError as exc:
        return Trial(name, False, getattr(exc, "reason", str(exc)))
    return Trial(name, True, f"ran on {model.device} ({model.provider})")


def ray_info(version: str | None) -> RayInfo:
    """Which cluster ``--ray`` without an address would join, and where Ray's token would come from."""
    token = "none set (a local Ray started by convtool makes its own)"
    if os.environ.get("RAY_AUTH_TOKEN"):
        token = "RAY_AUTH_TOKEN (environment)"
    elif os.environ.get("RAY_AUTH_TOKEN_PATH"):
        token = f"RAY_AUTH_TOKEN_PATH={os.environ['RAY_AUTH_TOKEN_PATH']}"
    elif (Path.home() / ".ray" / "auth_token").is_file():
        token = str(Path.home() / ".ray" / "auth_token")
    if os.environ.get("RAY_ADDRESS"):
        return RayInfo(version, f"RAY_ADDRESS={os.environ['RAY_ADDRESS']} (--ray joins it)", token)
    current = Path(os.environ.get("TMPDIR", "/tmp")) / "ray" / "ray_current_cluster"
    if current.is_file():
        address = current.read_text().strip()
        return RayInfo(version, f"a cluster started here with `ray start` at {address} (--ray auto joins it)", token)
    return RayInfo(version, "none running: --ray starts a local Ray on this machine for the run", token)


def gpu_cost_figures() -> dict[str, object] | None:
    """The figures behind the convolution core's GPU cost estimate (``conv.estimate.figures_report``)."""
    try:
        from convtool.conv.estimate import figures_report
    except ImportError:
        return None
    return figures_report()
