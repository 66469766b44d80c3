"""Per-layer tables of whole networks: output shapes, units, weights, biases, MACs, connections, receptive fields.

The public functions (no click, no rich; rendering is the CLI's job)::

    network_from_onnx(path) -> Network      # any ONNX model, via onnx shape inference; unknown ops listed
    network_from_builtin(name) -> Network   # 'lenet5', 'alexnet', 'vgg16', 'resnet18'
    network_from_spec(path) -> Network      # a text spec, one layer a line (see parse_spec)
    load_network(text) -> Network           # any of the three: a built-in name, *.onnx or a spec file

A ``Network`` holds ``layers`` (a list of ``Layer`` rows), ``unknown_ops``, ``notes`` (caveats to show)
and ``totals(include_bias)``. ``convtool.cli.calc.net_report``/``render_net`` turn one into JSON or a rich table.
Counting conventions (the lecture's LeNet-5 table): ``weights`` exclude biases; ``connections`` are
``units x fan-in`` (weights only; ``bias_connections`` adds one per unit of a layer with biases);
MACs count multiply-accumulates of conv and fully-connected layers (FLOPs = 2 x MACs); pooling,
activations and additions cost 0 MACs. Shapes are per image (no batch axis), channels first.
Errors: ``ModelError`` for a file that is not a usable ONNX model, ``UsageError`` for a bad spec line.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path

from convtool import shapes
from convtool.errors import InputError, ModelError, ShapeError, UsageError

BUILTINS = ("lenet5", "alexnet", "vgg16", "resnet18")


@dataclass(frozen=True)
class Layer:
    """One row of a network table. ``receptive_field`` is per spatial axis in input cells (None if unknown)."""

    name: str
    op: str
    shape: tuple[int | str, ...]
    units: int
    weights: int = 0
    biases: int = 0
    macs: int = 0
    connections: int = 0
    bias_connections: int = 0
    receptive_field: tuple[int, ...] | None = None
    detail: str = ""

    @property
    def params(self) -> int:
        return self.weights + self.biases

    @property
    def flops(self) -> int:
        return 2 * self.macs


@dataclass(frozen=True)
class Totals:
    units: int
    weights: int
    biases: int
    macs: int
    connections: int

    @property
    def params(self) -> int:
        return self.weights + self.biases

    @property
    def flops(self) -> int:
        return 2 * self.macs


@dataclass
class Network:
    """A network as table rows. ``unknown_ops`` names the ONNX nodes whose cost is not counted."""

    name: str
    input_shape: tuple[int | str, ...]
    layers: list[Layer] = field(default_factory=list)
    unknown_ops: list[str] = field(default_factory=list)
    source: str = ""
    notes: list[str] = field(default_factory=list)  # caveats worth showing, e.g. failed shape inference

    def totals(self, include_bias: bool = True) -> Totals:
        """Sums over the layers; with ``include_bias`` False biases and bias connections are left out."""
        biases = sum(layer.biases for layer in self.layers) if include_bias else 0
        bias_connections = sum(layer.bias_connections for layer in self.layers) if include_bias else 0
        return Totals(units=sum(layer.units for layer in self.layers),
                      weights=sum(layer.weights for layer in self.layers), biases=biases,
                      macs=sum(layer.macs for layer in self.layers),
                      connections=sum(layer.connections for layer in self.layers) + bias_connections)


def load_network(text: str) -> Network:
    """A built-in name, an ``.onnx`` file or a spec file."""
    if text.lower() in BUILTINS:
        return network_from_builtin(text.lower())
    path = Path(text)
    if path.suffix.lower() == ".onnx":
        return network_from_onnx(path)
    if not path.exists():
        raise UsageError(f"--net {text!r} is neither a built-in network ({', '.join(BUILTINS)}) nor an existing file")
    return network_from_spec(path)


# ---------------------------------------------------------------------------------------------
# Building a sequential network layer by layer
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class State:
    """A tensor flowing through the builder: shape (C, *spatial) or (units,), receptive field and jump."""

    shape: tuple[int, ...]
    rf: tuple[int, ...]
    jump: tuple[int, ...]

    @property
    def spatial(self) -> tuple[int, ...]:
        return self.shape[1:] if self.rf and len(self.shape) > 1 else ()


class Builder:
    """Appends ``Layer`` rows while tracking the shape and receptive field; ``state`` is the current tensor."""

    def __init__(self, name: str, input_shape: tuple[int, ...], source: str = "") -> None:
        if len(input_shape) < 1:
            raise UsageError("the input needs a shape, e.g. 1x32x32 (channels x height x width)")
        axes = len(input_shape) - 1
        self.network = Network(name, tuple(input_shape), source=source)
        self.state = State(tuple(input_shape), (1,) * axes, (1,) * axes)
        self._counts: dict[str, int] = {}

    def _name(self, name: str | None, op: str) -> str:
        self._counts[op] = self._counts.get(op, 0) + 1
        return name or f"{op}{self._counts[op]}"

    def _spatial_args(self, value: int | tuple[int, ...], what: str) -> tuple[int, ...]:
        axes = len(self.state.spatial)
        if axes == 0:
            raise ShapeError(f"{what} needs an input with spatial axes, but the input is flat {self.state.shape}")
        values = (value,) if isinstance(value, int) else tuple(value)
        return shapes.broadcast(values, axes, what)

    @staticmethod
    def _axes_padding(padding, axes: int) -> list:
        """One padding per axis from a mode name, an int (each side) or a list of (before, after) pairs."""
        if isinstance(padding, str):
            return [padding] * axes
        if isinstance(padding, int):
            return [(padding, padding)] * axes
        if len(padding) != axes:
            raise ShapeError(f"padding has {len(padding)} axes but the input has {axes}")
        return list(padding)

    def conv(self, cout: int, k: int | tuple[int, ...], *, s: int | tuple[int, ...] = 1, padding="valid",
             d: int | tuple[int, ...] = 1, groups: int = 1, bias: bool = True, name: str | None = None,
             source: State | None = None, transposed: bool = False) -> State:
        """A (transposed) convolution with ``cout`` kernels; ``source`` reads another tensor (a branch)."""
        given = source or self.state
        self.state = given
        shapes.check_positive("output channels", cout)
        k, s, d = (self._spatial_args(v, what) for v, what in ((k, "kernel"), (s, "stride"), (d, "dilation")))
        cin, spatial = given.shape[0], given.spatial
        pads = self._axes_padding(padding, len(spatial))
        make = shapes.transposed_axis if transposed else shapes.conv_axis
        axes = [make(n, kk, ss, p, dd) for n, kk, ss, p, dd in zip(spatial, k, s, pads, d)]
        shape = (cout,) + tuple(a.out for a in axes)
        units = math.prod(shape)
        weights = shapes.conv_weights(cin, cout, k, groups)
        if transposed:
            macs = math.prod(spatial) * cin * (cout // groups) * math.prod(k)
            rf = tuple(r + (a.receptive_field - 1) * j for r, j, a in zip(given.rf, given.jump, axes))
            jump = tuple(max(j // ss, 1) for j, ss in zip(given.jump, s))
            connections = macs
        else:
            macs = shapes.conv_macs(units, cin, k, groups)
            rf = tuple(r + (a.span - 1) * j for r, j, a in zip(given.rf, given.jump, axes))
            jump = tuple(j * ss for j, ss in zip(given.jump, s))
            connections = macs
        op = "convT" if transposed else "conv"
        detail = f"{cout}@{'x'.join(map(str, k))}" + _settings(s, axes, d, groups)
        self._add(Layer(self._name(name, op), op, shape, units, weights, cout if bias else 0, macs, connections,
                        units if bias else 0, rf, detail))
        self.state = State(shape, rf, jump)
        return self.state

    def pool(self, kind: str, size: int | tuple[int, ...], *, s: int | tuple[int, ...] | None = None,
             padding="valid", name: str | None = None) -> State:
        """Max or average pooling (stride defaults to the size); no weights, no MACs."""
        size = self._spatial_args(size, "pool size")
        s = size if s is None else self._spatial_args(s, "pool stride")
        spatial = self.state.spatial
        pads = self._axes_padding(padding, len(spatial))
        axes = [shapes.pool_axis(n, kk, ss, p) for n, kk, ss, p in zip(spatial, size, s, pads)]
        shape = (self.state.shape[0],) + tuple(a.out for a in axes)
        units = math.prod(shape)
        rf = tuple(r + (kk - 1) * j for r, j, kk in zip(self.state.rf, self.state.jump, size))
        jump = tuple(j * ss for j, ss in zip(self.state.jump, s))
        detail = f"{'x'.join(map(str, size))}" + _settings(s, axes, (1,) * len(size), 1, default_stride=size)
        self._add(Layer(self._name(name, "pool"), f"{kind}pool", shape, units, 0, 0, 0, units * math.prod(size),
                        0, rf, detail))
        self.state = State(shape, rf, jump)
        return self.state

    def global_pool(self, kind: str = "avg", name: str | None = None) -> State:
        """Global pooling to one value per channel."""
        spatial = self.state.spatial
        rf = self._global_rf()
        shape = (self.state.shape[0],) + (1,) * len(spatial)
        units = math.prod(shape)
        self._add(Layer(self._name(name, "gpool"), f"global {kind}pool", shape, units, 0, 0, 0,
                        units * math.prod(spatial), 0, rf))
        self.state = State(shape, rf, (1,) * len(spatial))
        return self.state

    def fc(self, out: int, *, bias: bool = True, name: str | None = None) -> State:
        """A fully-connected layer reading every input unit."""
        shapes.check_positive("output units", out)
        fan_in = math.prod(self.state.shape)
        rf = self._global_rf()
        weights = fan_in * out
        self._add(Layer(self._name(name, "fc"), "fc", (out,), out, weights, out if bias else 0, weights, weights,
                        out if bias else 0, rf, f"{fan_in}->{out}"))
        self.state = State((out,), rf, ())
        return self.state

    def batchnorm(self, name: str | None = None) -> State:
        """Batch normalisation: a scale (counted as weights) and a shift (biases) per channel."""
        c = self.state.shape[0]
        units = math.prod(self.state.shape)
        self._add(Layer(self._name(name, "bn"), "bn", self.state.shape, units, c, c, 0, units, units,
                        self.state.rf or None, "scale+shift"))
        return self.state

    def elementwise(self, op: str, name: str | None = None) -> State:
        """A shape-preserving op without parameters (relu, tanh, sigmoid, dropout, softmax, lrn, ...)."""
        units = math.prod(self.state.shape)
        self._add(Layer(self._name(name, op), op, self.state.shape, units, 0, 0, 0, 0, 0, self.state.rf or None))
        return self.state

    def add(self, other: State, name: str | None = None) -> State:
        """A residual addition of the current tensor and ``other`` (shapes must match)."""
        if other.shape != self.state.shape:
            raise ShapeError(f"cannot add shapes {_fmt(self.state.shape)} and {_fmt(other.shape)}")
        rf = tuple(max(a, b) for a, b in zip(self.state.rf, other.rf))
        units = math.prod(self.state.shape)
        self._add(Layer(self._name(name, "add"), "add", self.state.shape, units, 0, 0, 0, 2 * units, 0, rf))
        self.state = State(self.state.shape, rf, self.state.jump)
        return self.state

    def flatten(self, name: str | None = None) -> State:
        units = math.prod(self.state.shape)
        rf = self._global_rf()
        self._add(Layer(self._name(name, "flatten"), "flatten", (units,), units, 0, 0, 0, 0, 0, rf))
        self.state = State((units,), rf, ())
        return self.state

    def _global_rf(self) -> tuple[int, ...]:
        """Receptive field of a unit that reads every spatial position of the current tensor."""
        return tuple(r + (n - 1) * j for r, j, n in zip(self.state.rf, self.state.jump, self.state.spatial)) \
            if self.state.spatial else self.state.rf

    def _add(self, layer: Layer) -> None:
        self.network.layers.append(layer)


def _settings(s, axes, d, groups, default_stride: tuple[int, ...] | None = None) -> str:
    """Compact non-default settings: 's2 p1 d2 g32' (one number when every axis agrees)."""
    parts = []
    if s != (default_stride or (1,) * len(s)):
        parts.append(f"s{_compact(s)}")
    pads = [a.pad for a in axes]
    if any(p != (0, 0) for p in pads):
        if all(p[0] == p[1] for p in pads):
            parts.append(f"p{_compact(tuple(p[0] for p in pads))}")
        else:
            parts.append("p" + "x".join(f"{a}:{b}" for a, b in pads))
    if any(v != 1 for v in d):
        parts.append(f"d{_compact(d)}")
    if groups != 1:
        parts.append(f"g{groups}")
    return (" " + " ".join(parts)) if parts else ""


def _compact(values: tuple[int, ...]) -> str:
    return str(values[0]) if len(set(values)) == 1 else "x".join(map(str, values))


def _fmt(shape: tuple) -> str:
    return "x".join(map(str, shape))


# ---------------------------------------------------------------------------------------------
# Built-in networks
# ---------------------------------------------------------------------------------------------


def network_from_builtin(name: str) -> Network:
    """One of ``BUILTINS``, with its source in ``Network.source``."""
    makers = {"lenet5": _lenet5, "alexnet": _alexnet, "vgg16": _vgg16, "resnet18": _resnet18}
    if name not in makers:
        raise UsageError(f"unknown built-in network {name!r}; choose one of {', '.join(BUILTINS)}")
    return makers[name]()


def _lenet5() -> Network:
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


def _alexnet() -> Network:
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


def _vgg16() -> Network:
    b = Builder("vgg16", (3, 224, 224), "Simonyan and Zisserman 2014, configuration D, 224x224 input")
    for stage, (channels, repeats) in enumerate(((64, 2), (128, 2), (256, 3), (512, 3), (512, 3)), start=1):
        for i in range(1, repeats + 1):
            b.conv(channels, 3, padding=1, name=f"conv{stage}_{i}")
        b.pool("max", 2, name=f"pool{stage}")
    b.fc(4096, name="fc6")
    b.fc(4096, name="fc7")
    b.fc(1000, name="fc8")
    return b.network


def _resnet18() -> Network:
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


# ---------------------------------------------------------------------------------------------
# Text spec files
# ---------------------------------------------------------------------------------------------

SPEC_FORMS = {
    "input": "input CxHxW (e.g. input 1x32x32)",
    "conv": "conv OUT KxK [s=S] [p=P|same|valid|full] [d=D] [g=G] [bias=no] (e.g. conv 6 5x5)",
    "convT": "convT OUT KxK [s=S] [p=P|same|valid] [d=D] [g=G] [bias=no] (e.g. convT 16 3 s=2 p=1)",
    "pool": "pool max|avg K[:S] [s=S] [p=P|same|valid] (e.g. pool max 2), or pool avg global",
    "fc": "fc OUT [bias=no] (e.g. fc 120)",
    "bn": "bn",
    "flatten": "flatten",
}
ELEMENTWISE = ("relu", "tanh", "sigmoid", "softmax", "dropout", "lrn", "identity", "leakyrelu", "gelu", "elu")
OPTION_NAMES = {"s": "s", "stride": "s", "p": "p", "padding": "p", "d": "d", "dilation": "d", "g": "g",
                "groups": "g", "bias": "bias", "name": "name"}
SPEC_HELP = ("one layer a line, '#' starts a comment, an optional 'NAME:' prefix names the layer; forms: "
             + "; ".join(SPEC_FORMS.values()) + "; " + "|".join(ELEMENTWISE))


def network_from_spec(path: str | Path) -> Network:
    """Read a text spec file (see ``parse_spec``); InputError if it cannot be read."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = getattr(exc, "strerror", None) or "not a text file"
        raise InputError(f"cannot read the network spec {path}: {reason}") from None
    return parse_spec(text, name=path.stem, where=str(path))


