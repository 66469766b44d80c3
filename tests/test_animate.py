"""Sliding-window animations: each frame highlights exactly the inputs the layer reads for that output."""

from __future__ import annotations

import itertools
import re

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from PIL import Image, ImageColor

from convtool import animate, shapes
from convtool.errors import UsageError


def _reads(axis: shapes.Axis, o: int) -> set[int]:
    """Naive loop: the inputs output ``o`` depends on (a transposed conv scatters input i to i*s + t*d - p)."""
    if axis.transposed:
        return {i for i in range(axis.n) for t in range(axis.k) if i * axis.s + t * axis.d - axis.pad[0] == o}
    return {o * axis.s + t * axis.d - axis.pad[0] for t in range(axis.k)} & set(range(axis.n))


@st.composite
def layers(draw):
    op = draw(st.sampled_from(["conv", "convT", "pool"]))
    dims = draw(st.integers(1, 2))
    axes = []
    for _ in range(dims):
        k, s, d = draw(st.integers(1, 3)), draw(st.integers(1, 3)), draw(st.integers(1, 2))
        n = draw(st.integers((k - 1) * d + 1, 7))
        if op == "convT":
            p = draw(st.integers(0, (k - 1) * d))
            axes.append(shapes.transposed_axis(n, k, s, (p, p), d))
        elif op == "pool":
            axes.append(shapes.pool_axis(n, k, s, draw(st.sampled_from(["valid", "same"]))))
        else:
            padding = draw(st.sampled_from(["valid", "same", "full", (1, 0), (0, 2)]))
            axes.append(shapes.conv_axis(n, k, s, padding, d))
    return op, axes


@settings(max_examples=40, deadline=None)
@given(layers())
def test_frames_highlight_what_the_layer_reads(layer):
    op, axes = layer
    assume(animate.frame_count(axes) <= animate.MAX_FRAMES)  # larger ones are refused: test_too_many_frames_says_how_many
    anim = animate.build(axes, "max pool" if op == "pool" else op)
    assert len(anim.frames) == animate.frame_count(axes) == np.prod([a.out for a in axes])
    for frame, out in zip(anim.frames, itertools.product(*(range(a.out) for a in axes))):
        assert frame.output == out
        expected = set(itertools.product(*(_reads(a, o) for a, o in zip(axes, out))))
        assert set(frame.reads) == expected
    if op != "convT":
        read = {r for f in anim.frames for r in f.reads}
        assert anim.unread == set(itertools.product(*(range(a.n) for a in axes))) - read


def test_output_values_of_the_lectures_edge_example():
    """5x6 input, left half 10, vertical edge kernel, valid: the edge shows as 30s in the middle columns."""
    x = np.array([[10, 10, 10, 0, 0, 0]] * 5, float)
    kernel = np.array([[1, 0, -1]] * 3, float)
    anim = animate.build([shapes.conv_axis(5, 3), shapes.conv_axis(6, 3)], "conv", x, kernel)
    values = np.array([f.value for f in anim.frames]).reshape(3, 4)
    np.testing.assert_array_equal(values, [[0, 30, 30, 0]] * 3)


def test_transposed_values_scatter_like_pytorch():
    x, kernel = np.array([1.0, 2, 3]), np.array([1.0, 2, 4])
    axis = shapes.transposed_axis(3, 3, 2, (1, 1))
    expected = np.zeros(axis.out)
    for i, t in itertools.product(range(3), range(3)):
        o = i * 2 + t - 1
        if 0 <= o < axis.out:
            expected[o] += x[i] * kernel[t]
    anim = animate.build([axis], "convT", x, kernel)
    np.testing.assert_array_equal([f.value for f in anim.frames], expected)


@pytest.mark.parametrize("op, axes", [
    ("conv", [shapes.conv_axis(5, 3, 2, "same"), shapes.conv_axis(6, 2, 1, (1, 0), 2)]),
    ("convT", [shapes.transposed_axis(3, 3, 2, (1, 1)), shapes.transposed_axis(2, 2, 1, (0, 0))]),
])
def test_drawn_frames_colour_exactly_the_read_cells(op, axes):
    """In the pictures themselves: a grid cell is drawn in the tap colour iff the frame's window covers it."""
    anim = animate.build(axes, op)
    plan = animate.layout(anim)
    cols = len(anim.grid[1].kinds)
    grid_cells = [s for s in plan.base_under if s.kind == "rect"][: len(anim.grid[0].kinds) * cols]
    taps = {ImageColor.getrgb(animate.COLOURS[c]) for c in ("tap", "tap_pad")}
    for picture, frame in zip(animate.draw(anim), anim.frames):
        covered = set(frame.cells)
        for index, cell in enumerate(grid_cells):
            colour = picture.getpixel((int(cell.x) + 3, int(cell.y) + 3))
            assert (colour in taps) == (divmod(index, cols) in covered)
        real = {(anim.grid[0].inputs[r], anim.grid[1].inputs[c]) for r, c in covered}
        assert {p for p in real if None not in p} == set(frame.reads)


def test_files_gif_png_frames_and_svg(tmp_path):
    anim = animate.build([shapes.conv_axis(4, 3), shapes.conv_axis(5, 3)], "conv")  # 2x3 outputs
    animate.save(anim, tmp_path / "a.gif")
    with Image.open(tmp_path / "a.gif") as gif:
        assert gif.n_frames == 6
    written = animate.save(anim, tmp_path / "a.png")
    assert [p.name for p in written] == [f"a-00{i}.png" for i in range(1, 7)]
    animate.save(anim, tmp_path / "a.svg")
    text = (tmp_path / "a.svg").read_text()
    assert len(re.findall(r'<g class="frame"', text)) == 12  # two layers per frame
    assert (tmp_path / "a.gif").stat().st_size < 100_000
    with pytest.raises(UsageError, match="a.gif: already exists; pass `overwrite`"):
        animate.save(anim, tmp_path / "a.gif")
    with pytest.raises(UsageError, match="a-001.png: already exists"):
        animate.save(anim, tmp_path / "a.png")
    with pytest.raises(UsageError, match="unknown animation type '.mp4'"):
        animate.save(anim, tmp_path / "a.mp4")


def test_too_many_frames_says_how_many():
    with pytest.raises(UsageError, match=r"1,444 frames \(one per output, 38x38\); at most 300"):
        animate.build([shapes.conv_axis(40, 3)] * 2)
