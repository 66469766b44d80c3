"""The worker-process pool: input order, bounded work ahead, errors, workers that die, stopping."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

from convtool.workers import Lost, TaskError, WorkerPool, ordered


def square(x: int) -> int:
    time.sleep(0.002 * (x % 3))  # finish out of order
    return x * x


def fail_on_three(x: int) -> int:
    if x == 3:
        raise ValueError("three is bad")
    return x


def die_once(arg: tuple[int, str]) -> int:
    """Kill this worker the first time the flag file is missing, succeed on the retry."""
    value, flag = arg
    if value == 2 and not os.path.exists(flag):
        Path(flag).touch()
        os.kill(os.getpid(), signal.SIGKILL)
    return value


def die_always(value: int) -> int:
    if value == 2:
        os.kill(os.getpid(), signal.SIGKILL)
    return value


def sleep_long(value: int) -> int:
    time.sleep(60)
    return value


def test_results_come_in_input_order_with_bounded_work_ahead():
    seen_ahead = []
    with WorkerPool(2) as pool:
        results = []
        for ok, value in ordered(pool, square, range(20), in_flight=3):
            seen_ahead.append(pool.pending)
            results.append((ok, value))
    assert results == [(True, x * x) for x in range(20)]
    assert max(seen_ahead) <= 2  # the one being handed over is no longer pending


def test_the_first_tasks_are_submitted_when_ordered_is_called_and_no_more_until_asked():
    with WorkerPool(2) as pool:
        results = ordered(pool, square, range(10), in_flight=3)
        assert pool.pending + len(results.results) == 3  # before any result is asked for
        deadline = time.monotonic() + 30
        while pool.pending and time.monotonic() < deadline:  # all three finish; nothing else is sent meanwhile
            results.results.update({key: (ok, value) for key, ok, value in pool.collect(timeout=0.1)})
        assert sorted(results.results) == [0, 1, 2] and pool.pending == 0
        assert [value for _, value in results] == [x * x for x in range(10)]


def test_an_exception_comes_back_as_a_task_error_and_the_others_go_on():
    with WorkerPool(2) as pool:
        results = list(ordered(pool, fail_on_three, range(6), in_flight=4))
    assert [value for ok, value in results if ok] == [0, 1, 2, 4, 5]
    (error,) = [value for ok, value in results if not ok]
    assert isinstance(error, TaskError) and error.kind == "ValueError" and error.message == "three is bad"


def test_a_killed_worker_costs_nothing_when_the_retry_succeeds(tmp_path):
    flag = str(tmp_path / "died")
    with WorkerPool(2) as pool:
        results = list(ordered(pool, die_once, [(i, flag) for i in range(6)], in_flight=2))
        assert pool.replaced == 1
    assert results == [(True, i) for i in range(6)]


def test_a_task_that_kills_every_worker_is_reported_once_retried():
    with WorkerPool(2) as pool:
        results = list(ordered(pool, die_always, range(5), in_flight=2))
        assert pool.replaced == 2  # the first worker and the one that retried
    assert [value for ok, value in results if ok] == [0, 1, 3, 4]
    (lost,) = [value for ok, value in results if not ok]
    assert isinstance(lost, Lost) and lost.arg == 2 and lost.reason == "its worker process died (killed by SIGKILL), also on retry"


def test_close_stops_busy_workers_and_leaves_no_process():
    pool = WorkerPool(2)
    pids = pool.pids
    pool.submit(0, sleep_long, 0)
    pool.submit(1, sleep_long, 1)
    pool.close()
    for pid in pids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)


class _Finalised:
    """Garbage in a reference cycle whose finaliser notes the process that ran it."""

    def __init__(self, path: Path) -> None:
        self.path, self.me = path, self

    def __del__(self) -> None:
        with open(self.path, "a") as file:
            file.write(f"{os.getpid()}\n")


def _collect_garbage(_: object) -> int:
    import gc

    gc.collect()
    return os.getpid()


def test_workers_never_finalise_the_parents_objects(tmp_path):
    # an onnxruntime session finalised in a worker hung it (its thread pool's condition, without the threads)
    import gc

    record = tmp_path / "finalised.txt"
    gc.disable()
    try:
        _Finalised(record)  # unreachable at once, collectable only by the garbage collector
        with WorkerPool(2) as pool:
            worker_pids = [value for ok, value in ordered(pool, _collect_garbage, range(4), in_flight=2)]
    finally:
        gc.enable()
    gc.collect()
    assert record.read_text().split() == [str(os.getpid())]  # finalised once, here, not in a worker
    assert str(os.getpid()) not in map(str, worker_pids)
