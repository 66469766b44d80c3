"""The kernel library: named kernels from ``filters/*.toml``, generators, and user kernels.

A kernel spec is a library name (``sobel``), a generator with parameters (``gaussian:sigma=2,size=7``),
an inline matrix (``[[1,0,-1],[2,0,-2],[1,0,-1]]``) or a file (``.toml``, ``.csv``, or whitespace-separated
text). ``load_kernel(spec)`` turns any of them into a :class:`Kernel`.
"""

from __future__ import annotations

import math
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from convtool.errors import KernelError
from convtool.resources import data_dir

OUT_SCALES = ("clip", "abs", "normalize")


@dataclass
class Kernel:
    """One or more matrices (several are combined by ``combine``), plus what the library says of them."""

    name: str
    matrices: list[np.ndarray]
    description: str = ""
    combine: str | None = None  # "magnitude": sqrt of the sum of squared responses
    out_scale: str = "clip"
    source: str = ""
    normalization: str = "none"
    separable: tuple[np.ndarray, np.ndarray] | None = None  # declared (column, row) factors
    params: dict[str, float] = field(default_factory=dict)
    components: list["Kernel"] = field(default_factory=list)  # the parts of a combined kernel

    @property
    def matrix(self) -> np.ndarray:
        """The single matrix of a plain kernel (combined kernels have several)."""
        if len(self.matrices) != 1:
            raise KernelError(f"kernel {self.name!r} combines {len(self.matrices)} matrices")
        return self.matrices[0]


def matrix_out_scale(matrix: np.ndarray) -> str:
    """'normalize' for kernels with negative weights summing to about zero (derivatives), else 'clip'."""
    has_negative = bool((matrix < 0).any())
    zero_sum = abs(matrix.sum()) <= 1e-6 * np.abs(matrix).sum()
    return "normalize" if has_negative and zero_sum else "clip"


# --- generators -----------------------------------------------------------------------------------

def _size_for(sigma: float, size: float) -> int:
    """The requested size, or 2*ceil(3*sigma)+1 when it is 0; must be a positive odd integer."""
    if not size:
        return _not_too_large(2 * math.ceil(3 * sigma) + 1, f"sigma={sigma:g}")
    if size != int(size) or size <= 0 or int(size) % 2 == 0:
        raise KernelError(f"kernel size must be a positive odd integer, got {size:g}")
    return _not_too_large(int(size), f"size={size:g}")


def _not_too_large(size: int, given: str) -> int:
    """Refuse a generated kernel wider than MAX_KERNEL_SIZE taps before it is built."""
    from convtool.guards import MAX_KERNEL_SIZE

    if size > MAX_KERNEL_SIZE:
        raise KernelError(f"{given} makes a {size:,} x {size:,} kernel; the largest is {MAX_KERNEL_SIZE:,} x "
                          f"{MAX_KERNEL_SIZE:,} taps, so use a smaller size or sigma")
    return size


def _positive(name: str, value: float) -> float:
    if not value > 0 or not math.isfinite(value):
        raise KernelError(f"{name} must be a positive number, got {value}")
    return value


def gaussian_1d(sigma: float, size: int) -> np.ndarray:
    """Sampled 1D Gaussian of ``size`` taps, normalised to sum 1."""
    x = np.arange(size) - (size - 1) / 2
    g = np.exp(-(x**2) / (2 * sigma**2))
    return g / g.sum()


def gaussian(sigma: float = 1.0, size: float = 0) -> np.ndarray:
    """2D Gaussian as the outer product of two 1D Gaussians (sum 1)."""
    g = gaussian_1d(_positive("sigma", sigma), _size_for(sigma, size))
    return np.outer(g, g)


