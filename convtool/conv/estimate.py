"""Where a correlation will run fastest: an estimate of the CUDA device's time against the CPU's.

The GPU side counts what must move and what must be computed: the upload of the input in its own
dtype over PCIe, each kernel's device-memory traffic and arithmetic, the download of the output
(float32, or uint8 for an 8-bit result), a fixed cost per call (Numba's launches, allocation and
synchronisation) and, for a stack of images, the overlap of upload, kernels and download across
streams. Its figures come from the device's own properties (:func:`cuda_figures`): memory bandwidth
from the memory clock and bus width, arithmetic from the SM count, cores per SM and clock, PCIe from
the link generation and width Linux reports for the device; conservative defaults fill any gap and
say so. The CPU side uses the cost model's work per pixel at a rate measured on this project's
machine, per thread. Nothing here imports Numba unless a real device is asked about.
"""

from __future__ import annotations

import functools
import os
from dataclasses import asdict, dataclass

# CPU: cost-model units (about one vector multiply-add per output pixel and tap) per second and thread,
# measured: Sobel 3x3 (9 units) on 4096^2 float32 at about 1,700 Mpix/s on 2 threads (2026-11-30).
CPU_UNITS_PER_THREAD = 7.5e9
CPU_MEMORY_BYTES_S = 20e9  # reading the input and writing float32 output, 2 threads (PERFORMANCE.md: 23-42 GB/s)
CPU_CALL_S = 10e-6  # fixed cost of one planned call
# GPU defaults where the device does not say (conservative: a T4-class card on PCIe 3.0 x16)
DEFAULT_PCIE_GBPS = 12.0  # effective host<->device GB/s each way, pinned buffers
DEFAULT_MEMORY_GBPS = 300.0
DEFAULT_GFLOPS = 4000.0
GPU_CALL_S = 100e-6  # Numba launch, device allocation and synchronisation per call (Python side)
MEMORY_EFFICIENCY = 0.8  # share of the theoretical device bandwidth a streaming kernel reaches
PCIE_EFFICIENCY = 0.8  # share of the link's raw rate a pinned copy reaches
CORES_PER_SM = {3: 192, 5: 128, 6: 64, 7: 64, 8: 128, 9: 128, 10: 128, 12: 128}  # float32 lanes by major version
GT_PER_LANE = {"2.5": 2.5, "5.0": 5.0, "8.0": 8.0, "16.0": 16.0, "32.0": 32.0, "64.0": 64.0}  # PCIe gen 1-6


@dataclass(frozen=True)
class DeviceFigures:
    """The figures the CUDA estimate uses, with where each came from (``convtool doctor`` shows them)."""

    name: str
    memory_gbps: float  # device memory bandwidth, GB/s
    pcie_gbps: float  # host <-> device, each way, GB/s
    gflops: float  # float32 multiply-adds x 2 per second, in GFLOP/s
    sources: tuple[str, ...] = ()

    def as_dict(self) -> dict:
        return asdict(self)


T4_LIKE = DeviceFigures("T4-class (defaults)", 320.0, DEFAULT_PCIE_GBPS, 8100.0,
                        ("memory 5,001 MHz x 256-bit bus", "PCIe 3.0 x16 at 80%", "40 SMs x 64 lanes x 1.59 GHz"))


@dataclass(frozen=True)
class Estimate:
    """Seconds a correlation is expected to take on each device, and the parts of the GPU's."""

    cpu_s: float
    gpu_s: float
    upload_s: float
    kernels_s: float
    download_s: float

    @property
    def device(self) -> str:
        return "cuda" if self.gpu_s < self.cpu_s else "cpu"

    def reason(self) -> str:
        return (f"estimated CUDA {self.gpu_s * 1e3:.2f} ms (upload {self.upload_s * 1e3:.2f}, kernels "
                f"{self.kernels_s * 1e3:.2f}, download {self.download_s * 1e3:.2f}) vs CPU {self.cpu_s * 1e3:.2f} ms")


def estimate(figures: DeviceFigures, images: int, in_pixels: int, out_pixels: int, work: float, taps: int, *,
             in_bytes: int = 4, out_bytes: int = 4, steps: int = 1, threads: int | None = None) -> Estimate:
    """Estimated seconds on the CPU and on the device described by ``figures``.

    ``in_pixels``/``out_pixels`` count samples of one image, ``images`` the images of the stack (their
    transfers overlap the kernels across streams), ``work`` the cost model's units per output pixel
    of one step, ``taps`` the multiply-adds per output pixel of one step, ``steps`` the kernels run
    one after the other with intermediates kept on the device.
    """
    threads = threads or _cpu_threads()
    total_out = images * out_pixels
    # arithmetic and memory traffic overlap on the CPU: the larger one sets the pace
    cpu = steps * (max(total_out * work / (CPU_UNITS_PER_THREAD * threads),
                       total_out * (in_bytes + 4) / CPU_MEMORY_BYTES_S) + CPU_CALL_S)
    pcie = figures.pcie_gbps * 1e9
    upload, download = in_pixels * in_bytes / pcie, out_pixels * out_bytes / pcie
    per_step = max(out_pixels * (in_bytes + 4) / (figures.memory_gbps * 1e9 * MEMORY_EFFICIENCY),
                   2.0 * taps * out_pixels / (figures.gflops * 1e9))
    kernels = steps * per_step
    parts = (upload, kernels, download)
    # one image: the parts add up; a stack: the slowest part sets the pace once the pipeline is full
    gpu = GPU_CALL_S + sum(parts) + (images - 1) * max(parts)
    return Estimate(cpu, gpu, images * upload, images * kernels, images * download)


