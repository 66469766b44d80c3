"""Publish output files atomically, never replacing an existing file unless asked to.

Every output is written to a temporary file beside it (created with ``O_EXCL``, mode 0666 minus the
umask), then published with ``os.link``, which fails if the name exists, even when another process
created it a moment ago; with ``overwrite`` it is ``os.replace``. A reader never sees a half-written
file, and a failure or signal leaves no temporary behind (see :mod:`convtool.io.cleanup`).

Safe to call from worker processes and threads: nothing here is shared but the temporaries registry.

    publish_bytes(path, data, overwrite=False)
    publish_with(path, write, overwrite=False)     # write(temporary_path) fills the file
    publish_reserved(reserve(path), path)          # the temporary filled elsewhere (a worker process)
    with streamed(path) as handle: ...             # CSV/JSONL written row by row, published on success
    check_output_location(path, overwrite=..., inputs=...)   # before any long work
"""

from __future__ import annotations

import errno
import os
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator, Sequence, TextIO

from convtool.errors import OutputError
from convtool.io import cleanup

# Tests set this to simulate a disk failing after the bytes were handed over (e.g. ENOSPC at close).
fault_hook: Callable[[Path], None] | None = None

_NO_HARD_LINKS = {errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EMLINK, errno.ENOSYS}
_DISK_ERRORS = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS, errno.EACCES, errno.EPERM, errno.EIO}
_ADVICE = {
    errno.ENOSPC: "the disk is full; free some space or choose another output folder",
    errno.EDQUOT: "the disk quota is exhausted; free some space or choose another output folder",
    errno.EFBIG: "the file is too large for this file system or limit",
    errno.EROFS: "the file system is read-only; choose another output folder",
    errno.EACCES: "permission denied; choose another output folder",
    errno.EPERM: "not permitted; choose another output folder",
    errno.ENOENT: "the folder does not exist; create it first",
    errno.ENOTDIR: "part of the path is a file, not a folder",
    errno.EISDIR: "is a folder; give a file name",
}


def describe(path: Path, exc: OSError) -> str:
    """One line naming ``path`` and what went wrong, for an OSError met while writing it."""
    return f"{path}: cannot write: {_advice(exc)}"


def _advice(exc: OSError) -> str:
    return _ADVICE.get(exc.errno or 0) or exc.strerror or str(exc) or type(exc).__name__


def check_output_location(path: str | os.PathLike, *, overwrite: bool = False,
                          inputs: Sequence[str | os.PathLike] = ()) -> None:
    """Refuse, before any work, an output that is an input, a folder, exists (without ``overwrite``)
    or sits in a folder that is missing or cannot be written (tried by creating a temporary there)."""
    path = Path(path)
    if _is_one_of(path, inputs):
        raise OutputError(f"{path}: is one of the input files; choose another output name")
    if path.is_dir():
        raise OutputError(f"{path}: is a folder; give a file name for the output")
    if path.exists() and not overwrite:
        raise OutputError(f"{path}: already exists; pass `overwrite` to replace it")
    folder = _folder(path)
    if not folder.is_dir():
        raise OutputError(f"{folder}: output folder does not exist; create it first")
    cleanup.discard(_new_temporary(path))