def laplacian_of_gaussian(sigma: float = 1.4, size: float = 0) -> np.ndarray:
    """Marr-Hildreth LoG, -(1/(pi s^4)) (1 - r^2/(2 s^2)) exp(-r^2/(2 s^2)), shifted to zero sum."""
    size = _size_for(_positive("sigma", sigma), size)
    x = np.arange(size) - (size - 1) / 2
    r2 = x[:, None] ** 2 + x[None, :] ** 2
    log = -(1 / (math.pi * sigma**4)) * (1 - r2 / (2 * sigma**2)) * np.exp(-r2 / (2 * sigma**2))
    return log - log.mean()


def box(size: float = 3) -> np.ndarray:
    """Mean filter of ``size`` x ``size`` (sum 1)."""
    if size != int(size) or size <= 0:
        raise KernelError(f"box size must be a positive integer, got {size:g}")
    size = _not_too_large(int(size), f"size={size:g}")
    return np.full((size, size), 1.0 / size**2)


GENERATORS: dict[str, Callable[..., np.ndarray]] = {"gaussian": gaussian, "log": laplacian_of_gaussian, "box": box}


# --- the library ----------------------------------------------------------------------------------

def library() -> dict[str, dict]:
    """Every kernel definition in ``filters/``, by name (raw TOML tables)."""
    entries = {}
    for path in sorted(data_dir("filters").glob("*.toml")):
        table = _read_toml(path)
        entries[table.get("name", path.stem)] = table
    return entries


class _Library(dict):
    """:func:`library` read as far as needed: a name's own file (``filters/NAME.toml``) first, all files only
    when a name is not its file's stem (reading all 19 costs about 10 ms of a 0.5 s one-image run)."""

    def __missing__(self, name: str) -> dict:
        path = data_dir("filters") / f"{name}.toml"
        if path.is_file():
            table = _read_toml(path)
            if table.get("name", path.stem) == name:
                self[name] = table
                return table
        self.update(library())
        if name not in self:
            raise KeyError(name)
        return self[name]


def load_kernel(spec: str) -> Kernel:
    """Resolve a kernel spec (name, name:params, inline matrix, or file path) into a Kernel."""
    spec = spec.strip()
    if not spec:
        raise KernelError("empty kernel spec; give a name such as sobel, a matrix, or a file")
    if spec.startswith("["):
        return _from_matrix("custom", _parse_inline(spec))
    path = Path(spec)
    if path.suffix.lower() in (".toml", ".csv", ".txt", ".tsv", ".dat") or path.exists():
        return load_kernel_file(path)
    name, _, arguments = spec.partition(":")
    entries = _Library()
    try:
        table = entries[name]
    except KeyError:
        import difflib

        close = difflib.get_close_matches(name, entries, n=3, cutoff=0.5)
        hint = f"did you mean {', '.join(close)}?" if close else "run `convtool kernels` for the list"
        raise KernelError(f"unknown kernel {name!r}; {hint}") from None
    return _from_table(table, _parse_params(name, arguments), entries)


def load_kernel_file(path: Path) -> Kernel:
    """Read a kernel from a TOML definition, a CSV file, or whitespace-separated text."""
    if not path.is_file():
        raise KernelError(f"kernel file {path} does not exist; check the path")
    if path.suffix.lower() == ".toml":
        return _from_table(_read_toml(path), {}, _Library())
    text = path.read_text(encoding="utf-8", errors="replace")
    rows = [line.replace(",", " ").split() for line in text.splitlines()
            if line.strip() and not line.lstrip().startswith("#")]
    return _from_matrix(path.stem, _to_matrix(rows, str(path)))


