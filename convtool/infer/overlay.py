"""Segmentation overlays people can read: vivid class colours, outlines, and a legend with areas.

The mask PNG keeps the VOC index palette that tools expect (``segment.palette``); overlays use
``OVERLAY_COLOURS`` instead: Kelly's colours of maximum contrast (K. L. Kelly, "Twenty-two colors of maximum
contrast", Color Engineering 3(6), 1965) without white, black and the darkest browns and olives, which vanish
on photos; classes beyond the list get hues spread by the golden angle (saturation 0.75, so blue stays visible).
"""

from __future__ import annotations

import colorsys
from functools import lru_cache
from typing import Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFont

OVERLAY_COLOURS = np.array([
    (255, 179, 0), (193, 0, 32), (0, 125, 52), (0, 83, 138), (255, 104, 0), (166, 189, 215), (128, 62, 117),
    (246, 118, 142), (147, 170, 0), (83, 55, 122), (255, 122, 92), (244, 200, 0), (179, 40, 81), (206, 162, 98),
    (241, 58, 19), (0, 161, 222), (129, 112, 102), (255, 142, 0),
], dtype=np.uint8)  # Kelly's list order; (0, 161, 222) is a vivid cyan added for a second blue


def overlay_palette(classes: int) -> np.ndarray:
    """(classes, 3) uint8 colours; class 0 (background) is never drawn and gets grey."""
    colours = np.zeros((max(classes, 1), 3), dtype=np.uint8)
    colours[0] = (128, 128, 128)
    for index in range(1, classes):
        if index - 1 < len(OVERLAY_COLOURS):
            colours[index] = OVERLAY_COLOURS[index - 1]
        else:
            hue = (index * 0.618033988749895) % 1.0
            colours[index] = [round(255 * c) for c in colorsys.hsv_to_rgb(hue, 0.75, 1.0)]
    return colours


def outlines(mask: np.ndarray) -> np.ndarray:
    """Pixels whose right or lower neighbour has another class (and the neighbour too): boundaries."""
    edge = np.zeros(mask.shape, dtype=bool)
    horizontal = mask[:, 1:] != mask[:, :-1]
    vertical = mask[1:, :] != mask[:-1, :]
    edge[:, 1:] |= horizontal
    edge[:, :-1] |= horizontal
    edge[1:, :] |= vertical
    edge[:-1, :] |= vertical
    return edge


def overlay(image: Image.Image, mask: np.ndarray, classes: int, alpha: float = 0.5) -> np.ndarray:
    """H,W,3 uint8: the photo with each class's colour blended in at ``alpha`` and its outline drawn solid.

    Only the pixels of classes other than 0 are computed (in float32, rounded to nearest).
    """
    pixels = np.array(image.convert("RGB"), dtype=np.uint8)  # a writable copy
    colours = overlay_palette(max(classes, int(mask.max(initial=0)) + 1))
    flat, labels = pixels.reshape(-1, 3), mask.ravel()
    foreground = np.flatnonzero(labels)
    if foreground.size:
        drawn = labels[foreground]
        blended = flat[foreground] * np.float32(1 - alpha) + colours[drawn] * np.float32(alpha)
        flat[foreground] = np.rint(blended)  # within 0..255: a weighted mean of two 0..255 values
        edge = foreground[outlines(mask).ravel()[foreground]]
        flat[edge] = colours[labels[edge]]
    return pixels


def with_legend(pixels: np.ndarray, entries: Sequence[tuple[str, tuple[int, int, int], float]]) -> Image.Image:
    """The overlay with a legend panel on its right: a swatch, the class name and its share of the image."""
    font = _font()
    line = 18
    labels = [f"{name}  {share:.1%}" for name, _, share in entries] or ["no classes found"]
    measure = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    text_width = max(int(measure.textlength(text, font=font)) for text in labels)
    panel_width = 12 + 14 + 6 + text_width + 10
    height = max(pixels.shape[0], 8 + line * len(labels))
    canvas = Image.new("RGB", (pixels.shape[1] + panel_width, height), "white")
    canvas.paste(Image.fromarray(pixels), (0, 0))
    draw = ImageDraw.Draw(canvas)
    x = pixels.shape[1] + 12
    for row, text in enumerate(labels):
        y = 6 + row * line
        if entries:
            draw.rectangle((x, y + 1, x + 13, y + 14), fill=tuple(entries[row][1]), outline="black")
        draw.text((x + 20, y), text, fill="black", font=font)
    return canvas


@lru_cache(maxsize=4)
def _font(size: int = 13) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    try:
        return ImageFont.load_default(size)
    except TypeError:  # Pillow < 10.1 has no sized default font
        return ImageFont.load_default()
