"""Window geometry in one place: pairs, padding, sizes and pooling specs, each parsed once.

Pure Python, no numpy. Canonical forms, used by :mod:`convtool.shapes`, :mod:`convtool.conv`,
:mod:`convtool.nn`, :mod:`convtool.calc`, :mod:`convtool.nets` and the CLI:

- a pair is ``(vertical, horizontal)``: ``pair("stride", 2) == (2, 2)``;
- one axis's padding is ``(before, after)`` (:func:`axis_padding` resolves a mode for one axis);
- a 2D padding is ``(top, bottom, left, right)`` (:func:`pads`, :func:`resolve_pads`), with converters
  at the edges for the forms others speak: :func:`axis_pairs` (``((top, bottom), (left, right))``) and
  :func:`pytorch_pad_tuple` (``F.pad`` order);
- a pooling is a :class:`PoolSpec`, parsed from ``KIND:SIZE[:STRIDE]`` (``max:3:2``) everywhere; the
  kind may also come separately (``calc --pool 3:2 --pool-kind max``, ``pool max 3:2`` in a spec file).

Value errors (a negative padding, a zero stride) are ShapeError; text that does not parse is
UsageError. Messages name the value and the concept, never a command-line flag: the CLI adds those.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterable, Sequence, Union

from convtool.errors import ShapeError, UsageError

PADDING_MODES = ("valid", "same", "full")
POOL_KINDS = ("max", "avg", "l2")

Pair = tuple[int, int]
Pads = tuple[int, int, int, int]  # (top, bottom, left, right)
Padding = Union[str, int, Sequence[int], Sequence[Sequence[int]]]


def _is_int(value: object) -> bool:
    """An integer (numpy integers too), but not a bool."""
    return hasattr(value, "__index__") and not isinstance(value, bool) and not isinstance(value, float)


def _items(value: object) -> tuple:
    """An iterable's items as a tuple; anything else (a float, a bool, None) as a 1-tuple to be refused."""
    return tuple(value) if isinstance(value, Iterable) and not isinstance(value, str) else (value,)


def check_positive(name: str, value: int) -> None:
    """Raise ShapeError unless ``value`` is a positive integer (stride, dilation, sizes)."""
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        raise ShapeError(f"{name} must be a positive integer, got {value!r}")


def pair(name: str, value: int | Sequence[int], *, minimum: int = 1) -> Pair:
    """``v`` -> ``(v, v)``; a pair stays a pair; both entries integers of at least ``minimum`` (ShapeError).

    ``minimum=0`` reads a symmetric padding ``(vertical, horizontal)``, as PyTorch's ``padding=`` does.
    """
    values = (value, value) if _is_int(value) else _items(value)
    if len(values) != 2 or not all(_is_int(v) and int(v) >= minimum for v in values):
        what = "positive" if minimum == 1 else f"at least {minimum}" if minimum else "non-negative"
        raise ShapeError(f"{name} must be a {what} integer or a pair of them, got {value!r}")
    return int(values[0]), int(values[1])


# --- one axis --------------------------------------------------------------------------------------

def effective_kernel(k: int, d: int = 1) -> int:
    """Span of a kernel of size ``k`` dilated by ``d``: ``(k - 1) d + 1``."""
    return (k - 1) * d + 1


def same_padding(n: int, k: int, s: int = 1, d: int = 1) -> Pair:
    """TensorFlow's "same" padding: total ``max(s(ceil(n/s)-1) + (k-1)d + 1 - n, 0)``, extra after."""
    for name, value in (("input size", n), ("kernel size", k), ("stride", s), ("dilation", d)):
        check_positive(name, value)  # a zero stride would otherwise divide by zero
    total = max(s * (math.ceil(n / s) - 1) + effective_kernel(k, d) - n, 0)
    return total // 2, total - total // 2


def full_padding(k: int, d: int = 1) -> Pair:
    """"Full" padding: every position where the kernel touches at least one input."""
    span = effective_kernel(k, d) - 1
    return span, span


def axis_padding(mode: str | int | tuple[int, int], n: int, k: int, s: int = 1, d: int = 1) -> Pair:
    """Padding ``(before, after)`` of one axis for ``mode``: 'valid', 'same', 'full', an int, or a pair."""
    if mode == "valid":
        return 0, 0
    if mode == "same":
        return same_padding(n, k, s, d)
    if mode == "full":
        return full_padding(k, d)
    before_after: tuple = (mode, mode) if _is_int(mode) else _items(mode)
    if isinstance(mode, str) or len(before_after) != 2 or not all(_is_int(p) for p in before_after):
        raise ShapeError(f"padding must be valid, same, full, N or a (before, after) pair, got {mode!r}")
    if min(before_after) < 0:
        raise ShapeError(f"padding must not be negative, got {before_after}")
    return int(before_after[0]), int(before_after[1])


