"""``convtool calc`` views beyond the arithmetic: the kinds of layer side by side (``--kind``), the matrix W
(``--matrix``) and the sliding-window animation (``--animate``). The reports come from
:mod:`convtool.layer_views`; this module adds the options and renders them.
"""

from __future__ import annotations

import json
from pathlib import Path

import click

from convtool.errors import UsageError

OPTIONS = [
    click.option("--kind", "kind_text", metavar="KIND",
                 help="Layer kind for the counts, --matrix and --animate: conv, tiled:T (T kernels per axis), local "
                      "(locally connected) or dense. Default: a table of all of them."),
    click.option("--matrix", "show_matrix", is_flag=True,
                 help="Print W (rows output units, columns input pixels), check y = W x and W^T against the core."),
    click.option("--animate", "animate_path", metavar="FILE", type=click.Path(path_type=Path),
                 help="Draw the sliding window frame by frame: .gif, .svg, or .png (one file per frame)."),
    click.option("--input", "input_text", metavar="MATRIX",
                 help="Input values for --matrix/--animate: [[0,0,9],[0,9,9]] or a .txt/.csv/.npy file."),
    click.option("--kernel", "kernel_text", metavar="KERNEL",
                 help="Kernel values for --matrix/--animate: a library name, [[1,0,-1],...] or a file."),
    click.option("-o", "--output", "output_path", metavar="FILE.png", type=click.Path(path_type=Path),
                 help="Write W as a picture (red positive, blue negative, white: no connection)."),
]


def view_options(command):
    for option in reversed(OPTIONS):
        command = option(command)
    return command


def prepare(n: tuple[int, ...] | None, k: tuple[int, ...] | None, input_text: str | None, kernel_text: str | None):
    """Input and kernel arrays, and the sizes --n / --k taken from their shapes when not given."""
    x = kernel = None
    if input_text or kernel_text:  # numpy only when values are given
        from convtool.layer_views import load_kernel_matrix, read_matrix

        x = read_matrix(input_text, "input (--input)") if input_text else None
        kernel = load_kernel_matrix(kernel_text) if kernel_text else None
    if n is None and x is not None:
        n = (x.shape[1],) if x.shape[0] == 1 else tuple(x.shape)
    if k is None and kernel is not None:
        k = (kernel.shape[1],) if n is not None and len(n) == 1 and kernel.shape[0] == 1 else tuple(kernel.shape)
    return n, k, x, kernel


def check_combination(show_matrix: bool, animate_path: Path | None, output_path: Path | None, input_text, kernel_text,
                      explain: bool) -> None:
    if show_matrix and animate_path:
        raise UsageError("give --matrix or --animate, not both (one view at a time)")
    if output_path and not show_matrix:
        raise UsageError("-o writes the picture of --matrix; for an animation name the file with --animate FILE")
    if (input_text or kernel_text) and not (show_matrix or animate_path):
        raise UsageError("--input and --kernel fill in the values of --matrix or --animate; add one of them")
    if explain and (show_matrix or animate_path):
        raise UsageError("--explain prints the working; leave it out with --matrix and --animate")


def run(report: dict, *, kind_text, show_matrix, animate_path, output_path, x, kernel, as_json, overwrite,
        console) -> bool:
    """Render the requested view; True if one was shown (the layer tables are then left out)."""
    if show_matrix:
        from convtool import layer_views

        _refuse_existing(output_path, overwrite)
        result, w = layer_views.matrix_report(report, kind_text, x, kernel, picture=output_path is not None)
        if output_path:
            layer_views.write_matrix_picture(w, output_path, overwrite=overwrite)
            result["picture"] = str(output_path)
        click.echo(json.dumps(result, indent=2)) if as_json else render_matrix(result, console)
        if not (result["forward"]["equal"] and result["transpose"]["equal"]):
            raise SystemExit(1)
        return True
    if animate_path:
        _animate(report, kind_text, animate_path, x, kernel, as_json, overwrite)
        return True
    return False


def kinds(report: dict, kind_text: str | None, bias: bool) -> dict | None:
    """The kind comparison of a convolution (None for a transposed convolution or a pooling alone)."""
    from convtool import layer_kinds

    if report.get("conv") and not report["conv"]["transposed"]:
        return layer_kinds.kinds_report(report, kind_text, bias)
    if kind_text:
        raise UsageError("--kind compares kinds of convolution layer: give a kernel size (--k) and leave out --transpose")
    return None


def _refuse_existing(path: Path | None, overwrite: bool) -> None:
    if path is not None and path.exists() and not overwrite:
        raise UsageError(f"{path}: already exists; pass --overwrite to replace it")


