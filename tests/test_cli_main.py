"""The command group: start-up stays light, help lists the commands."""

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


def test_version(runner):
    result = runner.invoke(cli, ["--version"])
    assert result.exit_code == 0 and "convtool" in result.output
