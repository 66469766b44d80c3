"""Convolution arithmetic against the lecture's worked examples, TensorFlow's published rule, brute-force
window enumeration, the filter core's actual output shapes and naive NumPy/scipy convolutions."""


import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import signal

from convtool import shapes
from convtool.errors import ShapeError, UsageError
from convtool.geometry import axis_padding, same_padding

# ---- the lecture's checks -------------------------------------------------------------------


def test_lecture_13_6_5_valid_drops_12_and_13():
    axis = shapes.conv_axis(13, 6, 5, "valid")
    assert axis.out == 2
    assert axis.dropped == [12, 13]


def test_lecture_13_6_5_same_pads_3_split_1_2():
    axis = shapes.conv_axis(13, 6, 5, "same")
    assert axis.out == 3
    assert axis.pad == (1, 2)
    assert axis.dropped == []


@pytest.mark.parametrize("padding, expected", [("valid", 4), ("same", 6)])
def test_lecture_length_6_kernel_3(padding, expected):
    assert shapes.conv_axis(6, 3, 1, padding).out == expected


@pytest.mark.parametrize("pad", [(0, 1), (1, 1)])
def test_lecture_6_3_2_with_total_padding_1_or_2_gives_3(pad):
    """The lecture counts total padding: 1 (TensorFlow same, after) and 2 (one each side) both give 3."""
    assert shapes.output_size(6, 3, 2, pad) == 3
    assert same_padding(6, 3, 2) == (0, 1)


def test_lecture_32_by_32_with_5_by_5_gives_28_and_7_with_3_gives_25_units():
    assert [shapes.output_size(32, 5)] * 2 == [28, 28]
    assert shapes.output_size(7, 3) ** 2 == 25


def test_lecture_ten_5x3x3_kernels_on_5x32x32():
    out = shapes.output_size(32, 3)
    assert 10 * out * out == 9_000
    assert shapes.conv_weights(5, 10, (3, 3)) == 450  # + 10 biases


def test_lecture_sparse_matrix_view_of_320x280_with_2x1_kernel():
    out_units = shapes.output_size(320, 2) * shapes.output_size(280, 1)
    assert out_units == 319 * 280
    view = shapes.matrix_view(320 * 280, out_units, 2)
    assert view.kernel_floats == 2
    assert f"{view.dense_floats:.1e}" == "8.0e+09"
    assert view.sparse_floats == 178_640
    assert view.float_ops == 267_960


def test_matrix_view_counts_the_nonzeros_of_the_real_matrix():
    """Build the matrix of a small correlation column by column and count its entries."""
    n, k = (6, 5), np.array([[1.0, -2.0], [3.0, 0.5]])
    columns = []
    for i in range(n[0] * n[1]):
        basis = np.zeros(n[0] * n[1])
        basis[i] = 1.0
        columns.append(signal.correlate2d(basis.reshape(n), k, mode="valid").ravel())
    matrix = np.stack(columns, axis=1)
    view = shapes.matrix_view(matrix.shape[1], matrix.shape[0], k.size)
    assert view.dense_floats == matrix.size
    assert view.sparse_floats == np.count_nonzero(matrix)


# ---- output sizes against enumeration and against actual convolutions -------------------------


def windows_by_enumeration(n: int, k: int, s: int, pad: tuple[int, int], d: int) -> int:
    padded = n + pad[0] + pad[1]
    return sum(1 for start in range(0, padded, s) if start + (k - 1) * d < padded)


geometry = st.tuples(st.integers(1, 40), st.integers(1, 7), st.integers(1, 5), st.integers(1, 3),
                     st.integers(0, 4), st.integers(0, 4))


@given(geometry)
def test_output_size_matches_window_enumeration(g):
    n, k, s, d, before, after = g
    span = (k - 1) * d + 1
    if span > n + before + after:
        with pytest.raises(ShapeError, match="does not fit the padded input"):
            shapes.output_size(n, k, s, (before, after), d)
    else:
        assert shapes.output_size(n, k, s, (before, after), d) == windows_by_enumeration(n, k, s, (before, after), d)


@settings(max_examples=40, deadline=None)
@given(h=st.integers(1, 24), w=st.integers(1, 24), kh=st.integers(1, 5), kw=st.integers(1, 5),
       sh=st.integers(1, 4), sw=st.integers(1, 4), dh=st.integers(1, 3), dw=st.integers(1, 3),
       mode=st.sampled_from(["valid", "same", "full", 0, 1, 2]))
