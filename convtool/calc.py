"""The reports behind ``convtool calc``: plain dictionaries, the single source of its tables and --json.

The numbers come from :mod:`convtool.shapes` and :mod:`convtool.nets`; ``convtool.cli.calc`` parses the
options with :mod:`convtool.geometry` into a :class:`LayerRequest` (or the arguments of ``solve_report``) and
renders these reports with rich. Messages here name values and concepts; the CLI names its flags.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from convtool import geometry, shapes
from convtool.errors import InputError, ModelError, ShapeError, UsageError

LIST_LIMIT = 1_000  # longest list of input positions in a report
CALC_POOL_KINDS = ("max", "avg")

def _axis_dict(axis: shapes.Axis) -> dict:
    entry: dict[str, Any] = {"n": axis.n, "k": axis.k, "s": axis.s, "d": axis.d, "span": axis.span, "mode": axis.mode,
             "pad_before": axis.pad[0], "pad_after": axis.pad[1], "output": axis.out}
    if axis.transposed:
        entry["output_padding"] = axis.output_padding
    else:
        dropped, unused = axis.dropped_range, axis.unused
        entry["dropped_count"] = dropped[1] - dropped[0] + 1 if dropped else 0
        entry["dropped_range"] = list(dropped) if dropped else None
        # positions are listed up to LIST_LIMIT; the range and the count are always there
        entry["dropped"] = axis.dropped if entry["dropped_count"] <= LIST_LIMIT else None
        entry["unused"] = unused if unused is not None and len(unused) <= LIST_LIMIT else None
    entry["receptive_field"] = axis.receptive_field
    return entry


@dataclass(frozen=True)
class LayerRequest:
    """One layer for :func:`layer_report`, already parsed (see :mod:`convtool.geometry`).

    ``n`` is the input size per spatial axis; ``k``, ``s`` and ``d`` hold one value per axis (None: no
    convolution, stride 1, dilation 1); ``padding`` is a mode name or one ``(before, after)`` pair per axis.
    """

    n: tuple[int, ...]
    k: tuple[int, ...] | None = None
    s: tuple[int, ...] | None = None
    d: tuple[int, ...] | None = None
    padding: str | tuple[tuple[int, int], ...] = "valid"
    cin: int = 1
    cout: int = 1
    groups: int = 1
    bias: bool = True
    pool: geometry.PoolSpec | None = None
    transpose: bool = False
    output_padding: int = 0

    def axis_paddings(self) -> list:
        """The padding of each axis: the mode name repeated, or the (before, after) pairs."""
        axes = len(self.n)
        if isinstance(self.padding, str):
            return [self.padding] * axes
        if len(self.padding) != axes:
            raise ShapeError(f"padding has {len(self.padding)} axes but the input has {axes}")
        return list(self.padding)


def layer_report(request: LayerRequest) -> dict:
    """Everything ``calc`` says about one layer: a (transposed) convolution, then optional pooling."""
    n = request.n
    if request.k is None and request.pool is None:
        raise UsageError("a layer needs a kernel size or a pooling")
    if request.output_padding and not request.transpose:
        raise ShapeError("output padding applies to a transposed convolution only")
    pads = request.axis_paddings()
    report: dict = {"input": list(n), "cin": request.cin}
    field = [(1, 1)] * len(n)  # (receptive field, jump) per axis
    shape = (request.cin, *n)
    if request.k is not None:
        report.update(_conv_report(request, request.k, pads))
        conv = report["conv"]
        shape = tuple(conv["output_shape"])
        # one input step is s outputs of a transposed conv: below one input cell, so the jump stays 1
        field = [(a["receptive_field"], 1 if request.transpose else a["s"]) for a in conv["axes"]]
    if request.pool is not None:
        report["pool"] = _pool_report(shape, request.pool, pads if request.k is None else ["valid"] * len(n))
        shape = tuple(report["pool"]["output_shape"])
        field = [(rf + (a["k"] - 1) * jump, jump * a["s"]) for (rf, jump), a in zip(field, report["pool"]["axes"])]
    report["output_shape"] = list(shape)
    report["units"] = math.prod(shape)
    report["receptive_field"] = [rf for rf, _ in field]
    return report


def _conv_report(request: LayerRequest, k: tuple[int, ...], pads: list) -> dict:
    """The convolution's axes and counts, its PyTorch equivalent, and the dense and sparse matrix views."""
    n, cin, cout, groups, bias = request.n, request.cin, request.cout, request.groups, request.bias
    axes_count = len(n)
    k = geometry.broadcast(k, axes_count, "kernel size")
    s = geometry.broadcast(request.s or (1,), axes_count, "stride")
    d = geometry.broadcast(request.d or (1,), axes_count, "dilation")
    if request.transpose:
        axes = [shapes.transposed_axis(*args, request.output_padding) for args in zip(n, k, s, pads, d)]
    else:
        axes = [shapes.conv_axis(*args) for args in zip(n, k, s, pads, d)]
    weights = shapes.conv_weights(cin, cout, k, groups)
    spatial = tuple(a.out for a in axes)
    units = cout * math.prod(spatial)
    if request.transpose:  # every input position scatters through every tap into cout/groups channels
        macs = math.prod(n) * cin * (cout // groups) * math.prod(k)
    else:
        macs = shapes.conv_macs(units, cin, k, groups)
    biases = cout if bias else 0
    report: dict = {"conv": {
        "transposed": request.transpose, "kernel": list(k), "stride": list(s), "dilation": list(d),
        "groups": groups, "cout": cout, "axes": [_axis_dict(a) for a in axes], "output_shape": [cout, *spatial],
        "units": units, "weights": weights, "biases": biases, "params": weights + biases, "macs": macs,
        "flops": 2 * macs, "connections": macs, "connections_with_bias": macs + (units if bias else 0)}}
    if not request.transpose:
        report["conv"]["pytorch"] = _pytorch(axes)
        in_units = cin * math.prod(n)
        view = shapes.matrix_view(in_units, units, (cin // groups) * math.prod(k))
        report["fully_connected"] = {"weights": in_units * units, "biases": units if bias else 0,
                                     "macs": in_units * units, "flops": 2 * in_units * units}
        report["matrix"] = {"kernel_floats": weights, "dense_floats": view.dense_floats,
                            "sparse_floats": view.sparse_floats, "muls": view.muls, "adds": view.adds,
                            "float_ops": view.float_ops}
    return report


def _pool_report(shape: tuple[int, ...], pool: geometry.PoolSpec, pads: list) -> dict:
    """Pooling of a (channels, *spatial) tensor (the stride defaults to the window size)."""
    pool = pool.broadcast(len(shape) - 1)
    axes = [shapes.pool_axis(*args) for args in zip(shape[1:], pool.size, pool.strides, pads)]
    out_shape = [shape[0], *(a.out for a in axes)]
    units = math.prod(out_shape)
    return {"kind": pool.kind, "size": list(pool.size), "stride": list(pool.strides),
            "axes": [_axis_dict(a) for a in axes], "output_shape": out_shape, "units": units,
            "connections": units * math.prod(pool.size)}


def _pytorch(axes: list[shapes.Axis]) -> dict:
    pads = [a.pad for a in axes]
    symmetric = all(b == a for b, a in pads)
    # torch.nn.Conv*d(padding='same') exists for stride 1 only and puts any odd cell after, like TensorFlow
    same_ok = all(a.mode == "same" and a.s == 1 for a in axes)
    entry: dict[str, Any] = {"pad": list(geometry.pytorch_pad_tuple(pads)), "symmetric": symmetric,
             "padding": [b for b, _ in pads] if symmetric else None, "padding_same": same_ok, "alternatives": []}
    if not symmetric:
        for axis in axes:
            entry["alternatives"].append([] if axis.pad[0] == axis.pad[1] else [
                {"padding": p, "output": out} for p, out in shapes.symmetric_alternatives(axis)])
    return entry


def solve_report(n: tuple[int, ...], out: tuple[int, ...], *, k: tuple[int, ...] | None = None,
                 s: tuple[int, ...] | None = None, d: tuple[int, ...] | None = None,
                 padding_mode: str | None = None, max_search: int | None = None) -> dict:
    """Settings per axis that map the input size ``n`` to the wanted output size ``out`` (one value per axis).

    Unknown kernel sizes, strides and dilations (None) are searched; ``padding_mode`` keeps only the
    settings whose padding that mode gives.
    """
    axes_count = len(n)
    out = geometry.broadcast(out, axes_count, "wanted output size")
    known = {name: geometry.broadcast(values, axes_count, what) if values else (None,) * axes_count
             for name, values, what in (("k", k, "kernel size"), ("s", s, "stride"), ("d", d, "dilation"))}
    axes = []
    for i in range(axes_count):
        limit = {} if max_search is None else {"max_search": max_search}
        found = shapes.solve(n[i], out[i], k=known["k"][i], s=known["s"][i], d=known["d"][i], **limit)
        if padding_mode:
            found = [f for f in found if padding_mode in f.modes]
        axes.append({"n": n[i], "output": out[i], "solutions": [
            {"k": f.k, "s": f.s, "d": f.d, "pad_before": f.pad[0], "pad_after": f.pad[1], "modes": list(f.modes),
             "dropped": f.dropped, "symmetric_padding": f.symmetric} for f in found]})
    return {"input": list(n), "output": list(out), "padding_mode": padding_mode, "axes": axes}


def net_report(text: str, include_bias: bool) -> dict:
    """The per-layer table of a built-in, spec or ONNX network."""
    from convtool import nets

    try:
        network = nets.load_network(text)
    except (ModelError, InputError) as exc:  # the issue asks for usage exit codes for every bad --net
        raise UsageError(str(exc)) from None
    totals = network.totals(include_bias)
    rows = []
    for layer in network.layers:
        rows.append({"name": layer.name, "op": layer.op, "detail": layer.detail, "shape": list(layer.shape),
                     "units": layer.units, "weights": layer.weights,
                     "biases": layer.biases if include_bias else 0,
                     "params": layer.weights + (layer.biases if include_bias else 0),
                     "macs": layer.macs, "flops": layer.flops,
                     "connections": layer.connections + (layer.bias_connections if include_bias else 0),
                     "receptive_field": list(layer.receptive_field) if layer.receptive_field else None})
    return {"network": network.name, "source": network.source, "input_shape": list(network.input_shape),
            "include_bias": include_bias, "layers": rows, "unknown_ops": network.unknown_ops, "notes": network.notes,
            "totals": {"units": totals.units, "weights": totals.weights, "biases": totals.biases,
                       "params": totals.params, "macs": totals.macs, "flops": totals.flops,
                       "connections": totals.connections}}
