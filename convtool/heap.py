"""The process's heap policy: keep freed memory for reuse instead of returning it to the OS.

Batch work allocates the same few-MB arrays again and again (a training step's activations, each
image's decoded pixels and outputs). glibc returns large blocks to the OS when they are freed, and
fresh pages cost page faults: about 5 us per 4 KB page on these machines, a fifth of a LeNet-5 step
and a quarter of a 640x480 photo's decode. Process-wide, so only the CLI, benchmarks and worker
processes call it.
"""

from __future__ import annotations

import sys

KEEP_BYTES = 32 << 20  # blocks up to this size come from the heap and stay there once freed


def keep_freed_memory() -> bool:
    """Ask glibc to serve blocks up to KEEP_BYTES from the heap and keep freed ones; False where it does
    not apply (not Linux, not glibc)."""
    if not sys.platform.startswith("linux"):
        return False
    import ctypes

    try:
        libc = ctypes.CDLL(None)
        trim_threshold, mmap_threshold = -1, -3  # M_TRIM_THRESHOLD, M_MMAP_THRESHOLD from malloc.h
        return bool(libc.mallopt(mmap_threshold, KEEP_BYTES) and libc.mallopt(trim_threshold, 1 << 30))
    except (OSError, AttributeError):
        return False
