"""The kernel library and kernel specs."""

import numpy as np
import pytest
import scipy.ndimage as ndi

from convtool.conv.separable import factors as separable_factors
from convtool.errors import KernelError
from convtool.kernels import library, load_kernel

# the lecture's list; the library may hold more, and every entry of it is tested below
REQUIRED = ["identity", "box", "gaussian", "gaussian-3x3", "sobel-x", "sobel-y", "sobel", "prewitt-x", "prewitt-y",
            "scharr-x", "scharr-y", "sharpen", "laplacian", "edge", "log", "blob", "emboss"]
LIBRARY = sorted(library())


def test_the_library_holds_the_lectures_kernels():
    assert set(REQUIRED) <= set(LIBRARY)


@pytest.mark.parametrize("name", LIBRARY)
def test_library_kernel_loads_with_source_and_description(name):
    entry = library()[name]
    assert entry["source"] and entry["description"]
    kernel = load_kernel(name)
    assert kernel.matrices and all(m.ndim == 2 and m.size and np.isfinite(m).all() for m in kernel.matrices)
    for part in kernel.components:  # a combined kernel's parts load by themselves too
        np.testing.assert_array_equal(load_kernel(part.name).matrix, part.matrix)


@pytest.mark.parametrize("name", [n for n in LIBRARY if "separable" in library()[n]])
def test_declared_separable_factors_rebuild_the_matrix(name):
    kernel = load_kernel(name)
    column, row = kernel.separable
    np.testing.assert_allclose(np.outer(column, row), kernel.matrix)
    found = separable_factors(kernel.matrix)
    assert found is not None
    np.testing.assert_allclose(np.outer(*found), kernel.matrix, atol=1e-12)


@pytest.mark.parametrize("name", [n for n in LIBRARY if "separable" not in library()[n] and
                                  len(load_kernel(n).matrices) == 1])
def test_undeclared_kernels_are_separable_exactly_when_their_rank_is_one(name):
    matrix = load_kernel(name).matrix
    assert (separable_factors(matrix) is not None) == (np.linalg.matrix_rank(matrix) == 1)


def test_lecture_matrices():
    np.testing.assert_array_equal(load_kernel("sobel-x").matrix, [[1, 0, -1], [2, 0, -2], [1, 0, -1]])
    np.testing.assert_array_equal(load_kernel("sobel-y").matrix, load_kernel("sobel-x").matrix.T)
    np.testing.assert_array_equal(load_kernel("sharpen").matrix, [[0, -1, 0], [-1, 5, -1], [0, -1, 0]])
    np.testing.assert_array_equal(load_kernel("edge").matrix, [[-1, -1, -1], [-1, 8, -1], [-1, -1, -1]])
    blob = load_kernel("blob").matrix
    assert blob.shape == (9, 9) and blob[4, 4] == -40 and np.array_equal(blob, blob.T)
    assert np.linalg.matrix_rank(blob) == 5 and separable_factors(blob) is None
    np.testing.assert_allclose(load_kernel("gaussian-3x3").matrix[1], [0.08, 0.62, 0.08])


def test_gaussian_generator_matches_scipy_impulse_response():
    kernel = load_kernel("gaussian:sigma=1.5,size=9").matrix
    impulse = np.zeros((9, 9))
    impulse[4, 4] = 1
    expected = ndi.gaussian_filter(impulse, 1.5, mode="constant", truncate=4 / 1.5 + 1e-9)
    np.testing.assert_allclose(kernel, expected / expected.sum(), atol=1e-6)
    assert kernel.shape == (9, 9) and abs(kernel.sum() - 1) < 1e-12


def test_log_is_zero_sum_and_centre_negative():
    log = load_kernel("log:sigma=2").matrix
    assert log.shape == (13, 13) and abs(log.sum()) < 1e-12 and log[6, 6] == log.min()


def test_user_kernels_inline_csv_text_toml(tmp_path):
    inline = load_kernel("[[1,0,-1],[2,0,-2],[1,0,-1]]").matrix
    (tmp_path / "k.csv").write_text("1,0,-1\n2,0,-2\n1,0,-1\n")
    (tmp_path / "k.txt").write_text("# sobel\n1 0 -1\n2  0 -2\n1\t0 -1\n")
    (tmp_path / "k.toml").write_text('name = "mine"\nmatrix = [[1, 0, -1], [2, 0, -2], [1, 0, -1]]\n')
    for spec in ("k.csv", "k.txt", "k.toml"):
        np.testing.assert_array_equal(load_kernel(str(tmp_path / spec)).matrix, inline)
    assert load_kernel(str(tmp_path / "k.toml")).name == "mine"
    assert load_kernel("[[1,0,-1],[2,0,-2],[1,0,-1]]").out_scale == "normalize"


@pytest.mark.parametrize("spec,message", [
    ("sobl", "did you mean sobel"), ("gausian", "did you mean gaussian"), ("zzzz", "convtool kernels"),
    ("[[1,2],[3]]", "different lengths"), ('[[1,"a"]]', "must be a number"), ("[[NaN, 1]]", "NaN or infinity"),
    ("[]", "empty"), ("[[1,", "not a matrix"), ("gaussian:sigma=-2", "positive"), ("gaussian:width=3", "no parameter"),
    ("gaussian:sigma", "must look like"), ("box:size=2.5", "positive integer"), ("gaussian:size=4", "odd"), ("sobel-x:size=3", "takes no parameters"), ("missing.csv", "does not exist"),
])
def test_bad_kernel_specs(spec, message):
    with pytest.raises(KernelError, match=message):
        load_kernel(spec)


@pytest.mark.parametrize("text,message", [("1 2\n3\n", "different lengths"), ("1 x\n", "number"), ("\n", "empty"),
                                          ("inf 1\n", "NaN or infinity")])
def test_bad_kernel_files(tmp_path, text, message):
    path = tmp_path / "bad.txt"
    path.write_text(text)
    with pytest.raises(KernelError, match=message):
        load_kernel(str(path))


def test_every_library_kernel_loads_the_same_from_its_own_file():
    entries = library()
    for name, table in entries.items():
        kernel = load_kernel(name)
        assert kernel.name == table.get("name", name)
        assert len(kernel.matrices) == len(table.get("components", [None]))