def make_folder(folder: str | os.PathLike) -> Path:
    """Create an output folder (and its parents) if missing; a one-line OutputError if impossible."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise OutputError(f"{folder}: is a file, not a folder; choose another output folder") from None
    except OSError as exc:
        raise OutputError(f"{folder}: cannot create output folder ({_advice(exc)})") from None
    return folder


def publish_with(path: str | os.PathLike, write: Callable[[Path], object], *, overwrite: bool = False) -> Path:
    """Call ``write(temporary)`` to fill a temporary file beside ``path``, then publish it as ``path``.

    The temporary's name ends with ``path``'s suffix, so writers that choose the format from the
    name (Pillow, OpenCV) work. Raises OutputError if ``path`` exists (without ``overwrite``) or
    cannot be written; nothing is left behind on any failure or interruption.
    """
    path = Path(path)
    temporary = reserve(path)
    try:
        write(temporary)
    except OSError as exc:
        cleanup.discard(temporary)
        raise OutputError(describe(path, exc)) from None
    except BaseException:
        cleanup.discard(temporary)
        raise
    return publish_reserved(temporary, path, overwrite=overwrite)


def reserve(path: str | os.PathLike) -> Path:
    """A registered, empty temporary beside ``path`` for a writer elsewhere (a worker process) to fill.

    Publish it with :func:`publish_reserved`, or drop it with :func:`convtool.io.cleanup.discard`.
    """
    return _new_temporary(Path(path))


def publish_reserved(temporary: str | os.PathLike, path: str | os.PathLike, *, overwrite: bool = False) -> Path:
    """Publish a filled temporary from :func:`reserve` as ``path``; the temporary is gone afterwards either way."""
    path = Path(path)
    try:
        _finish(Path(temporary), path, overwrite)
    except OSError as exc:
        raise OutputError(describe(path, exc)) from None
    finally:
        cleanup.discard(temporary)
    return path


def publish_bytes(path: str | os.PathLike, data: bytes, *, overwrite: bool = False) -> Path:
    """Publish ``data`` as the file ``path`` (see :func:`publish_with`)."""

    def write(temporary: Path) -> None:
        with open(temporary, "wb") as handle:
            handle.write(data)

    return publish_with(path, write, overwrite=overwrite)


@contextmanager
def streamed(path: str | os.PathLike, *, overwrite: bool = False) -> Iterator[TextIO]:
    """A file handle for results written incrementally; published as ``path`` only if the block ends normally.

    Text mode is UTF-8 with no newline translation (what the csv module wants).
    """
    path = Path(path)
    temporary = _new_temporary(path)
    try:
        with open(temporary, "w", newline="", encoding="utf-8") as handle:
            yield handle
        _finish(temporary, path, overwrite)
    except OSError as exc:
        if exc.errno not in _DISK_ERRORS and exc.filename not in (None, os.fspath(temporary), os.fspath(path)):
            raise  # not about this output (e.g. an input the caller was reading)
        raise OutputError(describe(path, exc)) from None
    finally:
        cleanup.discard(temporary)


def _finish(temporary: Path, path: Path, overwrite: bool) -> None:
    if fault_hook is not None:
        fault_hook(temporary)
    if overwrite:
        if path.is_dir():
            raise OutputError(f"{path}: is a folder; give a file name for the output")
        os.replace(temporary, path)
        return
    try:
        os.link(temporary, path)
    except FileExistsError:
        raise OutputError(f"{path}: already exists; pass `overwrite` to replace it") from None
    except OSError as exc:
        if exc.errno not in _NO_HARD_LINKS:
            raise
        _claim_and_replace(temporary, path)


def _claim_and_replace(temporary: Path, path: Path) -> None:
    """Where hard links are not supported: claim the name with O_EXCL, then move the file onto it."""
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
    except FileExistsError:
        raise OutputError(f"{path}: already exists; pass `overwrite` to replace it") from None
    os.replace(temporary, path)


def _new_temporary(path: Path) -> Path:
    """Create an empty, registered temporary beside ``path``: hidden, unique, mode 0666 minus the umask."""
    folder = _folder(path)
    for _ in range(100):
        temporary = folder / f".{path.name}.{os.urandom(4).hex()}.part{path.suffix}"
        cleanup.register(temporary)  # before creating it: a signal in between still finds it
        try:
            os.close(os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o666))
            return temporary
        except FileExistsError:
            cleanup.forget(temporary)  # not ours: forget the name without deleting someone else's file
        except OSError as exc:
            cleanup.forget(temporary)
            if not folder.is_dir():
                raise OutputError(f"{folder}: output folder does not exist; create it first") from None
            raise OutputError(describe(path, exc)) from None
    raise OutputError(f"{path}: cannot create a temporary file beside it")


def _folder(path: Path) -> Path:
    return path.parent if str(path.parent) else Path(".")


def _is_one_of(path: Path, inputs: Sequence[str | os.PathLike]) -> bool:
    """True when ``path`` exists and is the same file as one of ``inputs`` (by device and inode: links
    count). One stat per input, not two: a rerun over 2,000 inputs checks them in a few milliseconds."""
    try:
        target = os.stat(path)
    except OSError:
        return False
    for other in inputs:
        try:
            found = os.stat(other)
        except OSError:
            continue
        if found.st_ino == target.st_ino and found.st_dev == target.st_dev:
            return True
    return False