def _from_table(table: dict, overrides: dict[str, float], entries: dict[str, dict]) -> Kernel:
    name = table.get("name", "custom")
    common = dict(description=table.get("description", ""), source=table.get("source", ""),
                  normalization=table.get("normalization", "none"))
    if "components" in table:
        parts = [_from_table(entries[c], overrides, entries) for c in table["components"]]
        return Kernel(name, [p.matrix for p in parts], combine=table.get("combine", "magnitude"),
                      out_scale=table.get("out_scale", "normalize"), components=parts, **common)
    if "generator" in table:
        params = {**table.get("params", {}), **overrides}
        unknown = set(overrides) - set(table.get("params", {}))
        if unknown:
            raise KernelError(f"kernel {name!r} has no parameter {', '.join(sorted(unknown))}; "
                              f"it takes {', '.join(table.get('params', {}))}")
        matrix = _generate(name, table["generator"], params)
        return Kernel(name, [matrix], out_scale=table.get("out_scale", matrix_out_scale(matrix)),
                      params=params, **common)
    if overrides:
        raise KernelError(f"kernel {name!r} takes no parameters")
    if "matrix" not in table:
        raise KernelError(f"kernel {name!r} has neither matrix, generator nor components")
    matrix = _to_matrix(table["matrix"], name)
    declared = table.get("separable")
    factors = (np.asarray(declared["column"], float), np.asarray(declared["row"], float)) if declared else None
    return Kernel(name, [matrix], out_scale=table.get("out_scale", matrix_out_scale(matrix)),
                  separable=factors, **common)


def _generate(name: str, generator: object, params: dict) -> np.ndarray:
    """Run a kernel table's generator; an unknown generator or unusable parameters are KernelErrors."""
    make = GENERATORS.get(generator) if isinstance(generator, str) else None
    if make is None:
        raise KernelError(f"kernel {name!r}: unknown generator {generator!r}; use one of {', '.join(GENERATORS)}")
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in params.values()):
        raise KernelError(f"kernel {name!r}: parameters must be finite numbers, got {params}")
    try:
        return make(**params)
    except TypeError:  # a parameter the generator does not take
        raise KernelError(f"kernel {name!r}: generator {generator!r} does not take the parameters "
                          f"{', '.join(params)}") from None


def _from_matrix(name: str, matrix: np.ndarray) -> Kernel:
    return Kernel(name, [matrix], description="user kernel", out_scale=matrix_out_scale(matrix))


def _parse_inline(spec: str) -> np.ndarray:
    import json

    try:
        rows = json.loads(spec)
    except json.JSONDecodeError:
        raise KernelError(f"inline kernel {spec!r} is not a matrix like [[1,0,-1],[2,0,-2],[1,0,-1]]") from None
    if rows and not isinstance(rows[0], list):
        rows = [rows]
    return _to_matrix(rows, "inline kernel")


def _to_matrix(rows: list, where: str) -> np.ndarray:
    if not rows or not all(isinstance(r, (list, tuple)) and r for r in rows):
        raise KernelError(f"{where}: the kernel is empty; give at least one row of numbers")
    widths = {len(r) for r in rows}
    if len(widths) != 1:
        raise KernelError(f"{where}: rows have different lengths {sorted(widths)}; every row needs the same count")
    try:
        matrix = np.array([[float(v) for v in r] for r in rows], dtype=np.float64)
    except (TypeError, ValueError):
        raise KernelError(f"{where}: every entry must be a number") from None
    if not np.isfinite(matrix).all():
        raise KernelError(f"{where}: the kernel holds NaN or infinity; use finite numbers")
    if np.abs(matrix).max() > np.finfo(np.float32).max:
        raise KernelError(f"{where}: kernel values beyond {np.finfo(np.float32).max:.3g} do not fit float32, "
                          "in which convtool filters; scale the kernel down")
    return matrix


def _parse_params(name: str, arguments: str) -> dict[str, float]:
    params = {}
    for item in filter(None, (a.strip() for a in arguments.split(","))):
        key, eq, value = item.partition("=")
        try:
            params[key.strip()] = float(value)
        except ValueError:
            eq = ""
        if not eq:
            raise KernelError(f"kernel parameter {item!r} must look like {name}:sigma=2")
        if not math.isfinite(params[key.strip()]):
            raise KernelError(f"kernel parameter {item!r} must be a finite number")
    return params


def _read_toml(path: Path) -> dict:
    try:
        with open(path, "rb") as handle:
            return tomllib.load(handle)
    except tomllib.TOMLDecodeError as exc:
        raise KernelError(f"{path}: not valid TOML ({exc})") from None
