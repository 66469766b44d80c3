"""Sliding-window animations in the style of Dumoulin and Visin's convolution-arithmetic figures.

:func:`build` works out, for any 1-D or 2-D geometry, the drawn input grid (padding, inputs and, for a
transposed convolution, the zeros inserted between inputs) and one :class:`Frame` per output: the grid
cells under the kernel taps, the input positions they read and, with an input and a kernel, the value.
A transposed convolution is drawn as the direct convolution it equals: stride 1 over the zero-inserted
input padded by ``span - 1 - p`` (the figures' convention), so its frames read the inputs that scatter
into each output. :func:`draw` turns frames into pictures (Pillow), :func:`save` writes a GIF, numbered
PNG frames or an animated SVG. No click, no rich.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from convtool.errors import UsageError
from convtool.shapes import Axis

MAX_FRAMES = 300
FORMATS = (".gif", ".png", ".svg")
PAD, INPUT, ZERO = "pad", "input", "zero"  # cell kinds of the drawn grid


@dataclass(frozen=True)
class GridAxis:
    """One axis of the drawn grid: the kind of every cell and the input position it shows (None if none)."""

    kinds: tuple[str, ...]
    inputs: tuple[int | None, ...]
    stride: int  # window step on the grid
    taps: tuple[int, ...]  # tap offsets on the grid (dilated)
    out: int


def grid_axis(axis: Axis) -> GridAxis:
    """The drawn cells of one axis of a convolution, pooling or (zero-inserted) transposed convolution."""
    offsets = tuple(t * axis.d for t in range(axis.k))
    if not axis.transposed:
        before, after = axis.pad
        kinds = (PAD,) * before + (INPUT,) * axis.n + (PAD,) * after
        inputs = (None,) * before + tuple(range(axis.n)) + (None,) * after
        return GridAxis(kinds, inputs, axis.s, offsets, axis.out)
    edge = axis.span - 1
    before, after = edge - axis.pad[0], edge - axis.pad[1] + axis.output_padding
    if before < 0 or after < 0:
        raise UsageError(f"a transposed convolution cropping {max(axis.pad)} cells per side is more than the kernel "
                         f"span - 1 = {edge}; it cannot be drawn as a convolution of the zero-inserted input")
    inner = (axis.n - 1) * axis.s + 1
    kinds = (PAD,) * before + tuple(INPUT if i % axis.s == 0 else ZERO for i in range(inner)) + (PAD,) * after
    inputs = (None,) * before + tuple(i // axis.s if i % axis.s == 0 else None for i in range(inner)) + (None,) * after
    return GridAxis(kinds, inputs, 1, offsets, axis.out)


@dataclass(frozen=True)
class Frame:
    """One output: its position, the grid cells under the taps (in tap order), the inputs they read."""

    output: tuple[int, ...]
    cells: tuple[tuple[int, ...], ...]
    reads: tuple[tuple[int, ...], ...]
    value: float | None = None


@dataclass
class Animation:
    op: str  # "conv", "convT" or "max pool" / "avg pool"
    axes: list[Axis]
    grid: list[GridAxis]
    frames: list[Frame]
    unread: set[tuple[int, ...]] = field(default_factory=set)  # inputs no output reads
    x: np.ndarray | None = None
    kernel: np.ndarray | None = None
    title: str = ""

    @property
    def out_shape(self) -> tuple[int, ...]:
        return tuple(g.out for g in self.grid)


def frame_count(axes: list[Axis]) -> int:
    return math.prod(a.out for a in axes)


def check_frames(axes: list[Axis]) -> None:
    """UsageError when the animation would have more than MAX_FRAMES frames (one per output)."""
    count = frame_count(axes)
    if count > MAX_FRAMES:
        outs = "x".join(str(a.out) for a in axes)
        raise UsageError(f"the animation would have {count:,} frames (one per output, {outs}); at most {MAX_FRAMES}: "
                         f"use a smaller input size or a larger stride")


def build(axes: list[Axis], op: str = "conv", x: np.ndarray | None = None, kernel: np.ndarray | None = None,
          title: str = "") -> Animation:
    """Frames of a layer given per axis (``shapes.conv_axis``, ``transposed_axis`` or ``pool_axis``).

    ``x`` (the input, shaped like the axes) fills in input values; with a ``kernel`` (or a pooling)
    each frame gets its output value.
    """
    check_frames(axes)
    grid = [grid_axis(a) for a in axes]
    if x is not None and tuple(x.shape) != tuple(a.n for a in axes):
        raise UsageError(f"the input is {'x'.join(map(str, x.shape))} but the layer expects "
                         f"{'x'.join(str(a.n) for a in axes)}")
    if kernel is not None and tuple(kernel.shape) != tuple(a.k for a in axes):
        raise UsageError(f"the kernel is {'x'.join(map(str, kernel.shape))} but the layer's kernel size is "
                         f"{'x'.join(str(a.k) for a in axes)}")
    frames = []
    for out in itertools.product(*(range(g.out) for g in grid)):
        taps = list(itertools.product(*(range(len(g.taps)) for g in grid)))
        cells = tuple(tuple(o * g.stride + g.taps[t] for o, g, t in zip(out, grid, tap)) for tap in taps)
        reads = tuple(tuple(g.inputs[c] for g, c in zip(grid, cell)) for cell in cells)
        value = _value(op, x, kernel, taps, reads, axes)
        real = tuple(tuple(int(i) for i in r if i is not None) for r in reads if None not in r)
        frames.append(Frame(out, cells, real, value))
    read = {r for f in frames for r in f.reads}
    unread = set(itertools.product(*(range(a.n) for a in axes))) - read
    return Animation(op, axes, grid, frames, unread, x, kernel, title)


def _value(op: str, x, kernel, taps, reads, axes) -> float | None:
    """The output of one window: kernel taps times inputs (flipped kernel for convT), or the pooling."""
    if x is None:
        return None
    values = [x[r] if None not in r else 0.0 for r in reads]
    if op.endswith("pool"):
        real = [x[r] for r in reads if None not in r]
        return float(max(real) if op.startswith("max") else np.mean(real)) if real else None
    if kernel is None:
        return None
    if op == "convT":
        taps = [tuple(a.k - 1 - t for a, t in zip(axes, tap)) for tap in taps]
    return float(sum(kernel[t] * v for t, v in zip(taps, values)))


# -- drawing -------------------------------------------------------------------------------------------

COLOURS = {"pad": "#eeeeee", "input": "#ffffff", "zero": "#fff6d5", "outline": "#333333", "pad_outline": "#aaaaaa",
           "tap": "#8fbbe8", "tap_pad": "#cfe0f3", "out": "#8fbbe8", "done": "#e6eef8", "text": "#111111",
           "drop": "#d0021b", "title": "#000000"}


@dataclass(frozen=True)
class Shape:
    """A drawing primitive: rect (x, y, w, h), text (x, y = centre) or cross (x, y, w, h)."""

    kind: str
    x: float
    y: float
    w: float = 0
    h: float = 0
    fill: str | None = None
    outline: str | None = None
    text: str = ""
    size: int = 11
    dashed: bool = False


@dataclass
class Layout:
    width: int
    height: int
    base_under: list[Shape]
    base_over: list[Shape]
    frames_under: list[list[Shape]]
    frames_over: list[list[Shape]]


def _fmt(value: float) -> str:
    return f"{value:.0f}" if float(value).is_integer() else f"{value:.2g}" if abs(value) < 10 else f"{value:.0f}"


def layout(anim: Animation) -> Layout:
    """Every shape of every frame: the input grid on the left (padding set apart), the output on the right."""
    gy = anim.grid[0] if len(anim.grid) == 2 else None
    gx = anim.grid[-1]
    rows, cols = (len(gy.kinds) if gy else 1), len(gx.kinds)
    out_rows, out_cols = (gy.out if gy else 1), gx.out
    cell = int(max(14, min(34, 520 // max(cols + out_cols + 2, rows + 1))))
    gap = max(3, cell // 6)  # padding is drawn set apart from the input by this gap
    top, left = 34, 12

    def col_x(c: int) -> float:
        before = gx.kinds.index(INPUT) if INPUT in gx.kinds else 0
        last = len(gx.kinds) - 1 - gx.kinds[::-1].index(INPUT) if INPUT in gx.kinds else cols - 1
        return left + c * cell + (gap if c >= before else 0) + (gap if c > last else 0)

    def row_y(r: int) -> float:
        if gy is None:
            return top
        before = gy.kinds.index(INPUT) if INPUT in gy.kinds else 0
        last = len(gy.kinds) - 1 - gy.kinds[::-1].index(INPUT) if INPUT in gy.kinds else rows - 1
        return top + r * cell + (gap if r >= before else 0) + (gap if r > last else 0)

    out_left = col_x(cols - 1) + cell + 2 * cell
    under, over = [], []
    for r, c in itertools.product(range(rows), range(cols)):
        kinds = [gy.kinds[r] if gy else INPUT, gx.kinds[c]]
        kind = PAD if PAD in kinds else ZERO if ZERO in kinds else INPUT
        position = _input_at(anim, r, c)
        under.append(Shape("rect", col_x(c), row_y(r), cell, cell, COLOURS[kind],
                           COLOURS["pad_outline" if kind == PAD else "outline"], dashed=kind == PAD))
        if anim.x is not None and position is not None:
            over.append(Shape("text", col_x(c) + cell / 2, row_y(r) + cell / 2, text=_fmt(anim.x[position]),
                              size=max(8, cell // 3)))
        elif kind == ZERO:
            over.append(Shape("text", col_x(c) + cell / 2, row_y(r) + cell / 2, text="0", size=max(8, cell // 3),
                              fill="#b8a040"))
        if position is not None and position in anim.unread:
            mark = max(4, cell // 4)  # a small red x in the corner, like --explain's "unread" row
            over.append(Shape("cross", col_x(c) + cell - mark - 2, row_y(r) + 2, mark, mark, outline=COLOURS["drop"]))
    for r, c in itertools.product(range(out_rows), range(out_cols)):
        under.append(Shape("rect", out_left + c * cell, top + r * cell, cell, cell, "#ffffff", COLOURS["outline"]))
    over.append(Shape("text", left, 14, text=anim.title, size=12, fill=COLOURS["title"]))
    frames_under, frames_over = [], []
    for i, frame in enumerate(anim.frames):
        f_under, f_over = [], []
        for tap, cell_pos in enumerate(frame.cells):
            r, c = (cell_pos if gy else (0, cell_pos[0]))
            padded = (gy is not None and gy.kinds[r] == PAD) or gx.kinds[c] == PAD
            f_under.append(Shape("rect", col_x(c), row_y(r), cell, cell, COLOURS["tap_pad" if padded else "tap"],
                                 COLOURS["outline"]))
            if anim.kernel is not None:
                weight = anim.kernel.reshape(-1)[::-1][tap] if anim.op == "convT" else anim.kernel.reshape(-1)[tap]
                f_over.append(Shape("text", col_x(c) + cell - 2, row_y(r) + cell - 2, text=f"x{_fmt(weight)}",
                                    size=max(7, cell // 4), fill="#0b3d91", outline="corner"))
        for j, done in enumerate(anim.frames[: i + 1]):
            r, c = (done.output if gy else (0, done.output[0]))
            current = j == i
            f_under.append(Shape("rect", out_left + c * cell, top + r * cell, cell, cell,
                                 COLOURS["out" if current else "done"], COLOURS["outline"]))
            if done.value is not None:
                f_over.append(Shape("text", out_left + c * cell + cell / 2, top + r * cell + cell / 2,
                                    text=_fmt(done.value), size=max(8, cell // 3)))
        frames_under.append(f_under)
        frames_over.append(f_over)
    width = int(out_left + out_cols * cell + left)
    height = int(max(row_y(rows - 1), top + (out_rows - 1) * cell) + cell + 12)
    return Layout(max(width, 320), height, under, over, frames_under, frames_over)


def _input_at(anim: Animation, r: int, c: int) -> tuple[int, ...] | None:
    """The input position drawn at grid cell (r, c), or None for padding and inserted zeros."""
    ix = anim.grid[-1].inputs[c]
    if len(anim.grid) == 1:
        return None if ix is None else (ix,)
    iy = anim.grid[0].inputs[r]
    return None if ix is None or iy is None else (iy, ix)


def draw(anim: Animation) -> list:
    """One Pillow RGB image per frame."""
    from PIL import Image, ImageDraw

    plan = layout(anim)
    base = Image.new("RGB", (plan.width, plan.height), "white")
    pictures = []
    for under, over in zip(plan.frames_under, plan.frames_over):
        image = base.copy()
        canvas = ImageDraw.Draw(image)
        for shape in plan.base_under + under + plan.base_over + over:
            _draw_shape(canvas, shape)
        pictures.append(image)
    return pictures


def _draw_shape(canvas, shape: Shape) -> None:
    from PIL import ImageFont

    if shape.kind == "rect":
        box = (shape.x, shape.y, shape.x + shape.w - 1, shape.y + shape.h - 1)
        canvas.rectangle(box, fill=shape.fill, outline=None if shape.dashed else shape.outline)
        if shape.dashed:  # dashed outline: short segments along each side
            for t in range(0, int(shape.w), 4):
                canvas.line((shape.x + t, shape.y, shape.x + min(t + 2, shape.w - 1), shape.y), fill=shape.outline)
                canvas.line((shape.x + t, box[3], shape.x + min(t + 2, shape.w - 1), box[3]), fill=shape.outline)
                canvas.line((shape.x, shape.y + t, shape.x, shape.y + min(t + 2, shape.h - 1)), fill=shape.outline)
                canvas.line((box[2], shape.y + t, box[2], shape.y + min(t + 2, shape.h - 1)), fill=shape.outline)
    elif shape.kind == "cross":
        canvas.line((shape.x, shape.y, shape.x + shape.w, shape.y + shape.h), fill=shape.outline, width=2)
        canvas.line((shape.x, shape.y + shape.h, shape.x + shape.w, shape.y), fill=shape.outline, width=2)
    elif shape.text:
        font = ImageFont.load_default(size=shape.size)
        anchor = "rb" if shape.outline == "corner" else "lm" if shape.size == 12 else "mm"
        canvas.text((shape.x, shape.y), shape.text, fill=shape.fill or COLOURS["text"], font=font, anchor=anchor)


def svg(anim: Animation, seconds: float) -> str:
    """An animated SVG: the static grid once, each frame's shapes shown in turn (SMIL, loops forever)."""
    plan = layout(anim)
    count = len(plan.frames_under)
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{plan.width}" height="{plan.height}" '
             f'font-family="sans-serif"><rect width="100%" height="100%" fill="white"/>']
    parts += [_svg_shape(s) for s in plan.base_under]
    parts += [_svg_group(shapes, i, count, seconds) for i, shapes in enumerate(plan.frames_under)]
    parts += [_svg_shape(s) for s in plan.base_over]
    parts += [_svg_group(shapes, i, count, seconds) for i, shapes in enumerate(plan.frames_over)]
    return "\n".join(parts) + "\n</svg>\n"


