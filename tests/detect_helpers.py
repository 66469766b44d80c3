"""Detection test models whose outputs are constant tensors, one per layout, with the boxes known by hand.

Not a test module: imported by tests/test_infer_detect*.py and tests/test_cli_detect.py.

Every model takes a 64x64 RGB input; the test image is 128x64 (width x height), so the letterbox
scales by 0.5 and pads 16 rows on top: input (x, y) is original (2x, 2(y - 16)). The candidates are

  A  class 1, score 0.9, input corners (24, 28, 40, 36)  -> original (48, 24, 80, 40)
  A' class 1, score 0.6, A shifted right by 1 pixel       -> removed by NMS (IoU 15/17)
  B  class 0, score 0.8, input corners (8, 20, 24, 44)   -> original (16, 8, 48, 56)
  C  class 2, score 0.1, input corners (40, 40, 56, 56)  -> under the default score threshold
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from infer_helpers import save
from onnx import TensorProto, helper, numpy_helper
from PIL import Image

SIZE = 64
IMAGE = (128, 64)  # width, height
EXPECTED = [(1, 0.9, (48, 24, 80, 40)), (0, 0.8, (16, 8, 48, 56))]  # class, score, original corners
CLASSES = 3
CELLS = 64 + 16 + 4  # YOLOX grid cells of a 64x64 input at strides 8, 16, 32

# input-pixel corners, score, class of each candidate
CANDIDATES = [((24, 28, 40, 36), 0.9, 1), ((25, 28, 41, 36), 0.6, 1), ((8, 20, 24, 44), 0.8, 0), ((40, 40, 56, 56), 0.1, 2)]


def constant_model(path: Path, outputs: list[np.ndarray], metadata: dict | None = None) -> Path:
    """A model on [N, 3, 64, 64] whose outputs are the given tensors (plus 0 x the input's mean)."""
    nodes = [helper.make_node("ReduceMean", ["x"], ["mean"], axes=[1, 2, 3], keepdims=1), helper.make_node("Mul", ["mean", "zero"], ["nothing"])]
    inits = [numpy_helper.from_array(np.zeros(1, np.float32), "zero")]
    infos = []
    for i, value in enumerate(outputs):
        shape_name = f"shape{i}"
        batch_shape = [-1] + [1] * (value.ndim - 1) if value.ndim == 3 else [1] * value.ndim  # [K, 7]: batch 1 only
        inits += [numpy_helper.from_array(value.astype(np.float32), f"const{i}"),
                  numpy_helper.from_array(np.array(batch_shape, np.int64), shape_name)]
        nodes += [helper.make_node("Reshape", ["nothing", shape_name], [f"z{i}"]),
                  helper.make_node("Add", [f"z{i}", f"const{i}"], [f"y{i}"])]
        dims = ["N", *value.shape[1:]] if value.ndim == 3 else list(value.shape)
        infos.append(helper.make_tensor_value_info(f"y{i}", TensorProto.FLOAT, dims))
    graph = helper.make_graph(nodes, "detector", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, SIZE, SIZE])],
                              infos, inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], producer_name="convtool-tests")
    model.ir_version = 8
    return save(model, path, metadata)


def _centre(box) -> tuple[float, float, float, float]:
    x1, y1, x2, y2 = box
    return (x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1


def yolov8_output(extra_columns: int = 0) -> np.ndarray:
    out = np.zeros((1, 4 + CLASSES + extra_columns, 64), np.float32)
    for n, (box, score, cls) in enumerate(CANDIDATES):
        out[0, :4, n] = _centre(box)
        out[0, 4 + cls, n] = score
    return out


def yolov5_output() -> np.ndarray:
    out = np.zeros((1, 3 * CELLS, 5 + CLASSES), np.float32)
    for n, (box, score, cls) in enumerate(CANDIDATES):
        out[0, 10 * n, :4] = _centre(box)
        out[0, 10 * n, 4] = 0.5  # objectness x class score = the candidate's score
        out[0, 10 * n, 5 + cls] = 2 * score
    return out


def yolox_output() -> np.ndarray:
    """Raw head values: each candidate in the cell holding its centre (A, C at stride 8; A', B at stride 16)."""
    out = np.zeros((1, CELLS, 5 + CLASSES), np.float32)
    for (box, score, cls), stride in zip(CANDIDATES, (8, 16, 16, 8), strict=True):
        cx, cy, w, h = _centre(box)
        gx, gy = int(cx // stride), int(cy // stride)
        row = (64 if stride == 16 else 0) + gy * (SIZE // stride) + gx
        out[0, row, :5] = cx / stride - gx, cy / stride - gy, math.log(w / stride), math.log(h / stride), 1.0
        out[0, row, 5 + cls] = score
    return out


def ssd_outputs(background: bool = False) -> list[np.ndarray]:
    boxes = np.zeros((1, 6, 4), np.float32)
    scores = np.zeros((1, 6, CLASSES + background), np.float32)
    for n, (box, score, cls) in enumerate(CANDIDATES):
        boxes[0, n] = np.array(box) / SIZE
        scores[0, n, cls + background] = score
    if background:
        scores[0, 4:, 0] = 0.99  # background boxes: high score in the background column only
    return [boxes, scores]


def nms_output(columns: int) -> np.ndarray:
    kept = [c for c in CANDIDATES if c[1] != 0.6]  # the model already removed A'
    if columns == 6:
        out = np.zeros((1, 10, 6), np.float32)
        for n, (box, score, cls) in enumerate(kept):
            out[0, n] = (*box, score, cls)
        return out
    return np.array([(0, *box, cls, score) for box, score, cls in kept], np.float32)  # [K, 7]


def detection_image(path: Path) -> Path:
    """The 128x64 test picture (its pixels do not matter: the models' outputs are constant)."""
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (IMAGE[1], IMAGE[0], 3), dtype=np.uint8)).save(path)
    return path
