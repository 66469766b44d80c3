"""Preprocessing presets and bundled label sets: one word gives the recipe or the class names."""

from __future__ import annotations

import numpy as np
import pytest

from convtool.errors import UsageError
from convtool.infer.classify import read_labels
from convtool.infer.preprocess import Preparer, Preprocess
from convtool.infer.presets import LABEL_SETS, PRESETS, label_set, preset

PIXELS = np.arange(0, 256, 17, dtype=np.uint8)[None, :].repeat(3, axis=0)[..., None].repeat(3, axis=2)  # H,W,3


def _prepared(**fields) -> np.ndarray:
    preparer = Preparer(Preprocess(layout="nhwc", channels=fields.pop("channels", "rgb"), **fields))
    raw = PIXELS[None].copy()
    return preparer.scale(raw)[0]


def test_tf_preset_is_pixel_over_127_5_minus_1_as_mean_and_std_half():
    tf = _prepared(**preset("tf").options())
    np.testing.assert_allclose(tf, _prepared(mean=(0.5,), std=(0.5,)), atol=1e-6)
    np.testing.assert_allclose(tf, PIXELS / 127.5 - 1, atol=1e-6)  # Keras preprocess_input(mode="tf")


def test_imagenet_preset_matches_torchvision_normalisation():
    x = _prepared(**preset("imagenet").options())
    mean, std = np.array([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225])
    np.testing.assert_allclose(x, (PIXELS / 255 - mean) / std, atol=1e-5)


def test_caffe_preset_is_bgr_minus_the_mean_pixel():
    fields = preset("caffe").options()
    assert fields["channels"] == "bgr"
    x = _prepared(**fields)
    np.testing.assert_allclose(x, PIXELS - np.array([103.939, 116.779, 123.68]), atol=1e-4)


def test_unknown_preset_lists_the_known_ones():
    with pytest.raises(UsageError, match="preset 'keras' is unknown; choose one of imagenet, inception, tf"):
        preset("keras")
    assert set(PRESETS) >= {"imagenet", "inception", "tf", "raw"}


@pytest.mark.parametrize("name, count, first, last", [("imagenet", 1000, "tench", "toilet tissue"),
                                                      ("coco", 80, "person", "toothbrush"),
                                                      ("voc", 21, "background", "tvmonitor"),
                                                      ("cifar10", 10, "airplane", "truck"), ("mnist", 10, "0", "9")])
def test_bundled_label_sets(name, count, first, last):
    names = label_set(name)
    assert (len(names), names[0], names[-1]) == (count, first, last)
    assert read_labels(name) == names  # --labels takes the set's name
    assert name in LABEL_SETS


def test_a_file_named_like_a_set_wins(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "voc").write_text("a\nb\n")
    assert read_labels("voc") == ["a", "b"]
