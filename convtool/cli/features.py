"""``convtool features``: the feature maps of one layer of an ONNX model for one image, as a grid."""

from __future__ import annotations

import re
from pathlib import Path

import click
import numpy as np

from convtool.cli.classify import open_model
from convtool.cli.options import DEVICE_CHOICE, preprocess_options, recipe_overrides


@click.command(short_help="Show the feature maps of a layer of an ONNX model.")
@click.argument("model", type=click.Path(path_type=Path))
@click.argument("image", type=click.Path(path_type=Path), required=False)
@click.option("--layer", "-l", help="Tensor or node name (default: the first convolution's output).")
@click.option("--list", "list_layers", is_flag=True, help="List the layers with 4-axis outputs and stop.")
@click.option("--output", "-o", type=click.Path(path_type=Path), help="Grid PNG (default: <image>_<layer>.png here).")
@click.option("--columns", type=click.IntRange(min=1), help="Maps per row of the grid (default: a square).")
@click.option("--device", default="auto", show_default=True, type=DEVICE_CHOICE, help="auto uses CUDA only if it really starts.")
@click.option("--overwrite", is_flag=True, help="Replace an existing output file.")
@preprocess_options
def command(model, image, layer, list_layers, output, columns, device, overwrite, **prep) -> None:
    """Run MODEL on IMAGE and save the activations of one layer as an image grid.

    \b
    Examples:
      convtool features mnist-12.onnx digit.png
      convtool features mnist-12.onnx --list
      convtool features lenet.onnx digit.png --layer r2 -o relu2.png
    """
    from convtool import plots
    from convtool.errors import UsageError
    from convtool.infer import features as feat
    from convtool.infer.preprocess import Preparer
    from convtool.infer.session import find_model
    from convtool.io.onnx_file import load_onnx
    from convtool.io.publish import check_output_location, publish_bytes
    from convtool.io.read import open_image

    model = find_model(model)
    onnx_model = load_onnx(model)
    every = feat.layer_tensors(onnx_model)
    tensors = [t for t in every if t.shape is None or len(t.shape) == 4]
    if list_layers:
        _print_layers(tensors)
        return
    if image is None:
        raise UsageError("give an IMAGE to run the model on (or --list to see the layers)")
    chosen = feat.find_feature_map(every, layer) if layer else feat.default_layer(tensors)
    if output is None:
        output = Path(f"{image.stem}_{re.sub(r'[^A-Za-z0-9_.-]+', '_', chosen.name)}.png")
    if output.suffix.lower() != ".png":
        raise UsageError(f"--output {output}: the grid is written as PNG; use a .png name")
    check_output_location(output, overwrite=overwrite, inputs=[image, model])
    picture = open_image(image)  # before the session: a bad image fails fast

    exposed = feat.with_outputs(onnx_model, [chosen.name])
    session, recipe = open_model(model, device, model_bytes=exposed, **recipe_overrides(**prep))
    x = Preparer(recipe).prepare(picture)[None]
    activation = session.run(x, [chosen.name])[0][0]
    input_hw = x.shape[2:4] if recipe.layout == "nchw" else x.shape[1:3]
    maps = feat.as_channels_first(activation, input_hw, recipe.layout)
    shape = "x".join(str(d) for d in maps.shape)
    png = plots.feature_grid(maps.astype(np.float32), title=f"{chosen.name} ({chosen.op}, {shape})", columns=columns)
    publish_bytes(output, png, overwrite=overwrite)
    click.echo(f"{chosen.name} ({chosen.op}, {shape}): {maps.shape[0]} maps, "
               f"range {float(maps.min()):.3g}..{float(maps.max()):.3g}, written to {output}")


def _print_layers(tensors) -> None:
    from rich.table import Table

    from convtool.cli.console import console

    table = Table(box=None, pad_edge=False)
    for column in ("tensor", "node", "op", "shape"):
        table.add_column(column)
    for t in tensors:
        shape = "?" if t.shape is None else "x".join("?" if d is None else str(d) for d in t.shape)
        table.add_row(t.name, t.node, t.op, shape)
    console().print(table)
