"""Networks as small graphs of named layers, and the architectures ``convtool train`` knows.

A :class:`Network` is a list of nodes in execution order; each node names its layer and the
nodes it reads (``"input"`` is the image batch). Parameter names are dotted, ``conv1.weight``,
the same in saved files and ONNX initializers. Nodes are grouped into ``features`` (everything
but the head) and ``head`` (the output layer, replaced when fine-tuning for a new class count).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from convtool.errors import ShapeError, UsageError
from convtool.nn import layers as L
from convtool.nn.local import LocallyConnected2d


@dataclass
class Node:
    name: str
    layer: L.Layer
    inputs: tuple[str, ...]


@dataclass
class Network:
    """A DAG of layers; the last node is the output (logits)."""

    arch: str
    task: str  # "classify" or "segment"
    input_shape: tuple[int, int, int]  # C, H, W
    num_classes: int
    nodes: list[Node] = field(default_factory=list)

    def add(self, name: str, layer: L.Layer, *inputs: str) -> str:
        """Append a node reading ``inputs`` (default: the previous node) and return its name."""
        if not inputs:
            inputs = (self.nodes[-1].name if self.nodes else "input",)
        if len(inputs) != layer.n_inputs:
            raise ValueError(f"{name}: {type(layer).__name__} takes {layer.n_inputs} inputs")
        self.nodes.append(Node(name, layer, inputs))
        return name

    # -- parameters ---------------------------------------------------------------------------------
    def parameters(self) -> dict[str, np.ndarray]:
        """Dotted name -> parameter array (the live arrays, not copies)."""
        return {f"{n.name}.{k}": v for n in self.nodes for k, v in n.layer.params.items()}

    def buffers(self) -> dict[str, np.ndarray]:
        return {f"{n.name}.{k}": v for n in self.nodes for k, v in n.layer.buffers.items()}

    def state(self) -> dict[str, np.ndarray]:
        """A copy of every parameter and buffer (a checkpoint)."""
        return {k: v.copy() for k, v in {**self.parameters(), **self.buffers()}.items()}

    def load_state(self, state: dict[str, np.ndarray]) -> None:
        """Copy a checkpoint into the live arrays (an optimiser holding them sees the new values)."""
        for node in self.nodes:
            for store in (node.layer.params, node.layer.buffers):
                for key in store:
                    value = state[f"{node.name}.{key}"]
                    if value.shape == store[key].shape:
                        store[key][...] = value
                    else:
                        store[key] = value.astype(store[key].dtype, copy=True)

    def astype(self, dtype: type) -> "Network":
        """Cast parameters and buffers in place (float64 for gradient checks)."""
        for node in self.nodes:
            for store in (node.layer.params, node.layer.buffers):
                for key in store:
                    store[key] = store[key].astype(dtype)
        return self

    @property
    def head(self) -> str:
        """Name of the output layer (the last node with parameters)."""
        return [n.name for n in self.nodes if n.layer.params][-1]

    def group_of(self, param: str) -> str:
        return "head" if param.split(".")[0] == self.head else "features"

    # -- passes -------------------------------------------------------------------------------------
    def output_shapes(self, batch: int = 1) -> dict[str, tuple[int, ...]]:
        shapes: dict[str, tuple[int, ...]] = {"input": (batch, *self.input_shape)}
        for node in self.nodes:
            shapes[node.name] = node.layer.output_shape(*(shapes[i] for i in node.inputs))
        return shapes

    def forward(self, x: np.ndarray, train: bool = False) -> tuple[np.ndarray, list]:
        """Logits for ``x`` (N,C,H,W) and the caches the backward pass needs."""
        values = {"input": x}
        caches = []
        for node in self.nodes:
            y, cache = node.layer.forward(*(values[i] for i in node.inputs), train=train)
            values[node.name] = y
            caches.append(cache)
        return values[self.nodes[-1].name], caches

    def backward(self, dlogits: np.ndarray, caches: list) -> dict[str, np.ndarray]:
        """Gradients of every parameter (dotted names) given the loss gradient of the logits."""
        upstream: dict[str, np.ndarray] = {self.nodes[-1].name: dlogits}
        grads: dict[str, np.ndarray] = {}
        for node, cache in zip(reversed(self.nodes), reversed(caches)):
            dy = upstream.pop(node.name, None)
            if dy is None:  # nothing downstream needs this node (cannot happen in a built net)
                continue
            dx, layer_grads = node.layer.backward(dy, cache)
            grads.update({f"{node.name}.{k}": g for k, g in layer_grads.items()})
            dxs = dx if node.layer.n_inputs > 1 else (dx,)
            for name, d in zip(node.inputs, dxs):
                if name == "input" or d is None:
                    continue
                upstream[name] = upstream[name] + d if name in upstream else d
        return grads

    def predict(self, x: np.ndarray, batch: int = 256) -> np.ndarray:
        """Evaluation-mode logits, in batches."""
        return np.concatenate([self.forward(x[i : i + batch])[0] for i in range(0, len(x), batch)])

    def use_kernels(self, enabled: bool = True) -> "Network":
        """Run convolutions on the Numba kernels (the default) or on the NumPy reference path."""
        for node in self.nodes:
            if hasattr(node.layer, "fast"):
                node.layer.fast = enabled
        return self

    def prepare(self) -> None:
        """Skip the input gradient of layers that read the image directly (nothing needs it)."""
        for node in self.nodes:
            node.layer.needs_input_grad = "input" not in node.inputs


# -- architectures ---------------------------------------------------------------------------------

def lenet5(input_shape: tuple[int, int, int], num_classes: int, rng: np.random.Generator) -> Network:
    """LeNet-5 with ReLU and max-pooling: conv5(6, pad 2) - pool - conv5(16) - pool - 120 - 84 - classes."""
    c, h, w = input_shape
    return _lenet5(Network("lenet5", "classify", input_shape, num_classes), "conv1", L.Conv2d(c, 6, 5, padding=2, rng=rng), rng)


def lenet5_local(input_shape: tuple[int, int, int], num_classes: int, rng: np.random.Generator) -> Network:
    """LeNet-5 whose C1 is locally connected (unshared 5x5 weights at every location), for the lectures' comparison."""
    c, h, w = input_shape
    c1 = LocallyConnected2d(c, 6, 5, (h, w), padding=2, rng=rng)
    return _lenet5(Network("lenet5-local", "classify", input_shape, num_classes), "local1", c1, rng)


