"""Photo folders for the benchmarks: 640x480 (or any size) JPEG crops of the bundled sample photos.

Each photo is a random crop of a sample, scaled to cover the size, so no two files are the same.
Not a benchmark itself: imported by classify_vs_script.py, filter_vs_opencv.py and segment_vs_script.py.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

SAMPLES = Path(__file__).resolve().parent.parent / "samples"
NAMES = ("astronaut", "chelsea", "coffee", "camera", "coins")


def write_photos(folder: Path, count: int, *, size: tuple[int, int] = (640, 480), quality: int = 90,
                 seed: int = 0) -> list[Path]:
    """Write ``count`` JPEG photos of ``size`` (width, height) into ``folder``; returns their paths."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    sources = [Image.open(SAMPLES / f"{name}.png").convert("RGB") for name in NAMES]
    width, height = size
    paths = []
    for index in range(count):
        source = sources[index % len(sources)]
        zoom = rng.uniform(1.0, 1.6) * max(width / source.width, height / source.height)
        scaled = source.resize((max(width, round(source.width * zoom)), max(height, round(source.height * zoom))),
                               Image.Resampling.BILINEAR)
        left = int(rng.integers(0, scaled.width - width + 1))
        top = int(rng.integers(0, scaled.height - height + 1))
        path = folder / f"photo{index:05d}.jpg"
        scaled.crop((left, top, left + width, top + height)).save(path, quality=quality)
        paths.append(path)
    return paths


def export_classifier(path: Path, arch: str, seed: int = 0) -> Path:
    """Export a convtool-built classifier with random weights (speed only) and its preprocessing metadata.

    ``tiny32``: LeNet-5 on 3x32x32 (inference far cheaper than a decode); ``stem224``: a strided stem on
    3x224x224 (inference still cheaper than a decode); ``heavy224``: full-resolution 3x3 convolutions on
    3x224x224 (inference costs about twice the decoding); ``vgg224``: a VGG-style stack of 3x3 convolutions
    of 32-256 channels, 1.6 GMACs per image as a ResNet-18 has (inference costs about 20x the decoding).
    """
    from convtool.nn import export
    from convtool.nn import layers as L
    from convtool.nn.models import Network, lenet5

    rng = np.random.default_rng(seed)
    if arch == "tiny32":
        net = lenet5((3, 32, 32), 10, rng)
    elif arch == "vgg224":
        net = Network(arch, "classify", (3, 224, 224), 10)
        net.add("conv0", L.Conv2d(3, 32, 3, stride=2, padding=1, rng=rng))
        net.add("relu0", L.ReLU())
        channels = 32
        for stage, (width, repeats) in enumerate(((64, 1), (128, 2), (256, 2)), start=1):
            for i in range(repeats):
                net.add(f"conv{stage}_{i}", L.Conv2d(channels, width, 3, padding=1, rng=rng))
                net.add(f"relu{stage}_{i}", L.ReLU())
                channels = width
            net.add(f"pool{stage}", L.MaxPool2d(2))
        net.add("pool", L.AvgPool2d(net.output_shapes()[f"pool{stage}"][-1]))
        net.add("flatten", L.Flatten())
        net.add("fc", L.Linear(channels, 10, init="xavier", rng=rng))
    else:
        net = Network(arch, "classify", (3, 224, 224), 10)
        if arch == "stem224":
            net.add("stem", L.Conv2d(3, 8, 7, stride=4, padding=3, rng=rng))
            net.add("relu1", L.ReLU())
            net.add("pool1", L.MaxPool2d(4))
            net.add("conv2", L.Conv2d(8, 16, 3, stride=2, padding=1, rng=rng))
        else:
            net.add("conv0", L.Conv2d(3, 16, 3, padding=1, rng=rng))
            net.add("relu0", L.ReLU())
            net.add("conv1", L.Conv2d(16, 16, 3, padding=1, rng=rng))
            net.add("relu1", L.ReLU())
            net.add("pool1", L.MaxPool2d(4))
            net.add("conv2", L.Conv2d(16, 32, 3, stride=2, padding=1, rng=rng))
        net.add("relu2", L.ReLU())
        net.add("pool2", L.AvgPool2d(net.output_shapes()["relu2"][-1]))
        net.add("flatten", L.Flatten())
        net.add("fc", L.Linear(net.output_shapes()["flatten"][1], 10, init="xavier", rng=rng))
    meta = export.metadata_for(net, [f"class{i}" for i in range(10)], "rgb", 1 / 255, [0.0], [1.0], "random", 0.0)
    export.save(export.to_onnx(net, meta), path)
    return path