def test_output_size_matches_the_filter_core(h, w, kh, kw, sh, sw, dh, dw, mode):
    from convtool.conv import correlate2d

    axes = [(h, kh, sh, dh), (w, kw, sw, dw)]
    try:
        expected = tuple(shapes.conv_axis(n, k, s, mode, d).out for n, k, s, d in axes)
    except ShapeError:
        with pytest.raises(ShapeError):
            correlate2d(np.ones((h, w), np.float32), np.ones((kh, kw)), stride=(sh, sw), padding=mode,
                        dilation=(dh, dw), backend="reference")
        return
    out = correlate2d(np.ones((h, w), np.float32), np.ones((kh, kw)), stride=(sh, sw), padding=mode,
                      dilation=(dh, dw), backend="reference")
    assert out.shape == expected


@pytest.mark.parametrize("shape, kernel, stride, padding, dilation", [
    ((13, 13), (6, 6), 5, "same", 1), ((13, 13), (6, 6), 5, "valid", 1), ((32, 28), (5, 3), (2, 1), 1, 1),
    ((20, 17), (3, 3), 3, "full", 2), ((9, 9), (1, 1), 4, "valid", 1)])
def test_output_size_matches_the_default_numba_back_end(shape, kernel, stride, padding, dilation):
    from convtool.conv import correlate2d

    strides = stride if isinstance(stride, tuple) else (stride, stride)
    out = correlate2d(np.ones(shape, np.float32), np.ones(kernel), stride=stride, padding=padding, dilation=dilation)
    assert out.shape == tuple(shapes.conv_axis(n, k, s, padding, dilation).out
                              for n, k, s in zip(shape, kernel, strides))


@settings(max_examples=30, deadline=None)
@given(h=st.integers(3, 20), w=st.integers(3, 20), kh=st.integers(1, 3), kw=st.integers(1, 3))
def test_valid_and_full_sizes_match_scipy(h, w, kh, kw):
    image, kernel = np.ones((h, w)), np.ones((kh, kw))
    for mode in ("valid", "full"):
        expected = signal.correlate2d(image, kernel, mode=mode).shape
        assert (shapes.conv_axis(h, kh, 1, mode).out, shapes.conv_axis(w, kw, 1, mode).out) == expected


@given(geometry)
def test_unused_and_dropped_inputs_match_a_perturbation_oracle(g):
    """An input is unused iff a 1 placed there changes no output of a correlation with an all-ones kernel."""
    n, k, s, d, before, after = g
    if (k - 1) * d + 1 > n + before + after:
        return
    axis = shapes.conv_axis(n, k, s, (before, after), d)
    windows = windows_by_enumeration(n, k, s, (before, after), d)
    last_tap = (windows - 1) * s + (k - 1) * d  # 0-based padded index of the last window's last tap
    unused = []
    for i in range(n):
        x = np.zeros(n + before + after)
        x[before + i] = 1.0
        y = [x[w * s: w * s + (k - 1) * d + 1: d].sum() for w in range(windows)]
        if not any(y):
            unused.append(i + 1)
    assert axis.unused == unused
    # dropped: the unused inputs that lie past the end of the last window
    assert axis.dropped == [i for i in unused if before + i - 1 > last_tap]


# ---- transposed convolution -----------------------------------------------------------------


def transposed_by_scatter(n: int, k: int, s: int, pad: tuple[int, int], d: int, output_padding: int) -> int:
    """Scatter each input through the kernel taps, then crop the padding (PyTorch's definition)."""
    full = np.zeros((n - 1) * s + (k - 1) * d + 1 + output_padding)
    for i in range(n):
        for t in range(k):
            full[i * s + t * d] += 1.0
    return len(full[pad[0]: len(full) - pad[1]])


@given(n=st.integers(1, 20), k=st.integers(1, 6), s=st.integers(1, 4), d=st.integers(1, 3), p=st.integers(0, 3),
       op=st.integers(0, 3))
def test_transposed_output_size_matches_scatter(n, k, s, d, p, op):
    if op >= max(s, d):
        with pytest.raises(ShapeError):
            shapes.transposed_output_size(n, k, s, (p, p), d, op)
        return
    expected = transposed_by_scatter(n, k, s, (p, p), d, op)
    if expected <= 0:
        with pytest.raises(ShapeError):
            shapes.transposed_output_size(n, k, s, (p, p), d, op)
    else:
        assert shapes.transposed_output_size(n, k, s, (p, p), d, op) == expected


@given(n=st.integers(1, 30), k=st.integers(1, 7), s=st.integers(1, 4))
def test_transposed_same_gives_n_times_s(n, k, s):
    assert shapes.transposed_axis(n, k, s, "same").out == n * s