def _animate(report, kind_text, path: Path, x, kernel, as_json, overwrite) -> None:
    from convtool import animate, layer_views

    if kind_text and kind_text.strip().lower() != "conv":
        raise UsageError("--animate draws a convolution, transposed convolution or pooling; leave out --kind")
    written = animate.save(layer_views.animation(report, x, kernel), path, overwrite=overwrite)
    size = sum(p.stat().st_size for p in written)
    frames = len(written) if path.suffix.lower() == ".png" else None
    if as_json:
        click.echo(json.dumps({"animation": [str(p) for p in written], "bytes": size}, indent=2))
        return
    what = f"{len(written)} frames {written[0].name} ... {written[-1].name}" if frames else str(path)
    click.echo(f"wrote {what} ({size / 1024:.0f} KB)")


def render_kinds(kinds: dict, console) -> None:
    from rich.table import Table

    rows = kinds["kinds"]
    title = "Same input, same output units: four kinds of layer" if len(rows) > 1 else f"A {rows[0]['kind']} layer"
    table = Table(title=title, title_justify="left", title_style="bold")
    for i, column in enumerate(["kind", "kernel sets", "weights", "biases", "params", "MACs", "weights/unit",
                                "units/weight"]):
        table.add_column(column, justify="left" if i == 0 else "right")
    for r in rows:
        sets = "-" if r["kind"] == "dense" else f"{r['kernel_sets']:,}"
        table.add_row(r["kind"].replace(":", " "), sets, f"{r['weights']:,}", f"{r['biases']:,}", f"{r['params']:,}",
                      f"{r['macs']:,}", f"{r['weights_per_unit']:,}", f"{r['units_per_weight']:,}")
    console.print(table)
    console.print("conv: one kernel set shared by every output location; tiled T: T kernel sets taking turns "
                  "(location mod T); local: locally connected, a set per location; dense: fully connected. "
                  "connections = MACs; weights/unit = distinct weights one output unit uses.")


def _kind_name(kind: str) -> str:
    names = {"conv": "convolution", "local": "locally connected", "dense": "fully connected (dense)"}
    return names.get(kind, kind.replace("tiled:", "tiled, period "))


def render_matrix(result: dict, console) -> None:
    import numpy as np

    rows, cols = result["rows"], result["columns"]
    kind = _kind_name(result["kind"])
    out_shape, in_shape = result["output_shape"], result["input_shape"]
    symbolic = result["entries"] == "weight numbers"
    console.print(f"[bold]W of the {kind} layer[/bold]: {rows} rows (output units, {_shape(out_shape)}) x {cols} "
                  f"columns (input pixels, {_shape(in_shape)}); {result['nonzero']:,} non-zero "
                  f"({result['density']:.1%}), {result['distinct_weights']:,} distinct weights")
    if result["matrix"] is not None:
        legend = "each entry is the number of the weight it holds" if symbolic else "entries are the kernel's values"
        console.print(f"({legend}; '.' = no connection; one row per output unit, one column per input pixel)")
        cells = [[_entry(v) for v in row] for row in result["matrix"]]
        width = max(len(c) for row in cells for c in row)
        labels = _unit_labels(out_shape)
        for label, row in zip(labels, cells):
            click.echo(f"{label:>{max(map(len, labels))}}  " + " ".join(c.rjust(width) for c in row))
    if result.get("picture"):
        console.print(f"wrote the picture of W to {result['picture']}")
    source = "given" if result["input_given"] else "random integers"
    x = np.asarray(result["input"])
    if x.size <= 64:
        console.print(f"x ({source}, {_shape(in_shape)}): {_grid(x)}")
    y = np.asarray(result["output"])
    if y.size <= 64:
        console.print(f"y = W x ({_shape(out_shape)}): {_grid(y)}")
    for key, statement in (("forward", "y = W x equals"), ("transpose", "W^T g equals")):
        check = result[key]
        verdict = statement if check["equal"] else statement.replace("equals", "DIFFERS from")
        console.print(f"{verdict} {check['oracle']} (largest difference {check['max_difference']:.1e})")


def _entry(value: float) -> str:
    if value == 0:
        return "."
    return f"{value:.0f}" if float(value).is_integer() else f"{value:.2g}"


def _unit_labels(out_shape: list[int]) -> list[str]:
    import numpy as np

    channels, spatial = out_shape[0], out_shape[1:]
    labels = []
    for index in np.ndindex(channels, *spatial):
        position = ",".join(map(str, index[1:]))
        labels.append(f"y{index[0]}[{position}]" if channels > 1 else f"y[{position}]")
    return labels


def _grid(array) -> str:
    values = array.reshape(-1, array.shape[-1]) if array.ndim > 1 else array[None]
    return " / ".join(" ".join(_entry(v) if v != 0 else "0" for v in row) for row in values)


def _shape(values) -> str:
    return "x".join(str(v) for v in values)
