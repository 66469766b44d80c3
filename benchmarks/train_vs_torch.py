"""LeNet-5 training epoch time: convtool's hand-written backprop against PyTorch CPU, in one run.

Same net (ReLU, max-pool, conv5(6, pad 2) - pool - conv5(16) - pool - 120 - 84 - 10), same data
(the bundled MNIST: first 8,000 to train, last 2,000 to validate), batch 64, SGD lr 0.05 momentum 0.9,
no augmentation. PyTorch is not a dependency of convtool: it runs in a separate interpreter given
by --torch-python (a venv with ``pip install torch==2.13.0 numpy``). For each thread count (1, then 2)
both use that many threads: PyTorch its intra-op pool, convtool its Numba kernels (``convtool train
--threads``, OpenBLAS single-threaded). Epochs alternate between the two so that machine noise hits
both; medians, fastest epochs and their ratios are printed with the load average.

    uv run python benchmarks/train_vs_torch.py --torch-python /work/torchenv/bin/python
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # as `convtool train` does
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # as `convtool train` does

import numpy as np  # noqa: E402

from convtool.heap import keep_freed_memory  # noqa: E402
from convtool.nn import models, recipe, train  # noqa: E402
from convtool.nn._conv_kernels import using_threads  # noqa: E402
from convtool.nn.optim import make_optimizer  # noqa: E402

TORCH_WORKER = textwrap.dedent('''
    import json, sys, time
    import numpy as np
    import torch
    from torch import nn
    torch.set_num_threads(int(sys.argv[2]))
    torch.manual_seed(0)
    d = np.load(sys.argv[1])
    xt, yt, xv, yv = (torch.from_numpy(d[k]) for k in ("xt", "yt", "xv", "yv"))
    net = nn.Sequential(nn.Conv2d(1, 6, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(6, 16, 5), nn.ReLU(),
                        nn.MaxPool2d(2), nn.Flatten(), nn.Linear(400, 120), nn.ReLU(), nn.Linear(120, 84), nn.ReLU(),
                        nn.Linear(84, 10))
    opt = torch.optim.SGD(net.parameters(), lr=0.05, momentum=0.9)
    loss_fn = nn.CrossEntropyLoss()
    g = torch.Generator().manual_seed(0)
    for line in sys.stdin:  # one epoch per request, so the parent can alternate
        net.train()
        order = torch.randperm(len(xt), generator=g)
        start = time.perf_counter()
        for i in range(0, len(xt), 64):
            idx = order[i:i + 64]
            opt.zero_grad()
            loss = loss_fn(net(xt[idx]), yt[idx])
            loss.backward()
            opt.step()
        seconds = time.perf_counter() - start
        net.eval()
        with torch.no_grad():
            acc = (net(xv).argmax(1) == yv).float().mean().item()
        print(json.dumps({"seconds": seconds, "val_accuracy": acc}), flush=True)
''')


TARGETS = {1: 0.8, 2: 0.9}  # issue 11: convtool's epoch time at most this fraction of PyTorch's


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=5, help="epochs per side and thread count")
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2], help="thread counts to compare")
    parser.add_argument("--torch-python", default="/work/torchenv/bin/python")
    args = parser.parse_args()

    keep_freed_memory()  # as `convtool train` does
    p = recipe.prepare("classify", None)
    print(f"load average before: {_load()}", flush=True)
    summary = []
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "mnist.npz"
        np.savez(data, xt=p.train_x, yt=p.train_y, xv=p.val_x, yv=p.val_y)
        for threads in args.threads:
            summary.append(_compare(p, data, threads, args))
    print(f"load average after: {_load()}")
    for threads, ours, theirs in summary:
        ratio, fastest = np.median(ours) / np.median(theirs), min(ours) / min(theirs)
        print(f"{threads} thread(s): median epoch convtool {np.median(ours):.3f} s, PyTorch {np.median(theirs):.3f} s, "
              f"ratio {ratio:.2f} (target <= {TARGETS.get(threads, 1.0)}); fastest epochs ratio {fastest:.2f}")


def _compare(p, data: Path, threads: int, args) -> tuple[int, list[float], list[float]]:
    """Alternate epochs of PyTorch and convtool on ``threads`` threads; the epoch times of each."""
    net = models.build("lenet5", p.input_shape, 10, seed=0)
    optimizer = make_optimizer("sgd", net.parameters(), 0.05, 0.9)
    rng = np.random.default_rng(0)
    worker = subprocess.Popen([args.torch_python, "-c", TORCH_WORKER, str(data), str(threads)],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    ours, theirs = [], []
    with using_threads(threads):
        _our_epoch(net, optimizer, p.train_x[:640], p.train_y[:640], rng, 64)  # compile (or load) the kernels
        for epoch in range(args.epochs):
            worker.stdin.write("epoch\n")
            worker.stdin.flush()
            report = json.loads(worker.stdout.readline())
            theirs.append(report["seconds"])
            ours.append(_our_epoch(net, optimizer, p.train_x, p.train_y, rng, 64))
            our_acc = float(np.mean(net.predict(p.val_x).argmax(axis=1) == p.val_y))
            print(f"{threads} thread(s), epoch {epoch + 1}: convtool {ours[-1]:.3f} s ({our_acc:.2%}), "
                  f"PyTorch {theirs[-1]:.3f} s ({report['val_accuracy']:.2%})", flush=True)
    worker.stdin.close()
    worker.wait()
    return threads, ours, theirs


def _load() -> str:
    return " ".join(f"{v:.2f}" for v in os.getloadavg())


def _our_epoch(net, optimizer, x, y, rng, batch: int) -> float:
    """One training epoch as train.fit runs it (without validation); returns seconds."""
    order = rng.permutation(len(x))
    start = time.perf_counter()
    for i in range(0, len(x), batch):
        idx = order[i : i + batch]
        _, _, grads = train._step(net, x[idx], y[idx])
        optimizer.step(grads)
    return time.perf_counter() - start


if __name__ == "__main__":
    sys.exit(main())
