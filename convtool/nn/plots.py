"""The metrics CSV of a training run (its pictures are drawn by ``convtool.plots``)."""

from __future__ import annotations

import csv
import io


def metrics_csv(rows: list[dict[str, object]]) -> bytes:
    """CSV text of per-epoch metric rows (the keys of the first row are the header)."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(rows[0]) if rows else ["epoch"], lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue().encode()