def _lenet5(net: Network, c1_name: str, c1: L.Layer, rng: np.random.Generator) -> Network:
    num_classes = net.num_classes
    net.add(c1_name, c1)
    net.add("relu1", L.ReLU())
    net.add("pool1", L.MaxPool2d(2))
    net.add("conv2", L.Conv2d(6, 16, 5, rng=rng))
    net.add("relu2", L.ReLU())
    net.add("pool2", L.MaxPool2d(2))
    net.add("flatten", L.Flatten())
    flat = net.output_shapes()["flatten"][1]
    net.add("fc1", L.Linear(flat, 120, rng=rng))
    net.add("relu3", L.ReLU())
    net.add("fc2", L.Linear(120, 84, rng=rng))
    net.add("relu4", L.ReLU())
    net.add("fc3", L.Linear(84, num_classes, init="xavier", rng=rng))
    return net


def _residual_block(net: Network, name: str, channels: int, rng: np.random.Generator) -> None:
    """conv-bn-relu-conv-bn + identity, then ReLU (He et al. 2016, basic block)."""
    start = net.nodes[-1].name
    net.add(f"{name}.conv1", L.Conv2d(channels, channels, 3, padding=1, bias=False, rng=rng))
    net.add(f"{name}.bn1", L.BatchNorm2d(channels))
    net.add(f"{name}.relu1", L.ReLU())
    net.add(f"{name}.conv2", L.Conv2d(channels, channels, 3, padding=1, bias=False, rng=rng))
    net.add(f"{name}.bn2", L.BatchNorm2d(channels))
    net.add(f"{name}.add", L.Add(), f"{name}.bn2", start)
    net.add(f"{name}.relu2", L.ReLU())


