"""conv.jit_cached: whether a correlation would compile anything, answered without compiling."""

import os
import subprocess
import sys

import numpy as np

from convtool import conv
from convtool.conv import cpu

SOBEL = np.array([[1.0, 0, -1], [2, 0, -2], [1, 0, -1]])


def test_true_once_the_kernels_a_call_runs_are_compiled_or_on_disk(monkeypatch):
    monkeypatch.setattr(cpu, "THREADS", 2)
    monkeypatch.setattr(cpu, "SERIAL_WORK", 0)  # the threaded paths too (flat planes through _planes_part)
    for image, options in ((np.zeros((2, 9, 8), np.float32), {}),  # flat path
                           (np.zeros((20, 30), np.float32), {}),  # one plane: read in place
                           (np.zeros((3, 40, 60), np.uint8), {"channel_axis": -1})):
        for kernel in (SOBEL, np.ones((2, 3))):
            conv.correlate2d(image, kernel, padding="same", border="reflect", **options)
            assert conv.jit_cached(image, kernel, padding="same", border="reflect", **options)
    # the disk cache alone (what a fresh process sees) lists the kernel the flat path just ran
    plan = conv.correlation_plan((2, 9, 8), np.dtype(np.float32), (3, 3), SOBEL.tobytes(), 1, "same", "reflect", 0.0,
                                 1, "auto", "cpu", True)
    calls = _recorded_calls(plan, np.zeros((2, 9, 8), np.float32), np.zeros((2, 9, 8), np.float32))
    assert [function for function, _ in calls] == [cpu._planes]
    from numba import typeof

    signature = tuple(typeof(value) for value in calls[0][1])
    assert cpu._on_disk(cpu._planes, signature)
    assert not cpu._on_disk(cpu._planes, signature[:-1])  # a signature never compiled


def _recorded_calls(plan, stack, out):
    cpu._probe.calls, cpu._probes[0] = [], cpu._probes[0] + 1
    try:
        plan.run(stack, out)
        return [cpu._jitted(function, args) for function, args in cpu._probe.calls]
    finally:
        cpu._probes[0] -= 1
        cpu._probe.calls = None


def test_back_ends_without_cpu_kernels_need_nothing_and_cuda_always_compiles(monkeypatch):
    image = np.zeros((20, 20), np.float32)
    for backend in ("numpy", "fft", "im2col", "reference"):
        assert conv.jit_cached(image, SOBEL, backend=backend)
    monkeypatch.setattr(conv, "choose_backend", lambda *a, **k: conv.Choice("direct", "cuda", "test"))
    conv.correlation_plan.cache_clear()
    try:
        assert not conv.jit_cached(image, np.ones((3, 3)) * 3.0)
    finally:
        conv.correlation_plan.cache_clear()


def test_unreadable_numba_cache_means_not_cached_never_an_error(monkeypatch):
    monkeypatch.setattr(cpu._planes, "_cache", object())  # a Numba whose cache has other private parts
    assert not cpu._on_disk(cpu._planes, ())


def test_an_empty_cache_answers_false_and_compiles_nothing(tmp_path):
    script = ("import numpy as np; from convtool import conv; from convtool.conv import cpu; "
              "print(conv.jit_cached(np.zeros((3, 300, 400), np.uint8), np.outer([1., 2, 1], [1., 0, -1]), "
              "padding='same', border='reflect'), conv.jit_cached(np.zeros((64, 64), np.float32), np.ones((3, 3))), "
              "sum(len(f.overloads) for f in (cpu._separable, cpu._direct, cpu._planes)))")
    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path))
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=120)
    assert result.stdout.split() == ["False", "False", "0"], result.stderr
    assert not list(tmp_path.rglob("*.nbi"))  # nothing was compiled into the cache
