"""The rows and totals of a network table (no click, no rich)."""

from __future__ import annotations

from dataclasses import dataclass, field


class _Derived:
    """Counts derived from weights, biases and MACs (FLOPs = 2 x MACs)."""

    weights: int
    biases: int
    macs: int

    @property
    def params(self) -> int:
        return self.weights + self.biases

    @property
    def flops(self) -> int:
        return 2 * self.macs


@dataclass(frozen=True)
class LayerRow(_Derived):
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


@dataclass(frozen=True)
class Totals(_Derived):
    """Sums over a network's layers."""

    units: int
    weights: int
    biases: int
    macs: int
    connections: int


@dataclass
class NetworkTable:
    """A network as table rows. ``unknown_ops`` names the ONNX nodes whose cost is not counted."""

    name: str
    input_shape: tuple[int | str, ...]
    layers: list[LayerRow] = field(default_factory=list)
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
