"""`convtool classify --ray` (Ray on this machine) against convtool's own single-machine path.

Workloads, written to a temp folder by this script:
- fixed cost: one image, process start to the first result row (target <= 6 s) and to exit, for the
  local path, for `--ray` starting its own Ray, and for `--ray ADDRESS` joining a Ray already running
  here (started by this script with ray.init, as `ray start --head` would be): the first job on it (which
  also starts Ray Data's own bookkeeping actors) and a later one.
- photos: 1,000 640x480 JPEG crops of the sample photos, a 32x32 NHWC classifier (a small conv net with
  random weights, built here), batch 64. Target: --ray images/s >= 0.8x the local path's.
- digits: 2,000 and 20,000 MNIST PNGs, LeNet-5 (dynamic batch) at batch 256: images/s ratio, and the
  driver's peak RSS at 2,000 vs 20,000 (target: flat, within 10%).

Each run is a fresh `convtool` process writing its rows to stdout (`-o -`), read here as they come:
"whole run" is process start to exit; "once started" is the rate between the first and the last row
(the images after the first chunk over that time), the same measure for both paths. The driver's own
peak RSS (not Ray's workers) is read with getrusage. Usage: python benchmarks/ray_vs_local.py [--skip-20000]
The machine is shared and noisy: compare the ratios printed here, measured in one run, and note `uptime`.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from infer_helpers import lenet, mnist  # noqa: E402

DRIVER = """
import atexit, resource, sys
from convtool.cli import main
atexit.register(lambda: print(f"peak-rss-kb {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}", file=sys.stderr))
sys.argv = ["convtool", *sys.argv[1:]]
main.main()
"""


@dataclass
class Run:
    """One `convtool` process: seconds from its start to its first row, to its last row and to its exit."""

    first: float
    last: float
    exit: float
    rows: list[str]
    rss_kb: int

    def steady(self, chunk: int) -> float:
        """Images/s between the first and the last row (the rows after the first chunk)."""
        return (len(self.rows) - chunk) / max(self.last - self.first, 1e-3)


def run(args: list[str], env: dict | None = None) -> Run:
    """Run `convtool ARGS -o -` and time its rows as they reach stdout."""
    env = dict(os.environ, RAY_ENABLE_UV_RUN_RUNTIME_ENV="0", PYTHONUNBUFFERED="1", **(env or {}))
    start = time.perf_counter()
    process = subprocess.Popen([sys.executable, "-c", DRIVER, *args, "-o", "-"], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, env=env)
    assert process.stdout is not None and process.stderr is not None
    rows, first, last = [], 0.0, 0.0
    for line in process.stdout:
        last = time.perf_counter() - start
        first = first or last
        rows.append(line)
    stderr = process.stderr.read()
    code = process.wait()
    elapsed = time.perf_counter() - start
    if code != 0:
        sys.exit(f"failed: convtool {' '.join(args)}\n{stderr[-2000:]}")
    return Run(first, last, elapsed, rows, int(stderr.rsplit("peak-rss-kb ", 1)[1].split()[0]))


def photos(folder: Path, count: int) -> None:
    """640x480 JPEG crops of the sample photos (shifted window per file)."""
    folder.mkdir(parents=True)
    sources = [Image.open(p).convert("RGB").resize((1024, 768)) for p in sorted((ROOT / "samples").glob("*.png"))]
    for i in range(count):
        source = sources[i % len(sources)]
        x, y = (i * 37) % (1024 - 640), (i * 23) % (768 - 480)
        source.crop((x, y, x + 640, y + 480)).save(folder / f"{i:05d}.jpg", quality=90)


def digits(folder: Path, count: int) -> None:
    folder.mkdir(parents=True)
    images, _ = mnist(10000)
    for i in range(count):
        Image.fromarray(images[i % len(images)]).save(folder / f"{i:05d}.png", compress_level=1)


def small_classifier(path: Path) -> Path:
    """32x32 RGB NHWC -> Transpose -> Conv 3x3 (8) -> Relu -> GlobalAveragePool -> Gemm (10), random weights."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    weights = [numpy_helper.from_array(rng.normal(0, 0.3, shape).astype(np.float32), name)
               for name, shape in (("w", (8, 3, 3, 3)), ("fc", (8, 10)), ("b", (10,)))]
    nodes = [helper.make_node("Transpose", ["x"], ["t"], perm=[0, 3, 1, 2]),
             helper.make_node("Conv", ["t", "w"], ["c"], kernel_shape=[3, 3]),
             helper.make_node("Relu", ["c"], ["r"]), helper.make_node("GlobalAveragePool", ["r"], ["g"]),
             helper.make_node("Flatten", ["g"], ["f"]), helper.make_node("Gemm", ["f", "fc", "b"], ["y"])]
    graph = helper.make_graph(nodes, "small", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 32, 32, 3])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 10])], weights)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.save(model, path)
    return path