def _svg_group(shapes: list[Shape], i: int, count: int, seconds: float) -> str:
    if count == 1:
        return "<g>" + "".join(_svg_shape(s) for s in shapes) + "</g>"
    values, times = ["visible", "hidden"], [i / count, (i + 1) / count]
    if i > 0:
        values, times = ["hidden"] + values, [0.0] + times
    if i == count - 1:
        values, times = values[:-1], times[:-1]
    key_times = ";".join(f"{t:.6g}" for t in times)
    animate = (f'<animate attributeName="visibility" values="{";".join(values)}" keyTimes="{key_times}" '
               f'dur="{count * seconds:g}s" calcMode="discrete" repeatCount="indefinite"/>')
    return f'<g class="frame" visibility="{"visible" if i == 0 else "hidden"}">{animate}' \
           + "".join(_svg_shape(s) for s in shapes) + "</g>"


def _svg_shape(shape: Shape) -> str:
    if shape.kind == "rect":
        dash = ' stroke-dasharray="2,2"' if shape.dashed else ""
        return (f'<rect x="{shape.x:g}" y="{shape.y:g}" width="{shape.w:g}" height="{shape.h:g}" fill="{shape.fill}" '
                f'stroke="{shape.outline}"{dash}/>')
    if shape.kind == "cross":
        x2, y2 = shape.x + shape.w, shape.y + shape.h
        return (f'<path d="M{shape.x:g},{shape.y:g}L{x2:g},{y2:g}M{shape.x:g},{y2:g}L{x2:g},{shape.y:g}" '
                f'stroke="{shape.outline}" stroke-width="2"/>')
    anchor = "end" if shape.outline == "corner" else "start" if shape.size == 12 else "middle"
    baseline = "auto" if shape.outline == "corner" else "central"
    text = shape.text.replace("&", "&amp;").replace("<", "&lt;")
    return (f'<text x="{shape.x:g}" y="{shape.y:g}" font-size="{shape.size}" fill="{shape.fill or COLOURS["text"]}" '
            f'text-anchor="{anchor}" dominant-baseline="{baseline}">{text}</text>')


