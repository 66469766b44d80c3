"""The command group: start-up stays light, help lists the commands."""

import os
import subprocess
import sys

from convtool.cli.main import cli


def test_help_imports_no_heavy_modules():
    code = ("import sys; from convtool.cli.main import cli\n"
            "try:\n    cli(['--help'])\nexcept SystemExit:\n    pass\n"
            "heavy = [m for m in ('numba', 'onnxruntime', 'onnx', 'numpy', 'scipy') if m in sys.modules]\n"
            "print('HEAVY', heavy)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "HEAVY []" in out
    assert "filter" in out and "kernels" in out


def _modules_after(args: list[str], cwd) -> str:
    """The names of the heavy modules a CLI run imported (rich, numba, ray, subprocess, ...)."""
    code = ("import sys; from convtool.cli.main import cli\n"
            f"try:\n    cli({args!r})\nexcept SystemExit:\n    pass\n"
            "print('LOADED', sorted(m for m in sys.modules if m.split('.')[0] in "
            "('rich', 'numba', 'ray', 'onnxruntime', 'subprocess', 'secrets')))")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=cwd)
    return run.stdout.split("LOADED")[-1]


def test_a_small_filter_run_imports_only_what_it_uses(tmp_path):
    """One small image with -o: no rich (tables, progress bars), no numba (NumPy suffices), no Ray, no ldconfig."""
    from PIL import Image

    Image.new("L", (32, 24), 90).save(tmp_path / "a.png")
    loaded = _modules_after(["filter", "a.png", "-k", "sobel", "-o", "out/"], tmp_path)
    assert (tmp_path / "out" / "a-sobel.png").exists()
    assert loaded.strip() == "[]"


def test_version(runner):
    result = runner.invoke(cli, ["--version"])
    assert result.exit_code == 0 and "convtool" in result.output


def test_piped_tables_keep_long_names_whole(tmp_path, runner):
    """Not a terminal: no ellipsis and no wrapping inside a name, so the output can be pasted or grepped."""
    import numpy as np
    from infer_helpers import MNIST_12
    from PIL import Image

    name = "a-rather-long-file-name-that-would-not-fit-in-eighty-columns-" + "x" * 40
    folder = tmp_path / "digits"
    folder.mkdir()
    Image.fromarray(np.zeros((28, 28), np.uint8)).save(folder / f"{name}.png")
    result = runner.invoke(cli, ["classify", str(folder), "-m", str(MNIST_12), "--device", "cpu"])
    assert result.exit_code == 0, result.output
    lines = [line for line in result.stdout.splitlines() if name in line]
    assert len(lines) == 1 and "…" not in result.stdout
    listing = runner.invoke(cli, ["features", str(MNIST_12), "--list"])
    assert "…" not in listing.stdout and "Convolution28_Output_0" in listing.stdout


def test_library_messages_name_parameters_and_the_cli_shows_flags():
    from convtool.cli.main import flag_names

    assert flag_names("pass `overwrite` to replace it") == "pass --overwrite to replace it"
    assert flag_names("use `output_layout` nchw; `device` cpu") == "use --output-layout nchw; --device cpu"
    assert flag_names("a `Backtick` quote and 'x'") == "a `Backtick` quote and 'x'"  # only parameter names


def _blas_after(command: str) -> tuple[str, int]:
    """OPENBLAS_NUM_THREADS and the process's thread count once a command started and NumPy is loaded."""
    code = ("import os, sys; from convtool.cli import main as m\n"
            f"m._one_blas_thread([{command!r}, 'x'])\n"
            "import numpy\n"
            "print(os.environ.get('OPENBLAS_NUM_THREADS', 'unset'), len(os.listdir('/proc/self/task')))")
    env = {k: v for k, v in os.environ.items() if k != "OPENBLAS_NUM_THREADS"}
    value, threads = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                                    env=env).stdout.split()
    return value, int(threads)


def test_commands_without_matrix_products_start_numpy_with_one_blas_thread():
    assert _blas_after("classify") == ("1", 1)
    assert _blas_after("filter") == ("1", 1)
    value, threads = _blas_after("train")  # im2col GEMMs: every thread OpenBLAS wants
    assert value == "unset"
    if len(os.sched_getaffinity(0)) > 1:
        assert threads > 1
