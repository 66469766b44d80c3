"""The metrics CSV of a training run (its pictures are drawn by ``convtool.plots``)."""

from __future__ import annotations

import csv
import io
import os
import tempfile
from pathlib import Path

from convtool.errors import OutputError


def metrics_csv(rows: list[dict[str, object]]) -> bytes:
    """CSV text of per-epoch metric rows (the keys of the first row are the header)."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(rows[0]) if rows else ["epoch"], lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue().encode()


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_atomic(path: Path, payload: bytes) -> None:
    """Write bytes through a temporary file in the same folder and a rename."""
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        with os.fdopen(fd, "wb") as handle:
            handle.write(payload)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the usual permissions
        os.replace(tmp, path)
    except OSError as exc:
        raise OutputError(f"cannot write {path}: {exc.strerror or exc}") from None
