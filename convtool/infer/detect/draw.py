"""Boxes with label and score drawn on the original image, readable on dark and light photos.

Each class gets the colour segment's overlays give it (Kelly's colours of maximum contrast). A box is its
colour with a thin black line outside and inside, so it shows on white snow and night skies alike; the
label sits on a filled tag of the class colour in black or white text, whichever contrasts more.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from convtool.infer.overlay import overlay_palette


def colour(index: int) -> tuple[int, int, int]:
    """The colour of class ``index``: segment's overlay colours (Kelly's), with no background class here."""
    r, g, b = (int(c) for c in overlay_palette(index + 2)[index + 1])
    return r, g, b


def text_colour(background: tuple[int, int, int]) -> tuple[int, int, int]:
    """Black or white, whichever contrasts more with ``background`` (WCAG relative luminance)."""
    channels = [c / 255 for c in background]
    linear = [c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4 for c in channels]
    luminance = 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]
    return (0, 0, 0) if (luminance + 0.05) / 0.05 > 1.05 / (luminance + 0.05) else (255, 255, 255)


def annotate(image: Image.Image, boxes: np.ndarray, scores: np.ndarray, classes: np.ndarray,
             label: Callable[[int], str]) -> Image.Image:
    """A copy of ``image`` in RGB with each box, its label and its score drawn on it."""
    out = image.convert("RGB")
    draw = ImageDraw.Draw(out)
    side = max(out.width, out.height)
    width = max(2, round(side / 320))
    font = ImageFont.load_default(size=max(10, round(side / 45)))
    for box, score, cls in sorted(zip(boxes.tolist(), scores.tolist(), classes.tolist(), strict=True), key=lambda r: r[1]):
        x1, y1, x2, y2 = box
        fill = colour(int(cls))
        x2, y2 = max(x1, x2), max(y1, y2)
        draw.rectangle([x1 - width, y1 - width, x2 + width, y2 + width], outline=(0, 0, 0), width=1)
        draw.rectangle([x1, y1, x2, y2], outline=fill, width=width)
        if x2 - x1 > 2 * width + 2 and y2 - y1 > 2 * width + 2:  # room for the inner line
            draw.rectangle([x1 + width, y1 + width, x2 - width, y2 - width], outline=(0, 0, 0), width=1)
        text = f"{label(int(cls))} {score:.2f}"
        left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
        tag_h = bottom - top + 2 * width
        y = y1 - tag_h if y1 - tag_h >= 0 else y1  # above the box, or inside it at the top edge
        draw.rectangle([x1, y, x1 + right - left + 2 * width, y + tag_h], fill=fill, outline=(0, 0, 0))
        draw.text((x1 + width - left, y + width - top), text, fill=text_colour(fill), font=font)
    return out
