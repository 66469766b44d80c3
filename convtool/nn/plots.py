"""Training curves and confusion matrices drawn with Pillow (no matplotlib), plus the metrics CSV."""

from __future__ import annotations

import csv
import io
import os
import tempfile
from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from convtool.errors import OutputError

TRAIN_COLOR, VAL_COLOR, EXTRA_COLOR = (31, 119, 180), (214, 39, 40), (44, 160, 44)


def _font(size: int = 12) -> ImageFont.ImageFont:
    try:
        return ImageFont.load_default(size)
    except TypeError:  # Pillow < 10.1 has no sized default font
        return ImageFont.load_default()


def _nice_range(values: Sequence[float]) -> tuple[float, float]:
    lo, hi = min(values), max(values)
    if hi - lo < 1e-9:
        lo, hi = lo - 0.5, hi + 0.5
    pad = (hi - lo) * 0.05
    return lo - pad, hi + pad


def _panel(draw: ImageDraw.ImageDraw, box: tuple[int, int, int, int], title: str, epochs: list[int],
           series: list[tuple[str, list[float], tuple[int, int, int]]]) -> None:
    """One line chart in ``box`` (left, top, right, bottom) with axes, ticks and a legend."""
    font = _font(12)
    left, top, right, bottom = box
    x0, y0, x1, y1 = left + 50, top + 24, right - 10, bottom - 30
    draw.text((left + 50, top + 4), title, fill="black", font=font)
    draw.rectangle((x0, y0, x1, y1), outline="black")
    values = [v for _, vs, _ in series for v in vs]
    lo, hi = _nice_range(values)
    first, last = epochs[0], max(epochs[-1], epochs[0] + 1)

    def point(e: float, v: float) -> tuple[float, float]:
        return x0 + (e - first) / (last - first) * (x1 - x0), y1 - (v - lo) / (hi - lo) * (y1 - y0)

    for k in range(5):  # horizontal grid and value labels
        v = lo + (hi - lo) * k / 4
        _, y = point(first, v)
        draw.line((x0, y, x1, y), fill=(225, 225, 225))
        draw.text((left + 2, y - 7), f"{v:.3g}", fill="black", font=font)
    step = max(1, round((last - first) / 8))
    for e in range(first, last + 1, step):  # epoch ticks
        x, _ = point(e, lo)
        draw.line((x, y1, x, y1 + 4), fill="black")
        draw.text((x - 4, y1 + 6), str(e), fill="black", font=font)
    draw.text(((x0 + x1) // 2 - 16, bottom - 14), "epoch", fill="black", font=font)
    lx = x0 + int(draw.textlength(title, font=font)) + 24  # legend in the title line, clear of the data
    for label, vs, color in series:
        pts = [point(e, v) for e, v in zip(epochs, vs)]
        if len(pts) > 1:
            draw.line(pts, fill=color, width=2)
        for px, py in pts:
            draw.ellipse((px - 2.5, py - 2.5, px + 2.5, py + 2.5), fill=color)
        draw.line((lx, top + 11, lx + 20, top + 11), fill=color, width=2)
        draw.text((lx + 24, top + 4), label, fill="black", font=font)
        lx += 24 + int(draw.textlength(label, font=font)) + 18


def curves_png(epochs: list[int], train_loss: list[float], val_loss: list[float], train_metric: list[float],
               val_metric: list[float], metric_name: str = "accuracy", extra: tuple[str, list[float]] | None = None) -> bytes:
    """A PNG with two panels: loss and ``metric_name`` per epoch, training and validation."""
    image = Image.new("RGB", (960, 380), "white")
    draw = ImageDraw.Draw(image)
    _panel(draw, (0, 0, 480, 380), "loss", epochs, [("training", train_loss, TRAIN_COLOR), ("validation", val_loss, VAL_COLOR)])
    metric_series = [("training", train_metric, TRAIN_COLOR), ("validation", val_metric, VAL_COLOR)]
    if extra:
        metric_series.append((extra[0], extra[1], EXTRA_COLOR))
    _panel(draw, (480, 0, 960, 380), metric_name, epochs, metric_series)
    return _png(image)


def confusion_png(matrix: np.ndarray, labels: list[str], title: str = "validation confusion matrix") -> bytes:
    """A PNG heat map of ``matrix[true, predicted]`` with the count in every cell."""
    k = len(labels)
    cell = max(28, min(56, 560 // max(k, 1)))
    margin_left, margin_top = 110, 70
    size = (margin_left + cell * k + 20, margin_top + cell * k + 50)
    image = Image.new("RGB", size, "white")
    draw = ImageDraw.Draw(image)
    font = _font(12)
    draw.text((margin_left, 8), title, fill="black", font=font)
    draw.text((margin_left, 30), "predicted ->", fill="black", font=font)
    draw.text((4, margin_top - 16), "true", fill="black", font=font)
    rows = matrix.sum(axis=1, keepdims=True).clip(min=1)
    share = np.sqrt(matrix / rows)  # square root so that a few errors still show
    for t in range(k):
        draw.text((4, margin_top + t * cell + cell // 2 - 7), labels[t][:14], fill="black", font=font)
        draw.text((margin_left + t * cell + 2, margin_top - 18), labels[t][:4], fill="black", font=font)
        for p in range(k):
            level = int(255 - 200 * share[t, p])
            color = (level, level, 255) if t == p else (255, level, level)
            x, y = margin_left + p * cell, margin_top + t * cell
            draw.rectangle((x, y, x + cell - 1, y + cell - 1), fill=color, outline=(200, 200, 200))
            if matrix[t, p]:
                text = str(int(matrix[t, p]))
                draw.text((x + 3, y + cell // 2 - 7), text, fill="black", font=font)
    return _png(image)


def _png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


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
