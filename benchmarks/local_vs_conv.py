"""LeNet-5's C1 as convolution, tiled convolution and locally connected layer: forward + backward time, one run.

Same geometry for all (batch 64, 1x28x28 input, 6 kernels 5x5, padding 2 -> 6x28x28), float32; the
anchor is convtool's Conv2d. Calls alternate between the layers so machine noise hits each; medians
of --repeats calls are reported as ratios to Conv2d, with the load average.

    uv run python benchmarks/local_vs_conv.py --repeats 30
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # as `convtool train` does

import numpy as np  # noqa: E402

from convtool.nn import layers as L  # noqa: E402
from convtool.nn.local import LocallyConnected2d, TiledConv2d  # noqa: E402


def step(layer, x: np.ndarray) -> None:
    y, cache = layer.forward(x, train=True)
    layer.backward(np.ones_like(y), cache)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=30)
    args = parser.parse_args()
    x = np.random.default_rng(0).standard_normal((64, 1, 28, 28)).astype(np.float32)
    candidates = {"Conv2d": L.Conv2d(1, 6, 5, padding=2), "TiledConv2d period 1": TiledConv2d(1, 6, 5, 1, padding=2),
                  "TiledConv2d period 2x2": TiledConv2d(1, 6, 5, 2, padding=2),
                  "LocallyConnected2d (28x28 sets)": LocallyConnected2d(1, 6, 5, (28, 28), padding=2)}
    for layer in candidates.values():
        layer.needs_input_grad = True
        step(layer, x)  # warm-up (Numba compilation, caches)
    times: dict[str, list[float]] = {name: [] for name in candidates}
    for _ in range(args.repeats):
        for name, layer in candidates.items():
            start = time.perf_counter()
            step(layer, x)
            times[name].append(time.perf_counter() - start)
    anchor = statistics.median(times["Conv2d"])
    print(f"load average {os.getloadavg()[0]:.1f}; forward + backward, batch 64, median of {args.repeats}")
    for name, values in times.items():
        median = statistics.median(values)
        print(f"{name:34s} {median * 1e3:8.2f} ms  {median / anchor:5.2f}x Conv2d")


if __name__ == "__main__":
    main()
