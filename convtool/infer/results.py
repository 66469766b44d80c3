"""Classification results as CSV, JSON or JSONL (streamed, every top-k entry) and a confusion-matrix PNG."""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path
from typing import Callable, Sequence, TextIO

import numpy as np

from convtool.errors import UsageError
from convtool.io.publish import check_output_location, streamed

FORMATS = {".csv": "csv", ".json": "json", ".jsonl": "jsonl"}
STDOUT = "-"  # the output name that means standard output, as in most command-line tools


def is_stdout(path: Path | str | None) -> bool:
    """True for the output ``-`` (standard output)."""
    return path is not None and str(path) == STDOUT


def check_output(path: Path, *, overwrite: bool, inputs: Sequence[str | Path] = ()) -> None:
    """Standard output (``-``) always works; a file goes through :func:`check_output_location`."""
    if not is_stdout(path):
        check_output_location(path, overwrite=overwrite, inputs=inputs)


def format_of(path: Path, given: str | None = None) -> str:
    """csv, json or jsonl: ``given`` if set, else from the output's suffix (JSON lines for standard output)."""
    if given is not None:
        return given
    if is_stdout(path):
        return "jsonl"
    fmt = FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise UsageError(f"`output` {path}: unknown result format {path.suffix!r}; use .csv, .json or .jsonl")
    return fmt


class RecordWriter:
    """Rows of named fields, as they come, to an open text file: CSV (header first), a JSON list or JSON lines."""

    def __init__(self, stream: TextIO, fmt: str, header: list[str]) -> None:
        self.stream, self.fmt = stream, fmt
        self.rows = 0
        if fmt == "csv":
            self.csv = csv.writer(stream)
            self.csv.writerow(header)
        elif fmt == "json":
            stream.write("[")

    def write_record(self, row: list, record: dict) -> None:
        """One row: ``row`` for CSV, ``record`` for JSON and JSONL."""
        if self.fmt == "csv":
            self.csv.writerow(row)
        else:
            text = json.dumps(record)
            if self.fmt == "json":
                self.stream.write(("\n  " if self.rows == 0 else ",\n  ") + text)
            else:
                self.stream.write(text + "\n")
        self.rows += 1

    def close(self) -> None:
        if self.fmt == "json":
            self.stream.write("\n]\n" if self.rows else "]\n")


class ResultWriter(RecordWriter):
    """Writes rows of (file, top-k labels, indices, probabilities) as they come, to an open text file."""

    def __init__(self, stream: TextIO, fmt: str, top_k: int) -> None:
        header = ["file"]
        for rank in range(1, top_k + 1):
            header += [f"label_{rank}", f"index_{rank}", f"probability_{rank}"]
        super().__init__(stream, fmt, header)
        self.top_k = top_k

    def write(self, file: str, labels: list[str], indices: list[int], probs: list[float]) -> None:
        """One image's top-k entries, best first."""
        row: list = [file]
        for label, index, prob in zip(labels, indices, probs, strict=True):
            row += [label, index, f"{prob:.6g}"]
        record = {
            "file": file,
            "top_k": [
                {"label": label, "index": index, "probability": round(prob, 7)}
                for label, index, prob in zip(labels, indices, probs, strict=True)
            ],
        }
        self.write_record(row, record)


def write_streaming(path: Path, fmt: str, top_k: int, produce: Callable[[ResultWriter], None], *,
                    overwrite: bool = False) -> None:
    """Run ``produce(writer)`` writing into a temporary file, published as ``path`` only on success."""
    write_records(path, lambda stream: ResultWriter(stream, fmt, top_k), produce, overwrite=overwrite)


def write_records(path: Path, make: Callable[[TextIO], RecordWriter], produce: Callable, *,
                  overwrite: bool = False) -> None:
    """Run ``produce(make(stream))`` writing into a temporary file, published as ``path`` only on success
    (an existing ``path`` is replaced only with ``overwrite``).

    ``path`` ``-`` streams the records to standard output as they come.
    """
    if is_stdout(path):
        writer = make(sys.stdout)
        produce(writer)
        writer.close()
        sys.stdout.flush()
        return

    with streamed(path, overwrite=overwrite) as stream:
        writer = make(stream)
        produce(writer)
        writer.close()


def confusion_png(confusion: np.ndarray, names: list[str]) -> bytes:
    """The confusion matrix as a PNG picture (the same drawing as ``convtool train``'s)."""
    from convtool import plots

    return plots.confusion_matrix(confusion, names, title="confusion matrix")
