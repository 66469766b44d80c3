"""Which device can run the convolution core: the CPU always, CUDA when a GPU and its driver are there.

Importing ``numba.cuda`` costs about 0.7 s, so ``device="auto"`` first looks for an NVIDIA driver
(``/proc/driver/nvidia`` or a ``libcuda`` on the loader path) and only then asks Numba.
"""

from __future__ import annotations

import functools
import os

from convtool import nvidia
from convtool.errors import DeviceError, UsageError

DEVICES = ("auto", "cpu", "cuda")


def simulated() -> bool:
    """True when Numba's CUDA simulator is on (``NUMBA_ENABLE_CUDASIM=1``): tests only, very slow."""
    return os.environ.get("NUMBA_ENABLE_CUDASIM", "0") not in ("", "0")




@functools.lru_cache(maxsize=1)
def cuda_status() -> tuple[bool, str]:
    """``(usable, why)``: whether a CUDA device initialises, and the reason when it does not."""
    if not simulated() and not nvidia.driver_present():
        return False, "no NVIDIA driver found (no /proc/driver/nvidia, no libcuda), so numba.cuda.is_available() is false"
    try:
        from numba import cuda
    except ImportError as exc:  # pragma: no cover - numba always ships numba.cuda here
        return False, f"numba.cuda cannot be imported ({exc})"
    if simulated():
        return True, "Numba's CUDA simulator (NUMBA_ENABLE_CUDASIM=1)"
    if not cuda.is_available():
        reason = "numba.cuda.is_available() is false"
        try:
            from numba.cuda.cudadrv.driver import driver

            driver.initialize()
        except Exception as exc:  # noqa: BLE001 - the driver's own words are the best reason
            reason += f": {' '.join(str(exc).split())}"
        return False, reason
    try:
        name = cuda.get_current_device().name
    except Exception as exc:  # noqa: BLE001
        return False, f"a CUDA device is present but does not initialise: {' '.join(str(exc).split())}"
    return True, name.decode() if isinstance(name, bytes) else str(name)


def resolve_device(device: str) -> tuple[str, str]:
    """The device that can run for ``device`` in auto/cpu/cuda, and why; raises if CUDA is asked and absent.

    For ``auto`` this is CUDA whenever a device initialises; :func:`convtool.conv.choose_backend` then
    weighs the GPU's estimated time against the CPU's and may still keep the job on the CPU.
    """
    if device not in DEVICES:
        raise UsageError(f"unknown device {device!r}; choose one of {', '.join(DEVICES)}")
    if device == "cpu":
        return "cpu", "asked for the CPU"
    if device == "cuda":
        usable, why = cuda_status()
        if not usable:
            raise DeviceError(f"CUDA was asked for but is unavailable: {why}; use `device` cpu or auto "
                              f"with a CPU backend")
        return "cuda", f"asked for CUDA ({why})"
    if simulated():
        return "cpu", "the CUDA simulator is for tests only; --device cuda uses it"
    usable, why = cuda_status()
    return ("cuda", f"CUDA device {why}") if usable else ("cpu", f"no CUDA: {why}")

