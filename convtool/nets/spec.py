"""Text spec files: one layer a line (``input 1x32x32``, ``C1: conv 6 5x5``, ``pool max 2``, ``fc 120``)."""

from __future__ import annotations

import re
from pathlib import Path

from convtool import shapes
from convtool.errors import InputError, ShapeError, UsageError
from convtool.nets.builder import Builder
from convtool.nets.table import Network

SPEC_FORMS = {
    "input": "input CxHxW (e.g. input 1x32x32)",
    "conv": "conv OUT KxK [s=S] [p=P|same|valid|full] [d=D] [g=G] [bias=no] (e.g. conv 6 5x5)",
    "convT": "convT OUT KxK [s=S] [p=P|same|valid] [d=D] [g=G] [bias=no] (e.g. convT 16 3 s=2 p=1)",
    "pool": "pool max|avg K[:S] [s=S] [p=P|same|valid] (e.g. pool max 2), or pool avg global",
    "fc": "fc OUT [bias=no] (e.g. fc 120)",
    "bn": "bn",
    "flatten": "flatten",
}
ELEMENTWISE = ("relu", "tanh", "sigmoid", "softmax", "dropout", "lrn", "identity", "leakyrelu", "gelu", "elu")
OPTION_NAMES = {"s": "s", "stride": "s", "p": "p", "padding": "p", "d": "d", "dilation": "d", "g": "g",
                "groups": "g", "bias": "bias", "name": "name"}
SPEC_HELP = ("one layer a line, '#' starts a comment, an optional 'NAME:' prefix names the layer; forms: "
             + "; ".join(SPEC_FORMS.values()) + "; " + "|".join(ELEMENTWISE))


def network_from_spec(path: str | Path) -> Network:
    """Read a text spec file (see ``parse_spec``); InputError if it cannot be read."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = getattr(exc, "strerror", None) or "not a text file"
        raise InputError(f"cannot read the network spec {path}: {reason}") from None
    return parse_spec(text, name=path.stem, where=str(path))


def parse_spec(text: str, name: str = "network", where: str = "spec") -> Network:
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
                builder = Builder(name, shapes.parse_size(words[1], "input size"), where)
                continue
            if builder is None:
                raise UsageError("the first line must give the input size")
            _spec_layer(builder, op, words[1:], layer_name)
        except (UsageError, ShapeError) as exc:
            expected = SPEC_FORMS.get("input" if builder is None else form_key)
            hint = f"; expected '{expected}'" if expected else ""
            if op and op not in SPEC_FORMS and form_key not in SPEC_FORMS and op not in ELEMENTWISE:
                hint = f"; unknown layer {op!r}, use one of input, conv, convT, pool, fc, bn, flatten, {', '.join(ELEMENTWISE)}"
            message = str(exc).replace("--padding same", "p=same")  # the spec spelling of the CLI's hint
            raise UsageError(f"{where} line {number}: {message}{hint} (got {raw.strip()!r})") from None
    if builder is None or not builder.network.layers:
        raise UsageError(f"{where} has no layers; {SPEC_HELP}")
    return builder.network


def _spec_layer(b: Builder, op: str, args: list[str], name: str | None) -> None:
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
    with_bias = bias in ("yes", "true", "1")

    def sizes(key: str, default: int = 1, what: str = "") -> tuple[int, ...]:
        return shapes.parse_size(options[key], what) if key in options else (default,)

    def padding():
        if "p" not in options:
            return "valid"
        parsed = shapes.parse_padding(options["p"], len(b.state.spatial) or 1)
        return parsed if isinstance(parsed, str) else list(parsed)

    if op in ("conv", "convt", "deconv"):
        if len(positional) != 2:
            raise UsageError("expected the output channels and the kernel size")
        cout = shapes.parse_size(positional[0], "output channels")
        if len(cout) != 1:
            raise UsageError(f"output channels must be one integer, got {positional[0]!r}")
        b.conv(cout[0], shapes.parse_size(positional[1], "kernel size"), s=sizes("s", what="stride"),
               padding=padding(), d=sizes("d", what="dilation"), groups=sizes("g", what="groups")[0],
               bias=with_bias, name=name, transposed=op != "conv")
    elif op == "pool":
        if len(positional) != 2 or positional[0].lower() not in ("max", "avg"):
            raise UsageError("expected max or avg and a window size")
        kind = positional[0].lower()
        if positional[1].lower() == "global":
            b.global_pool(kind, name=name)
            return
        size_text, _, stride_text = positional[1].partition(":")
        size = shapes.parse_size(size_text, "pool size")
        stride = shapes.parse_size(stride_text, "pool stride") if stride_text else None
        if "s" in options:
            stride = sizes("s", what="pool stride")
        b.pool(kind, size, s=stride, padding=padding(), name=name)
    elif op == "fc":
        if len(positional) != 1:
            raise UsageError("expected the number of output units")
        out = shapes.parse_size(positional[0], "output units")
        if len(out) != 1:
            raise UsageError(f"output units must be one integer, got {positional[0]!r}")
        b.fc(out[0], bias=with_bias, name=name)
    elif op in ("bn", "batchnorm") and not positional:
        b.batchnorm(name=name)
    elif op == "flatten" and not positional:
        b.flatten(name=name)
    elif op in ELEMENTWISE and not positional:
        b.elementwise(op, name=name)
    else:
        raise UsageError("cannot parse this line")
    if options.keys() - {"s", "p", "d", "g"} or (op not in ("conv", "convt", "deconv", "pool") and options):
        raise UsageError(f"options {', '.join(sorted(options))} do not apply to {op}")
