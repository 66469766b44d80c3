"""Text spec files: one layer a line (``input 1x32x32``, ``C1: conv 6 5x5``, ``pool max 2``, ``fc 120``)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from convtool import geometry
from convtool.errors import InputError, ShapeError, UsageError
from convtool.nets.builder import Builder
from convtool.nets.table import NetworkTable

SPEC_FORMS = {
    "input": "input CxHxW (e.g. input 1x32x32)",
    "conv": "conv OUT KxK [s=S] [p=P|same|valid|full] [d=D] [g=G] [bias=no] (e.g. conv 6 5x5)",
    "convT": "convT OUT KxK [s=S] [p=P|same|valid] [d=D] [g=G] [bias=no] (e.g. convT 16 3 s=2 p=1)",
    "local": "local OUT KxK [s=S] [p=P|same|valid] [d=D] [bias=no] (locally connected, e.g. local 6 5x5)",
    "tiled": "tiled OUT KxK t=T [s=S] [p=P|same|valid] [d=D] [bias=no] (T kernel sets per axis, e.g. tiled 6 5x5 t=2)",
    "pool": "pool max|avg K[:S] [s=S] [p=P|same|valid] (e.g. pool max 2 or pool max:3:2), or pool avg global",
    "fc": "fc OUT [bias=no] (e.g. fc 120)",
    "bn": "bn",
    "flatten": "flatten",
}
SPEC_POOL_KINDS = ("max", "avg")
ELEMENTWISE = ("relu", "tanh", "sigmoid", "softmax", "dropout", "lrn", "identity", "leakyrelu", "gelu", "elu")
OPTION_NAMES = {"s": "s", "stride": "s", "p": "p", "padding": "p", "d": "d", "dilation": "d", "g": "g",
                "groups": "g", "bias": "bias", "name": "name", "t": "t", "period": "t"}
SPEC_HELP = ("one layer a line, '#' starts a comment, an optional 'NAME:' prefix names the layer; forms: "
             + "; ".join(SPEC_FORMS.values()) + "; " + "|".join(ELEMENTWISE))


def network_from_spec(path: str | Path) -> NetworkTable:
    """Read a text spec file (see ``parse_spec``); InputError if it cannot be read."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = getattr(exc, "strerror", None) or "not a text file"
        raise InputError(f"cannot read the network spec {path}: {reason}") from None
    return parse_spec(text, name=path.stem, where=str(path))


def parse_spec(text: str, name: str = "network", where: str = "spec") -> NetworkTable:
    """Build a network from spec lines like ``input 1x32x32``, ``C1: conv 6 5x5``, ``pool max 2``, ``fc 120``.

    Raises UsageError naming the line number and the expected form of the first bad line.
    """
    builder: Builder | None = None
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        layer_name = None
        match = re.match(r"^([A-Za-z_][\w.\-]*)\s*:\s*(.*)$", line)
        if match:
            layer_name, line = match.group(1), match.group(2)
        words = line.split()
        op = words[0].lower() if words else ""
        form_key = "convT" if op in ("convt", "deconv") else op
        try:
            if op == "input":
                if builder is not None:
                    raise UsageError("the input is already given")
                if len(words) != 2:
                    raise UsageError("expected one size")
                builder = Builder(name, geometry.parse_size(words[1], "input size"), where)
                continue
            if builder is None:
                raise UsageError("the first line must give the input size")
            _spec_layer(builder, op, words[1:], layer_name)
        except (UsageError, ShapeError) as exc:
            expected = SPEC_FORMS.get("input" if builder is None else form_key)
            hint = f"; expected '{expected}'" if expected else ""
            if op and op not in SPEC_FORMS and form_key not in SPEC_FORMS and op not in ELEMENTWISE:
                hint = f"; unknown layer {op!r}, use one of input, conv, convT, local, tiled, pool, fc, bn, flatten, {', '.join(ELEMENTWISE)}"
            message = str(exc).replace("`padding` same", "p=same")  # the spec's spelling of the setting
            raise UsageError(f"{where} line {number}: {message}{hint} (got {raw.strip()!r})") from None
    if builder is None or not builder.network.layers:
        raise UsageError(f"{where} has no layers; {SPEC_HELP}")
    return builder.network


@dataclass
class _Line:
    """One spec line split into its words: positional ones and ``key=value`` options."""

    op: str
    positional: list[str]
    options: dict[str, str]
    name: str | None
    bias: bool


def _split_line(op: str, args: list[str], name: str | None) -> _Line:
    """Positional words and ``key=value`` options (keys by their short names), the name and the bias."""
    positional = [a for a in args if "=" not in a]
    options: dict[str, str] = {}
    for arg in args:
        if "=" in arg:
            key, value = arg.split("=", 1)
            if key.lower() not in OPTION_NAMES:
                raise UsageError(f"unknown option {key!r}")
            options[OPTION_NAMES[key.lower()]] = value
    name = options.pop("name", name)
    bias = options.pop("bias", "yes").lower()
    if bias not in ("yes", "no", "true", "false", "1", "0"):
        raise UsageError(f"bias must be yes or no, got {bias!r}")
    return _Line(op, positional, options, name, bias in ("yes", "true", "1"))