def parse_spec(text: str, name: str = "network", where: str = "spec") -> Network:
    """Build a network from spec lines like ``input 1x32x32``, ``C1: conv 6 5x5``, ``pool max 2``, ``fc 120``.

    Raises UsageError naming the line number and the expected form of the first bad line.
    """
    builder: Builder | None = None
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        layer_name = None
        match = re.match(r"^([A-Za-z_][\w.\-]*)\s*:\s*(.*)$", line)
        if match:
            layer_name, line = match.group(1), match.group(2)
        words = line.split()
        op = words[0].lower() if words else ""
        form_key = "convT" if op in ("convt", "deconv") else op
        try:
            if op == "input":
                if builder is not None:
                    raise UsageError("the input is already given")
                if len(words) != 2:
                    raise UsageError("expected one size")
                builder = Builder(name, shapes.parse_size(words[1], "input size"), where)
                continue
            if builder is None:
                raise UsageError("the first line must give the input size")
            _spec_layer(builder, op, words[1:], layer_name)
        except (UsageError, ShapeError) as exc:
            expected = SPEC_FORMS.get("input" if builder is None else form_key)
            hint = f"; expected '{expected}'" if expected else ""
            if op and op not in SPEC_FORMS and form_key not in SPEC_FORMS and op not in ELEMENTWISE:
                hint = f"; unknown layer {op!r}, use one of input, conv, convT, pool, fc, bn, flatten, {', '.join(ELEMENTWISE)}"
            message = str(exc).replace("--padding same", "p=same")  # the spec spelling of the CLI's hint
            raise UsageError(f"{where} line {number}: {message}{hint} (got {raw.strip()!r})") from None
    if builder is None or not builder.network.layers:
        raise UsageError(f"{where} has no layers; {SPEC_HELP}")
    return builder.network


