"""``convtool info``: describe an ONNX model (inputs, outputs, opset, producer, metadata, layers)."""

from __future__ import annotations

import json
from pathlib import Path

import click


@click.command(short_help="Describe an ONNX model: inputs, outputs, metadata, layers.")
@click.argument("model", type=click.Path(path_type=Path))
@click.option("--layers/--no-layers", default=True, show_default=True, help="Show the per-layer table (as calc --net).")
@click.option("--bias", is_flag=True, help="Count biases in the layer table's weights and connections.")
@click.option("--json", "as_json", is_flag=True, help="Print everything as JSON.")
def command(model: Path, layers: bool, bias: bool, as_json: bool) -> None:
    """Describe an ONNX model without running it.

    \b
    Examples:
      convtool info mnist-12.onnx
      convtool info lenet.onnx --no-layers
      convtool info lenet.onnx --json
    """
    from convtool.infer.model_info import describe_model
    from convtool.infer.session import find_model

    model = find_model(model)
    info = describe_model(model)
    report = None
    if layers:
        from convtool.calc import net_report

        report = net_report(str(model), include_bias=bias)
    if as_json:
        click.echo(json.dumps(_as_dict(info, report), indent=2))
        return
    _render(info, report)


def _as_dict(info, report) -> dict:
    tensors = lambda items: [{"name": t.name, "type": t.dtype, "shape": list(t.shape)} for t in items]  # noqa: E731
    return {
        "model": str(info.path), "producer": info.producer, "ir_version": info.ir_version, "opsets": info.opsets,
        "graph": info.graph_name, "nodes": info.nodes, "parameters": info.parameters,
        "inputs": tensors(info.inputs), "outputs": tensors(info.outputs), "metadata": info.metadata,
        "preprocessing": info.preprocess, "ops": info.ops, "layers": report,
    }


def _render(info, report) -> None:
    from rich.table import Table

    from convtool.cli.console import console as make_console

    console = make_console()
    facts = Table(box=None, show_header=False, pad_edge=False)
    facts.add_column(style="bold")
    facts.add_column(overflow="fold")
    opsets = ", ".join(f"{domain} {version}" for domain, version in info.opsets.items())
    facts.add_row("model", str(info.path))
    facts.add_row("producer", f"{info.producer or '(not recorded)'}; IR {info.ir_version}, opset {opsets}")
    facts.add_row("graph", f"{info.graph_name or '(unnamed)'}: {info.nodes} nodes, {info.parameters:,} stored parameters")
    for tensor in info.inputs:
        facts.add_row("input", tensor.describe())
    for tensor in info.outputs:
        facts.add_row("output", tensor.describe())
    facts.add_row("images", info.preprocess)
    if info.doc:
        facts.add_row("doc", info.doc[:200])
    if not info.metadata:
        facts.add_row("metadata", "(none)")
    for key, value in info.metadata.items():
        facts.add_row("metadata", f"{key} = {value if len(value) <= 160 else value[:157] + '...'}")
    facts.add_row("ops", ", ".join(f"{op} x{count}" for op, count in sorted(info.ops.items())))
    console.print(facts)
    if report is not None:
        from convtool.cli.calc import render_net

        console.print()
        render_net(report, console)
