"""Convolution core against OpenCV and scipy.ndimage: the same run as ``convtool bench``.

Usage: python benchmarks/conv_vs_anchors.py [--quick] [--threads N]
Prints Mpix/s per library and convtool auto's ratio to the best anchor per case (medians of
interleaved runs, all libraries on the same thread count, float32 output).
"""

from __future__ import annotations

import argparse

import convtool.bench_harness as benchmark
from convtool.bench_harness.timing import QUICK_ROUNDS, Rounds
from convtool.cli.bench import render


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small images, a smoke run")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=Rounds.repeat)
    args = parser.parse_args()
    rounds = QUICK_ROUNDS if args.quick else Rounds(repeat=args.repeat)
    results = benchmark.run(quick=args.quick, threads=args.threads, rounds=rounds)
    print("\n".join(render(results)))


if __name__ == "__main__":
    main()
