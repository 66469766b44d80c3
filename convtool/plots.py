"""The pictures convtool draws, with matplotlib: training curves, confusion matrices, feature grids.

matplotlib is imported only when a picture is asked for (it costs ~0.3 s), with the non-interactive Agg
back-end, so no screen is needed. Every function returns PNG bytes; writing them is the output layer's job.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Sequence

import numpy as np

if TYPE_CHECKING:
    from matplotlib.figure import Figure

DPI = 100
TRAIN_COLOR, VAL_COLOR, EXTRA_COLOR = "#1f77b4", "#d62728", "#2ca02c"


@dataclass(frozen=True)
class Curves:
    """Per-epoch training history; metrics are fractions (0..1) and are drawn as percentages."""

    epochs: Sequence[int]
    train_loss: Sequence[float]
    val_loss: Sequence[float]
    train_metric: Sequence[float]
    val_metric: Sequence[float]
    metric_name: str = "accuracy"
    best_epoch: int | None = None
    extra: tuple[str, Sequence[float]] | None = None  # a third metric series, e.g. ("mean IoU", [...])


def _figure(width: float, height: float) -> Figure:
    from matplotlib.figure import Figure  # Figure without pyplot: no global state, no GUI back-end

    return Figure(figsize=(width, height), dpi=DPI, layout="constrained")


def _png(figure: Figure) -> bytes:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(figure)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=DPI)
    return buffer.getvalue()


def training_curves(curves: Curves) -> bytes:
    """PNG of :func:`curves_figure`."""
    return _png(curves_figure(curves))


def curves_figure(curves: Curves) -> Figure:
    """Two panels: loss (from 0) and the metric in % per epoch, training and validation, best epoch marked."""
    from matplotlib.ticker import MaxNLocator, PercentFormatter

    figure = _figure(9.6, 3.8)
    loss_axes, metric_axes = figure.subplots(1, 2)
    epochs = list(curves.epochs)
    loss_axes.plot(epochs, curves.train_loss, "o-", color=TRAIN_COLOR, markersize=3, label="training")
    loss_axes.plot(epochs, curves.val_loss, "o-", color=VAL_COLOR, markersize=3, label="validation")
    loss_axes.set_ylim(bottom=0, top=max(max(curves.train_loss), max(curves.val_loss)) * 1.08 or 1.0)
    loss_axes.set(title="loss", xlabel="epoch", ylabel="cross-entropy")
    series = [("training", curves.train_metric, TRAIN_COLOR), ("validation", curves.val_metric, VAL_COLOR)]
    if curves.extra is not None:
        series.append((curves.extra[0], curves.extra[1], EXTRA_COLOR))
    for label, values, color in series:
        metric_axes.plot(epochs, [100 * v for v in values], "o-", color=color, markersize=3, label=label)
    metric_axes.yaxis.set_major_formatter(PercentFormatter(decimals=None))
    metric_axes.set(title=curves.metric_name, xlabel="epoch", ylabel=f"{curves.metric_name} (%)")
    for axes in (loss_axes, metric_axes):
        axes.xaxis.set_major_locator(MaxNLocator(integer=True))
        axes.grid(True, color="#e0e0e0")
        if curves.best_epoch is not None:
            axes.axvline(curves.best_epoch, color="#777777", linestyle="--", linewidth=1,
                         label=f"best epoch ({curves.best_epoch})")
        axes.legend(frameon=False, fontsize=9)
    return figure


def confusion_matrix(matrix: np.ndarray, labels: Sequence[str], *, title: str = "confusion matrix") -> bytes:
    """PNG of :func:`confusion_figure`."""
    return _png(confusion_figure(matrix, labels, title=title))


def confusion_figure(matrix: np.ndarray, labels: Sequence[str], *, title: str = "confusion matrix") -> Figure:
    """``matrix[true, predicted]`` as a heat map coloured by row fraction, the count centred in every cell."""
    matrix = np.asarray(matrix)
    k = len(labels)
    side = min(14.0, max(3.6, 0.5 * k + 2.2))  # grows with the class count
    figure = _figure(side + 0.8, side)
    axes = figure.subplots()
    rows = matrix.sum(axis=1, keepdims=True)
    fraction = np.divide(matrix, rows, out=np.zeros(matrix.shape), where=rows > 0)
    image = axes.imshow(fraction, cmap="Blues", vmin=0.0, vmax=1.0)
    font = max(6, min(11, int(90 / max(k, 1))))
    for (t, p), count in np.ndenumerate(matrix):
        if count or t == p:
            dark = fraction[t, p] > 0.55
            axes.text(p, t, f"{int(count)}", ha="center", va="center", fontsize=font,
                      color="white" if dark else ("#b00000" if t != p else "black"),
                      fontweight="bold" if t != p else "normal")
    ticks = range(k)
    rotate = 45 if max((len(str(n)) for n in labels), default=1) > 3 else 0
    axes.set_xticks(ticks, [str(n) for n in labels], rotation=rotate, ha="right" if rotate else "center",
                    fontsize=font)
    axes.set_yticks(ticks, [str(n) for n in labels], fontsize=font)
    axes.set(xlabel="predicted class", ylabel="true class", title=title)
    figure.colorbar(image, ax=axes, shrink=0.8, label="share of the true class")
    return figure


def feature_grid(maps: np.ndarray, *, title: str = "", columns: int | None = None) -> bytes:
    """PNG of :func:`features_figure`."""
    return _png(features_figure(maps, title=title, columns=columns))


def features_figure(maps: np.ndarray, *, title: str = "", columns: int | None = None) -> Figure:
    """C,H,W activations as a grid of maps numbered by channel, on one shared colour scale with a bar."""
    channels = maps.shape[0]
    columns = columns or math.ceil(math.sqrt(channels))
    rows = math.ceil(channels / columns)
    cell = max(0.7, min(1.6, 10.0 / max(columns, rows)))
    figure = _figure(columns * cell + 1.2, rows * cell + (0.5 if title else 0.2))
    grid = figure.subplots(rows, columns, squeeze=False)
    low, high = float(np.min(maps)), float(np.max(maps))
    if high <= low:
        high = low + 1.0
    image = None
    for index, axes in enumerate(grid.ravel()):
        axes.set_axis_off()
        if index < channels:
            image = axes.imshow(maps[index], cmap="viridis", vmin=low, vmax=high, interpolation="nearest")
            axes.set_title(str(index), fontsize=7, pad=2)
    if title:
        figure.suptitle(title, fontsize=10)
    if image is not None:
        figure.colorbar(image, ax=grid, shrink=0.8, label="activation")
    return figure
