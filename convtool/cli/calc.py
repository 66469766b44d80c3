"""``convtool calc``: convolution arithmetic for one layer (with its working) or a whole network.

The reports (one dictionary each, what ``--json`` prints) come from :mod:`convtool.calc`; this module
parses the options and renders the reports with rich.
"""

from __future__ import annotations

import json
import math
import os
import sys

import click

from convtool import geometry
from convtool.calc import LayerRequest, layer_report, net_report, solve_report
from convtool.cli import calc_views
from convtool.cli.options import max_search_opt, overwrite_opt
from convtool.errors import UsageError

DIAGRAM_CELLS = 64  # widest padded strip drawn by --explain
DIAGRAM_WINDOWS = 12
SOLVE_ROWS = 25


def _sizes(concept: str):
    """A callback reading SIZE (``13`` or ``32x32``) as integers; messages name ``concept`` and its flag."""

    def callback(ctx: click.Context, param: click.Parameter, value: str | None) -> tuple[int, ...] | None:
        return None if value is None else geometry.parse_size(value, concept)

    return callback


def _count(concept: str, *, allow_zero: bool = False):
    """A callback reading one integer (channels, groups, output padding)."""

    def callback(ctx: click.Context, param: click.Parameter, value: str) -> int:
        return geometry.parse_int(value, concept, allow_zero=allow_zero)

    return callback


@click.command(short_help="Convolution arithmetic for a layer or a whole network.")
@click.option("--n", callback=_sizes("input size (--n)"), metavar="SIZE", help="Input size: 13 (1D) or 32x32 (2D).")
@click.option("--k", callback=_sizes("kernel size (--k)"), metavar="SIZE", help="Kernel size: 5 or 5x3.")
@click.option("--s", callback=_sizes("stride (--s)"), metavar="SIZE", help="Stride (default 1): 2 or 2x1.")
@click.option("--p", "p_text", metavar="PAD",
              help="Explicit padding: N on each side, NxM per axis, B:A before:after (total B+A), or T,B,L,R.")
@click.option("--padding", "padding_text", metavar="MODE",
              help="valid (default), same (TensorFlow's split), full, or any --p form.")
@click.option("--d", callback=_sizes("dilation (--d)"), metavar="SIZE", help="Dilation (default 1).")
@click.option("--cin", callback=_count("input channels (--cin)"), metavar="N", default="1", show_default=True,
              help="Input channels.")
@click.option("--cout", callback=_count("output channels (--cout)"), metavar="N", default="1", show_default=True,
              help="Output channels (kernels).")
@click.option("--groups", callback=_count("groups (--groups)"), metavar="N", default="1", show_default=True,
              help="Channel groups.")
@click.option("--bias/--no-bias", default=None,
              help="Count biases. One layer: on by default. --net: off by default (the lecture's convention).")
@click.option("--pool", "pool_text", metavar="[KIND:]SIZE[:STRIDE]",
              help="Pooling after the convolution (or alone without --k): 2, 3:2 or max:3:2.")
@click.option("--pool-kind", metavar="max|avg", default=None, help="Pooling kind (default max; or KIND: in --pool).")
@click.option("--transpose", is_flag=True, help="Transposed convolution (PyTorch's ConvTranspose rule).")
@click.option("--output-padding", callback=_count("output padding (--output-padding)", allow_zero=True), metavar="N",
              default="0", help="Extra outputs of a transposed convolution.")
@click.option("--explain", is_flag=True, help="Show the working with your numbers and a diagram of the input strip.")
@click.option("--solve", callback=_sizes("wanted output size (--solve)"), metavar="OUT",
              help="List kernel/stride/padding settings that give OUT outputs.")