def _spec_layer(b: Builder, op: str, args: list[str], name: str | None) -> None:
    positional = [a for a in args if "=" not in a]
    options: dict[str, str] = {}
    for arg in args:
        if "=" in arg:
            key, value = arg.split("=", 1)
            if key.lower() not in OPTION_NAMES:
                raise UsageError(f"unknown option {key!r}")
            options[OPTION_NAMES[key.lower()]] = value
    name = options.pop("name", name)
    bias = options.pop("bias", "yes").lower()
    if bias not in ("yes", "no", "true", "false", "1", "0"):
        raise UsageError(f"bias must be yes or no, got {bias!r}")
    with_bias = bias in ("yes", "true", "1")

    def sizes(key: str, default: int = 1, what: str = "") -> tuple[int, ...]:
        return shapes.parse_size(options[key], what) if key in options else (default,)

    def padding():
        if "p" not in options:
            return "valid"
        parsed = shapes.parse_padding(options["p"], len(b.state.spatial) or 1)
        return parsed if isinstance(parsed, str) else list(parsed)

    if op in ("conv", "convt", "deconv"):
        if len(positional) != 2:
            raise UsageError("expected the output channels and the kernel size")
        cout = shapes.parse_size(positional[0], "output channels")
        if len(cout) != 1:
            raise UsageError(f"output channels must be one integer, got {positional[0]!r}")
        b.conv(cout[0], shapes.parse_size(positional[1], "kernel size"), s=sizes("s", what="stride"),
               padding=padding(), d=sizes("d", what="dilation"), groups=sizes("g", what="groups")[0],
               bias=with_bias, name=name, transposed=op != "conv")
    elif op == "pool":
        if len(positional) != 2 or positional[0].lower() not in ("max", "avg"):
            raise UsageError("expected max or avg and a window size")
        kind = positional[0].lower()
        if positional[1].lower() == "global":
            b.global_pool(kind, name=name)
            return
        size_text, _, stride_text = positional[1].partition(":")
        size = shapes.parse_size(size_text, "pool size")
        stride = shapes.parse_size(stride_text, "pool stride") if stride_text else None
        if "s" in options:
            stride = sizes("s", what="pool stride")
        b.pool(kind, size, s=stride, padding=padding(), name=name)
    elif op == "fc":
        if len(positional) != 1:
            raise UsageError("expected the number of output units")
        out = shapes.parse_size(positional[0], "output units")
        if len(out) != 1:
            raise UsageError(f"output units must be one integer, got {positional[0]!r}")
        b.fc(out[0], bias=with_bias, name=name)
    elif op in ("bn", "batchnorm") and not positional:
        b.batchnorm(name=name)
    elif op == "flatten" and not positional:
        b.flatten(name=name)
    elif op in ELEMENTWISE and not positional:
        b.elementwise(op, name=name)
    else:
        raise UsageError("cannot parse this line")
    if options.keys() - {"s", "p", "d", "g"} or (op not in ("conv", "convt", "deconv", "pool") and options):
        raise UsageError(f"options {', '.join(sorted(options))} do not apply to {op}")


