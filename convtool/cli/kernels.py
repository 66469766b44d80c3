"""`convtool kernels`: list the kernel library, or show one kernel."""

from __future__ import annotations

import click
import numpy as np
from rich.console import Console
from rich.table import Table

from convtool.conv.separable import factors as separable_factors
from convtool.kernels import library, load_kernel


@click.command(short_help="List the kernel library or show one kernel.")
@click.argument("name", required=False)
def command(name: str | None) -> None:
    """List the kernels in filters/, or show NAME: its matrix, sum, separability and source.

    NAME may also be a generator with parameters, an inline matrix or a kernel file:

    \b
      convtool kernels
      convtool kernels sobel-x
      convtool kernels gaussian:sigma=2,size=5
      convtool kernels "[[1,0,-1],[2,0,-2],[1,0,-1]]"
    """
    console = Console()
    if name is None:
        table = Table(title="convtool kernels (filters/)")
        for heading in ("name", "size", "description", "default out-scale"):
            table.add_column(heading)
        for entry_name in library():
            kernel = load_kernel(entry_name)
            shape = kernel.matrices[0].shape
            table.add_row(entry_name, f"{shape[0]}x{shape[1]}", kernel.description, kernel.out_scale)
        console.print(table)
        return
    kernel = load_kernel(name)
    console.print(f"[bold]{kernel.name}[/bold]: {kernel.description}")
    if kernel.params:
        console.print("parameters: " + ", ".join(f"{k}={v:g}" for k, v in kernel.params.items()))
    if kernel.combine:
        console.print(f"combines {len(kernel.matrices)} matrices by {kernel.combine}")
    for part in kernel.components or [kernel]:
        if kernel.components:
            console.print(f"[bold]{part.name}[/bold]:")
        matrix = part.matrix
        console.print(_matrix_text(matrix))
        factors = separable_factors(matrix)
        console.print(f"size {matrix.shape[0]}x{matrix.shape[1]}, sum {matrix.sum():.6g}, "
                      f"rank {np.linalg.matrix_rank(matrix)}, separable: {'yes' if factors else 'no'}")
        if factors:
            column, row = part.separable if part.separable is not None else factors
            console.print(f"  = column {_vector_text(column)} (outer) row {_vector_text(row)}")
    console.print(f"normalisation: {kernel.normalization}; default out-scale: {kernel.out_scale}")
    if kernel.source:
        console.print(f"source: {kernel.source}")


def _vector_text(vector: np.ndarray) -> str:
    return "[" + ", ".join(f"{v:.4g}" for v in vector) + "]"


def _matrix_text(matrix: np.ndarray) -> str:
    cells = [[f"{v:.4g}" for v in row] for row in matrix]
    width = max(len(c) for row in cells for c in row)
    return "\n".join("  " + " ".join(c.rjust(width) for c in row) for row in cells)