def save(anim: Animation, path: Path, *, seconds: float = 0.6, overwrite: bool = False) -> list[Path]:
    """Write a GIF, numbered PNG frames (``out-001.png``...) or an animated SVG; return the paths written.

    Existing files are replaced only with ``overwrite`` (each atomically; numbered frames left over from a
    longer animation are removed); otherwise every target is checked before anything is written.
    """
    from convtool.io.publish import publish_with

    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in FORMATS:
        raise UsageError(f"{path}: unknown animation type {suffix or '(none)'!r}; use .gif, .png (one file per frame) "
                         f"or .svg")
    count = len(anim.frames)
    targets = [path] if suffix != ".png" else [path.with_name(f"{path.stem}-{i:03d}.png") for i in range(1, count + 1)]
    existing = [t for t in targets if t.exists()]
    if existing and not overwrite:
        raise UsageError(f"{existing[0]}: already exists; pass `overwrite` to replace it")
    if suffix == ".svg":
        text = svg(anim, seconds)
        publish_with(path, lambda tmp: tmp.write_text(text, encoding="utf-8"), overwrite=overwrite)
        return targets
    pictures = draw(anim)
    if suffix == ".gif":
        frames = [p.convert("P", palette=1, colors=64) for p in pictures]  # 1 = adaptive palette
        publish_with(path, lambda tmp: frames[0].save(tmp, format="GIF", save_all=True, append_images=frames[1:],
                                                      duration=int(seconds * 1000), loop=0, optimize=True),
                     overwrite=overwrite)
        return targets
    for target, picture in zip(targets, pictures):
        publish_with(target, _png_writer(picture), overwrite=overwrite)
    if overwrite:
        for stale in path.parent.glob(f"{path.stem}-[0-9][0-9][0-9].png"):
            if stale not in targets:
                stale.unlink()
    return targets


def _png_writer(picture) -> Callable[[Path], None]:
    def write(tmp: Path) -> None:
        picture.save(tmp, format="PNG", optimize=True)

    return write