@given(n=st.integers(1, 12), k=st.integers(1, 6), s=st.integers(1, 4), d=st.integers(1, 3), p=st.integers(0, 2))
def test_transposed_receptive_field_counts_the_inputs_feeding_one_output(n, k, s, d, p):
    """Scatter oracle: output o reads input i when o + p = i*s + t*d for a tap t; take the most over o."""
    try:
        axis = shapes.transposed_axis(n, k, s, p, d)
    except ShapeError:
        return
    feeding = [len({i for i in range(n) for t in range(k) if i * s + t * d == o + p}) for o in range(axis.out)]
    if n >= 2 * k * d + 2:  # long enough that interior outputs see every tap that can land on them
        assert axis.receptive_field == max(feeding)
    else:
        assert axis.receptive_field >= max(feeding)


def test_huge_inputs_give_ranges_not_lists():
    axis = shapes.conv_axis(10**9, 1, 10**9)
    assert axis.out == 1 and axis.dropped_range == (2, 10**9)
    assert axis.unused is None  # too long to list


def test_transposed_rejects_full_padding():
    with pytest.raises(UsageError, match="full"):
        shapes.transposed_axis(4, 3, 2, "full")


# ---- receptive field ------------------------------------------------------------------------


def receptive_field_by_sets(layers: list[tuple[int, int, int]]) -> int:
    """Follow which input cells output 0 depends on, layer by layer, from the top down."""
    cells = {0}
    for k, s, d in reversed(layers):
        cells = {c * s + t * d for c in cells for t in range(k)}
    return max(cells) - min(cells) + 1


@given(st.lists(st.tuples(st.integers(1, 7), st.integers(1, 3), st.integers(1, 3)), min_size=1, max_size=6))
def test_receptive_field_matches_set_propagation(layers):
    assert shapes.receptive_field(layers)[0] == receptive_field_by_sets(layers)


def test_lenet_receptive_field_is_the_whole_32_input_before_f5():
    rf, jump = shapes.receptive_field([(5, 1, 1), (2, 2, 1), (5, 1, 1), (2, 2, 1)])
    assert (rf, jump) == (16, 4)
    assert rf + (5 - 1) * jump == 32  # F5 reads all 5x5 positions of S4


# ---- PyTorch equivalents, solving ----------------------------------------------------


def test_symmetric_alternatives_of_the_13_6_5_same_split():
    axis = shapes.conv_axis(13, 6, 5, "same")
    assert shapes.symmetric_alternatives(axis) == [(1, 2), (2, 3)]


@given(n=st.integers(1, 40), out=st.integers(1, 40), k=st.one_of(st.none(), st.integers(1, 7)),
       s=st.one_of(st.none(), st.integers(1, 5)))
def test_solve_lists_exactly_the_settings_that_work_with_least_padding(n, out, k, s):
    found = {(f.k, f.s, f.d): f for f in shapes.solve(n, out, k=k, s=s)}
    for kk in [k] if k else range(1, 12):
        for ss in [s] if s else range(1, n + 1):
            span = kk
            fits = [p for p in range(2 * (span - 1) + 1)
                    if n + p >= span and windows_by_enumeration(n, kk, ss, (p // 2, p - p // 2), 1) == out]
            if fits:
                assert sum(found[(kk, ss, 1)].pad) == min(fits)
                pad = found[(kk, ss, 1)].pad
                assert pad[1] - pad[0] in (0, 1)
                symmetric = [p // 2 for p in fits if p % 2 == 0]
                assert found[(kk, ss, 1)].symmetric == (min(symmetric) if symmetric else None)
            else:
                assert (kk, ss, 1) not in found


def test_solve_finds_same_for_the_lecture_example():
    (solution,) = shapes.solve(13, 3, k=6, s=5)
    assert solution.pad == (1, 2) and "same" in solution.modes


@pytest.mark.parametrize("mode", ["same", "full", "valid"])
def test_resolve_padding_rejects_a_zero_stride_with_a_shape_error(mode):
    with pytest.raises(ShapeError, match="stride must be a positive integer"):
        shapes.conv_axis(13, 6, 0, mode)
    if mode == "same":  # used to raise ZeroDivisionError
        with pytest.raises(ShapeError, match="stride must be a positive integer"):
            axis_padding("same", 13, 6, 0)


def test_groups_must_divide_the_channels():
    assert shapes.conv_weights(4, 8, (3, 3), groups=2) == 8 * 2 * 9
    with pytest.raises(ShapeError, match="groups 3 must divide"):
        shapes.conv_weights(4, 8, (3, 3), groups=3)