# ---------------------------------------------------------------------------------------------
# ONNX models
# ---------------------------------------------------------------------------------------------

ONNX_ELEMENTWISE = {"Relu", "LeakyRelu", "PRelu", "Sigmoid", "Tanh", "Softmax", "LogSoftmax", "Dropout", "Identity",
                    "Clip", "Elu", "Selu", "HardSigmoid", "HardSwish", "Gelu", "Erf", "Sqrt", "Exp", "Log",
                    "Abs", "Neg", "Cast", "LRN", "Softplus", "Mish"}
ONNX_BINARY = {"Add", "Sub", "Mul", "Div", "Max", "Min", "Sum", "Pow"}
ONNX_PLUMBING = {"Reshape", "Flatten", "Transpose", "Squeeze", "Unsqueeze", "Concat", "Shape", "Gather", "Slice",
                 "Constant", "Pad", "Split", "Expand", "ConstantOfShape", "Resize", "Upsample", "ReduceMean",
                 "Tile", "ArgMax"}
ONNX_GLOBAL = {"GlobalAveragePool", "GlobalMaxPool", "Flatten", "Reshape", "Gemm", "MatMul", "ReduceMean"}
ONNX_KNOWN = ONNX_ELEMENTWISE | ONNX_BINARY | ONNX_PLUMBING | ONNX_GLOBAL | {
    "Conv", "ConvTranspose", "MaxPool", "AveragePool", "LpPool", "BatchNormalization", "InstanceNormalization"}
