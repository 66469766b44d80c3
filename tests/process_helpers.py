"""Helpers for tests that run convtool in a child process and interrupt it, and small numbered images.

Not a test module: imported by tests/test_cli_classify.py, test_batchfilter.py, test_infer_decode.py and
test_infer_pipeline.py.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
from PIL import Image

_SLOWED = """
import sys, time
import {module} as target
real = target.{function}
def slow(*args, **options):
    time.sleep({seconds})
    return real(*args, **options)
target.{function} = slow  # forked workers inherit it
from convtool.cli.main import main
sys.argv = ["convtool", *sys.argv[1:]]
main()
"""


def start_slowed(module: str, function: str, seconds: float, args: list[str]) -> subprocess.Popen:
    """Run ``convtool ARGS`` in its own process group with ``module.function`` slowed down per call."""
    code = _SLOWED.format(module=module, function=function, seconds=seconds)
    return subprocess.Popen([sys.executable, "-c", code, *args], start_new_session=True, stderr=subprocess.PIPE,
                            text=True)


def children(pid: int) -> list[int]:
    """The process ids whose parent is ``pid`` (from /proc)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def write_numbered(folder: Path, count: int) -> None:
    """``count`` gray 4x4 PNGs whose pixels all equal their index, named 000.png, 001.png, ..."""
    for i in range(count):
        Image.fromarray(np.full((4, 4), i, np.uint8)).save(folder / f"{i:03d}.png")
