"""`convtool classify` against a plain single-threaded script, and convtool's per-image overhead.

1. Process wall time on 2,000 real MNIST PNG files (written to a temp folder), for a LeNet-5 with a
   dynamic batch (run at 256) and for the model zoo's mnist-12 (fixed batch of 1): the plain script
   benchmarks/plain_classify.py and `convtool classify -o out.csv` alternate, medians of --repeat runs.
   Target: convtool / script <= 1.0.
2. The per-image overhead convtool adds on top of onnxruntime for mnist-12, on pre-decoded arrays:
   convtool's Classifier (batching, fixed-batch slicing, softmax, top-k) minus a raw loop of
   ``session.run`` over the same arrays. Target: <= 20 us.
3. Photos (issue 9): --photos 640x480 JPEGs made from samples/ by benchmarks/photos.py, models exported
   from convtool's nn, batch 64, against benchmarks/plain_classify_photos.py: a 32x32 LeNet (images/s
   ratio >= 4), a 224x224 strided-stem net (>= 3); 224x224 nets whose inference dominates (heavy224: about
   2x the decoding's CPU; vgg224: 1.6 GMACs as a ResNet-18, about 20x, on the first 320 photos): convtool's
   images/s within 10% of onnxruntime's own rate on pre-decoded arrays, with the ceiling two cores allow.
4. Peak memory (the whole process tree, sampled) on 10x --count MNIST PNGs against --count: within 10%.

Usage: python benchmarks/classify_vs_script.py [--count 2000] [--repeat 7] [--photos 1000] [--only photos,...]
The machine is shared and noisy: compare the ratios printed here, measured in one run.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "benchmarks"))

from infer_helpers import MNIST_12, lenet, mnist, write_mnist_pngs  # noqa: E402
from timing import wall  # noqa: E402

VGG_PHOTOS = 320


def peak_rss(cmd: list[str]) -> float:
    """Peak resident memory (MB) of a command and its children, sampled every 10 ms from /proc."""
    child = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    peak = 0
    while child.poll() is None:
        peak = max(peak, _tree_rss(child.pid))
        time.sleep(0.01)
    return peak / 1e6


def _tree_rss(root: int) -> int:
    parents, rss = {}, {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        pid = int(stat.parent.name)
        parents[pid], rss[pid] = int(fields[1]), int(fields[21]) * 4096
    tree, total = {root}, 0
    for pid in sorted(parents):  # children have larger pids than their parents here
        if pid in tree or parents[pid] in tree:
            tree.add(pid)
            total += rss[pid]
    return total


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


def photos(count: int, repeat: int, tmp: Path) -> None:
    from photos import export_classifier, write_photos

    folder = tmp / "photos"
    write_photos(folder, count)
    few = tmp / "photos-few"  # vgg224 costs ~65 ms of CPU per image: the first VGG_PHOTOS photos are enough
    few.mkdir()
    for photo in sorted(folder.iterdir())[:VGG_PHOTOS]:
        os.link(photo, few / photo.name)
    convtool = str(Path(sys.executable).with_name("convtool"))
    for arch, target in (("tiny32", 4.0), ("stem224", 3.0), ("heavy224", None), ("vgg224", None)):
        model = export_classifier(tmp / f"{arch}.onnx", arch)
        source = few if arch == "vgg224" else folder
        n = len(os.listdir(source))
        script = [sys.executable, str(ROOT / "benchmarks" / "plain_classify_photos.py"), str(source), str(model),
                  str(tmp / "plain.csv")]
        ours = [convtool, "classify", str(source), "-m", str(model), "-o", str(tmp / "ours.csv"), "--overwrite",
                "--top-k", "1", "--batch", "64", "--device", "cpu", "-v"]
        with_script = arch != "vgg224"  # its anchor is onnxruntime alone
        if with_script:
            wall(script)
        wall(ours)
        plain_t, our_t, log = [], [], ""
        for _ in range(repeat):
            if with_script:
                plain_t.append(wall(script)[0])
            elapsed, log = wall(ours)
            our_t.append(elapsed)
        o = statistics.median(our_t)
        lines = log.strip().splitlines()
        if with_script:
            p = statistics.median(plain_t)
            print(f"  {arch}: plain script {n / p:,.0f} img/s, convtool {n / o:,.0f} img/s (process wall, medians "
                  f"of {repeat}): ratio {p / o:.2f}" + (f" (target >= {target})" if target else ""))
        else:
            print(f"  {arch} ({n} photos): convtool {n / o:,.0f} img/s (process wall, median of {repeat})")
        print(f"    {next((x for x in lines if x.startswith('decoding:')), '')}")
        print(f"    {next((x for x in lines if ' images in ' in x), '')}")
        if target is None:
            _inference_anchor(model, source, n, lines)


def _inference_anchor(model: Path, folder: Path, count: int, lines: list[str]) -> None:
    """onnxruntime alone on pre-decoded arrays, batch 64, with its own defaults (every core), against
    convtool's loop (which gives onnxruntime every core too, and decodes the photos meanwhile).

    Also the ceiling on this machine: with inference costing c seconds of CPU per image and decoding d,
    a run that keeps every core busy reaches c / (c + d) of onnxruntime's own rate, never more.
    """
    import numpy as np
    import onnxruntime as ort

    from convtool.infer.decode import decode_group
    from convtool.infer.preprocess import Preparer, preprocess_for
    from convtool.infer.session import open_session

    session = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    x = np.random.default_rng(0).random((64, 3, 224, 224), dtype=np.float32)
    session.run(None, {name: x})
    runs = max(1, count // 64)
    start, cpu = time.perf_counter(), time.process_time()
    for _ in range(runs):
        session.run(None, {name: x})
    rate = runs * 64 / (time.perf_counter() - start)
    infer_cpu = (time.process_time() - cpu) / (runs * 64)
    opened = open_session(model, "cpu")
    preparer = Preparer(preprocess_for(opened.input, opened.metadata))
    photos = sorted(folder.iterdir())[:128]
    decode_group(photos[:16], preparer, draft=True)
    cpu = time.process_time()
    decode_group(photos, preparer, draft=True)
    decode_cpu = (time.process_time() - cpu) / len(photos)
    ceiling = infer_cpu / (infer_cpu + decode_cpu)
    loop = float(next(x for x in lines if " images in " in x).split(" img/s")[0].split(", ")[-1].replace(",", ""))
    print(f"    onnxruntime alone on pre-decoded arrays (its defaults: {os.cpu_count()} threads): {rate:,.0f} img/s; "
          f"convtool's loop {loop:,.0f} img/s: {loop / rate:.2f} of it (target >= 0.9)")
    print(f"    CPU per image: inference {infer_cpu * 1e3:.2f} ms, decoding {decode_cpu * 1e3:.2f} ms (one process, "
          f"serial): the ceiling with every core busy is {ceiling:.2f} of onnxruntime alone; convtool reaches "
          f"{loop / rate / ceiling:.0%} of that ceiling")


def memory(count: int, tmp: Path) -> None:
    small, large = tmp / "mem-small", tmp / "mem-large"
    write_mnist_pngs(small, count)
    for copy in range(10):
        folder = large / f"part{copy}"
        folder.mkdir(parents=True)
        for png in small.iterdir():
            os.link(png, folder / png.name)
    model = lenet(tmp / "lenet-mem.onnx")
    convtool = str(Path(sys.executable).with_name("convtool"))
    peaks = [peak_rss([convtool, "classify", str(folder), "-r", "-m", str(model), "-o", str(tmp / "m.csv"),
                       "--overwrite", "--top-k", "1", "--batch", "256", "--device", "cpu"]) for folder in (small, large)]
    print(f"  peak RSS of the process tree: {count:,} images {peaks[0]:.0f} MB, {10 * count:,} images {peaks[1]:.0f} MB: "
          f"ratio {peaks[1] / peaks[0]:.2f} (target <= 1.10)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=2000)
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--photos", type=int, default=1000)
    parser.add_argument("--only", default="mnist,photos,memory,overhead",
                        help="comma-separated workloads: mnist, photos, memory, overhead")
    args = parser.parse_args()
    only = set(args.only.split(","))
    print(f"uptime: {subprocess.run(['uptime'], capture_output=True, text=True).stdout.strip()}")
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(ROOT / "convtool"), str(ROOT / "benchmarks")], check=True)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        if "mnist" in only:
            folder = tmp / "mnist"
            write_mnist_pngs(folder, args.count)
            lenet_path = lenet(tmp / "lenet.onnx")
            print(f"{args.count} MNIST PNG files, LeNet-5 (dynamic batch, run at 256), process wall time:")
            compare_processes(folder, lenet_path, tmp, args.repeat, 256)
            print(f"{args.count} MNIST PNG files, model zoo mnist-12 (fixed batch 1), process wall time:")
            compare_processes(folder, MNIST_12, tmp, args.repeat, 64)
        if "photos" in only:
            print(f"{args.photos} photos 640x480 JPEG, batch 64, against a plain single-threaded script:")
            photos(args.photos, max(1, args.repeat // 2), tmp)
        if "memory" in only:
            print("memory:")
            memory(args.count, tmp)
    if "overhead" in only:
        print(f"per-image overhead over onnxruntime, mnist-12 on {args.count} pre-decoded images:")
        overhead_batch1(args.count, args.repeat)
    print(f"uptime: {subprocess.run(['uptime'], capture_output=True, text=True).stdout.strip()}")


if __name__ == "__main__":
    main()