def compare(name: str, folder: Path, model: Path, batch: int, count: int) -> tuple[float, int]:
    """Both paths on one folder: images/s over the whole run and once started; the driver's peak RSS."""
    args = ["classify", str(folder), "-m", str(model), "--batch", str(batch)]
    local, ray = run(args), run([*args, "--ray"])
    whole = local.exit / ray.exit
    steady_local, steady_ray = local.steady(batch), ray.steady(batch)
    print(f"{name:12s} {count:6d} images: local {local.exit:6.2f} s ({count / local.exit:5.0f} img/s), --ray "
          f"{ray.exit:6.2f} s ({count / ray.exit:5.0f} img/s): ray/local = {whole:.2f}x whole run, "
          f"{steady_ray / steady_local:.2f}x once started ({steady_local:.0f} vs {steady_ray:.0f} img/s; first row "
          f"after {local.first:.2f} vs {ray.first:.2f} s); driver peak RSS local {local.rss_kb / 1024:.0f} MB, "
          f"ray {ray.rss_kb / 1024:.0f} MB; same rows: {local.rows == ray.rows}")
    return steady_ray / steady_local, ray.rss_kb


def fixed_costs(one: Path, model: Path) -> None:
    """One image: local, --ray starting its own Ray, and --ray joining a Ray that is already running."""
    import ray

    args = ["classify", str(one), "-m", str(model)]
    local, own = run(args), run([*args, "--ray"])
    ray.init(num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False)  # as `ray start --head`
    try:  # joining by address: RAY_AUTH_MODE=token (set by ray.init here) reaches the child's environment
        address = ray.get_runtime_context().gcs_address
        joined = [run([*args, "--ray", address]) for _ in range(2)]
    finally:
        ray.shutdown()
    for what, result in (("local", local), ("--ray (starts its own Ray)", own),
                         ("--ray ADDRESS, first job on a running Ray", joined[0]),
                         ("--ray ADDRESS, a later job", joined[1])):
        print(f"fixed cost   one image, {what}: first result after {result.first:5.2f} s, exit after "
              f"{result.exit:5.2f} s (target <= 6 s to the first result)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--skip-20000", action="store_true", help="Leave out the 20,000-image run.")
    parser.add_argument("--only", choices=("fixed", "photos"), help="Only the one-image runs, or only the photos.")
    options = parser.parse_args()
    print(f"load: {os.getloadavg()[0]:.1f} {os.getloadavg()[1]:.1f} {os.getloadavg()[2]:.1f} on {os.cpu_count()} cores")
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        photos(tmp_path / "photos", 1000)
        small = small_classifier(tmp_path / "small.onnx")
        net = lenet(tmp_path / "lenet.onnx")
        one = tmp_path / "one"
        one.mkdir()
        (one / "00000.jpg").write_bytes((tmp_path / "photos" / "00000.jpg").read_bytes())
        if options.only != "photos":
            fixed_costs(one, small)
        if options.only != "fixed":
            compare("photos 32x32", tmp_path / "photos", small, 64, 1000)
        if options.only:
            return
        digits(tmp_path / "d2000", 2000)
        _, rss_small = compare("digits", tmp_path / "d2000", net, 256, 2000)
        if not options.skip_20000:
            digits(tmp_path / "d20000", 20000)
            _, rss_large = compare("digits", tmp_path / "d20000", net, 256, 20000)
            print(f"driver peak RSS with --ray: 20,000 / 2,000 images = {rss_large / rss_small:.2f}x (target <= 1.10)")
        print(f"load at the end: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
