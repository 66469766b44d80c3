"""Where `convtool detect`'s time goes per image, and the vectorised NMS against its naive loop.

1. A YOLOv8-shaped test model (640x640 RGB input, output [1, 84, 8400]: average pools at strides
   8/16/32, a 1x1 convolution to 4 box + 80 class rows, sigmoid scores) on --count synthetic 1280x720
   JPEG photos: decode (JPEG + letterbox, in the background thread), infer, post (output decoding,
   thresholds, class-wise NMS, mapping back) per image, from the pipeline's own timings; post split
   further into decoding the output and NMS on one output. The model is cheap on purpose: a real
   YOLOv8n spends ~50-100 ms per image in onnxruntime on 2 cores; what convtool adds is decode + post.
2. NMS on the candidates of that output: vectorised ``nms`` against ``nms_naive`` (ratio).

Usage: python benchmarks/detect_split.py [--count 64]
The machine is shared and noisy: compare the ratios printed here, measured in one run.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from onnx import TensorProto, helper, numpy_helper
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from infer_helpers import save  # noqa: E402

from convtool.infer.detect import decoders  # noqa: E402
from convtool.infer.detect.boxes import Thresholds, nms, nms_naive  # noqa: E402
from convtool.infer.detect.detector import Detector  # noqa: E402
from convtool.infer.pipeline import Timings  # noqa: E402
from convtool.infer.preprocess import preprocess_for  # noqa: E402
from convtool.infer.session import open_session  # noqa: E402


def yolov8_shaped(path: Path, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    nodes, heads, inits = [], [], []
    for stride in (8, 16, 32):
        cells = (640 // stride) ** 2
        weight = rng.normal(0, 1.0, (84, 3, 1, 1)).astype(np.float32)
        weight[:4] *= 8  # boxes jitter around their cells
        weight[4:] *= 3
        bias = np.concatenate([[0, 0, 4 * stride, 4 * stride], np.full(80, -8.0)]).astype(np.float32)
        inits += [numpy_helper.from_array(weight, f"w{stride}"), numpy_helper.from_array(bias, f"b{stride}"),
                  numpy_helper.from_array(np.array([1, 84, cells], np.int64), f"s{stride}")]
        nodes += [
            helper.make_node("AveragePool", ["x"], [f"p{stride}"], kernel_shape=[stride, stride], strides=[stride, stride]),
            helper.make_node("Conv", [f"p{stride}", f"w{stride}", f"b{stride}"], [f"c{stride}"], kernel_shape=[1, 1]),
            helper.make_node("Reshape", [f"c{stride}", f"s{stride}"], [f"h{stride}"]),
        ]
        heads.append(f"h{stride}")
    inits.append(numpy_helper.from_array(_cell_centres(), "centres"))
    nodes += [
        helper.make_node("Concat", heads, ["raw"], axis=2),
        helper.make_node("Add", ["raw", "centres"], ["all"]),
        helper.make_node("Split", ["all"], ["box", "cls"], axis=1, split=[4, 80]),
        helper.make_node("Sigmoid", ["cls"], ["scores"]),
        helper.make_node("Concat", ["box", "scores"], ["y"], axis=1),
    ]
    graph = helper.make_graph(nodes, "yolov8-shaped", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 640, 640])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 84, 8400])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 11)], producer_name="convtool-bench")
    model.ir_version = 7
    return save(model, path, {"names": str({i: f"class{i}" for i in range(80)}), "stride": "32", "task": "detect",
                              "imgsz": "[640, 640]"})


def _cell_centres() -> np.ndarray:
    """[1, 84, 8400]: each cell's centre in rows 0 and 1 (x, y), zero elsewhere."""
    centres = np.zeros((1, 84, 8400), np.float32)
    grid, stride = decoders.yolox_grid(640, 640)
    centres[0, :2] = ((grid + 0.5) * stride).T
    return centres


def photos(folder: Path, count: int) -> list[Path]:
    rng = np.random.default_rng(1)
    base = rng.integers(0, 255, (90, 160, 3), dtype=np.uint8)
    paths = []
    for i in range(count):
        picture = Image.fromarray(np.roll(base, i, axis=1)).resize((1280, 720), Image.Resampling.BICUBIC)
        path = folder / f"photo{i:03d}.jpg"
        picture.save(path, quality=90)
        paths.append(path)
    return paths


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--count", type=int, default=64)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        model = yolov8_shaped(folder / "yolov8-shaped.onnx")
        files = photos(folder, args.count)
        session = open_session(model, "cpu")
        detector = Detector(session, preprocess_for(session.input, session.metadata))
        timings = Timings()
        boxes = sum(len(r.boxes) for chunk in detector.run(files, batch=8, timings=timings) for r in chunk.results)
        print(f"load average {os.getloadavg()[0]:.2f}; {args.count} 1280x720 JPEGs, {boxes} boxes kept")
        print(timings.summary(f"{session.device} ({session.provider})"))

        batch = detector.preparer.prepare(Image.open(files[0]))[None]
        raw = session.run(batch)
        start = time.perf_counter()
        for _ in range(20):
            [found] = decoders.decode("yolov8", raw, (640, 640), 1)
        decode_ms = (time.perf_counter() - start) / 20 * 1e3
        keep = found.scores >= Thresholds().conf
        b, s, c = found.boxes[keep], found.scores[keep], found.classes[keep]
        start = time.perf_counter()
        for _ in range(20):
            fast = nms(b, s, c, iou=0.45)
        fast_ms = (time.perf_counter() - start) / 20 * 1e3
        start = time.perf_counter()
        slow = nms_naive(b, s, c, iou=0.45)
        slow_ms = (time.perf_counter() - start) * 1e3
        assert fast.tolist() == slow
        print(f"post of one output: decode [1, 84, 8400] {decode_ms:.2f} ms; NMS of {len(b)} candidates "
              f"{fast_ms:.2f} ms vectorised vs {slow_ms:.1f} ms naive ({slow_ms / fast_ms:.0f}x)")


if __name__ == "__main__":
    main()
