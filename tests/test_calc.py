"""The reports behind ``convtool calc``, called as a library: typed requests, messages without flags."""

import pytest

from convtool.calc import LayerRequest, layer_report, solve_report
from convtool.errors import ShapeError, UsageError
from convtool.geometry import PoolSpec


def test_layer_request_the_lectures_13_6_5_same():
    report = layer_report(LayerRequest(n=(13,), k=(6,), s=(5,), padding="same"))
    (axis,) = report["conv"]["axes"]
    assert (axis["pad_before"], axis["pad_after"], axis["output"]) == (1, 2, 3)  # the lecture's worked example


def test_layer_request_conv_then_pool_by_hand():
    # 3x32x32 -> 6 kernels 5x5 valid -> 6x28x28 -> max 2 -> 6x14x14; weights 6*3*25, receptive field 5 + 1
    report = layer_report(LayerRequest(n=(32, 32), k=(5, 5), cin=3, cout=6, pool=PoolSpec("max", (2,))))
    assert report["conv"]["weights"] == 450 and report["output_shape"] == [6, 14, 14]
    assert report["receptive_field"] == [6, 6]


def test_library_messages_name_concepts_not_flags():
    with pytest.raises(UsageError, match="kernel size or a pooling") as info:
        layer_report(LayerRequest(n=(13,)))
    with pytest.raises(ShapeError, match="output padding applies to a transposed convolution only") as other:
        layer_report(LayerRequest(n=(13,), k=(3,), output_padding=1))
    with pytest.raises(UsageError, match="kernel size has 3 axes") as third:
        layer_report(LayerRequest(n=(8, 8), k=(3, 3, 3)))
    assert all("--" not in str(e.value) for e in (info, other, third))


def test_solve_report_takes_keywords():
    report = solve_report((13,), (3,), k=(6,), s=(5,))
    (solution,) = report["axes"][0]["solutions"]
    assert (solution["pad_before"], solution["pad_after"]) == (1, 2) and "same" in solution["modes"]
