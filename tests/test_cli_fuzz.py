"""Random option values (NaN, infinities, huge, negative, garbage) over filter, calc and classify.

Whatever the values, a run ends with exit code 0, 1 or 2, one-line errors (no traceback, no "internal
error"), no temporary file left behind, and no file that existed before replaced (no --overwrite).
"""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from infer_helpers import MNIST_12, mnist
from PIL import Image

from convtool.cli.main import cli

ODD = ["nan", "-nan", "inf", "-inf", "1e308", "-1e308", "1e400", "-1", "0", "1", "3", "2147483648",
       "9223372036854775808", "-0.0", "1e-320", "abc", "", "2,2", "1,2,3,4", "3x3", "0x0", "-5x7"]
NUMBER = st.one_of(st.sampled_from(ODD), st.integers(-10**13, 10**13).map(str),
                   st.floats(allow_nan=True, allow_infinity=True).map(repr))
KERNEL = st.one_of(st.sampled_from(["sobel", "box", "laplacian", "[[1e308]]", "[[nan]]", "[[]]", "[[1,2],[3]]"]),
                   NUMBER.map(lambda v: f"gaussian:sigma={v}"), NUMBER.map(lambda v: f"box:size={v}"),
                   NUMBER.map(lambda v: f"[[{v}, 1], [1, {v}]]"))
OPTIONS = {
    "filter": ["--stride", "--padding", "--dilation", "--cval", "--pool", "--max-pixels"],
    "calc": ["--n", "--k", "--s", "--p", "--d", "--solve", "--pool", "--cin", "--cout", "--groups"],
    "classify": ["--scale", "--mean", "--std", "--top-k", "--batch", "--size", "--max-input"],
}


@st.composite
def invocations(draw):
    command = draw(st.sampled_from(sorted(OPTIONS)))
    names = draw(st.lists(st.sampled_from(OPTIONS[command]), min_size=1, max_size=3, unique=True))
    options = [item for name in names for item in (name, draw(NUMBER))]
    if command == "filter":
        options += ["-k", draw(KERNEL)]
        if "--max-pixels" not in names:
            options += ["--max-pixels", "1000000"]  # keeps every accepted example small and quick
    if command == "calc" and "--n" not in names:
        options += ["--n", draw(NUMBER)]
    return command, options


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(invocation=invocations())
def test_random_option_values_never_crash_or_lose_anything(tmp_path: Path, invocation):
    command, options = invocation
    work = tmp_path / "work"
    work.mkdir(exist_ok=True)
    digit = work / "d.png"
    if not digit.exists():
        Image.fromarray(mnist(1)[0][0]).save(digit)
    out = work / "out"
    out.mkdir(exist_ok=True)
    existing = out / "d-sobel.png"
    existing.write_bytes(b"keep")
    (out / "r.csv").write_bytes(b"keep")
    before = {p: p.read_bytes() for p in work.rglob("*") if p.is_file()}
    args = {"filter": [str(digit), "-o", str(out)], "calc": [],
            "classify": [str(digit), "-m", str(MNIST_12), "-o", str(out / "r.csv")]}[command]
    result = CliRunner().invoke(cli, [command, *args, *options])
    text = result.output
    assert result.exit_code in (0, 1, 2), (command, options, text, result.exception)
    assert "Traceback" not in text and "internal error" not in text, (command, options, text)
    assert not [p for p in work.rglob(".*")], (command, options)  # no temporaries left
    for path, data in before.items():
        assert path.read_bytes() == data, (command, options, path)
    for path in out.iterdir():
        if path not in before:
            path.unlink()
