"""Whole-process timing for the benchmarks that race convtool's commands against plain scripts.

Not a benchmark itself: imported by classify_vs_script.py, filter_vs_opencv.py and segment_vs_script.py.
"""

from __future__ import annotations

import subprocess
import sys
import time


def wall(cmd: list[str], env: dict | None = None) -> tuple[float, str]:
    """(wall seconds, standard error) of running ``cmd``; a command that fails stops the benchmark."""
    start = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True, env=env)
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        sys.exit(f"failed: {' '.join(cmd)}\n{done.stderr}")
    return elapsed, done.stderr
