"""Build a network table layer by layer, tracking shapes and receptive fields with convtool.shapes."""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

from convtool import geometry, shapes
from convtool.errors import ShapeError, UsageError
from convtool.nets.table import LayerRow, NetworkTable


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
    """Appends ``LayerRow`` rows while tracking the shape and receptive field; ``state`` is the current tensor."""

    def __init__(self, name: str, input_shape: tuple[int, ...], source: str = "") -> None:
        if len(input_shape) < 1:
            raise UsageError("the input needs a shape, e.g. 1x32x32 (channels x height x width)")
        axes = len(input_shape) - 1
        self.network = NetworkTable(name, tuple(input_shape), source=source)
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
        return geometry.broadcast(values, axes, what)

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
        geometry.check_positive("output channels", cout)
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
        self._add(LayerRow(self._name(name, op), op, shape, units, weights, cout if bias else 0, macs, connections,
                        units if bias else 0, rf, detail))
        self.state = State(shape, rf, jump)
        return self.state

    def local(self, cout: int, k: int | tuple[int, ...], *, period: int | tuple[int, ...] | None = None,
              s: int | tuple[int, ...] = 1, padding="valid", d: int | tuple[int, ...] = 1, bias: bool = True,
              name: str | None = None) -> State:
        """A locally connected layer (a kernel set per output location) or, with ``period``, a tiled
        convolution (``period`` kernel sets per axis): a convolution's geometry, MACs and connections,
        with weights and biases for every kernel set."""
        from convtool.layer_kinds import check_period

        op = "local" if period is None else "tiled"
        label = self._name(name, op)
        state = self.conv(cout, k, s=s, padding=padding, d=d, bias=bias, name=label)
        self._counts["conv"] -= 1  # the row is re-counted below, not a convolution
        row = self.network.layers.pop()
        spatial = state.shape[1:]
        if period is None:
            sets, detail = math.prod(spatial), row.detail
        else:
            per_axis = self._spatial_args(period, "tiling period")
            check_period(per_axis, spatial)
            sets, detail = math.prod(per_axis), f"{row.detail} t{compact(per_axis)}"
        self._add(replace(row, op=op, weights=row.weights * sets, biases=row.biases * sets, detail=detail))
        return state

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
        self._add(LayerRow(self._name(name, "pool"), f"{kind}pool", shape, units, 0, 0, 0, units * math.prod(size),
                        0, rf, detail))
        self.state = State(shape, rf, jump)
        return self.state

    def global_pool(self, kind: str = "avg", name: str | None = None) -> State:
        """Global pooling to one value per channel."""
        spatial = self.state.spatial
        rf = self._global_rf()
        shape = (self.state.shape[0],) + (1,) * len(spatial)
        units = math.prod(shape)
        self._add(LayerRow(self._name(name, "gpool"), f"global {kind}pool", shape, units, 0, 0, 0,
                        units * math.prod(spatial), 0, rf))
        self.state = State(shape, rf, (1,) * len(spatial))
        return self.state

    def fc(self, out: int, *, bias: bool = True, name: str | None = None) -> State:
        """A fully-connected layer reading every input unit."""
        geometry.check_positive("output units", out)
        fan_in = math.prod(self.state.shape)
        rf = self._global_rf()
        weights = fan_in * out
        self._add(LayerRow(self._name(name, "fc"), "fc", (out,), out, weights, out if bias else 0, weights, weights,
                        out if bias else 0, rf, f"{fan_in}->{out}"))
        self.state = State((out,), rf, ())
        return self.state

    def batchnorm(self, name: str | None = None) -> State:
        """Batch normalisation: a scale (counted as weights) and a shift (biases) per channel."""
        c = self.state.shape[0]
        units = math.prod(self.state.shape)
        self._add(LayerRow(self._name(name, "bn"), "bn", self.state.shape, units, c, c, 0, units, units,
                        self.state.rf or None, "scale+shift"))
        return self.state

    def elementwise(self, op: str, name: str | None = None) -> State:
        """A shape-preserving op without parameters (relu, tanh, sigmoid, dropout, softmax, lrn, ...)."""
        units = math.prod(self.state.shape)
        self._add(LayerRow(self._name(name, op), op, self.state.shape, units, 0, 0, 0, 0, 0, self.state.rf or None))
        return self.state

    def add(self, other: State, name: str | None = None) -> State:
        """A residual addition of the current tensor and ``other`` (shapes must match)."""
        if other.shape != self.state.shape:
            raise ShapeError(f"cannot add shapes {_fmt(self.state.shape)} and {_fmt(other.shape)}")
        rf = tuple(max(a, b) for a, b in zip(self.state.rf, other.rf))
        units = math.prod(self.state.shape)
        self._add(LayerRow(self._name(name, "add"), "add", self.state.shape, units, 0, 0, 0, 2 * units, 0, rf))
        self.state = State(self.state.shape, rf, self.state.jump)
        return self.state

    def flatten(self, name: str | None = None) -> State:
        units = math.prod(self.state.shape)
        rf = self._global_rf()
        self._add(LayerRow(self._name(name, "flatten"), "flatten", (units,), units, 0, 0, 0, 0, 0, rf))
        self.state = State((units,), rf, ())
        return self.state

    def _global_rf(self) -> tuple[int, ...]:
        """Receptive field of a unit that reads every spatial position of the current tensor."""
        return tuple(r + (n - 1) * j for r, j, n in zip(self.state.rf, self.state.jump, self.state.spatial)) \
            if self.state.spatial else self.state.rf

    def _add(self, layer: LayerRow) -> None:
        self.network.layers.append(layer)


def _settings(s, axes, d, groups, default_stride: tuple[int, ...] | None = None) -> str:
    """Compact non-default settings: 's2 p1 d2 g32' (one number when every axis agrees)."""
    parts = []
    if s != (default_stride or (1,) * len(s)):
        parts.append(f"s{compact(s)}")
    pads = [a.pad for a in axes]
    if any(p != (0, 0) for p in pads):
        if all(p[0] == p[1] for p in pads):
            parts.append(f"p{compact(tuple(p[0] for p in pads))}")
        else:
            parts.append("p" + "x".join(f"{a}:{b}" for a, b in pads))
    if any(v != 1 for v in d):
        parts.append(f"d{compact(d)}")
    if groups != 1:
        parts.append(f"g{groups}")
    return (" " + " ".join(parts)) if parts else ""


def compact(values: tuple[int, ...]) -> str:
    """"2" when every axis agrees, else "2x1"."""
    return str(values[0]) if len(set(values)) == 1 else "x".join(map(str, values))


def _fmt(shape: tuple) -> str:
    return "x".join(map(str, shape))
