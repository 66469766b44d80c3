"""`convtool classify --ray` (a local Ray on this machine) against convtool's own single-machine path.

Workloads, written to a temp folder by this script:
- photos: 1,000 640x480 JPEG crops of the sample photos, a 32x32 NHWC classifier (a small conv net with
  random weights, built here), batch 64. Target: --ray images/s >= 0.8x the local path's.
- digits: 2,000 and 20,000 MNIST PNGs, LeNet-5 (dynamic batch) at batch 256: images/s ratio, and the
  driver's peak RSS at 2,000 vs 20,000 (target: flat, within 10%).
- fixed cost: --ray on one image, process start to exit (target <= 6 s), next to the local run's.

Each run is a fresh `convtool` process; its own peak RSS (the driver, not Ray's workers) is read with
getrusage. Usage: python benchmarks/ray_vs_local.py [--skip-20000]
The machine is shared and noisy: compare the ratios printed here, measured in one run, and note `uptime`.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from infer_helpers import lenet, mnist  # noqa: E402

DRIVER = """
import resource, sys
from convtool.cli.main import cli
try:
    cli.main(sys.argv[1:], prog_name="convtool")
except SystemExit as exit:
    code = exit.code
else:
    code = 0
print(f"peak-rss-kb {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}", file=sys.stderr)
sys.exit(code)
"""


def run(args: list[str]) -> tuple[float, int]:
    """Wall seconds and the driver's peak RSS (kB) of one `convtool ...` process."""
    env = dict(os.environ, RAY_ENABLE_UV_RUN_RUNTIME_ENV="0")
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", DRIVER, *args], capture_output=True, text=True, env=env)
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        sys.exit(f"failed: convtool {' '.join(args)}\n{done.stderr[-2000:]}")
    rss = int(done.stderr.rsplit("peak-rss-kb ", 1)[1].split()[0])
    return elapsed, rss


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


def compare(name: str, folder: Path, model: Path, batch: int, count: int, out: Path,
            fixed: tuple[float, float]) -> tuple[float, int]:
    """Both paths on one folder; ratios of whole runs and of the rate once started (one-image run subtracted)."""
    args = ["classify", str(folder), "-m", str(model), "--batch", str(batch), "--overwrite"]
    local, local_rss = run([*args, "-o", str(out / f"{name}-local.csv")])
    ray, ray_rss = run([*args, "-o", str(out / f"{name}-ray.csv"), "--ray"])
    same = (out / f"{name}-local.csv").read_text() == (out / f"{name}-ray.csv").read_text()
    steady_local, steady_ray = count / max(local - fixed[0], 1e-3), count / max(ray - fixed[1], 1e-3)
    print(f"{name:12s} {count:6d} images: local {local:6.2f} s ({count / local:5.0f} img/s), --ray {ray:6.2f} s "
          f"({count / ray:5.0f} img/s): ray/local = {local / ray:.2f}x whole run, {steady_ray / steady_local:.2f}x "
          f"once started ({steady_local:.0f} vs {steady_ray:.0f} img/s); driver peak RSS local "
          f"{local_rss / 1024:.0f} MB, ray {ray_rss / 1024:.0f} MB; same rows: {same}")
    return local / ray, ray_rss


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--skip-20000", action="store_true", help="Leave out the 20,000-image run.")
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
        local, _ = run(["classify", str(one), "-m", str(small)])
        fixed, _ = run(["classify", str(one), "-m", str(small), "--ray"])
        print(f"fixed cost   one image: local {local:.2f} s, --ray {fixed:.2f} s (process start to result and exit; "
              f"target <= 6 s)")
        compare("photos 32x32", tmp_path / "photos", small, 64, 1000, tmp_path, (local, fixed))
        digits(tmp_path / "d2000", 2000)
        _, rss_small = compare("digits", tmp_path / "d2000", net, 256, 2000, tmp_path, (local, fixed))
        if not options.skip_20000:
            digits(tmp_path / "d20000", 20000)
            _, rss_large = compare("digits", tmp_path / "d20000", net, 256, 20000, tmp_path, (local, fixed))
            print(f"driver peak RSS with --ray: 20,000 / 2,000 images = {rss_large / rss_small:.2f}x (target <= 1.10)")


if __name__ == "__main__":
    main()
