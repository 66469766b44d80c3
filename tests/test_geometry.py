"""Pairs, padding in its canonical form and its converters, sizes and pooling specs, parsed once:
against TensorFlow's published "same" rule, hand-worked cases and each spelling users type."""

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from convtool import geometry, shapes
from convtool.errors import ShapeError, UsageError

# ---- TensorFlow's "same" rule, as its documentation writes it ---------------------------------


def tensorflow_same(n: int, k: int, s: int) -> tuple[int, int]:
    """tf.nn 'Notes on padding': pad_along depends on n % s; top = pad // 2, bottom = the rest."""
    if n % s == 0:
        pad_along = max(k - s, 0)
    else:
        pad_along = max(k - (n % s), 0)
    return pad_along // 2, pad_along - pad_along // 2


@given(n=st.integers(1, 300), k=st.integers(1, 15), s=st.integers(1, 9), d=st.integers(1, 4))
def test_same_padding_matches_tensorflow_documentation(n, k, s, d):
    span = (k - 1) * d + 1
    assert geometry.same_padding(n, k, s, d) == tensorflow_same(n, span, s)
    # TensorFlow's defining property: same gives ceil(n / s) outputs
    assert shapes.output_size(n, k, s, geometry.same_padding(n, k, s, d), d) == math.ceil(n / s)


# ---- pairs and padding in (top, bottom, left, right) --------------------------------------------


@pytest.mark.parametrize("value, expected", [(2, (2, 2)), ((2, 1), (2, 1)), ([3, 4], (3, 4)),
                                             (np.int64(5), (5, 5)), ((np.int32(1), 2), (1, 2))])
def test_pair(value, expected):
    assert geometry.pair("stride", value) == expected


@pytest.mark.parametrize("value", [0, -1, (1, 2, 3), (1, 0), True, 1.5, (1.0, 2)])
def test_pair_rejects_with_the_name(value):
    with pytest.raises(ShapeError, match="stride must be a positive integer"):
        geometry.pair("stride", value)


def test_pair_with_minimum_zero_reads_symmetric_padding():
    assert geometry.pair("padding", 0, minimum=0) == (0, 0)
    with pytest.raises(ShapeError, match="padding must be a non-negative integer"):
        geometry.pair("padding", -1, minimum=0)


@pytest.mark.parametrize("value, expected", [
    (1, (1, 1, 1, 1)), ((1, 2), (1, 1, 2, 2)), ((0, 1, 2, 3), (0, 1, 2, 3)), (((0, 1), (2, 3)), (0, 1, 2, 3)),
    ([1, 2], (1, 1, 2, 2))])
def test_pads_every_form_to_top_bottom_left_right(value, expected):
    assert geometry.pads(value) == expected
    assert geometry.axis_pairs(expected) == ((expected[0], expected[1]), (expected[2], expected[3]))


@pytest.mark.parametrize("value, message", [(-1, "negative"), ((1, 2, 3), "must be N"), ("x", "must be N"),
                                            ((1, -2), "negative"), (((0, 1), (2,)), "must be N")])
def test_pads_rejects(value, message):
    with pytest.raises(ShapeError, match=message):
        geometry.pads(value)


def test_resolve_pads_by_hand():
    # 13 rows, kernel 6, stride 5: same pads 1 before, 2 after (the lecture's example); 7 columns, k 3: 1+1
    assert geometry.resolve_pads("same", (13, 7), (6, 3), (5, 1)) == (1, 2, 1, 1)
    assert geometry.resolve_pads("full", (4, 4), (3, 2), dilation=(2, 1)) == (4, 4, 1, 1)
    assert geometry.resolve_pads("valid", (4, 4), (3, 3)) == (0, 0, 0, 0)
    assert geometry.resolve_pads((1, 2), (4, 4), (3, 3)) == (1, 1, 2, 2)
    with pytest.raises(ShapeError, match="unknown padding 'middle'"):
        geometry.resolve_pads("middle", (4, 4), (3, 3))


def test_pytorch_pad_tuple_is_last_axis_first():
    assert geometry.pytorch_pad_tuple([(1, 2), (0, 1)]) == (0, 1, 1, 2)  # like F.pad


# ---- text ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("text, expected", [("13", (13,)), ("32x32", (32, 32)), (" 5X3 ", (5, 3)), ("3×4", (3, 4))])
def test_parse_size(text, expected):
    assert geometry.parse_size(text) == expected