def resnet(input_shape: tuple[int, int, int], num_classes: int, rng: np.random.Generator) -> Network:
    """A small ResNet: stem conv(16) - block - pool - conv(32) - block - pool - global average - linear."""
    c, h, w = input_shape
    net = Network("resnet", "classify", input_shape, num_classes)
    net.add("stem.conv", L.Conv2d(c, 16, 3, padding=1, bias=False, rng=rng))
    net.add("stem.bn", L.BatchNorm2d(16))
    net.add("stem.relu", L.ReLU())
    _residual_block(net, "block1", 16, rng)
    net.add("pool1", L.MaxPool2d(2))
    net.add("down.conv", L.Conv2d(16, 32, 3, padding=1, bias=False, rng=rng))
    net.add("down.bn", L.BatchNorm2d(32))
    net.add("down.relu", L.ReLU())
    _residual_block(net, "block2", 32, rng)
    net.add("pool2", L.MaxPool2d(2))
    _, _, fh, fw = net.output_shapes()["pool2"]
    net.add("gap", L.AvgPool2d((fh, fw)))
    net.add("flatten", L.Flatten())
    net.add("fc", L.Linear(32, num_classes, init="xavier", rng=rng))
    return net


def unet(input_shape: tuple[int, int, int], num_classes: int, rng: np.random.Generator) -> Network:
    """A small U-Net: conv-BN-ReLU blocks at three scales (max-pool down, 2x2 stride-2 transposed
    convolution up, concatenated skips) and a 1x1 convolution to per-pixel logits at the input size.
    Height and width must be multiples of 8."""
    c, h, w = input_shape
    if h % 8 or w % 8:
        raise UsageError(f"unet needs a height and width that are multiples of 8, got {h}x{w}")
    net = Network("unet", "segment", input_shape, num_classes)

    def block(name: str, cin: int, cout: int, *inputs: str, dilation: int = 1) -> str:
        net.add(f"{name}.conv", L.Conv2d(cin, cout, 3, padding=dilation, dilation=dilation, bias=False, rng=rng), *inputs)
        net.add(f"{name}.bn", L.BatchNorm2d(cout))
        return net.add(f"{name}.relu", L.ReLU())

    widths = (16, 32, 48)
    skips, cin = [], c
    for level, width in enumerate(widths, start=1):  # encoder: H, H/2, H/4
        skips.append(block(f"enc{level}", cin, width))
        net.add(f"pool{level}", L.MaxPool2d(2))
        cin = width
    block("mid1", cin, 64)  # H/8
    block("mid2", 64, 64, dilation=2)
    cin = 64
    for level in range(len(widths), 0, -1):  # decoder back up to H
        width = widths[level - 1]
        net.add(f"up{level}", L.ConvTranspose2d(cin, width, 2, stride=2, rng=rng))
        net.add(f"cat{level}", L.Concat(), f"up{level}", skips[level - 1])
        block(f"dec{level}", 2 * width, width)
        cin = width
    net.add("head", L.Conv2d(cin, num_classes, 1, init="xavier", rng=rng))
    return net


ARCHITECTURES = {"lenet5": lenet5, "lenet5-local": lenet5_local, "resnet": resnet, "unet": unet}
TASKS = {"lenet5": "classify", "lenet5-local": "classify", "resnet": "classify", "unet": "segment"}


def build(arch: str, input_shape: tuple[int, int, int], num_classes: int, seed: int = 0) -> Network:
    """Build architecture ``arch`` with weights drawn from ``seed``; UsageError lists the known ones."""
    if arch not in ARCHITECTURES:
        raise UsageError(f"unknown architecture {arch!r}; choose one of: {', '.join(ARCHITECTURES)}")
    try:
        net = ARCHITECTURES[arch](input_shape, num_classes, np.random.default_rng(seed))
        net.output_shapes()  # fail early on an input size the architecture cannot take
    except ShapeError:
        c, h, w = input_shape
        raise UsageError(f"{arch} cannot take {h}x{w} inputs (a kernel would be larger than its input); "
                         f"resize the images with --size, e.g. --size 28x28") from None
    net.prepare()
    return net