@click.option("--net", "net_text", metavar="NAME|FILE", help="lenet5, alexnet, vgg16, resnet18, a .net spec file or a .onnx model.")
@click.option("--json", "as_json", is_flag=True, help="Print the numbers as JSON instead of tables.")
@calc_views.view_options
@overwrite_opt
@max_search_opt
def command(n, k, s, p_text, padding_text, d, cin, cout, groups, bias, pool_text, pool_kind, transpose, output_padding,
            explain, solve, net_text, as_json, kind_text, show_matrix, animate_path, input_text, kernel_text,
            output_path, overwrite, max_search) -> None:
    """Output sizes, padding and its split, parameters, MACs, connections and receptive fields.

    \b
    Examples:
      convtool calc --n 13 --k 6 --s 5 --padding same --explain
      convtool calc --n 32x32 --k 5 --cin 3 --cout 6 --pool 2
      convtool calc --n 320x280 --k 2x1
      convtool calc --n 32 --solve 16 --k 3
      convtool calc --net lenet5
      convtool calc --net model.onnx --bias --json
      convtool calc --n 6x5 --k 3 --kind local
      convtool calc --n 4x4 --k 3 --matrix --kind tiled:2
      convtool calc --input '[[10,10,10,0,0,0]]' --kernel '[[1,0,-1]]' --padding same --animate edge.gif
    """
    if pool_kind not in (None, "max", "avg"):
        raise UsageError(f"--pool-kind must be max or avg, got {pool_kind!r}")
    if p_text is not None and padding_text is not None:
        raise UsageError("give either --p or --padding, not both")
    if explain and (net_text or solve):
        raise UsageError("--explain shows the working of one layer; leave it out with --net and --solve")
    calc_views.check_combination(show_matrix, animate_path, output_path, input_text, kernel_text, explain)
    if net_text:
        layer_options = [n, k, s, p_text, padding_text, d, pool_text, solve, kind_text, animate_path, input_text,
                         kernel_text]
        if any(v is not None for v in layer_options) or transpose:
            raise UsageError("--net describes a whole network: leave out the one-layer options (--n, --k, --s, ...)")
        if show_matrix:
            raise UsageError("--matrix shows one layer's W; leave out --net")
        _emit(net_report(net_text, include_bias=bool(bias)), as_json, render_net)
        return
    n, k, x, kernel = calc_views.prepare(n, k, input_text, kernel_text)
    if n is None:
        raise UsageError("give the input size with --n (e.g. --n 32x32), or a network with --net")
    text = p_text if p_text is not None else padding_text  # --padding 1 or 1:2 means the same as --p
    padding = geometry.parse_padding(text, len(n)) if text is not None else None
    if solve:
        if transpose or (padding is not None and not isinstance(padding, str)):
            raise UsageError("--solve chooses the padding itself and handles ordinary convolutions only; "
                             "leave out --p and --transpose")
        report = solve_report(n, geometry.broadcast(solve, len(n), "--solve"), k=_per_axis(k, n, "--k"),
                              s=_per_axis(s, n, "--s"), d=_per_axis(d, n, "--d"), padding_mode=padding,
                              max_search=max_search)
        _emit(report, as_json, render_solve)
        return
    if k is None and pool_text is None:
        raise UsageError("give the kernel size with --k (e.g. --k 5x5), a pooling with --pool, or --solve OUT")
    if output_padding and not transpose:
        raise UsageError("--output-padding applies to a transposed convolution only; add --transpose")
    pool = geometry.parse_pool(pool_text, pool_kind, default="max", kinds=("max", "avg")) if pool_text else None
    request = LayerRequest(n=n, k=_per_axis(k, n, "--k"), s=_per_axis(s, n, "--s"), d=_per_axis(d, n, "--d"),
                           padding=padding or "valid", cin=cin, cout=cout, groups=groups,
                           bias=True if bias is None else bias, pool=pool, transpose=transpose,
                           output_padding=output_padding)
    report = layer_report(request)
    console = _console()
    if calc_views.run(report, kind_text=kind_text, show_matrix=show_matrix, animate_path=animate_path,
                      output_path=output_path, x=x, kernel=kernel, as_json=as_json, overwrite=overwrite, console=console):
        return
    _render_one_layer(report, as_json, explain, calc_views.kinds(report, kind_text, request.bias))


def _per_axis(values: tuple[int, ...] | None, n: tuple[int, ...], flag: str) -> tuple[int, ...] | None:
    """One value per axis of ``n`` (a single value repeats); UsageError naming ``flag`` if the axes differ."""
    return None if values is None else geometry.broadcast(values, len(n), flag)


def _render_one_layer(report: dict, as_json: bool, explain: bool, kinds: dict | None) -> None:
    if as_json:
        _emit({**report, **(kinds or {})}, True, render_layer)
        return
    console = _console()
    render_layer(report, console)
    if kinds:
        calc_views.render_kinds(kinds, console)
    if explain:
        render_explain(report, console)


