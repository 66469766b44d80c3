"""Letterbox: padding split, exact round trip of boxes, and a drawn rectangle found back in place."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from convtool.infer.detect.letterbox import LetterboxPreparer, place
from convtool.infer.preprocess import Preprocess


def test_padding_split_odd_pixel_goes_bottom():
    # 100x51 into 64x64: scale 0.64, resized 64x33, 31 rows of padding: 15 on top, 16 below
    where = place(100, 51, 64, 64)
    assert (where.resized_width, where.resized_height, where.left, where.top) == (64, 33, 0, 15)
    canvas = LetterboxPreparer(Preprocess(height=64, width=64), pad=114).pixels(Image.new("RGB", (100, 51), (0, 0, 0)))
    column = canvas[:, 10, 0]
    assert (column[:15] == 114).all() and (column[15:48] == 0).all() and (column[48:] == 114).all()


def test_stretch_has_no_padding():
    where = place(100, 50, 64, 32, "stretch")
    assert (where.scale_x, where.scale_y, where.left, where.top) == (0.32, 1.28, 0, 0)


@settings(max_examples=30, deadline=None)
@given(st.integers(1, 900), st.integers(1, 900), st.integers(16, 640), st.integers(16, 640),
       st.sampled_from(["letterbox", "stretch"]))
def test_boxes_round_trip_exactly(width, height, target_h, target_w, mode):
    where = place(width, height, target_h, target_w, mode)
    boxes = np.array([[0, 0, width, height], [width * 0.25, height * 0.5, width * 0.75, height]])
    np.testing.assert_allclose(where.to_original(where.to_input(boxes)), boxes, atol=1e-9 * max(width, height))
    inside = where.to_input(np.array([[0, 0, width, height]]))[0]
    assert inside[0] >= 0 and inside[1] >= 0 and inside[2] <= target_w + 1e-9 and inside[3] <= target_h + 1e-9


@pytest.mark.parametrize("size, target", [((300, 200), (64, 64)), ((97, 181), (80, 48)), ((40, 40), (96, 128))])
def test_drawn_rectangle_maps_back(size, target):
    width, height = size
    x1, y1, x2, y2 = width // 4, height // 3, width * 3 // 4, height * 5 // 6
    pixels = np.zeros((height, width, 3), np.uint8)
    pixels[y1:y2, x1:x2] = 255
    preparer = LetterboxPreparer(Preprocess(height=target[0], width=target[1]), pad=0)
    canvas = preparer.pixels(Image.fromarray(pixels))[..., 0]
    rows, cols = np.nonzero(canvas > 127)
    found = np.array([[cols.min(), rows.min(), cols.max() + 1, rows.max() + 1]], float)
    back = preparer.placement(width, height).to_original(found)[0]
    tolerance = 1.5 / min(preparer.placement(width, height).scale_x, preparer.placement(width, height).scale_y)
    np.testing.assert_allclose(back, [x1, y1, x2, y2], atol=max(1.0, tolerance))


def test_bgr_and_gray():
    image = Image.new("RGB", (8, 8), (10, 20, 30))
    bgr = LetterboxPreparer(Preprocess(height=8, width=8, channels="bgr")).pixels(image)
    assert bgr[0, 0].tolist() == [30, 20, 10]
    gray = LetterboxPreparer(Preprocess(height=8, width=16, channels="gray"), pad=7).pixels(image)
    assert gray.shape == (8, 16) and gray[0, 0] == 7 and gray[0, 4] == image.convert("L").getpixel((0, 0))