FLOAT_TYPES = {1, 10, 11, 16}  # FLOAT, FLOAT16, DOUBLE, BFLOAT16


def network_from_onnx(path: str | Path) -> Network:
    """Per-layer table of an ONNX model using onnx shape inference; nodes of unknown ops are listed, not fatal.

    Weights are the float initializers a node reads (each counted once; for BatchNormalization
    scale and shift only); MACs come from Conv, ConvTranspose, Gemm and MatMul. Symbolic dimensions
    (a dynamic batch) count as 1. Raises ModelError if the file is missing or not an ONNX model.
    """
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"ONNX model {path} does not exist")
    import onnx  # heavy: imported only here

    try:
        model = onnx.load(str(path), load_external_data=False)  # only shapes are needed, not the weights
    except Exception as exc:  # noqa: BLE001 - protobuf raises DecodeError and others for non-ONNX bytes
        raise ModelError(f"{path} is not an ONNX model ({type(exc).__name__}); give a .onnx file") from None
    if not model.graph.node or not model.ir_version:
        raise ModelError(f"{path} is not an ONNX model (no graph nodes); give a .onnx file")
    note = ""
    try:
        model = onnx.shape_inference.infer_shapes(model)
    except Exception as exc:  # noqa: BLE001 - onnx raises several kinds; the stored shapes still help
        note = f"onnx shape inference failed ({type(exc).__name__}); shapes are those stored in the model"
    network = _onnx_network(model, path)
    if note:
        network.notes.append(note)
    return network