# ---------------------------------------------------------------------------------------------
# Rendering
# ---------------------------------------------------------------------------------------------


def _console():
    from rich.console import Console

    wide = sys.stdout.isatty() or "COLUMNS" in os.environ  # rich reads COLUMNS; pipes get 140 columns
    return Console(highlight=False, width=None if wide else 140)


def _emit(report: dict, as_json: bool, render) -> None:
    if as_json:
        click.echo(json.dumps(report, indent=2))
    else:
        render(report, _console())


def _num(value: int) -> str:
    """1,234,567; large values also as 8.0e9."""
    text = f"{value:,}"
    return f"{text} ({value:.1e})".replace("e+0", "e").replace("e+", "e") if value >= 10**7 else text


def _shape(values) -> str:
    return "x".join(str(v) for v in values) if values else "-"


def _table(title: str | None = None, *columns: str, right_from: int = 1):
    from rich.table import Table

    table = Table(title=title, title_justify="left", title_style="bold")
    for i, column in enumerate(columns):
        table.add_column(column, justify="right" if i >= right_from else "left")
    return table


def _inputs(cells: list[int]) -> str:
    if not cells:
        return "none"
    runs: list[str] = []
    start: int | None = cells[0]
    for prev, cur in zip(cells, cells[1:] + [None]):
        if cur != prev + 1:
            runs.append(str(start) if start == prev else f"{start}-{prev}")
            start = cur
    return ", ".join(runs)


def _plural_inputs(span: list[int]) -> str:
    return f"input {span[0]} is" if span[0] == span[1] else f"inputs {span[0]}-{span[1]} are"


def _range(span: list[int] | None) -> str:
    if not span:
        return "none"
    return str(span[0]) if span[0] == span[1] else f"{span[0]}-{span[1]}"


def render_layer(report: dict, console) -> None:
    """One layer: its axes, the PyTorch equivalent, the counts, and a convolution as a matrix."""
    console.print(_axes_table(report))
    conv = report.get("conv")
    if conv and not conv["transposed"]:
        console.print(_pytorch_note(conv, multi=len(report["input"]) > 1))
        unused = [a["unused"] for a in conv["axes"] if a["unused"] and a["unused"] != a["dropped"]]
        if unused:
            console.print("Never read (gaps between windows or dilation holes): "
                          + "; ".join(_inputs(u) for u in unused))
    console.print(_counts_table(report))
    if conv and "matrix" in report:
        console.print(_matrix_table(conv, report["fully_connected"], report["matrix"]))


def _axes_table(report: dict):
    """Per layer and axis: n, k, s, d, the padding split, the output and the dropped inputs."""
    conv, pool = report.get("conv"), report.get("pool")
    table = _table("Axes (1-based input positions)", "layer", "axis", "n", "k", "s", "d", "padding before+after",
                   "output", "dropped inputs", right_from=2)
    for layer_name, layer in (("convT" if conv and conv["transposed"] else "conv", conv), ("pool", pool)):
        if not layer:
            continue
        for i, axis in enumerate(layer["axes"]):
            split = f"{axis['pad_before']}+{axis['pad_after']}"
            if axis["mode"] != "explicit":
                split += f" ({axis['mode']})"
            if axis.get("output_padding"):
                split += f", +{axis['output_padding']} after"
            dropped = "-" if "dropped_range" not in axis else _range(axis["dropped_range"])
            table.add_row(layer_name, ("H", "W")[i] if len(layer["axes"]) == 2 else str(i + 1), str(axis["n"]),
                          str(axis["k"]), str(axis["s"]), str(axis["d"]), split, str(axis["output"]), dropped)
    return table


