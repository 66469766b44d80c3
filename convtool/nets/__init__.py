"""Per-layer tables of whole networks: output shapes, units, weights, biases, MACs, connections, receptive fields.

The public functions (no click, no rich; rendering is the CLI's job)::

    network_from_onnx(path) -> NetworkTable     # any ONNX model, via onnx shape inference; unknown ops listed
    network_from_builtin(name) -> NetworkTable  # 'lenet5', 'alexnet', 'vgg16', 'resnet18'
    network_from_spec(path) -> NetworkTable     # a text spec, one layer a line (see parse_spec)
    load_network(text) -> NetworkTable          # any of the three: a built-in name, *.onnx or a spec file

A ``NetworkTable`` holds ``layers`` (a list of ``LayerRow`` rows), ``unknown_ops``, ``notes`` (caveats to show)
and ``totals(include_bias)``. ``convtool.calc.net_report`` turns one into a report, ``convtool.cli.calc.render_net`` into a rich table.
Counting conventions (the lecture's LeNet-5 table): ``weights`` exclude biases; ``connections`` are
``units x fan-in`` (weights only; ``bias_connections`` adds one per unit of a layer with biases);
MACs count multiply-accumulates of conv and fully-connected layers (FLOPs = 2 x MACs); pooling,
activations and additions cost 0 MACs. Shapes are per image (no batch axis), channels first.
Errors: ``ModelError`` for a file that is not a usable ONNX model, ``UsageError`` for a bad spec line.
"""

from __future__ import annotations

from pathlib import Path

from convtool.errors import UsageError
from convtool.nets.builder import Builder, State
from convtool.nets.builtin import BUILTINS, network_from_builtin
from convtool.nets.onnx_graph import network_from_onnx
from convtool.nets.spec import network_from_spec, parse_spec
from convtool.nets.table import LayerRow, NetworkTable, Totals

__all__ = ["BUILTINS", "Builder", "LayerRow", "NetworkTable", "State", "Totals", "load_network", "network_from_builtin",
           "network_from_onnx", "network_from_spec", "parse_spec"]


def load_network(text: str) -> NetworkTable:
    """A built-in name, an ``.onnx`` file or a spec file."""
    if text.lower() in BUILTINS:
        return network_from_builtin(text.lower())
    path = Path(text)
    if path.suffix.lower() == ".onnx":
        return network_from_onnx(path)
    if not path.exists():
        raise UsageError(f"network {text!r} is neither a built-in network ({', '.join(BUILTINS)}) nor an existing file")
    return network_from_spec(path)
