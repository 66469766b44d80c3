"""`convtool classify` against a plain single-threaded script, and convtool's per-image overhead.

1. Process wall time on 2,000 real MNIST PNG files (written to a temp folder), for a LeNet-5 with a
   dynamic batch (run at 256) and for the model zoo's mnist-12 (fixed batch of 1): the plain script
   benchmarks/plain_classify.py and `convtool classify -o out.csv` alternate, medians of --repeat runs.
   Target: convtool / script <= 1.0.
2. The per-image overhead convtool adds on top of onnxruntime for mnist-12, on pre-decoded arrays:
   convtool's Classifier (batching, fixed-batch slicing, softmax, top-k) minus a raw loop of
   ``session.run`` over the same arrays. Target: <= 20 us.

Usage: python benchmarks/classify_vs_script.py [--count 2000] [--repeat 7]
The machine is shared and noisy: compare the ratios printed here, measured in one run.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from infer_helpers import MNIST_12, lenet, mnist, write_mnist_pngs  # noqa: E402


def wall(cmd: list[str]) -> tuple[float, str]:
    start = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        sys.exit(f"failed: {' '.join(cmd)}\n{done.stderr}")
    return elapsed, done.stderr


def compare_processes(folder: Path, model: Path, out: Path, repeat: int, batch: int) -> None:
    convtool = Path(sys.executable).with_name("convtool")
    script = [sys.executable, str(ROOT / "benchmarks" / "plain_classify.py"), str(folder), str(model), str(out / "plain.csv")]
    ours = [str(convtool), "classify", str(folder), "-m", str(model), "-o", str(out / "convtool.csv"),
            "--overwrite", "--top-k", "1", "--batch", str(batch), "--device", "cpu"]
    wall(script), wall(ours)  # warm the page cache and bytecode
    plain_times, our_times, splits = [], [], []
    for _ in range(repeat):
        plain_times.append(wall(script)[0])
        elapsed, log = wall(ours)
        our_times.append(elapsed)
        splits.append(log.strip().splitlines()[-2])
    p, o = statistics.median(plain_times), statistics.median(our_times)
    n = sum(1 for _ in folder.iterdir())
    print(f"  plain script : {p:.3f} s median ({n / p:,.0f} img/s), runs {', '.join(f'{t:.2f}' for t in plain_times)}")
    print(f"  convtool     : {o:.3f} s median ({n / o:,.0f} img/s), runs {', '.join(f'{t:.2f}' for t in our_times)}")
    paired = statistics.median(b / a for a, b in zip(plain_times, our_times))
    best = min(our_times) / min(plain_times)
    print(f"  ratio convtool/script: of medians {o / p:.2f}, median of paired runs {paired:.2f}, "
          f"of the fastest runs {best:.2f}  (target <= 1.0)")
    print(f"  convtool's own split (last run): {splits[-1]}")


def overhead_batch1(count: int, repeat: int) -> None:
    import numpy as np

    from convtool.infer.classify import Classifier
    from convtool.infer.preprocess import preprocess_for
    from convtool.infer.session import open_session

    images, _ = mnist(count)
    x = (images.astype(np.float32) / 255)[:, None]
    model = open_session(MNIST_12, "cpu")
    classifier = Classifier(model, preprocess_for(model.input, model.metadata), top_k=5)
    session, name = model.session, model.input.name

    def raw() -> None:
        for i in range(count):
            session.run(None, {name: x[i : i + 1]})

    def ours() -> None:
        for start in range(0, count, 64):
            classifier.top(classifier.scores(x[start : start + 64]))

    raw(), ours()
    raw_t, our_t = [], []
    for _ in range(repeat):
        for fn, times in ((raw, raw_t), (ours, our_t)):
            start = time.perf_counter()
            fn()
            times.append(time.perf_counter() - start)
    r, o = statistics.median(raw_t) / count * 1e6, statistics.median(our_t) / count * 1e6
    diffs = sorted((b - a) / count * 1e6 for a, b in zip(raw_t, our_t))
    print(f"  raw onnxruntime loop : {r:.1f} us/image ({1e6 / r:,.0f} img/s)")
    print(f"  convtool Classifier  : {o:.1f} us/image ({1e6 / o:,.0f} img/s)")
    print(f"  overhead = {o - r:+.1f} us/image (median of paired differences {statistics.median(diffs):+.1f}; target <= 20)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=2000)
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(ROOT / "convtool"), str(ROOT / "benchmarks")], check=True)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        folder = tmp / "mnist"
        write_mnist_pngs(folder, args.count)
        lenet_path = lenet(tmp / "lenet.onnx")
        print(f"{args.count} MNIST PNG files, LeNet-5 (dynamic batch, run at 256), process wall time:")
        compare_processes(folder, lenet_path, tmp, args.repeat, 256)
        print(f"{args.count} MNIST PNG files, model zoo mnist-12 (fixed batch 1), process wall time:")
        compare_processes(folder, MNIST_12, tmp, args.repeat, 64)
    print(f"per-image overhead over onnxruntime, mnist-12 on {args.count} pre-decoded images:")
    overhead_batch1(args.count, args.repeat)


if __name__ == "__main__":
    main()
