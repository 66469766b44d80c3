"""From a data source to normalised training and validation arrays, for either task.

Classification: IDX files, a class-folder tree or the bundled MNIST, split into training and
validation (the last part; folders are shuffled with the seed first). Segmentation: deterministic
synthetic canvases of digits, the training canvases built from the training digits only.
Normalisation statistics come from the training split.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from convtool.errors import UsageError
from convtool.nn import data as D

SCALE = 1 / 255


@dataclass
class Prepared:
    train_x: np.ndarray  # N, C, H, W float32, normalised
    train_y: np.ndarray
    val_x: np.ndarray
    val_y: np.ndarray
    classes: list[str]
    channels: str  # "gray" or "rgb"
    mean: list[float]
    std: list[float]
    trained_on: str
    refresh: Callable[[int], tuple[np.ndarray, np.ndarray]] | None = None  # new training data for an epoch
    skipped: list[str] = field(default_factory=list)  # files of the source that could not be read

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return tuple(self.train_x.shape[1:])


def prepare(task: str, path: Path | None, *, val_fraction: float = 0.2, size: tuple[int, int] | None = None,
            seed: int = 0, canvas: int = 48, canvases: int = 4000, limit: int | None = None) -> Prepared:
    """Load, split and normalise the data for ``task`` ("classify" or "segment").

    ``limit`` keeps only the first images of the source (for quick runs and tests).
    """
    data = D.load(path, size)
    if limit is not None:
        data = D.Dataset(data.images[:limit], data.labels[:limit], data.classes, f"first {limit} of {data.description}",
                         data.skipped)
    shuffle = seed if path is not None and D.find_idx_pair(path) is None else None
    train, val = D.split(data, val_fraction, shuffle)
    if task == "segment":
        if data.images.shape[1] != 1:
            raise UsageError("segmentation canvases are built from grayscale digits (IDX files or the bundled MNIST)")
        n_val = max(1, round(canvases * val_fraction))
        digits = train
        train = D.digit_canvases(digits, canvases - n_val, canvas, seed=seed)
        val = D.digit_canvases(val, n_val, canvas, seed=seed + 1)
        trained_on = (f"{canvases - n_val} training canvases drawn anew each epoch and {n_val} fixed validation "
                      f"{canvas}x{canvas} canvases of digits; "
                      f"training canvases from {len(data) - round(len(data) * val_fraction)} training digits, "
                      f"validation canvases from the other {round(len(data) * val_fraction)} ({data.description})")
    elif task == "classify":
        trained_on = f"{train.description}; {val.description.split(': ')[-1]}"
    else:
        raise UsageError(f"unknown task {task!r}; choose classify or segment")
    mean, std = D.channel_stats(train.images, SCALE)
    channels = "gray" if data.images.shape[1] == 1 else "rgb"
    refresh = None
    if task == "segment":
        def refresh(epoch: int) -> tuple[np.ndarray, np.ndarray]:
            """Fresh training canvases for ``epoch`` (deterministic: seeded by the seed and the epoch)."""
            fresh = D.digit_canvases(digits, len(train), canvas, seed=seed + 7919 * epoch)
            return D.normalize(fresh.images, SCALE, mean, std), fresh.labels
    return Prepared(D.normalize(train.images, SCALE, mean, std), train.labels, D.normalize(val.images, SCALE, mean, std),
                    val.labels, train.classes, channels, mean, std, trained_on, refresh, data.skipped)
