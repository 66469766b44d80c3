"""Image -> model input: layout, channels, size and scaling, read from the model or from options.

A model exported by ``convtool train`` says how it wants its pixels in the metadata key
``convtool.input``: ``{"layout", "channels", "height", "width", "scale", "mean", "std"}``, meaning
``x = (pixel * scale - mean) / std`` for pixels 0..255. Other models get it inferred from the input's
shape: the axis of size 1 or 3 is the channel axis, fixed height and width mean resize, pixels are
scaled to 0..1. Every field can be overridden.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
from PIL import Image

from convtool.errors import ModelError, UsageError
from convtool.infer.session import TensorInfo

LAYOUTS = ("nchw", "nhwc")
CHANNELS = {"gray": 1, "rgb": 3, "bgr": 3}
INPUT_KEY = "convtool.input"


@dataclass(frozen=True)
class Preprocess:
    """How to turn a decoded image into one model input, and where that recipe came from."""

    layout: str = "nchw"
    channels: str = "rgb"
    height: int | None = None  # None: keep the image's own size (a model with dynamic H, W)
    width: int | None = None
    scale: float = 1 / 255
    mean: tuple[float, ...] = (0.0,)
    std: tuple[float, ...] = (1.0,)
    dtype: str = "float32"
    source: str = "defaults"

    @property
    def n_channels(self) -> int:
        return CHANNELS[self.channels]

    def item_shape(self, height: int, width: int) -> tuple[int, int, int]:
        """Shape of one prepared image (no batch axis)."""
        c = self.n_channels
        return (c, height, width) if self.layout == "nchw" else (height, width, c)

    def describe(self) -> str:
        size = f"{self.height}x{self.width}" if self.height else "image size"
        mean = ",".join(f"{m:g}" for m in self.mean)
        std = ",".join(f"{s:g}" for s in self.std)
        return (
            f"{self.layout.upper()} {self.channels} {size}, x = (pixel*{self.scale:.6g} - {mean}) / {std} "
            f"({self.source})"
        )

    def affine(self) -> tuple[np.ndarray, np.ndarray]:
        """Per-channel (a, b) with x = pixel*a + b, shaped to broadcast over one prepared image."""
        c = self.n_channels
        mean = np.broadcast_to(np.asarray(self.mean, dtype=np.float64), (c,))
        std = np.broadcast_to(np.asarray(self.std, dtype=np.float64), (c,))
        a = (self.scale / std).astype(np.float32)
        b = (-mean / std).astype(np.float32)
        shape = (c, 1, 1) if self.layout == "nchw" else (1, 1, c)
        return a.reshape(shape), b.reshape(shape)


def preprocess_for(model_input: TensorInfo, metadata: dict[str, str], **overrides: Any) -> Preprocess:
    """The recipe for a model: its convtool metadata, else inferred from its input shape; then overrides.

    ``overrides`` holds the options that were given (layout, channels, height, width, scale, mean, std);
    None values are ignored.
    """
    if len(model_input.shape) != 4:
        raise ModelError(
            f"the model's input {model_input.describe()} is not an image tensor "
            "(expected 4 axes: batch, channels, height, width in some order)"
        )
    if model_input.dtype not in ("float32", "float16", "float64", "uint8"):
        raise ModelError(f"the model's input {model_input.describe()} has a type convtool cannot feed images to")
    recipe = _from_metadata(metadata) if INPUT_KEY in metadata else _from_shape(model_input)
    recipe = replace(recipe, dtype=model_input.dtype)
    given = {k: v for k, v in overrides.items() if v is not None}
    if given:
        recipe = replace(recipe, **given, source=recipe.source + ", with options")
    if min(recipe.height or 1, recipe.width or 1) < 1:  # only metadata can say so: --size is checked by the CLI
        raise ModelError(f"the model's {INPUT_KEY} metadata gives the input size {recipe.height}x{recipe.width}; "
                         "sizes must be positive, so pass --size HxW")
    _check_against_model(recipe, model_input, size_given="height" in given or "width" in given)
    return recipe


def batch_recipe(model_input: TensorInfo, metadata: dict[str, str], *, batch: int, max_input: int,
                 **overrides: Any) -> Preprocess:
    """:func:`preprocess_for`, refusing a fixed input size whose ``batch`` would hold more than ``max_input``
    values before any image is decoded into it."""
    from convtool import guards

    recipe = preprocess_for(model_input, metadata, **overrides)
    if recipe.height and recipe.width:
        guards.check_values("a batch of model input", (batch, recipe.n_channels, recipe.height, recipe.width),
                            max_input)
    return recipe


def _from_metadata(metadata: dict[str, str]) -> Preprocess:
    try:
        spec = json.loads(metadata[INPUT_KEY])
        return Preprocess(
            layout=str(spec.get("layout", "nchw")).lower(),
            channels=str(spec.get("channels", "rgb")).lower(),
            height=int(spec["height"]) if spec.get("height") is not None else None,
            width=int(spec["width"]) if spec.get("width") is not None else None,
            scale=float(spec.get("scale", 1 / 255)),
            mean=tuple(float(m) for m in spec.get("mean", [0.0])),
            std=tuple(float(s) for s in spec.get("std", [1.0])),
            source="from the model's metadata",
        )
    except (ValueError, TypeError, KeyError, AttributeError) as exc:
        raise ModelError(f"the model's {INPUT_KEY} metadata is malformed ({exc}); pass the preprocessing options") from None


def _from_shape(model_input: TensorInfo) -> Preprocess:
    _, d1, d2, d3 = model_input.shape
    c: int | None
    h: int | None
    w: int | None
    if d1 in (1, 3):
        layout, c, h, w = "nchw", d1, d2, d3
    elif d3 in (1, 3):
        layout, c, h, w = "nhwc", d3, d1, d2
    else:
        layout, c, h, w = "nchw", d1, d2, d3
    channels = "gray" if c == 1 else "rgb"
    return Preprocess(layout=layout, channels=channels, height=h, width=w, source="inferred from the input shape")


def _check_against_model(recipe: Preprocess, model_input: TensorInfo, *, size_given: bool = True) -> None:
    if recipe.layout not in LAYOUTS:
        raise UsageError(f"layout {recipe.layout!r}: use nchw or nhwc")
    if recipe.channels not in CHANNELS:
        raise UsageError(f"channels {recipe.channels!r}: use gray, rgb or bgr")
    _, d1, d2, d3 = model_input.shape
    c: int | None
    h: int | None
    w: int | None
    c, h, w = (d1, d2, d3) if recipe.layout == "nchw" else (d3, d1, d2)
    if c is not None and c != recipe.n_channels:
        raise UsageError(
            f"{recipe.channels} images have {recipe.n_channels} channel(s) but the model's input "
            f"{model_input.describe()} takes {c} on the {recipe.layout.upper()} channel axis; "
            f"use `channels` {'gray' if c == 1 else 'rgb'}" + (" or `layout`" if c not in (1, 3) else "")
        )
    if c is None and recipe.channels not in CHANNELS:
        raise UsageError("the model's channel count is dynamic; pass `channels`")
    if (h is not None and recipe.height not in (None, h)) or (w is not None and recipe.width not in (None, w)):
        said = "`size`" if size_given else f"the input size {recipe.source}"
        raise UsageError(f"{said} {recipe.height}x{recipe.width} does not fit the model's fixed input {h}x{w}")
    for name, values in (("mean", recipe.mean), ("std", recipe.std)):
        if len(values) not in (1, recipe.n_channels):
            choices = "1" if recipe.n_channels == 1 else f"1 or {recipe.n_channels}"
            raise UsageError(f"`{name}` has {len(values)} values; give {choices} for {recipe.channels} images")
    if any(s == 0 for s in recipe.std):
        raise UsageError("`std` must not contain 0")


class Preparer:
    """Turns Pillow images into model inputs for one recipe (used by the decoding thread)."""

    def __init__(self, recipe: Preprocess) -> None:
        self.recipe = recipe
        self.mode = "L" if recipe.channels == "gray" else "RGB"
        self.a, self.b = recipe.affine()
        self.shifted = bool(np.any(self.b))  # mean 0 (most models): no "+ b" pass over each image
        self.dtype = np.dtype(recipe.dtype)

    def target_size(self, image: Image.Image) -> tuple[int, int]:
        """(height, width) the image will have in the model's input."""
        return (self.recipe.height or image.height, self.recipe.width or image.width)

    def pixels(self, image: Image.Image) -> np.ndarray:
        """uint8 pixels H,W (gray) or H,W,3, converted and resized for the model."""
        if image.mode != self.mode:
            image = _to_8bit(image).convert(self.mode)
        height, width = self.target_size(image)
        if (image.height, image.width) != (height, width):
            image = image.resize((width, height), Image.Resampling.BILINEAR)
        pixels = np.asarray(image)
        if self.recipe.channels == "bgr":
            pixels = pixels[..., ::-1]
        return pixels

    def place(self, pixels: np.ndarray, out: np.ndarray) -> None:
        """Copy uint8 pixels from :meth:`pixels` into ``out`` in the model's layout (``item_shape``)."""
        if self.recipe.layout == "nchw":
            out[...] = pixels[None] if pixels.ndim == 2 else pixels.transpose(2, 0, 1)
        else:
            out[...] = pixels[..., None] if pixels.ndim == 2 else pixels

    def place_scaled(self, pixels: np.ndarray, out: np.ndarray) -> None:
        """:meth:`place` and :meth:`scale` in one pass: uint8 pixels into one row of the model's input."""
        if self.recipe.layout == "nchw":
            view = pixels[None] if pixels.ndim == 2 else pixels.transpose(2, 0, 1)
        else:
            view = pixels[..., None] if pixels.ndim == 2 else pixels
        if self.dtype == np.uint8:
            out[...] = view
        elif out.dtype == np.float32:
            np.multiply(view, self.a, out=out)
            if self.shifted:
                out += self.b
        else:
            out[...] = np.multiply(view, self.a, dtype=np.float32) + self.b

    def scale(self, raw: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """uint8 images N, item_shape -> the model's input type: x = (pixel*scale - mean) / std.

        ``out`` (the model's dtype, raw's shape) receives the result instead of a new array.
        """
        if self.dtype == np.uint8:
            if out is None:
                return raw
            out[...] = raw
            return out
        if out is not None and out.dtype == np.float32:
            np.multiply(raw, self.a, out=out)
            if self.shifted:
                out += self.b
            return out
        values = np.multiply(raw, self.a, dtype=np.float32)
        values += self.b
        if out is None:
            return values.astype(self.dtype, copy=False)
        out[...] = values
        return out

    def prepare(self, image: Image.Image) -> np.ndarray:
        """One prepared image (no batch axis) as a new array."""
        pixels = self.pixels(image)
        raw = np.empty((1, *self.recipe.item_shape(pixels.shape[0], pixels.shape[1])), dtype=np.uint8)
        self.place(pixels, raw[0])
        return self.scale(raw)[0]


def _to_8bit(image: Image.Image) -> Image.Image:
    """16-bit and float images to 8-bit, keeping their full range (Pillow would clip them)."""
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):
        data = np.asarray(image, dtype=np.float64) / 257.0
        return Image.fromarray(np.clip(np.rint(data), 0, 255).astype(np.uint8))
    if image.mode == "F":
        return Image.fromarray(np.clip(np.rint(np.asarray(image)), 0, 255).astype(np.uint8))
    return image