# --- 2D padding: (top, bottom, left, right) --------------------------------------------------------

def pads(padding: int | Sequence[int] | Sequence[Sequence[int]]) -> Pads:
    """Explicit padding as ``(top, bottom, left, right)``.

    Accepts ``p`` (every side), ``(vertical, horizontal)``, ``(top, bottom, left, right)`` and
    ``((top, bottom), (left, right))``; every value a non-negative integer (ShapeError otherwise).
    """
    if _is_int(padding):
        values: tuple = (padding,) * 4
    else:
        items = _items(padding)
        if len(items) == 2 and all(_is_int(v) for v in items):
            values = (items[0], items[0], items[1], items[1])
        elif len(items) == 2 and all(isinstance(v, Sequence) and len(v) == 2 for v in items):
            values = (*items[0], *items[1])
        else:
            values = items
    if len(values) != 4 or not all(_is_int(v) for v in values):
        raise ShapeError(f"padding must be N, (vertical, horizontal), (top, bottom, left, right) or "
                         f"((top, bottom), (left, right)) in whole numbers, got {padding!r}")
    if min(values) < 0:
        raise ShapeError(f"padding must not be negative, got {padding!r}")
    return int(values[0]), int(values[1]), int(values[2]), int(values[3])


def resolve_pads(padding: Padding, image_hw: Sequence[int], kernel_hw: Sequence[int], stride: Pair = (1, 1),
                 dilation: Pair = (1, 1)) -> Pads:
    """``(top, bottom, left, right)`` from a mode name ('valid', 'same', 'full') or any :func:`pads` form."""
    if isinstance(padding, str):
        if padding not in PADDING_MODES:
            raise ShapeError(f"unknown padding {padding!r}; use valid, same, full, N, (V, H) or (T, B, L, R)")
        rows, cols = (axis_padding(padding, image_hw[a], kernel_hw[a], stride[a], dilation[a]) for a in (0, 1))
        return rows + cols
    return pads(padding)


def axis_pairs(padding: Pads) -> tuple[Pair, Pair]:
    """``(top, bottom, left, right)`` -> ``((top, bottom), (left, right))``, one ``(before, after)`` per axis."""
    return (padding[0], padding[1]), (padding[2], padding[3])


def pytorch_pad_tuple(per_axis: Sequence[tuple[int, int]]) -> tuple[int, ...]:
    """``torch.nn.functional.pad`` order from ``(before, after)`` per axis: last axis first, ``(left, right, top, ...)``."""
    return tuple(v for before, after in reversed(per_axis) for v in (before, after))


# --- text: sizes, pairs, padding -------------------------------------------------------------------

def parse_size(text: str, name: str = "size", *, allow_zero: bool = False) -> tuple[int, ...]:
    """Parse ``"13"``, ``"32x32"`` or ``"3x32x32"`` into a tuple of integers; UsageError if malformed."""
    parts = str(text).strip().lower().replace("×", "x").split("x")
    values = []
    for part in parts:
        part = part.strip()
        if not part.lstrip("-").isdigit() or part.count("-") > 1:
            raise UsageError(f"{name} must be an integer or integers joined by 'x' (e.g. 5 or 5x3), got {text!r}")
        values.append(int(part))
    lowest = 0 if allow_zero else 1
    if any(v < lowest for v in values):
        raise UsageError(f"{name} must be {'non-negative' if allow_zero else 'positive'}, got {text!r}")
    return tuple(values)


def parse_int(text: str, name: str, *, allow_zero: bool = False) -> int:
    """One integer, as :func:`parse_size` reads it (``"6"``); UsageError for ``"6x6"`` or ``"six"``."""
    values = parse_size(text, name, allow_zero=allow_zero)
    if len(values) != 1:
        raise UsageError(f"{name} must be one integer, got {text!r}")
    return values[0]


def parse_pair(text: str) -> Pair:
    """``"2"`` -> ``(2, 2)``; ``"2,1"`` or ``"2x1"`` -> ``(2, 1)``: one or two positive whole numbers."""
    try:
        numbers = tuple(int(v) for v in str(text).replace("x", ",").split(","))
    except ValueError:
        raise UsageError(f"{text!r} is not a whole number or a pair like 2,1") from None
    if len(numbers) == 1:
        numbers = numbers * 2
    if len(numbers) != 2 or min(numbers) <= 0:
        raise UsageError(f"{text!r} must be one or two positive whole numbers, e.g. 2 or 2,1")
    return numbers[0], numbers[1]


def parse_hw(text: str) -> Pair:
    """``"224x224"`` -> ``(224, 224)``: a positive height and width."""
    try:
        height, width = (int(v) for v in str(text).lower().split("x"))
        if height < 1 or width < 1:
            raise ValueError
    except ValueError:
        raise UsageError(f"{text!r} is not HEIGHTxWIDTH (e.g. 224x224)") from None
    return height, width