def _pytorch_note(conv: dict, multi: bool) -> str:
    """How to get this padding in PyTorch: ``padding=`` when symmetric, else ``F.pad`` and what symmetric gives."""
    torch = conv["pytorch"]
    if torch["symmetric"]:
        return (f"PyTorch: padding={tuple(torch['padding']) if multi else torch['padding'][0]} "
                "reproduces it (symmetric).")
    names = ("H", "W") if len(conv["axes"]) == 2 else [str(i + 1) for i in range(len(conv["axes"]))]
    parts: list[str] = []
    shifted = False
    for name, axis, axis_alts in zip(names, conv["axes"], torch["alternatives"]):
        text = ", ".join(f"padding={alt['padding']} gives {alt['output']}" for alt in axis_alts) \
            or f"padding={axis['pad_before']} already symmetric"
        shifted |= any(alt["output"] == axis["output"] for alt in axis_alts)
        if not parts or text not in parts[-1]:
            parts.append(f"{name}: {text}" if len(names) > 1 else text)
    if len(parts) == 1 and len(names) > 1:
        parts = ["each axis: " + parts[0].split(": ", 1)[1]]
    same = " or padding='same' (stride 1 only, same split)" if torch["padding_same"] else ""
    shift = "; the same count still shifts every window by one cell" if shifted else ""
    return (f"PyTorch: asymmetric, so F.pad(x, {tuple(torch['pad'])}) then padding=0{same}. Symmetric "
            f"padding cannot reproduce it ({'; '.join(parts)}{shift}).")


def _counts_table(report: dict):
    """Units, weights, biases, MACs, FLOPs and connections of the convolution, then of the pooling."""
    conv, pool = report.get("conv"), report.get("pool")
    counts = _table("Counts", "quantity", "value")
    if conv:
        counts.add_row("output shape (channels x size)", _shape(conv["output_shape"]))
        counts.add_row("output units", _num(conv["units"]))
        counts.add_row("weights", _num(conv["weights"]))
        counts.add_row("biases", _num(conv["biases"]))
        counts.add_row("parameters", _num(conv["params"]))
        counts.add_row("MACs (multiply-accumulates)", _num(conv["macs"]))
        counts.add_row("FLOPs (= 2 x MACs)", _num(conv["flops"]))
        counts.add_row("connections (units x fan-in)", _num(conv["connections"]))
        if conv["biases"]:
            counts.add_row("connections with biases", _num(conv["connections_with_bias"]))
    if pool:
        counts.add_row(f"after {pool['kind']} pooling: shape", _shape(pool["output_shape"]))
        counts.add_row(f"after {pool['kind']} pooling: units", _num(pool["units"]))
        counts.add_row("pooling connections (no weights, no MACs)", _num(pool["connections"]))
    counts.add_row("receptive field (input cells)", _shape(report["receptive_field"]))
    return counts


def _matrix_table(conv: dict, fc: dict, matrix: dict):
    """The convolution against a dense (fully connected) and a sparse matrix: stored floats and operations."""
    compare = _table("Convolution vs dense matrix (fully connected) vs sparse matrix",
                     "", "convolution", "fully connected", "sparse matrix")
    compare.add_row("stored floats (no biases)", _num(matrix["kernel_floats"]), _num(fc["weights"]),
                    _num(matrix["sparse_floats"]))
    compare.add_row("MACs", _num(conv["macs"]), _num(fc["macs"]), _num(matrix["muls"]))
    fc_adds = fc["macs"] - conv["units"]
    compare.add_row("float muls", _num(matrix["muls"]), _num(fc["macs"]), _num(matrix["muls"]))
    compare.add_row("float adds", _num(matrix["adds"]), _num(fc_adds), _num(matrix["adds"]))
    compare.add_row("float operations", _num(matrix["float_ops"]), _num(fc["macs"] + fc_adds),
                    _num(matrix["float_ops"]))
    return compare


