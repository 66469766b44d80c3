"""Worker processes for batch jobs: tasks go to the least busy worker, a worker that dies is replaced.

This module knows nothing of images: it runs ``fn(arg)`` for picklable, module-level functions in
``workers`` processes and hands results back as they finish. :func:`ordered` yields them in input order
with at most ``in_flight`` tasks submitted ahead. A worker that dies (a decoder crash, SIGKILL, the OOM
killer) costs only the tasks it held: each is given to a fresh worker once, and reported as
:class:`Lost` if that one dies too. Workers ignore SIGINT; :meth:`WorkerPool.close` (also on Ctrl-C in
the parent) terminates them and waits at most about a second.

On Linux workers are forked: they start in a few milliseconds with the parent's imports. Start the pool
before opening onnxruntime sessions or Numba's thread pool, so no threads are forked.
"""

from __future__ import annotations

import gc
import os
import signal
import sys
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Iterable, Iterator

if TYPE_CHECKING:
    from multiprocessing.connection import Connection

RETRIES = 1  # a task whose worker died is given to a fresh worker this many times, then reported
STOP_SECONDS = 1.0  # close() waits this long for workers to end after SIGTERM, then kills them


@dataclass
class Lost:
    """A task that could not run because its worker died (each retry's worker died too)."""

    key: Any
    arg: Any
    reason: str  # e.g. "its worker process died (killed by SIGKILL)"


@dataclass
class TaskError:
    """A task whose function raised: the exception's type name and message (tracebacks stay in the worker)."""

    key: Any
    kind: str
    message: str


@dataclass
class _Worker:
    process: Any
    conn: "Connection"
    tasks: dict[Any, tuple[Callable, Any]] = field(default_factory=dict)  # key -> (fn, arg), in order given


def forks() -> bool:
    """Whether workers are forked (Linux), and so start with everything the parent has imported and loaded."""
    return sys.platform.startswith("linux")


def _context():
    import multiprocessing  # only when a pool starts: about 15 ms of imports

    return multiprocessing.get_context("fork" if forks() else "spawn")