def parse_padding(text: str, axes: int) -> tuple[tuple[int, int], ...] | str:
    """Parse a padding: a mode name, ``N``, ``NxM`` (per axis), ``B:A`` (before:after) per axis, ``V,H`` or
    ``T,B,L,R`` (before,after per axis).

    Returns the mode name unchanged, or one ``(before, after)`` pair per axis.
    """
    text = str(text).strip().lower()
    if text in PADDING_MODES:
        return text
    form = "valid, same, full, N, NxM (per axis), B:A (before:after, e.g. 1:2x0) or T,B,L,R"
    if "," in text:  # V,H (per axis) or T,B,L,R (before,after per axis)
        fields = text.split(",")
        if not all(f.strip().isdigit() for f in fields):
            raise UsageError(f"padding must be {form}; got {text!r}")
        numbers = [int(f) for f in fields]
        if len(numbers) == axes:
            return tuple((v, v) for v in numbers)
        if len(numbers) == 2 * axes:
            return tuple((numbers[2 * a], numbers[2 * a + 1]) for a in range(axes))
        raise UsageError(f"padding {text!r} needs {axes} or {2 * axes} numbers for a {axes}D input")
    per_axis = []
    for part in text.replace("×", "x").split("x"):
        fields = part.split(":")
        if len(fields) > 2 or not all(f.strip().isdigit() for f in fields):
            raise UsageError(f"padding must be {form}; got {text!r}")
        numbers = [int(f) for f in fields]
        per_axis.append((numbers[0], numbers[-1]))
    if len(per_axis) == 1:
        per_axis *= axes
    if len(per_axis) != axes:
        raise UsageError(f"padding {text!r} has {len(per_axis)} axes but the input has {axes}")
    return tuple(per_axis)


def parse_pads(text: str) -> Pads | str:
    """A 2D padding from text: a mode name, or ``(top, bottom, left, right)`` (any :func:`parse_padding` form)."""
    parsed = parse_padding(text, 2)
    return parsed if isinstance(parsed, str) else parsed[0] + parsed[1]


def broadcast(values: tuple[int, ...], axes: int, name: str) -> tuple[int, ...]:
    """Repeat a single value over ``axes`` axes; UsageError if the number of axes differs."""
    if len(values) == 1:
        return values * axes
    if len(values) != axes:
        raise UsageError(f"{name} has {len(values)} axes ({'x'.join(map(str, values))}) but the input has {axes}")
    return values


# --- pooling ---------------------------------------------------------------------------------------

@dataclass(frozen=True)
class PoolSpec:
    """A pooling: ``kind`` over windows of ``size`` (per axis) moved by ``stride`` (None: the size)."""

    kind: str
    size: tuple[int, ...]
    stride: tuple[int, ...] | None = None

    @property
    def strides(self) -> tuple[int, ...]:
        """The stride, defaulting to the window size."""
        return self.size if self.stride is None else self.stride

    def broadcast(self, axes: int) -> PoolSpec:
        """The same pooling with size and stride given for each of ``axes`` axes."""
        size = broadcast(self.size, axes, "pool size")
        stride = None if self.stride is None else broadcast(self.stride, axes, "pool stride")
        return PoolSpec(self.kind, size, stride)


def parse_pool(text: str, kind: str | None = None, *, default: str | None = None,
               kinds: Sequence[str] = POOL_KINDS) -> PoolSpec:
    """Parse ``KIND:SIZE[:STRIDE]`` (``max:3:2``, ``avg:2x2``), or ``SIZE[:STRIDE]`` with the kind given apart.

    SIZE and STRIDE are ``N`` or ``NxM``; the stride defaults to the size. The kind comes from the text,
    else from ``kind``, else ``default``; a kind in the text must agree with ``kind``. ``kinds`` are the
    kinds the caller can run. UsageError names the expected form.
    """
    form = f"KIND:SIZE[:STRIDE] with KIND one of {', '.join(kinds)} (e.g. max:3:2)"
    parts = str(text).strip().lower().split(":")
    if parts[0] in POOL_KINDS:
        if kind is not None and kind != parts[0]:
            raise UsageError(f"pool {text!r} says {parts[0]} but the pooling kind is {kind}; give the kind once")
        kind, parts = parts[0], parts[1:]
    kind = kind or default
    if kind is None or kind not in kinds or len(parts) not in (1, 2) or not all(parts):
        raise UsageError(f"pool {text!r} must look like {form}")
    size = parse_size(parts[0], "pool size")
    stride = parse_size(parts[1], "pool stride") if len(parts) == 2 else None
    return PoolSpec(kind, size, stride)