def render_explain(report: dict, console) -> None:
    """The working, step by step with the user's numbers, and a diagram per distinct axis."""
    lines: list[str] = []
    seen = set()
    for layer_key in ("conv", "pool"):
        layer = report.get(layer_key)
        if not layer:
            continue
        for i, axis in enumerate(layer["axes"]):
            key = (layer_key, tuple(sorted((k, str(v)) for k, v in axis.items())))
            if key in seen:
                lines.append(f"{layer_key} axis {i + 1}: the same as above")
                continue
            seen.add(key)
            lines.append(f"[bold]{layer_key} axis {i + 1}[/bold]: n={axis['n']}, k={axis['k']}, s={axis['s']}, "
                         f"d={axis['d']}, padding {axis['mode']}")
            lines.extend("  " + step for step in _axis_steps(axis, layer_key == "conv" and layer.get("transposed")))
            if not (layer_key == "conv" and layer.get("transposed")):
                lines.extend("  " + row for row in _diagram(axis))
    conv = report.get("conv")
    if conv:
        k, cin, g, cout = conv["kernel"], report["cin"], conv["groups"], conv["cout"]
        kernel = " x ".join(map(str, k))
        lines.append("[bold]counts[/bold]")
        lines.append(f"  units = cout x output size = {cout} x {' x '.join(str(v) for v in conv['output_shape'][1:])} "
                     f"= {conv['units']:,}")
        lines.append(f"  weights = cout x cin/groups x kernel = {cout} x {cin}/{g} x {kernel} = {conv['weights']:,}; "
                     f"biases = {conv['biases']:,}")
        if conv["transposed"]:
            lines.append(f"  MACs = input positions x cin x cout/groups x kernel = {math.prod(report['input']):,} x "
                         f"{cin} x {cout}/{g} x {kernel} = {conv['macs']:,}")
        else:
            lines.append(f"  MACs = units x cin/groups x kernel = {conv['units']:,} x {cin // g} x {kernel} "
                         f"= {conv['macs']:,}; FLOPs = 2 x MACs = {conv['flops']:,}")
    rf_steps = []
    for layer_key in ("conv", "pool"):
        layer = report.get(layer_key)
        if layer:
            rf_steps.append(f"{layer_key}: span {', '.join(str(a['receptive_field']) for a in layer['axes'])}")
    lines.append("[bold]receptive field[/bold]")
    lines.append("  r = r_prev + (span - 1) x jump_prev, jump = jump_prev x s, from r = jump = 1 ("
                 + "; ".join(rf_steps) + f") -> {_shape(report['receptive_field'])}")
    for line in lines:
        console.print(line, markup=True, soft_wrap=True)


def _axis_steps(axis: dict, transposed: bool) -> list[str]:
    n, k, s, d, before, after = (axis[key] for key in ("n", "k", "s", "d", "pad_before", "pad_after"))
    span, total = axis["span"], before + after
    steps = [f"span = (k-1)d + 1 = ({k}-1)x{d} + 1 = {span}"]
    if transposed:
        if axis["mode"] == "same":
            steps.append(f"same: output = n x s = {n} x {s} = {n * s}, so the full output is cropped by "
                         f"span - s = {span} - {s} = {span - s} -> {before} before, {after} after")
        steps.append(f"output = (n-1)s - p + span + output_padding = ({n}-1)x{s} - {total} + {span} + "
                     f"{axis['output_padding']} = {axis['output']}")
        return steps
    if axis["mode"] == "same":
        blocks = math.ceil(n / s)
        steps.append(f"p = max(s(ceil(n/s)-1) + span - n, 0) = max({s}(ceil({n}/{s})-1) + {span} - {n}, 0) "
                     f"= max({s * (blocks - 1)} + {span} - {n}, 0) = {total} -> {before} before, {after} after"
                     + (" (the extra goes after)" if before != after else ""))
    elif axis["mode"] == "full":
        steps.append(f"full: span - 1 = {span - 1} on each side")
    elif total:
        steps.append(f"padding {before} before, {after} after")
    padded = n + total
    steps.append(f"output = floor((n + p - span)/s) + 1 = floor(({n} + {total} - {span})/{s}) + 1 "
                 f"= floor({padded - span}/{s}) + 1 = {axis['output']}")
    last_end = (axis["output"] - 1) * s + span - before
    if axis.get("dropped_range"):
        steps.append(f"the last window ends at input (out-1)s + span - p_before = ({axis['output']}-1)x{s} + {span} - "
                     f"{before} = {last_end}, so {_plural_inputs(axis['dropped_range'])} dropped")
    else:
        steps.append("no input is dropped")
    return steps