def _cpu_threads() -> int:
    if os.environ.get("NUMBA_NUM_THREADS"):
        return max(1, int(os.environ["NUMBA_NUM_THREADS"]))
    return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1)


@functools.lru_cache(maxsize=1)
def cuda_figures() -> DeviceFigures:
    """The current CUDA device's figures from its properties (call only when a device initialises)."""
    from numba import cuda

    device = cuda.get_current_device()
    name = device.name.decode() if isinstance(device.name, bytes) else str(device.name)
    return figures_from_attributes(name, _attributes(device), _pcie_link(device))


def _attributes(device) -> dict[str, int]:
    found = {}
    for key in ("MEMORY_CLOCK_RATE", "GLOBAL_MEMORY_BUS_WIDTH", "MULTIPROCESSOR_COUNT", "CLOCK_RATE",
                "COMPUTE_CAPABILITY_MAJOR"):
        try:
            found[key] = int(getattr(device, key))
        except Exception:  # noqa: BLE001 - a driver that does not report one leaves the default in place
            continue
    return found


def _pcie_link(device) -> tuple[str, int] | None:
    """(GT/s per lane, lanes) of the device's PCIe link as Linux reports it, or None."""
    try:
        address = f"{int(device.PCI_DOMAIN_ID):04x}:{int(device.PCI_BUS_ID):02x}:{int(device.PCI_DEVICE_ID):02x}.0"
        base = f"/sys/bus/pci/devices/{address}"
        with open(f"{base}/current_link_speed") as speed, open(f"{base}/current_link_width") as width:
            return speed.read().split()[0], int(width.read().strip())
    except (OSError, ValueError, AttributeError, IndexError):
        return None


def figures_from_attributes(name: str, attributes: dict[str, int], link: tuple[str, int] | None) -> DeviceFigures:
    """DeviceFigures from CUDA device attributes (clock rates in kHz, bus width in bits) and a PCIe link."""
    sources = []
    if "MEMORY_CLOCK_RATE" in attributes and "GLOBAL_MEMORY_BUS_WIDTH" in attributes:
        clock, bus = attributes["MEMORY_CLOCK_RATE"] * 1e3, attributes["GLOBAL_MEMORY_BUS_WIDTH"]
        memory = 2 * clock * bus / 8 / 1e9  # double data rate
        sources.append(f"memory {clock / 1e6:,.0f} MHz x {bus}-bit bus x 2 (DDR) = {memory:,.0f} GB/s")
    else:
        memory = DEFAULT_MEMORY_GBPS
        sources.append(f"memory bandwidth not reported: default {memory:.0f} GB/s")
    if link is not None and link[0] in GT_PER_LANE:
        rate, lanes = GT_PER_LANE[link[0]], link[1]
        encoding = 0.8 if rate < 8 else 128 / 130
        pcie = rate * lanes * encoding / 8 * PCIE_EFFICIENCY
        sources.append(f"PCIe {rate:g} GT/s x{lanes} at {PCIE_EFFICIENCY:.0%} = {pcie:.1f} GB/s each way")
    else:
        pcie = DEFAULT_PCIE_GBPS
        sources.append(f"PCIe link not reported: default {pcie:.0f} GB/s each way (3.0 x16 at 80%)")
    needed = ("MULTIPROCESSOR_COUNT", "CLOCK_RATE", "COMPUTE_CAPABILITY_MAJOR")
    if all(key in attributes for key in needed):
        sms, clock = attributes["MULTIPROCESSOR_COUNT"], attributes["CLOCK_RATE"] * 1e3
        lanes = CORES_PER_SM.get(attributes["COMPUTE_CAPABILITY_MAJOR"], 64)
        gflops = 2 * sms * lanes * clock / 1e9
        sources.append(f"{sms} SMs x {lanes} lanes x {clock / 1e9:.2f} GHz x 2 = {gflops:,.0f} GFLOP/s")
    else:
        gflops = DEFAULT_GFLOPS
        sources.append(f"arithmetic rate not reported: default {gflops:,.0f} GFLOP/s")
    return DeviceFigures(name, memory, pcie, gflops, tuple(sources))


def figures_report() -> dict:
    """What the CUDA estimate would use on this machine, for ``convtool doctor``: figures and sources, or why none."""
    from convtool.conv.device import cuda_status, simulated

    usable, why = cuda_status()
    if not usable or simulated():
        return {"device": None, "reason": why if not usable else "CUDA simulator: no real device",
                "defaults": DeviceFigures("defaults", DEFAULT_MEMORY_GBPS, DEFAULT_PCIE_GBPS, DEFAULT_GFLOPS).as_dict()}
    return {"device": cuda_figures().as_dict(), "reason": why}
