"""What ``convtool calc`` adds to one layer's report: the four kinds of layer, the matrix W, the animation.

Each function takes the layer report of :func:`convtool.calc.layer_report` (a plain dictionary) and
returns another plain dictionary (what ``--json`` prints) or an :class:`convtool.animate.Animation`.
The numbers come from :mod:`convtool.layer_kinds`, :mod:`convtool.matrix` and :mod:`convtool.animate`.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from convtool import layer_kinds
from convtool.errors import ConvtoolError, UsageError
from convtool.layer_kinds import conv_of

INPUT_FORMS = "a matrix like [[0,0,9],[0,9,9]], or a .txt/.csv file of rows of numbers, or a .npy file"


def read_matrix(text: str, what: str = "input") -> np.ndarray:
    """A 2-D float array from an inline JSON matrix (one row may be a flat list) or a .txt/.csv/.npy file."""
    text = text.strip()
    if text.startswith("["):
        try:
            rows = json.loads(text)
        except json.JSONDecodeError:
            raise UsageError(f"the {what} {text!r} is not {INPUT_FORMS}") from None
    else:
        path = Path(text)
        if not path.is_file():
            raise UsageError(f"the {what} {text!r} is neither a matrix like [[1,2],[3,4]] nor an existing file")
        try:
            rows = np.load(path, allow_pickle=False) if path.suffix.lower() == ".npy" else np.loadtxt(
                path, delimiter="," if path.suffix.lower() == ".csv" else None, ndmin=2)
        except (OSError, ValueError) as exc:
            raise UsageError(f"cannot read the {what} from {path}: {str(exc).splitlines()[0]}; give {INPUT_FORMS}") from None
    try:
        array = np.array(rows, dtype=np.float64)
    except (TypeError, ValueError):
        raise UsageError(f"the {what} has rows of different lengths or non-numbers; give {INPUT_FORMS}") from None
    array = array[None] if array.ndim == 1 else array
    if array.ndim != 2 or array.size == 0 or not np.isfinite(array).all():
        raise UsageError(f"the {what} must be a non-empty 2-D matrix of finite numbers; give {INPUT_FORMS}")
    return array


def load_kernel_matrix(spec: str) -> np.ndarray:
    """One kernel matrix from any ``--kernel`` spec (a library name, an inline matrix, a file)."""
    from convtool.kernels import load_kernel

    try:
        return np.asarray(load_kernel(spec).matrix, dtype=np.float64)
    except ConvtoolError as exc:
        raise UsageError(str(exc)) from None


def as_axes(array: np.ndarray, axes: int) -> np.ndarray:
    """A 1 x n matrix as a 1-D array for a 1-D layer; 2-D arrays stay."""
    if axes == 1 and array.shape[0] == 1:
        return array[0]
    return array


# -- the matrix W --------------------------------------------------------------------------------

def _spec(report: dict, conv: dict):
    from convtool.matrix import Spec

    def two(values):  # a 1-D layer is a 1 x n image
        return tuple(values) if len(values) == 2 else (1, values[0])

    axes = conv["axes"]
    if len(axes) > 2:
        raise UsageError("the matrix view handles 1-D and 2-D layers")
    pads = [(a["pad_before"], a["pad_after"]) for a in axes]
    pads = pads if len(pads) == 2 else [(0, 0), pads[0]]
    return Spec(report["cin"], conv["cout"], two(report["input"]), two(conv["kernel"]), two(conv["stride"]),
                (*pads[0], *pads[1]), two(conv["dilation"]))


def matrix_report(report: dict, kind_text: str | None, x: np.ndarray | None, kernel: np.ndarray | None, *,
                  picture: bool, seed: int = 0) -> tuple[dict, np.ndarray]:
    """W of the layer (as distinct-weight numbers, or values with a conv ``kernel``), y = W x and the checks.

    Returns the report and W itself (for the picture). Inputs and weights not given are drawn from
    ``seed`` (small integers, so the printed numbers stay readable).
    """
    from convtool import matrix

    conv = conv_of(report, "the matrix view")
    if conv["groups"] != 1:
        raise UsageError("the matrix view handles groups=1 only")
    kind = layer_kinds.parse_kind(kind_text or "conv")
    spec = _spec(report, conv)
    matrix.check_size(spec, picture=picture)
    rng = np.random.default_rng(seed)
    shape = matrix.weight_shape(kind, spec)
    if kernel is not None and kind.name == "conv":
        if kernel.shape != spec.k:
            raise UsageError(f"the kernel is {kernel.shape[0]}x{kernel.shape[1]} but the layer's kernel size is "
                             f"{spec.k[0]}x{spec.k[1]}")
        weight = np.broadcast_to(kernel, shape).astype(np.float64)
    else:
        weight = rng.choice([-3.0, -2.0, -1.0, 1.0, 2.0, 3.0], shape)  # no zeros: every connection shows
    given = x is not None
    if x is None:
        x = rng.integers(0, 10, (spec.cin, *spec.n)).astype(np.float64)
    else:
        x = x.reshape(1, *x.shape) if x.ndim == 2 else x.reshape(1, 1, -1)
        if x.shape != (spec.cin, *spec.n):
            raise UsageError(f"the input is {'x'.join(map(str, x.shape[1:]))} but the layer expects "
                             f"{'x'.join(map(str, spec.n))} with {spec.cin} channel(s)")
    w = matrix.layer_matrix(weight, spec)
    checks = matrix.verify(kind, spec, weight, x, rng)
    symbolic = not (kernel is not None and kind.name == "conv")
    shown = matrix.weight_ids(kind, spec) if symbolic else w
    rows, cols = spec.shape
    nonzero = int(np.count_nonzero(matrix.weight_ids(kind, spec)))
    scale = max(1.0, float(np.max(np.abs(checks.y))))
    def shaped(shape: tuple[int, ...]) -> list[int]:  # a 1-D layer keeps its one axis in the report
        return [shape[0], shape[-1]] if len(report["input"]) == 1 else list(shape)

    result = {
        "kind": kind.label, "rows": rows, "columns": cols, "output_shape": shaped((spec.cout, *spec.out)),
        "input_shape": shaped((spec.cin, *spec.n)), "nonzero": nonzero, "density": nonzero / (rows * cols),
        "distinct_weights": math.prod(shape), "entries": "weight numbers" if symbolic else "weight values",
        "matrix": None if picture and (rows > matrix.PRINT_ROWS or cols > matrix.PRINT_COLUMNS) else shown.tolist(),
        "input": x.reshape(shaped(x.shape)).tolist(), "input_given": given,
        "output": checks.y.reshape(shaped(checks.y.shape)).tolist(),
        "forward": {"oracle": checks.forward_oracle, "max_difference": checks.forward_error,
                    "equal": checks.forward_error <= 1e-4 * scale},
        "transpose": {"oracle": checks.transpose_oracle, "max_difference": checks.transpose_error,
                      "equal": checks.transpose_error <= 1e-9 * max(1.0, float(np.max(np.abs(w))))},
    }
    return result, w


def write_matrix_picture(w: np.ndarray, path: Path, *, overwrite: bool = False) -> None:
    from PIL import Image

    from convtool import matrix
    from convtool.io.publish import publish_with

    if Path(path).suffix.lower() != ".png":
        raise UsageError(f"{path}: the matrix picture is written as PNG; name it .png")
    image = Image.fromarray(matrix.picture(w))
    publish_with(path, lambda tmp: image.save(tmp, format="PNG", optimize=True), overwrite=overwrite)


# -- the animation --------------------------------------------------------------------------------

def animation(report: dict, x: np.ndarray | None, kernel: np.ndarray | None):
    """The sliding-window animation of the report's convolution (or of its pooling when there is no kernel)."""
    from convtool import animate, shapes

    conv, pool = report.get("conv"), report.get("pool")
    layer = conv or pool
    if layer is None:
        raise UsageError("an animation needs a kernel size (`k`) or a pooling (`pool`)")
    if len(layer["axes"]) > 2:
        raise UsageError("animations are drawn for 1-D and 2-D layers")
    axes = []
    for a in layer["axes"]:
        pad = (a["pad_before"], a["pad_after"])
        if conv and conv["transposed"]:
            axes.append(shapes.Axis(a["n"], a["k"], a["s"], a["d"], pad, a["output"], a["mode"], True,
                                    a.get("output_padding", 0)))
        else:
            axes.append(shapes.Axis(a["n"], a["k"], a["s"], a["d"], pad, a["output"], a["mode"]))
    op = ("convT" if conv["transposed"] else "conv") if conv else f"{layer['kind']} pool"
    if x is not None:
        x = as_axes(x, len(axes))
    if kernel is not None:
        if not conv:
            raise UsageError("a kernel applies to a convolution; give --k with it (pooling has no weights)")
        kernel = as_axes(kernel, len(axes))
    if x is not None and conv and report["cin"] != 1:
        raise UsageError("input values are drawn for one input channel; leave out `cin`")
    size = "x".join(str(a.n) for a in axes)
    parts = [f"{op} n={size}", f"k={'x'.join(str(a.k) for a in axes)}" if conv else
             f"window={'x'.join(str(a.k) for a in axes)}"]
    for name, values, default in (("s", [a.s for a in axes], 1), ("d", [a.d for a in axes], 1)):
        if any(v != default for v in values):
            parts.append(f"{name}={'x'.join(map(str, values))}")
    pads = [f"{a.pad[0]}+{a.pad[1]}" for a in axes]
    if any(p != "0+0" for p in pads):
        parts.append(("crop " if conv and conv["transposed"] else "pad ") + "x".join(pads))
    parts.append(f"-> {'x'.join(str(a.out) for a in axes)}")
    return animate.build(axes, op, x, kernel, title="  ".join(parts))
