"""Fit an image into the model's input: letterbox (aspect kept, padded) or plain resize, and back.

The forward mapping from original pixels to input pixels is ``x_in = left + x * scale_x`` (likewise
for y), with the scales taken from the *rounded* resized size, so :meth:`Placement.to_original` is its
exact inverse. Padding is split as Ultralytics' LetterBox splits it (the odd pixel goes to the bottom
and right), so boxes from models trained with that preprocessing land where it put them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image

from convtool.infer.preprocess import Preparer, Preprocess, _to_8bit

RESIZE_MODES = ("letterbox", "stretch")


@dataclass(frozen=True)
class Placement:
    """Where an original image sits inside the model's input."""

    width: int  # original size
    height: int
    resized_width: int  # size after resizing, before padding
    resized_height: int
    left: int  # padding before the image
    top: int

    @property
    def scale_x(self) -> float:
        return self.resized_width / self.width

    @property
    def scale_y(self) -> float:
        return self.resized_height / self.height

    def to_input(self, boxes: np.ndarray) -> np.ndarray:
        """Original-pixel corners N,4 -> model-input pixels."""
        out = np.array(boxes, dtype=np.float64)
        out[:, 0::2] = out[:, 0::2] * self.scale_x + self.left
        out[:, 1::2] = out[:, 1::2] * self.scale_y + self.top
        return out

    def to_original(self, boxes: np.ndarray) -> np.ndarray:
        """Model-input corners N,4 -> original pixels, clipped to the image."""
        out = np.array(boxes, dtype=np.float64)
        out[:, 0::2] = np.clip((out[:, 0::2] - self.left) / self.scale_x, 0, self.width)
        out[:, 1::2] = np.clip((out[:, 1::2] - self.top) / self.scale_y, 0, self.height)
        return out


def place(width: int, height: int, target_height: int, target_width: int, mode: str = "letterbox") -> Placement:
    """The placement of a width x height image in a target_height x target_width input."""
    if mode == "stretch":
        return Placement(width, height, target_width, target_height, 0, 0)
    ratio = min(target_height / height, target_width / width)
    resized_w = max(1, min(target_width, round(width * ratio)))
    resized_h = max(1, min(target_height, round(height * ratio)))
    pad_w, pad_h = (target_width - resized_w) / 2, (target_height - resized_h) / 2
    return Placement(width, height, resized_w, resized_h, round(pad_w - 0.1), round(pad_h - 0.1))


class LetterboxPreparer(Preparer):
    """A Preparer that letterboxes (or stretches) to the recipe's fixed size, padding with ``pad``."""

    def __init__(self, recipe: Preprocess, *, mode: str = "letterbox", pad: int = 114) -> None:
        super().__init__(recipe)
        if mode not in RESIZE_MODES:
            raise ValueError(f"resize mode {mode!r}: use letterbox or stretch")
        if recipe.height is None or recipe.width is None:
            raise ValueError("a letterbox needs the model's input size")
        self.size: tuple[int, int] = (recipe.height, recipe.width)
        self.resize_mode, self.pad = mode, pad

    def placement(self, width: int, height: int) -> Placement:
        return place(width, height, *self.size, self.resize_mode)

    def pixels(self, image: Image.Image) -> np.ndarray:
        if image.mode != self.mode:
            image = _to_8bit(image).convert(self.mode)
        where = self.placement(image.width, image.height)
        if (image.width, image.height) != (where.resized_width, where.resized_height):
            image = image.resize((where.resized_width, where.resized_height), Image.Resampling.BILINEAR)
        shape = self.size + (() if self.mode == "L" else (3,))
        canvas = np.full(shape, self.pad, dtype=np.uint8)
        canvas[where.top : where.top + where.resized_height, where.left : where.left + where.resized_width] = np.asarray(image)
        if self.recipe.channels == "bgr":
            canvas = canvas[..., ::-1]
        return canvas
