"""Small ONNX models built with onnx.helper, and MNIST PNG folders, for the inference tests and benchmark.

Not a test module: imported by tests/test_infer_*.py, tests/test_cli_{classify,segment,info,features}.py
and benchmarks/classify_vs_script.py.
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
MNIST_IMAGES = ROOT / "samples" / "mnist" / "t10k-images-idx3-ubyte.gz"
MNIST_LABELS = ROOT / "samples" / "mnist" / "t10k-labels-idx1-ubyte.gz"
MNIST_12 = ROOT / "tests" / "data" / "mnist-12.onnx"


def mnist(count: int) -> tuple[np.ndarray, np.ndarray]:
    """The first ``count`` real MNIST test images (N, 28, 28 uint8) and labels."""
    with gzip.open(MNIST_IMAGES) as f:
        images = np.frombuffer(f.read(), np.uint8, offset=16).reshape(-1, 28, 28)
    with gzip.open(MNIST_LABELS) as f:
        labels = np.frombuffer(f.read(), np.uint8, offset=8)
    return images[:count], labels[:count]


def write_mnist_pngs(folder: Path, count: int, *, by_class: bool = False) -> tuple[list[Path], np.ndarray]:
    """Write MNIST test images as PNG files (optionally into one subfolder per digit)."""
    images, labels = mnist(count)
    paths = []
    for i, (image, label) in enumerate(zip(images, labels)):
        target = folder / str(label) if by_class else folder
        target.mkdir(parents=True, exist_ok=True)
        path = target / f"{i:05d}.png"
        Image.fromarray(image).save(path, compress_level=1)
        paths.append(path)
    return paths, labels


def _init(name: str, array: np.ndarray) -> TensorProto:
    return numpy_helper.from_array(np.asarray(array, dtype=np.float32), name)


def save(model: onnx.ModelProto, path: Path, metadata: dict[str, object] | None = None) -> Path:
    for key, value in (metadata or {}).items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value if isinstance(value, str) else json.dumps(value)
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def lenet(path: Path, *, batch: int | str = "N", nhwc: bool = False, softmax: bool = False, seed: int = 0,
          metadata: dict | None = None) -> Path:
    """LeNet-5 shaped classifier for 1x28x28 inputs with random weights (speed and layout tests)."""
    rng = np.random.default_rng(seed)
    inits = [
        _init("conv1.weight", rng.normal(0, 0.3, (6, 1, 5, 5))), _init("conv1.bias", np.zeros(6)),
        _init("conv2.weight", rng.normal(0, 0.1, (16, 6, 5, 5))), _init("conv2.bias", np.zeros(16)),
        _init("fc1.weight", rng.normal(0, 0.05, (120, 400))), _init("fc1.bias", np.zeros(120)),
        _init("fc2.weight", rng.normal(0, 0.1, (84, 120))), _init("fc2.bias", np.zeros(84)),
        _init("fc3.weight", rng.normal(0, 0.1, (10, 84))), _init("fc3.bias", np.zeros(10)),
    ]
    nodes = []
    first = "x"
    if nhwc:
        nodes.append(helper.make_node("Transpose", ["x"], ["x_nchw"], perm=[0, 3, 1, 2]))
        first = "x_nchw"
    nodes += [
        helper.make_node("Conv", [first, "conv1.weight", "conv1.bias"], ["c1"], kernel_shape=[5, 5], pads=[2, 2, 2, 2]),
        helper.make_node("Relu", ["c1"], ["r1"]),
        helper.make_node("MaxPool", ["r1"], ["p1"], kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("Conv", ["p1", "conv2.weight", "conv2.bias"], ["c2"], kernel_shape=[5, 5]),
        helper.make_node("Relu", ["c2"], ["r2"]),
        helper.make_node("MaxPool", ["r2"], ["p2"], kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("Flatten", ["p2"], ["f"]),
        helper.make_node("Gemm", ["f", "fc1.weight", "fc1.bias"], ["g1"], transB=1),
        helper.make_node("Relu", ["g1"], ["h1"]),
        helper.make_node("Gemm", ["h1", "fc2.weight", "fc2.bias"], ["g2"], transB=1),
        helper.make_node("Relu", ["g2"], ["h2"]),
        helper.make_node("Gemm", ["h2", "fc3.weight", "fc3.bias"], ["logits" if softmax else "y"], transB=1),
    ]
    if softmax:
        nodes.append(helper.make_node("Softmax", ["logits"], ["y"], axis=1))
    shape = [batch, 28, 28, 1] if nhwc else [batch, 1, 28, 28]
    graph = helper.make_graph(
        nodes, "lenet",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, shape)],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [batch, 10])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], producer_name="convtool-tests")
    model.ir_version = 8
    return save(model, path, metadata)


def linear_rgb(path: Path, weights: np.ndarray, *, size: tuple[int, int], nhwc: bool = False,
               batch: int | str = "N", metadata: dict | None = None) -> Path:
    """A linear classifier y = flatten(x) @ weights on RGB inputs of ``size``, NCHW or NHWC."""
    height, width = size
    shape = [batch, height, width, 3] if nhwc else [batch, 3, height, width]
    graph = helper.make_graph(
        [helper.make_node("Flatten", ["x"], ["f"]), helper.make_node("MatMul", ["f", "w"], ["y"])],
        "linear",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, shape)],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [batch, weights.shape[1]])],
        [_init("w", weights)],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], producer_name="convtool-tests")
    model.ir_version = 8
    return save(model, path, metadata)


def colour_segmenter(path: Path, *, stride: int = 1, nhwc_output: bool = False, softmax: bool = False,
                     size: tuple[int | str, int | str] = ("H", "W"), metadata: dict | None = None) -> Path:
    """Segmenter on RGB NCHW input: class 0 red, 1 green, 2 blue (the strongest channel wins).

    Scores are the channels themselves (a 1x1 identity convolution); ``stride`` average-pools the
    output to 1/stride of the input size; ``nhwc_output`` transposes the scores to N,H,W,C.
    """
    nodes = [helper.make_node("Conv", ["x", "w"], ["s"], kernel_shape=[1, 1])]
    last = "s"
    if stride > 1:
        nodes.append(helper.make_node("AveragePool", [last], ["sp"], kernel_shape=[stride, stride], strides=[stride, stride]))
        last = "sp"
    if softmax:
        nodes.append(helper.make_node("Softmax", [last], ["sm"], axis=1))
        last = "sm"
    if nhwc_output:
        nodes.append(helper.make_node("Transpose", [last], ["y"], perm=[0, 2, 3, 1]))
    else:
        nodes.append(helper.make_node("Identity", [last], ["y"]))
    height, width = size
    graph = helper.make_graph(
        nodes, "segmenter",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, height, width])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", "h", "w", 3] if nhwc_output else ["N", 3, "h", "w"])],
        [_init("w", np.eye(3).reshape(3, 3, 1, 1))],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], producer_name="convtool-tests")
    model.ir_version = 8
    return save(model, path, metadata)


def blocks(height: int = 60, width: int = 80) -> tuple[np.ndarray, np.ndarray]:
    """An RGB picture of red, green and blue blocks and its true class per pixel (0 red, 1 green, 2 blue)."""
    truth = np.zeros((height, width), np.uint8)
    truth[:, width // 2 :] = 1
    truth[height // 6 : height // 2, 5 * width // 8 : 7 * width // 8] = 2
    colours = np.array([(200, 20, 10), (10, 180, 30), (20, 30, 220)], np.uint8)
    return colours[truth], truth
