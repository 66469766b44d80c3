"""Convolution against the layers the lectures compare it with, counted for the same geometry.

Four kinds map the same input to the same output units (``cout x`` the convolution's output size):

``conv``     one kernel set shared by every output location
``tiled:T``  ``T`` kernel sets rotated through space: location ``o`` uses set ``o mod T`` per axis
             (Goodfellow et al., *Deep Learning*, ch. 9.5); ``T`` is a period per axis, ``2`` or ``2x3``
``local``    locally connected: a kernel set of its own at every output location (no sharing)
``dense``    fully connected: every output unit reads every input unit

Pure integer arithmetic (no numpy). Connections count ``units x fan-in`` and MACs one
multiply-accumulate per connection, padding taps included (the convention of ``convtool calc``).
"""

from __future__ import annotations

import difflib
import math
from dataclasses import dataclass

from convtool import geometry, shapes
from convtool.errors import ShapeError, UsageError

KINDS = ("conv", "tiled", "local", "dense")
KIND_FORMS = "conv, tiled:T (e.g. tiled:2 or tiled:2x3), local or dense"
ONNX_PART = "convtool.layer.part"  # ONNX doc_string of a node inside a local/tiled layer (several nodes)
ONNX_LAYER = "convtool.layer "  # doc_string of the layer's last node, followed by the layer as JSON


@dataclass(frozen=True)
class Kind:
    """A parsed kind: ``name`` one of KINDS; ``period`` per spatial axis for ``tiled`` (else None)."""

    name: str
    period: tuple[int, ...] | None = None

    @property
    def label(self) -> str:
        return f"tiled:{'x'.join(map(str, self.period))}" if self.period else self.name


def parse_kind(text: str) -> Kind:
    """``conv``, ``local``, ``dense`` or ``tiled:T``; UsageError names the forms and a close match."""
    name, colon, rest = text.strip().lower().partition(":")
    aliases = {"locally-connected": "local", "unshared": "local", "fc": "dense", "fully-connected": "dense",
               "convolution": "conv"}
    name = aliases.get(name, name)
    if name not in KINDS:
        close = difflib.get_close_matches(name, KINDS + tuple(aliases), n=1, cutoff=0.5)
        hint = f"; did you mean {aliases.get(close[0], close[0])}?" if close else ""
        raise UsageError(f"unknown layer kind {text!r}: use {KIND_FORMS}{hint}")
    if name == "tiled":
        if not colon or not rest:
            raise UsageError(f"tiled needs its tiling period, e.g. tiled:2 (2 kernels per axis) or tiled:2x3; got {text!r}")
        return Kind(name, geometry.parse_size(rest, "tiling period"))
    if colon:
        raise UsageError(f"{name} takes no ':' argument (only tiled:T does), got {text!r}")
    return Kind(name)


def check_period(period: tuple[int, ...], outputs: tuple[int, ...]) -> None:
    """ShapeError unless each period divides the output size of its axis (every kernel serves as many
    locations as the others)."""
    names = ("height", "width") if len(outputs) == 2 else tuple(f"axis {i + 1}" for i in range(len(outputs)))
    for name, t, n in zip(names, period, outputs):
        if n % t:
            divisors = ", ".join(str(d) for d in range(1, n + 1) if n % d == 0)
            raise ShapeError(f"a tiling period of {t} does not divide the {n} output positions of the {name} "
                             f"(some kernels would serve fewer locations than others); use one of {divisors}")


@dataclass(frozen=True)
class Counts:
    """One kind's numbers for one layer geometry (biases counted separately)."""

    kind: str
    kernel_sets: int  # distinct kernel sets (1 for conv, T for tiled, locations for local; 0 for dense)
    units: int
    weights: int
    biases: int
    macs: int
    weights_per_unit: int  # the fan-in: distinct weights one output unit uses
    units_per_weight: int  # how many output units share each weight

    @property
    def params(self) -> int:
        return self.weights + self.biases

    @property
    def connections(self) -> int:
        return self.macs


def counts(kind: Kind, cin: int, cout: int, n: tuple[int, ...], k: tuple[int, ...], out: tuple[int, ...],
           *, groups: int = 1, bias: bool = True) -> Counts:
    """Numbers of ``kind`` mapping ``cin x n`` inputs to ``cout x out`` units through ``k`` windows."""
    shapes.conv_weights(cin, cout, k, groups)  # checks that groups divide the channels
    units = cout * math.prod(out)
    locations = math.prod(out)
    if kind.name == "dense":
        fan_in = cin * math.prod(n)
        return Counts(kind.label, 0, units, units * fan_in, units if bias else 0, units * fan_in, fan_in, 1)
    fan_in = (cin // groups) * math.prod(k)
    if kind.name == "conv":
        sets = 1
    elif kind.name == "local":
        sets = locations
    else:
        period = geometry.broadcast(kind.period or (), len(out), "tiling period")
        check_period(period, out)
        sets = math.prod(period)
    label = f"tiled:{'x'.join(map(str, period))}" if kind.name == "tiled" else kind.label
    return Counts(label, sets, units, sets * cout * fan_in, sets * cout if bias else 0, units * fan_in,
                  fan_in, locations // sets)


def compare(cin: int, cout: int, n: tuple[int, ...], k: tuple[int, ...], out: tuple[int, ...], *, groups: int = 1,
            bias: bool = True, kinds: list[Kind] | None = None) -> list[Counts]:
    """Counts of every kind in ``kinds`` (default conv, tiled with period 2 on the axes 2 divides, local and
    dense; tiled is left out when it would equal conv or local)."""
    if kinds is None:
        period = tuple(2 if o % 2 == 0 else 1 for o in out)
        kinds = [Kind("conv"), Kind("tiled", period), Kind("local"), Kind("dense")]
        if not 1 < math.prod(period) < math.prod(out):
            kinds.remove(Kind("tiled", period))
    return [counts(kind, cin, cout, n, k, out, groups=groups, bias=bias) for kind in kinds]


def conv_of(report: dict, what: str) -> dict:
    """The convolution part of a layer report; UsageError for a pooling alone or a transposed convolution."""
    conv = report.get("conv")
    if not conv or conv["transposed"]:
        raise UsageError(f"{what} needs a convolution: give a kernel size (`k`) and leave out `transpose`")
    return conv


def kinds_report(report: dict, kind_text: str | None, bias: bool) -> dict:
    """The ``kinds`` part of ``calc``'s report for a layer report of :func:`convtool.calc.layer_report`:
    parameters, connections, MACs and weight sharing of conv, tiled, local and dense for its geometry."""
    conv = conv_of(report, "the kind comparison")
    n, out = tuple(report["input"]), tuple(conv["output_shape"][1:])
    kinds = [parse_kind(kind_text)] if kind_text else None
    rows = compare(report["cin"], conv["cout"], n, tuple(conv["kernel"]), out, groups=conv["groups"], bias=bias,
                   kinds=kinds)
    return {"kinds": [{"kind": r.kind, "kernel_sets": r.kernel_sets, "units": r.units, "weights": r.weights,
                       "biases": r.biases, "params": r.params, "connections": r.connections, "macs": r.macs,
                       "weights_per_unit": r.weights_per_unit, "units_per_weight": r.units_per_weight} for r in rows]}
