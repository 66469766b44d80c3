"""The built-in networks, each with its source: LeNet-5, AlexNet, VGG-16, ResNet-18."""

from __future__ import annotations

from convtool.errors import UsageError
from convtool.nets.builder import Builder
from convtool.nets.table import NetworkTable

BUILTINS = ("lenet5", "alexnet", "vgg16", "resnet18")


def network_from_builtin(name: str) -> NetworkTable:
    """One of ``BUILTINS``, with its source in ``NetworkTable.source``."""
    makers = {"lenet5": _lenet5, "alexnet": _alexnet, "vgg16": _vgg16, "resnet18": _resnet18}
    if name not in makers:
        raise UsageError(f"unknown built-in network {name!r}; choose one of {', '.join(BUILTINS)}")
    return makers[name]()


def _lenet5() -> NetworkTable:
    b = Builder("lenet5", (1, 32, 32), "LeCun et al. 1998, as tabulated in the lecture: C3 fully connected "
                "to S2, pooling without weights, F6 -> 10 outputs as a fully-connected layer")
    b.conv(6, 5, name="C1")
    b.pool("max", 2, name="S2")
    b.conv(16, 5, name="C3")
    b.pool("max", 2, name="S4")
    b.fc(120, name="F5")
    b.fc(84, name="F6")
    b.fc(10, name="output")
    return b.network


def _alexnet() -> NetworkTable:
    b = Builder("alexnet", (3, 227, 227), "Krizhevsky et al. 2012 on one GPU (no channel groups, no "
                "LRN rows), 227x227 input")
    b.conv(96, 11, s=4, name="conv1")
    b.pool("max", 3, s=2, name="pool1")
    b.conv(256, 5, padding=2, name="conv2")
    b.pool("max", 3, s=2, name="pool2")
    b.conv(384, 3, padding=1, name="conv3")
    b.conv(384, 3, padding=1, name="conv4")
    b.conv(256, 3, padding=1, name="conv5")
    b.pool("max", 3, s=2, name="pool5")
    b.fc(4096, name="fc6")
    b.fc(4096, name="fc7")
    b.fc(1000, name="fc8")
    return b.network


def _vgg16() -> NetworkTable:
    b = Builder("vgg16", (3, 224, 224), "Simonyan and Zisserman 2014, configuration D, 224x224 input")
    for stage, (channels, repeats) in enumerate(((64, 2), (128, 2), (256, 3), (512, 3), (512, 3)), start=1):
        for i in range(1, repeats + 1):
            b.conv(channels, 3, padding=1, name=f"conv{stage}_{i}")
        b.pool("max", 2, name=f"pool{stage}")
    b.fc(4096, name="fc6")
    b.fc(4096, name="fc7")
    b.fc(1000, name="fc8")
    return b.network


def _resnet18() -> NetworkTable:
    b = Builder("resnet18", (3, 224, 224), "He et al. 2015, 18 layers with basic blocks, as in torchvision "
                "(batch-norm scale/shift counted; convolutions without biases)")
    b.conv(64, 7, s=2, padding=3, bias=False, name="conv1")
    b.batchnorm(name="bn1")
    b.pool("max", 3, s=2, padding=1, name="maxpool")
    for stage, channels in enumerate((64, 128, 256, 512), start=1):
        for block in range(2):
            prefix = f"layer{stage}.{block}"
            stride = 2 if stage > 1 and block == 0 else 1
            entry = b.state
            b.conv(channels, 3, s=stride, padding=1, bias=False, name=f"{prefix}.conv1")
            b.batchnorm(name=f"{prefix}.bn1")
            b.conv(channels, 3, padding=1, bias=False, name=f"{prefix}.conv2")
            b.batchnorm(name=f"{prefix}.bn2")
            main = b.state
            if stride != 1 or entry.shape[0] != channels:
                b.conv(channels, 1, s=stride, bias=False, name=f"{prefix}.downsample.0", source=entry)
                entry = b.batchnorm(name=f"{prefix}.downsample.1")
                b.state = main
            b.add(entry, name=f"{prefix}.add")
    b.global_pool("avg", name="avgpool")
    b.fc(1000, name="fc")
    return b.network