def _diagram(axis: dict) -> list[str]:
    """The padded strip: padding cells 'p', inputs numbered, each window's span, dropped cells marked."""
    before, after, n = axis["pad_before"], axis["pad_after"], axis["n"]
    cells = before + n + after
    if cells > DIAGRAM_CELLS:
        return [f"(diagram left out: {cells} padded cells, more than {DIAGRAM_CELLS})"]
    width = max(3, len(str(n)) + 1)
    labels = ["p"] * before + [str(i) for i in range(1, n + 1)] + ["p"] * after
    rows = ["input   " + "".join(label.rjust(width) for label in labels)]
    for w in range(min(axis["output"], DIAGRAM_WINDOWS)):
        start = w * axis["s"]
        taps = {start + t * axis["d"] for t in range(axis["k"])}
        strip = "".join((("=" * width) if c in taps else ("-" * width)) if start <= c <= max(taps) else " " * width
                        for c in range(cells))
        first = strip.index("=")
        strip = strip[:first] + "[" + strip[first + 1:]
        last = strip.rindex("=")
        strip = strip[:last] + "]" + strip[last + 1:]
        rows.append(f"win {w + 1:<4}" + strip.rstrip())
    if axis["output"] > DIAGRAM_WINDOWS:
        rows.append(f"... {axis['output'] - DIAGRAM_WINDOWS} more windows")
    if axis.get("dropped") or axis.get("unused"):
        marks = set(axis.get("unused") or []) | set(axis.get("dropped") or [])
        rows.append("unread  " + "".join(("x" if (c - before + 1) in marks and before <= c < before + n else " ")
                                         .rjust(width) for c in range(cells)).rstrip())
    return [row.replace("[", "\\[") for row in rows]


def render_solve(report: dict, console) -> None:
    for i, axis in enumerate(report["axes"]):
        if i and axis == report["axes"][i - 1]:
            console.print(f"axis {i + 1}: the same as axis {i}")
            continue
        solutions = axis["solutions"]
        title = (f"Settings that map {axis['n']} inputs to {axis['output']} outputs"
                 + (f" (axis {i + 1})" if len(report["axes"]) > 1 else ""))
        if not solutions:
            console.print(f"{title}: none with kernels up to 11 and padding below the kernel span; "
                          "try other --k, --s or --d values")
            continue
        table = _table(title, "k", "s", "d", "least padding", "also known as", "symmetric (PyTorch)",
                       "dropped inputs", right_from=0)
        for row in solutions[:SOLVE_ROWS]:
            symmetric = row["symmetric_padding"]
            table.add_row(str(row["k"]), str(row["s"]), str(row["d"]), f"{row['pad_before']}+{row['pad_after']}",
                          ", ".join(row["modes"]) or "-", "-" if symmetric is None else f"padding={symmetric}",
                          str(row["dropped"]))
        console.print(table)
        if len(solutions) > SOLVE_ROWS:
            console.print(f"... {len(solutions) - SOLVE_ROWS} more (--json lists all); fix --k or --s to narrow")


def render_net(report: dict, console) -> None:
    bias = report["include_bias"]
    columns = ["layer", "op", "output", "units", "weights"] + (["biases", "params"] if bias else []) + [
        "MACs", "connections", "RF"]
    table = _table(f"{report['network']}: input {_shape(report['input_shape'])}", *columns, right_from=3)
    for row in report["layers"]:
        label = row["op"] + (f" {row['detail']}" if row["detail"] else "")
        cells = [row["name"], label, _shape(row["shape"]), f"{row['units']:,}", f"{row['weights']:,}"]
        if bias:
            cells += [f"{row['biases']:,}", f"{row['params']:,}"]
        cells += [f"{row['macs']:,}", f"{row['connections']:,}", _shape(row["receptive_field"])]
        table.add_row(*cells)
    totals = report["totals"]
    cells = ["total", "", "", f"{totals['units']:,}", f"{totals['weights']:,}"]
    if bias:
        cells += [f"{totals['biases']:,}", f"{totals['params']:,}"]
    cells += [f"{totals['macs']:,}", f"{totals['connections']:,}", ""]
    table.add_section()
    table.add_row(*cells, style="bold")
    console.print(table)
    note = "weights and connections include biases" if bias else "weights exclude biases (--bias to count them)"
    console.print(f"MACs = multiply-accumulates of conv and fc layers; FLOPs = 2 x MACs = {totals['flops']:,}. "
                  f"{note}; connections = units x fan-in; RF = receptive field in input cells.")
    if report["source"]:
        console.print(f"Source: {report['source']}")
    for note in report["notes"]:
        console.print(f"Note: {note}")
    if report["unknown_ops"]:
        console.print(f"Not counted (unknown ops): {', '.join(report['unknown_ops'])}")