@pytest.mark.parametrize("text", ["", "x", "32xx32", "2.5", "abc", "3x", "-1", "0", "1-3"])
def test_parse_size_rejects(text):
    with pytest.raises(UsageError):
        geometry.parse_size(text)


@pytest.mark.parametrize("text, expected", [("2", (2, 2)), ("2,1", (2, 1)), ("2x1", (2, 1))])
def test_parse_pair(text, expected):
    assert geometry.parse_pair(text) == expected


@pytest.mark.parametrize("text", ["0", "a", "1,2,3", "-1,2"])
def test_parse_pair_rejects_quoting_the_value(text):
    with pytest.raises(UsageError, match=repr(text)):
        geometry.parse_pair(text)


@pytest.mark.parametrize("text", ["big", "0x4", "4", "1x2x3"])
def test_parse_hw_rejects_quoting_the_value(text):
    with pytest.raises(UsageError, match=f"{text!r} is not HEIGHTxWIDTH"):
        geometry.parse_hw(text)


@pytest.mark.parametrize("text, axes, expected", [
    ("same", 2, "same"), ("2", 2, ((2, 2), (2, 2))), ("1x0", 2, ((1, 1), (0, 0))), ("1:2", 1, ((1, 2),)),
    ("1:2x0", 2, ((1, 2), (0, 0))), ("1,2", 2, ((1, 1), (2, 2))), ("0,1,2,3", 2, ((0, 1), (2, 3)))])
def test_parse_padding(text, axes, expected):
    assert geometry.parse_padding(text, axes) == expected


@pytest.mark.parametrize("text, axes", [("-1", 1), ("1:2:3", 1), ("a", 1), ("1x2x3", 2), ("1,2,3", 2)])
def test_parse_padding_rejects(text, axes):
    with pytest.raises(UsageError):
        geometry.parse_padding(text, axes)


@pytest.mark.parametrize("text, expected", [("same", "same"), ("1", (1, 1, 1, 1)), ("1,2", (1, 1, 2, 2)),
                                            ("0,1,2,3", (0, 1, 2, 3)), ("1:2x0", (1, 2, 0, 0))])
def test_parse_pads_gives_the_canonical_form(text, expected):
    assert geometry.parse_pads(text) == expected


# ---- pooling: one spelling everywhere, the old ones kept ------------------------------------------


@pytest.mark.parametrize("text, kind, expected", [
    ("max:3:2", None, geometry.PoolSpec("max", (3,), (2,))),  # filter --pool
    ("avg:2", None, geometry.PoolSpec("avg", (2,), None)),
    ("l2:3x2:1x2", None, geometry.PoolSpec("l2", (3, 2), (1, 2))),
    ("3:2", "max", geometry.PoolSpec("max", (3,), (2,))),  # calc --pool 3:2 --pool-kind max, spec 'pool max 3:2'
    ("max:3:2", "max", geometry.PoolSpec("max", (3,), (2,))),
])
def test_parse_pool(text, kind, expected):
    assert geometry.parse_pool(text, kind) == expected


def test_parse_pool_default_kind_and_broadcast():
    spec = geometry.parse_pool("3", default="max")
    assert spec == geometry.PoolSpec("max", (3,), None) and spec.strides == (3,)
    assert spec.broadcast(2) == geometry.PoolSpec("max", (3, 3), None)
    assert geometry.parse_pool("avg:2", default="max").kind == "avg"  # the text's kind wins over the default


@pytest.mark.parametrize("text, kind, kinds, message", [
    ("max:0", None, geometry.POOL_KINDS, "pool size must be positive"),
    ("median:3", None, geometry.POOL_KINDS, "must look like KIND:SIZE"),
    ("3:2", None, geometry.POOL_KINDS, "must look like KIND:SIZE"),
    ("avg:3", "max", geometry.POOL_KINDS, "give the kind once"),
    ("l2:3", None, ("max", "avg"), "KIND one of max, avg"),
    ("max:3:2:1", None, geometry.POOL_KINDS, "must look like"),
])
def test_parse_pool_rejects(text, kind, kinds, message):
    with pytest.raises(UsageError, match=message):
        geometry.parse_pool(text, kind, kinds=kinds)
