"""The fast PNG encoder against Pillow's decoder: every layout, depth and level, and the block-parallel stream."""

from __future__ import annotations

import io
import sys
import zlib

import numpy as np
import pytest
from PIL import Image

import convtool.png as png
from convtool.png import encode_png

RNG = np.random.default_rng(0)
SHAPES = [(37, 53), (37, 53, 1), (37, 53, 2), (37, 53, 3), (37, 53, 4)]


def decoded(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)))


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("level", [0, 1, 6, 9])
def test_8_bit_round_trips_through_pillow(shape, level):
    pixels = RNG.integers(0, 256, shape, dtype=np.uint8)
    expected = pixels[..., 0] if shape[-1] == 1 else pixels  # one channel reads back as H,W gray
    np.testing.assert_array_equal(decoded(encode_png(pixels, level=level)), expected)


def test_16_bit_gray_keeps_every_value():
    pixels = RNG.integers(0, 65536, (19, 23), dtype=np.uint16)
    pixels[0, :3] = [0, 1, 65535]
    np.testing.assert_array_equal(decoded(encode_png(pixels)).astype(np.uint16), pixels)


@pytest.mark.parametrize("shape", [(64, 40), (64, 40, 3)])
def test_blocks_deflated_on_threads_form_one_valid_stream(shape, monkeypatch):
    monkeypatch.setattr(png, "PARALLEL_BYTES", 0)
    pixels = RNG.integers(0, 256, shape, dtype=np.uint8)
    data = encode_png(pixels, threads=3)
    np.testing.assert_array_equal(decoded(data), pixels)
    idat = data[data.index(b"IDAT") + 4 : data.index(b"IEND") - 8]
    raw = zlib.decompress(idat)  # checks the Adler-32 of the joined stream too
    assert len(raw) == shape[0] * (1 + int(np.prod(shape[1:])))


def test_smooth_images_compress_and_level_0_stores():
    ramp = np.tile(np.arange(256, dtype=np.uint8), (64, 1))
    assert len(encode_png(ramp, level=1)) < ramp.nbytes / 20  # the Sub filter turns a ramp into ones
    assert len(encode_png(ramp, level=0)) > ramp.nbytes


@pytest.mark.parametrize("pixels, message", [
    (np.zeros((4, 4), np.float32), "uint8 or uint16"),
    (np.zeros((4, 4, 5), np.uint8), "1-4 channels"),
    (np.zeros((0, 4), np.uint8), "1-4 channels"),
])
def test_bad_pixels_are_refused(pixels, message):
    with pytest.raises(ValueError, match=message):
        encode_png(pixels)
    with pytest.raises(ValueError, match="level 10"):
        encode_png(np.zeros((2, 2), np.uint8), level=10)


def test_level_1_without_isal_falls_back_to_zlib(monkeypatch):
    pixels = RNG.integers(0, 256, (37, 53, 3), dtype=np.uint8)
    with_isal = encode_png(pixels)
    monkeypatch.setitem(sys.modules, "isal", None)  # `from isal import ...` now fails
    without = encode_png(pixels)
    assert without != with_isal
    np.testing.assert_array_equal(decoded(without), pixels)