def _serve(conn: "Connection", initializer: Callable[[], None] | None) -> None:
    """A worker's loop: run (key, fn, arg) messages until None or until the parent goes away."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole group; the parent stops us
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    _die_with_parent()
    if initializer is not None:
        initializer()
    while True:
        try:
            message = conn.recv()
        except (EOFError, OSError):  # the parent is gone
            return
        if message is None:
            return
        key, fn, arg = message
        try:
            reply: tuple = (key, True, fn(arg))
        except Exception as exc:  # noqa: BLE001 - any task error goes back to the parent, the worker goes on
            reply = (key, False, TaskError(key, type(exc).__name__, str(exc)))
        try:
            conn.send(reply)
        except (BrokenPipeError, OSError):
            return


def _die_with_parent() -> None:
    """Linux: have the kernel end this worker when the parent dies, even by SIGKILL."""
    if sys.platform.startswith("linux"):
        try:
            import ctypes

            ctypes.CDLL(None).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
        except (OSError, AttributeError):
            pass


class WorkerPool:
    """``workers`` processes that run submitted tasks; use as a context manager or call :meth:`close`.

    ``initializer`` runs once in each worker before its first task (e.g. set Numba to one thread).
    """

    def __init__(self, workers: int, *, initializer: Callable[[], None] | None = None) -> None:
        if workers < 1:
            raise ValueError(f"a worker pool needs at least 1 worker, not {workers}")
        self.size = workers
        self.initializer = initializer
        self.replaced = 0  # workers that died and were replaced
        self._attempts: dict[Any, int] = {}
        self._workers: list[_Worker] = []
        for _ in range(workers):
            self._workers.append(self._start())

    def _start(self) -> _Worker:
        parent, child = _context().Pipe()
        process = _context().Process(target=_serve, args=(child, self.initializer), daemon=True,
                                     name="convtool-worker")
        # The child inherits the parent's objects but not its threads: its garbage collector must not
        # finalise them. An onnxruntime session left in a reference cycle, collected in a worker, waited
        # forever in pthread_cond_destroy on a condition its (absent) thread pool used: a hung test.
        gc.freeze()
        try:
            process.start()
        finally:
            gc.unfreeze()
        child.close()
        return _Worker(process, parent)

    @property
    def pids(self) -> list[int]:
        return [w.process.pid for w in self._workers]

    @property
    def pending(self) -> int:
        return sum(len(w.tasks) for w in self._workers)

    def submit(self, key: Any, fn: Callable[[Any], Any], arg: Any) -> None:
        """Queue ``fn(arg)`` on the worker with the fewest tasks; its result comes back under ``key``."""
        worker = min(self._workers, key=lambda w: len(w.tasks))
        worker.tasks[key] = (fn, arg)
        try:
            worker.conn.send((key, fn, arg))
        except (BrokenPipeError, OSError):
            pass  # it died: collect() sees its sentinel and hands its tasks on

    def collect(self, timeout: float | None = None) -> list[tuple[Any, bool, Any]]:
        """Wait for finished tasks: ``(key, True, result)``, ``(key, False, TaskError | Lost)``."""
        from multiprocessing.connection import wait

        busy = [w for w in self._workers if w.tasks]
        if not busy:
            return []
        ready = wait([w.conn for w in busy] + [w.process.sentinel for w in busy], timeout)
        done: list[tuple[Any, bool, Any]] = []
        for worker in busy:
            if worker.conn in ready:
                while worker.conn.poll():
                    try:
                        key, ok, value = worker.conn.recv()
                    except (EOFError, OSError):
                        break
                    worker.tasks.pop(key, None)
                    done.append((key, ok, value))
            if worker.process.sentinel in ready and not worker.process.is_alive():
                done.extend(self._replace(worker))
        return done

    def _replace(self, dead: _Worker) -> list[tuple[Any, bool, Any]]:
        """Start a new worker in place of ``dead`` and resubmit its tasks (or report them as lost)."""
        code = dead.process.exitcode
        reason = f"its worker process died ({_exit_reason(code)})"
        dead.conn.close()
        self._workers[self._workers.index(dead)] = fresh = self._start()
        self.replaced += 1
        lost = []
        for position, (key, (fn, arg)) in enumerate(dead.tasks.items()):
            if position == 0:  # a worker runs its tasks in order: only the first had started
                self._attempts[key] = self._attempts.get(key, 0) + 1
            if self._attempts.get(key, 0) > RETRIES:
                lost.append((key, False, Lost(key, arg, reason + (", also on retry" if RETRIES else ""))))
            else:
                fresh.tasks[key] = (fn, arg)
                fresh.conn.send((key, fn, arg))
        return lost

    def close(self) -> None:
        """Stop every worker: a polite None, then SIGTERM, then SIGKILL, within about a second."""
        for worker in self._workers:
            try:
                if worker.tasks:
                    worker.process.terminate()
                else:
                    worker.conn.send(None)
            except (BrokenPipeError, OSError):
                pass
        deadline = time.monotonic() + STOP_SECONDS
        for worker in self._workers:
            worker.process.join(max(0.0, deadline - time.monotonic()))
            if worker.process.is_alive():
                worker.process.kill()
                worker.process.join()
            worker.conn.close()
        self._workers = []

    def __enter__(self) -> "WorkerPool":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _exit_reason(code: int | None) -> str:
    if code is not None and code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit code {code}"


def ordered(pool: WorkerPool, fn: Callable[[Any], Any], args: Iterable[Any], *,
            in_flight: int) -> Iterator[tuple[bool, Any]]:
    """``(ok, fn(arg) or TaskError/Lost)`` for each arg, in input order, with at most ``in_flight`` submitted ahead.

    The first ``in_flight`` tasks are submitted at once, before any result is asked for (the pool can
    start while the caller prepares something else); the pool keeps working while the caller handles a
    result. More are submitted only when the next result is asked for, so a result's resources (a
    shared slot) are not reused while the caller holds it.
    """
    return _InOrder(pool, fn, iter(args), in_flight)


class _InOrder:
    def __init__(self, pool: WorkerPool, fn: Callable[[Any], Any], source: Iterator[Any], in_flight: int) -> None:
        self.pool, self.fn, self.source, self.in_flight = pool, fn, source, in_flight
        self.results: dict[int, tuple[bool, Any]] = {}
        self.submitted = self.yielded = 0
        self.exhausted = False
        self._fill()

    def _fill(self) -> None:
        while not self.exhausted and self.submitted < self.yielded + self.in_flight:
            try:
                arg = next(self.source)
            except StopIteration:
                self.exhausted = True
                break
            self.pool.submit(self.submitted, self.fn, arg)
            self.submitted += 1

    def __iter__(self) -> "_InOrder":
        return self

    def __next__(self) -> tuple[bool, Any]:
        self._fill()
        if self.yielded == self.submitted and self.exhausted:
            raise StopIteration
        while self.yielded not in self.results:
            for key, ok, value in self.pool.collect():
                self.results[key] = (ok, value)
        self.yielded += 1
        return self.results.pop(self.yielded - 1)


def default_workers() -> int:
    """Worker processes for a batch job: one per core this process may use."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:
        return max(1, os.cpu_count() or 1)
