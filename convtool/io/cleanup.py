"""Temporary files registered while they exist and removed when a signal stops the process.

A signal handler raises :class:`Interrupted` (a ``KeyboardInterrupt``), so SIGTERM and SIGHUP unwind
exactly like Ctrl-C: ``finally`` blocks remove temporaries and training saves its best model. The CLI
installs the handlers (``install_signal_handlers``); a worker process that publishes files installs
them in its initializer too.
"""

from __future__ import annotations

import os
import signal
import threading

SIGNALS = tuple(s for s in (signal.SIGINT, signal.SIGTERM, getattr(signal, "SIGHUP", None)) if s is not None)

_temporaries: set[str] = set()
_lock = threading.Lock()
_last_signal: int = signal.SIGINT


class Interrupted(KeyboardInterrupt):
    """Raised by the handler of SIGINT, SIGTERM or SIGHUP; ``signo`` says which."""

    def __init__(self, signo: int) -> None:
        super().__init__(signal.Signals(signo).name)
        self.signo = signo


def register(path: str | os.PathLike) -> None:
    """Remember a temporary file so that an interruption removes it."""
    with _lock:
        _temporaries.add(os.fspath(path))


def discard(path: str | os.PathLike) -> None:
    """Remove a temporary file (if it still exists) and forget it."""
    name = os.fspath(path)
    try:
        os.unlink(name)
    except FileNotFoundError:
        pass
    except OSError:  # a read-only or vanished folder: nothing more to do
        pass
    forget(name)


def forget(path: str | os.PathLike) -> None:
    """Stop tracking a path without touching the file (a name that turned out to be someone else's)."""
    with _lock:
        _temporaries.discard(os.fspath(path))


def remove_temporaries() -> None:
    """Remove every registered temporary file (called when a run is interrupted)."""
    with _lock:
        names = list(_temporaries)
    for name in names:
        discard(name)


def _on_signal(signo: int, frame: object) -> None:
    global _last_signal
    _last_signal = signo
    raise Interrupted(signo)


def install_signal_handlers() -> None:
    """Turn SIGINT, SIGTERM and SIGHUP into :class:`Interrupted` (main thread only; elsewhere a no-op)."""
    if threading.current_thread() is not threading.main_thread():
        return
    for signo in SIGNALS:
        signal.signal(signo, _on_signal)


def exit_code(exc: BaseException | None = None) -> int:
    """128 + the signal number, as a shell reports a process stopped by that signal (130 for Ctrl-C)."""
    signo = getattr(exc, "signo", None) or _last_signal
    return 128 + int(signo)
