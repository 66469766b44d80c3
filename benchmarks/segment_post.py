"""Segmentation post-processing: class masks at the photo's size from a 21-class 257x257 score map.

Compares convtool's boundary-only resize + argmax (convtool.infer.upsample.argmax_resized) with the plain
way (Pillow's bilinear resize of every class map, then argmax), on score maps shaped like a DeepLab
output: a few smooth class regions. Prints medians of interleaved runs and the ratio, from one run.

    uv run python benchmarks/segment_post.py
"""

from __future__ import annotations

import time

import numpy as np
from PIL import Image

from convtool.infer.upsample import argmax_resized


def plain(scores: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    maps = [np.asarray(Image.fromarray(s, mode="F").resize(size, Image.Resampling.BILINEAR)) for s in scores]
    return np.stack(maps).argmax(axis=0).astype(np.uint8)


def score_maps(classes: int = 21, side: int = 257, regions: int = 4, seed: int = 0) -> np.ndarray:
    """Background everywhere, plus a few round objects of random classes with smooth edges."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:side, 0:side].astype(np.float32)
    scores = rng.normal(0, 0.3, (classes, side, side)).astype(np.float32)
    scores[0] += 2.0
    for _ in range(regions):
        c = int(rng.integers(1, classes))
        cy, cx, r = rng.uniform(40, side - 40, 2).tolist() + [float(rng.uniform(20, 60))]
        scores[c] += 4.0 * np.clip(1.5 - np.hypot(yy - cy, xx - cx) / r, 0, None)
    return scores


def main(rounds: int = 9) -> None:
    scores = score_maps()
    for size in ((640, 480), (500, 375), (1280, 960)):
        assert np.mean(plain(scores, size) != argmax_resized(scores, size)) < 1e-4
        times: dict[str, list[float]] = {"plain": [], "convtool": []}
        for _ in range(rounds):
            for name, fn in (("plain", plain), ("convtool", argmax_resized)):
                t0 = time.perf_counter()
                fn(scores, size)
                times[name].append(time.perf_counter() - t0)
        p, c = np.median(times["plain"]), np.median(times["convtool"])
        print(f"21x257x257 -> {size[1]}x{size[0]}: Pillow per class + argmax {p * 1e3:.1f} ms, "
              f"convtool {c * 1e3:.1f} ms: {p / c:.1f}x faster")


if __name__ == "__main__":
    main()