def _sizes(line: _Line, key: str, what: str) -> tuple[int, ...]:
    """The option ``key`` (``s``, ``d``, ``g``) as sizes, 1 when not given."""
    return geometry.parse_size(line.options[key], what) if key in line.options else (1,)


def _padding(b: Builder, line: _Line):
    """The ``p=`` option: a mode name, or one (before, after) pair per spatial axis."""
    if "p" not in line.options:
        return "valid"
    parsed = geometry.parse_padding(line.options["p"], len(b.state.spatial) or 1)
    return parsed if isinstance(parsed, str) else list(parsed)


def _conv_line(b: Builder, line: _Line) -> None:
    """``conv OUT KxK [s=S] [p=P] [d=D] [g=G] [bias=no]`` (and ``convT``)."""
    if len(line.positional) != 2:
        raise UsageError("expected the output channels and the kernel size")
    cout = geometry.parse_int(line.positional[0], "output channels")
    b.conv(cout, geometry.parse_size(line.positional[1], "kernel size"), s=_sizes(line, "s", "stride"),
           padding=_padding(b, line), d=_sizes(line, "d", "dilation"), groups=_sizes(line, "g", "groups")[0],
           bias=line.bias, name=line.name, transposed=line.op != "conv")


def _local_line(b: Builder, line: _Line) -> None:
    """``local OUT KxK [s=S] [p=P] [d=D] [bias=no]`` and ``tiled OUT KxK t=T ...``."""
    if len(line.positional) != 2:
        raise UsageError("expected the output channels and the kernel size")
    if (line.op == "tiled") != ("t" in line.options):
        raise UsageError("tiled needs its tiling period t=T" if line.op == "tiled" else "t= applies to tiled only")
    b.local(geometry.parse_int(line.positional[0], "output channels"),
            geometry.parse_size(line.positional[1], "kernel size"), s=_sizes(line, "s", "stride"),
            padding=_padding(b, line), d=_sizes(line, "d", "dilation"), bias=line.bias, name=line.name,
            period=_sizes(line, "t", "tiling period") if line.op == "tiled" else None)


def _pool_line(b: Builder, line: _Line) -> None:
    """``pool max|avg K[:S] [s=S] [p=P]``, ``pool max:K[:S]`` (the filter's spelling) or ``pool avg global``."""
    words = line.positional
    if len(words) == 2 and words[0].lower() in SPEC_POOL_KINDS and words[1].lower() == "global":
        b.global_pool(words[0].lower(), name=line.name)
        return
    if len(words) == 2 and words[0].lower() in SPEC_POOL_KINDS:
        pool = geometry.parse_pool(words[1], words[0].lower(), kinds=SPEC_POOL_KINDS)
    elif len(words) == 1 and words[0].split(":")[0].lower() in SPEC_POOL_KINDS:
        pool = geometry.parse_pool(words[0], kinds=SPEC_POOL_KINDS)
    else:
        raise UsageError("expected max or avg and a window size")
    stride = _sizes(line, "s", "pool stride") if "s" in line.options else pool.stride
    b.pool(pool.kind, pool.size, s=stride, padding=_padding(b, line), name=line.name)


def _fc_line(b: Builder, line: _Line) -> None:
    """``fc OUT [bias=no]``."""
    if len(line.positional) != 1:
        raise UsageError("expected the number of output units")
    b.fc(geometry.parse_int(line.positional[0], "output units"), bias=line.bias, name=line.name)


def _spec_layer(b: Builder, op: str, args: list[str], name: str | None) -> None:
    """Add the layer of one spec line (its words after the op) to ``b``; UsageError if it does not parse."""
    line = _split_line(op, args, name)
    if op in ("conv", "convt", "deconv"):
        _conv_line(b, line)
    elif op in ("local", "tiled"):
        _local_line(b, line)
    elif op == "pool":
        _pool_line(b, line)
    elif op == "fc":
        _fc_line(b, line)
    elif op in ("bn", "batchnorm") and not line.positional:
        b.batchnorm(name=line.name)
    elif op == "flatten" and not line.positional:
        b.flatten(name=line.name)
    elif op in ELEMENTWISE and not line.positional:
        b.elementwise(op, name=line.name)
    else:
        raise UsageError("cannot parse this line")
    windowed = ("conv", "convt", "deconv", "pool", "local", "tiled")
    if line.options.keys() - {"s", "p", "d", "g", "t"} or (op not in windowed and line.options):
        raise UsageError(f"options {', '.join(sorted(line.options))} do not apply to {op}")
