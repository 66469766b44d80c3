"""Preprocessing: recipes from metadata, from the input shape, and from options; pixels vs a NumPy oracle."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from convtool.errors import ModelError, UsageError
from convtool.infer.preprocess import Preparer, Preprocess, preprocess_for
from convtool.infer.session import TensorInfo

META = {
    "convtool.input": json.dumps(
        {"layout": "nchw", "channels": "rgb", "height": 32, "width": 24, "scale": 0.00392156862745098,
         "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]}
    )
}


@pytest.mark.parametrize(
    "shape, layout, channels, size",
    [
        ((1, 1, 28, 28), "nchw", "gray", (28, 28)),
        ((None, 3, 224, 224), "nchw", "rgb", (224, 224)),
        ((None, 32, 32, 3), "nhwc", "rgb", (32, 32)),
        ((None, 28, 28, 1), "nhwc", "gray", (28, 28)),
        ((None, 3, None, None), "nchw", "rgb", (None, None)),
    ],
)
def test_recipe_inferred_from_the_input_shape(shape, layout, channels, size):
    recipe = preprocess_for(TensorInfo("x", shape, "float32"), {})
    assert (recipe.layout, recipe.channels, (recipe.height, recipe.width)) == (layout, channels, size)
    assert recipe.scale == pytest.approx(1 / 255) and recipe.source == "inferred from the input shape"


def test_recipe_from_convtool_metadata_and_overrides():
    model_input = TensorInfo("x", (None, 3, 32, 24), "float32")
    recipe = preprocess_for(model_input, META)
    assert (recipe.layout, recipe.channels, recipe.height, recipe.width) == ("nchw", "rgb", 32, 24)
    assert recipe.mean == (0.485, 0.456, 0.406) and recipe.source == "from the model's metadata"
    changed = preprocess_for(model_input, META, channels="bgr", scale=1.0, mean=None)
    assert changed.channels == "bgr" and changed.scale == 1.0 and changed.mean == recipe.mean
    assert changed.source.endswith("with options")


def test_recipe_mismatches_are_one_line_errors():
    gray = TensorInfo("x", (1, 1, 28, 28), "float32")
    with pytest.raises(UsageError, match=r"rgb images have 3 channel\(s\) but the model's input .* takes 1.*`channels` gray"):
        preprocess_for(gray, {}, channels="rgb")
    with pytest.raises(UsageError, match="`size` 30x30 does not fit the model's fixed input 28x28"):
        preprocess_for(gray, {}, height=30, width=30)
    with pytest.raises(UsageError, match="`mean` has 2 values; give 1 or 3 for rgb images"):
        preprocess_for(TensorInfo("x", (None, 3, 8, 8), "float32"), {}, mean=(0.1, 0.2))
    with pytest.raises(ModelError, match="is not an image tensor"):
        preprocess_for(TensorInfo("x", (None, 784), "float32"), {})
    with pytest.raises(ModelError, match="metadata is malformed"):
        preprocess_for(gray, {"convtool.input": "{not json"})


def test_prepared_pixels_match_the_formula():
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (32, 24, 3), dtype=np.uint8)
    recipe = preprocess_for(TensorInfo("x", (None, 3, 32, 24), "float32"), META)
    got = Preparer(recipe).prepare(Image.fromarray(rgb))
    mean, std = np.array([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225])
    expected = ((rgb / 255.0 - mean) / std).transpose(2, 0, 1)
    assert got.shape == (3, 32, 24) and got.dtype == np.float32
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)

    bgr_nhwc = Preparer(Preprocess(layout="nhwc", channels="bgr", scale=1.0)).prepare(Image.fromarray(rgb))
    np.testing.assert_array_equal(bgr_nhwc, rgb[..., ::-1].astype(np.float32))


def test_gray_resize_and_16bit_inputs():
    recipe = Preprocess(layout="nchw", channels="gray", height=28, width=28)
    image = Image.fromarray(np.full((56, 40), 200, np.uint8))
    got = Preparer(recipe).prepare(image)
    assert got.shape == (1, 28, 28)
    np.testing.assert_allclose(got, 200 / 255, rtol=1e-6)
    sixteen = Image.fromarray(np.full((28, 28), 65535, np.uint16))
    np.testing.assert_allclose(Preparer(recipe).prepare(sixteen), 1.0)
    rgb = Image.fromarray(np.dstack([np.full((28, 28), v, np.uint8) for v in (255, 0, 0)]))
    luma = Preparer(recipe).prepare(rgb)  # Pillow's L = 0.299 R + 0.587 G + 0.114 B
    np.testing.assert_allclose(luma, round(0.299 * 255) / 255, atol=1 / 255)


@pytest.mark.parametrize("layout", ["nchw", "nhwc"])
@pytest.mark.parametrize("channels, dtype", [("rgb", "float32"), ("bgr", "float16"), ("gray", "float32"),
                                             ("rgb", "uint8")])
def test_placing_scaled_in_one_pass_equals_placing_then_scaling(layout, channels, dtype):
    recipe = Preprocess(channels=channels, layout=layout, height=5, width=7, scale=1 / 255, mean=(0.4, 0.5, 0.6)
                        if channels != "gray" else 0.5, std=(0.2, 0.25, 0.3) if channels != "gray" else 0.25, dtype=dtype)
    preparer = Preparer(recipe)
    image = Image.fromarray(np.random.default_rng(1).integers(0, 256, (5, 7, 3), dtype=np.uint8)).convert(preparer.mode)
    pixels = preparer.pixels(image)
    raw = np.empty((1, *recipe.item_shape(5, 7)), dtype=np.uint8)
    preparer.place(pixels, raw[0])
    expected = preparer.scale(raw)[0]
    out = np.empty(recipe.item_shape(5, 7), dtype=preparer.dtype)
    preparer.place_scaled(pixels, out)
    np.testing.assert_array_equal(out, expected)
