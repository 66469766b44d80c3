"""Annotated images: boxes show on dark and light photos, tiny and degenerate boxes draw, text contrasts."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from convtool.infer.detect.draw import annotate, colour, text_colour


@pytest.mark.parametrize("grey", [0, 255])
def test_box_edges_stand_out_on_dark_and_light(grey):
    image = Image.new("RGB", (200, 150), (grey, grey, grey))
    drawn = np.asarray(annotate(image, np.array([[50.0, 60.0, 150.0, 140.0]]), np.array([0.9]), np.array([3]), str)).astype(int)
    edge = drawn[100, 44:58]  # a horizontal cut through the left edge: outline, colour, inner line
    contrast = np.abs(edge - grey).max(axis=1)
    assert contrast.max() >= 128  # some pixel of the edge differs strongly from the background
    assert (drawn[100, 100] == grey).all() and (drawn[5, 190] == grey).all()  # inside and far away untouched


def test_tiny_and_degenerate_boxes_draw(tmp_path):
    boxes = np.array([[10.0, 10.0, 11.0, 12.0], [30.0, 30.0, 30.0, 30.0], [5.0, 0.0, 3.0, 2.0]])
    out = annotate(Image.new("L", (40, 40)), boxes, np.array([0.5, 0.4, 0.3]), np.array([0, 1, 2]), lambda i: f"c{i}")
    assert out.mode == "RGB" and out.size == (40, 40)


def _luminance(colour) -> float:
    return 0.2126 * colour[0] + 0.7152 * colour[1] + 0.0722 * colour[2]


def test_text_colour_contrasts_with_the_class_colours():
    for index in range(30):
        fill = colour(index)
        assert abs(_luminance(fill) - _luminance(text_colour(fill))) > 60
