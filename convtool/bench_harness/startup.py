"""First-call cost of convtool in fresh processes: Numba compile (empty cache), load (warm cache), ``--help``."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time

from convtool.bench_harness.cases import KERNELS

JIT_SCRIPT = """
import time, numpy as np
t0 = time.perf_counter()
from convtool.conv import correlate2d
image = np.random.default_rng(0).random((512, 512), dtype=np.float32)
for kernel in ({kernels}):
    correlate2d(image, np.array(kernel), padding="same", border="reflect", device="cpu", backend="{backend}")
print(time.perf_counter() - t0)
"""


HELP_SCRIPT = "import sys; from convtool.cli.main import main; sys.argv = ['convtool', '--help']; main()"


def jit_times(kernel_names: tuple[str, ...] = ("sobel3", "gauss5", "blob9")) -> dict[str, float]:
    """First-call cost in fresh processes on a 512x512 image.

    ``direct``/``separable`` with an empty Numba cache (compile), then with that cache (load); ``auto``,
    which uses NumPy for such small jobs while Numba is not loaded; and ``convtool --help``.
    """
    kernels = ", ".join(repr(KERNELS[name].tolist()) for name in kernel_names)
    out = {}
    with tempfile.TemporaryDirectory(prefix="convtool-jit-") as cache:
        env = dict(os.environ, NUMBA_CACHE_DIR=cache)
        runs = [("Numba direct+separable, cold (empty cache)", "direct"), ("Numba direct+separable, warm (cached)", "direct"),
                ("auto (NumPy while Numba is not loaded)", "auto")]
        for label, backend in runs:
            script = JIT_SCRIPT.format(kernels=kernels, backend=backend)
            if backend == "direct":  # compile the separable kernel too
                script += "correlate2d(image, np.ones((3, 3)), backend='separable', device='cpu')\n"
            t0 = time.perf_counter()
            done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, check=True)
            out[f"{label}: whole process"] = time.perf_counter() - t0
            out[f"{label}: import + calls"] = float(done.stdout.split()[-1])
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-c", HELP_SCRIPT], capture_output=True, check=False)
    out["convtool --help: whole process"] = time.perf_counter() - t0
    return out