def _onnx_network(model, path: Path) -> Network:
    """Walk the nodes in order, tracking per-image shapes, receptive fields and which weights were counted."""
    graph = model.graph
    inits = {t.name: t for t in graph.initializer}
    shapes_by_name = _tensor_shapes(graph)
    inputs = [i for i in graph.input if i.name not in inits]
    if not inputs:
        raise ModelError(f"{path} has no graph input")
    first = shapes_by_name.get(inputs[0].name, ())
    # N,C,... : tensors computed from the input lose their batch axis; weights keep their shape
    batched = {inputs[0].name} if len(first) >= 3 else set()

    def per_image(name: str) -> tuple:
        shape = shapes_by_name.get(name, ())
        return shape[1:] if name in batched and len(shape) >= 2 else shape

    network = Network(graph.name or path.stem, per_image(inputs[0].name), source=str(path))
    symbolic = [d for d in first[1:] if not isinstance(d, int) or d <= 0]
    if symbolic:
        network.notes.append(f"the input has symbolic sizes ({', '.join(map(str, symbolic))}); each counts as 1 "
                             "in units and MACs, so multiply by them for a real input")
    spatial_rank = max(len(first) - 2, 0)
    # tensor -> (receptive field, jump); jump None once a layer has read the whole input (fc, global pool)
    fields: dict[str, tuple[tuple[int, ...], tuple[int, ...] | None]] = {
        inputs[0].name: ((1,) * spatial_rank, (1,) * spatial_rank)}
    counted: set[str] = set()
    for index, node in enumerate(graph.node):
        if node.op_type == "Constant":
            continue
        data = [i for i in node.input if i and i not in inits]
        on_data_path = any(i in batched for i in data) or not batched
        if on_data_path:
            batched.update(node.output)
        out_shape = per_image(node.output[0]) if node.output else ()
        in_shape = per_image(data[0]) if data else ()
        units = _units(out_shape) if on_data_path else 0  # reshaping a weight makes no units
        attrs = {a.name: onnx_attribute(a) for a in node.attribute}
        macs, connections, detail, window = _onnx_cost(node, attrs, in_shape, out_shape, units, shapes_by_name)
        field = _onnx_field(node.op_type, _merge_fields([fields[i] for i in data if i in fields]), window, in_shape)
        weights, biases, bias_connections = _onnx_parameters(node, inits, counted, units)
        if node.op_type == "BatchNormalization":
            connections = bias_connections = units  # one scale and one shift per unit, like Builder.batchnorm
        if node.op_type not in ONNX_KNOWN and node.op_type not in network.unknown_ops:
            network.unknown_ops.append(node.op_type)
        if field is not None:
            fields.update((out, field) for out in node.output)
        network.layers.append(Layer(node.name or f"{node.op_type}_{index}", node.op_type, out_shape, units, weights,
                                    biases, macs, connections, bias_connections, field[0] if field else None,
                                    detail))
    return network


def _tensor_shapes(graph) -> dict[str, tuple]:
    """Shapes of the graph's inputs, inferred values, outputs and initializers; symbolic sizes by name."""
    found: dict[str, tuple] = {}
    for info in list(graph.input) + list(graph.value_info) + list(graph.output):
        tensor_type = info.type.tensor_type
        if tensor_type.HasField("shape"):
            found[info.name] = tuple(d.dim_value if d.HasField("dim_value") else (d.dim_param or "?")
                                     for d in tensor_type.shape.dim)
    for tensor in graph.initializer:
        found[tensor.name] = tuple(tensor.dims)
    return found


def _onnx_cost(node, attrs, in_shape, out_shape, units, shapes_by_name):
    """MACs, connections, a short description and the sliding window ``(kernel, strides, dilations)`` if any."""
    op = node.op_type
    if op in ("Gemm", "MatMul"):
        macs = units * _contracted(node, attrs, shapes_by_name)
        return macs, macs, "", None
    if op not in ("Conv", "ConvTranspose", "MaxPool", "AveragePool", "LpPool"):
        return 0, 0, "", None
    kernel = tuple(attrs.get("kernel_shape") or _weight_kernel(node, shapes_by_name))
    strides = tuple(attrs.get("strides") or (1,) * len(kernel))
    dilations = tuple(attrs.get("dilations") or (1,) * len(kernel))
    group = int(attrs.get("group", 1))
    cin = in_shape[0] if in_shape and isinstance(in_shape[0], int) else 0
    if op == "Conv":
        macs = units * (cin // group) * math.prod(kernel)
        connections = macs
    elif op == "ConvTranspose":  # every input position scatters through every tap into cout/group channels
        cout = out_shape[0] if out_shape and isinstance(out_shape[0], int) else 0
        macs = connections = _units(in_shape) * (cout // group) * math.prod(kernel)
    else:
        macs, connections = 0, units * math.prod(kernel)
    detail = "x".join(map(str, kernel)) + (f" s{_compact(strides)}" if any(s != 1 for s in strides) else "") \
        + (f" d{_compact(dilations)}" if any(d != 1 for d in dilations) else "") + (f" g{group}" if group != 1 else "")
    return macs, connections, detail, (op, kernel, strides, dilations)


def _merge_fields(found: list):
    """The field of a node with several inputs (Add, Concat): the largest receptive field per axis."""
    if not found:
        return None
    rank = len(found[0][0])
    if any(len(rf) != rank for rf, _ in found):
        return found[0]
    rf = tuple(max(f[0][a] for f in found) for a in range(rank))
    jumps = [jump for _, jump in found]
    return rf, None if any(j is None for j in jumps) else jumps[0]


def _onnx_field(op: str, field, window, in_shape):
    """Receptive field and jump after this node, from those of its first input that has them."""
    if field is None:
        return None
    rf, jump = field
    if window is not None and jump is not None and len(rf) == len(window[1]):
        kind, kernel, strides, dilations = window
        if kind == "ConvTranspose":  # at most ceil(span / s) inputs feed one output
            rf = tuple(r + (-(-shapes.effective_kernel(k, d) // s) - 1) * j
                       for r, j, k, s, d in zip(rf, jump, kernel, strides, dilations))
            jump = tuple(max(j // s, 1) for j, s in zip(jump, strides))
        else:
            rf = tuple(r + (shapes.effective_kernel(k, d) - 1) * j for r, j, k, d in zip(rf, jump, kernel, dilations))
            jump = tuple(j * s for j, s in zip(jump, strides))
    if op in ONNX_GLOBAL and jump is not None:
        spatial = in_shape[1:] if len(in_shape) == len(rf) + 1 else ()
        if all(isinstance(n, int) for n in spatial):
            rf = tuple(r + (n - 1) * j for r, j, n in zip(rf, jump, spatial))
        jump = None  # every later unit reads the whole (collapsed) field
    return rf, jump


def _onnx_parameters(node, inits, counted: set[str], units: int) -> tuple[int, int, int]:
    """Weights, biases and bias connections: the float initializers this node reads, each counted once."""
    op = node.op_type
    weights = biases = bias_connections = 0
    for position, name in enumerate(node.input):
        if name not in inits or inits[name].data_type not in FLOAT_TYPES or name in counted:
            continue
        size = math.prod(inits[name].dims)
        if op == "BatchNormalization":
            if position == 1:
                weights += size
            elif position == 2:
                biases += size
            else:
                continue  # running mean and variance are statistics, not parameters
        elif op in ("Conv", "ConvTranspose", "Gemm") and position == 2 or op in ("Add", "Sub"):
            biases += size
            bias_connections = units
        else:
            weights += size
        counted.add(name)
    return weights, biases, bias_connections


def onnx_attribute(attribute):
    """The Python value of an ONNX node attribute (ints, floats, strings and their lists)."""
    from onnx import helper

    return helper.get_attribute_value(attribute)


def _units(shape: tuple) -> int:
    return math.prod(d if isinstance(d, int) and d > 0 else 1 for d in shape) if shape else 0


def _weight_kernel(node, shapes_by_name) -> tuple[int, ...]:
    weight = shapes_by_name.get(node.input[1], ()) if len(node.input) > 1 else ()
    return tuple(weight[2:]) if len(weight) > 2 else (1,)


def _contracted(node, attrs, shapes_by_name) -> int:
    """Length of the summed axis of a Gemm or MatMul (K)."""
    a = shapes_by_name.get(node.input[0], ())
    if not a:
        return 0
    if node.op_type == "Gemm" and attrs.get("transA", 0):
        k = a[0]
    else:
        k = a[-1]
    return k if isinstance(k, int) else 0
