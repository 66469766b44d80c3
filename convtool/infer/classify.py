"""Image classification with any ONNX classifier: batches, softmax, top-k, labels, evaluation."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator, Sequence

import numpy as np

from convtool.errors import ConvtoolError, InputError, ModelError
from convtool.guards import MAX_INPUT_VALUES
from convtool.infer.pipeline import Chunk, Failure, Job, Timings, model_step, run_job
from convtool.infer.preprocess import Preparer, Preprocess
from convtool.infer.session import ModelSession

LABELS_KEY = "convtool.labels"


@dataclass
class ChunkResult:
    """Top-k classes of a chunk of images: ``indices`` and ``probs`` are N, k, best first."""

    paths: list[str | Path]
    indices: np.ndarray
    probs: np.ndarray
    failures: list[Failure]


class Classifier:
    """Runs a classifier on prepared batches: fixed batch sizes, logits or probabilities, top-k."""

    def __init__(
        self,
        model: ModelSession,
        recipe: Preprocess,
        *,
        labels: list[str] | None = None,
        top_k: int = 5,
        softmax: bool | None = None,
    ) -> None:
        self.model = model
        self.recipe = recipe
        self.preparer = Preparer(recipe)
        self.output = model.outputs[0]
        rank = len(self.output.shape)  # 0: not recorded in the model; checked on the first batch instead
        if rank not in (0, 2, 4) or (rank == 4 and _spatial(self.output.shape)):
            raise ModelError(
                f"the model's output {self.output.describe()} is not [batch, classes]; "
                "for per-pixel outputs use `convtool segment`"
            )
        self.classes: int | None = self.output.shape[1] if rank else None
        self.fixed_batch = model.input.shape[0]
        self.top_k = top_k
        self.softmax = softmax  # None: decided on the first batch (probabilities pass through)
        self.warnings: list[str] = []
        self.labels = self._check_labels(labels)

    def scores(self, batch: np.ndarray) -> np.ndarray:
        """Class probabilities N, classes for a prepared batch of any length."""
        return self._probabilities(self.logits(batch))

    def logits(self, batch: np.ndarray) -> np.ndarray:
        """Raw model output N, classes."""
        return self._flat(self.model.run(batch, [self.output.name])[0])

    def top(self, probs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Indices and probabilities of the ``top_k`` best classes per row, best first."""
        k = min(self.top_k, probs.shape[1])
        if k == 1:
            indices = probs.argmax(axis=1)[:, None]
        else:
            indices = np.argsort(-probs, axis=1, kind="stable")[:, :k]
        return indices, np.take_along_axis(probs, indices, axis=1)

    def label(self, index: int) -> str:
        return self.labels[index] if self.labels else str(index)

    def run(
        self,
        files: Sequence[str | Path],
        *,
        batch: int = 64,
        workers: int | None = None,
        depth: int = 3,
        timings: Timings | None = None,
        on_progress: Callable[[int], None] | None = None,
        decoding: str = "auto",
        exact: bool = False,
        started: Job | None = None,
    ) -> Iterator[ChunkResult]:
        """Classify ``files`` chunk by chunk while the next chunks decode in the background.

        ``decoding``: auto, inline, threads or processes (:func:`plan_decoding`; the choice and its reason
        are added to ``timings.notes``); ``exact`` turns off reduced JPEG decoding. ``started``: the
        decoding :func:`start_decoding` began before the session existed.
        """
        timings = timings if timings is not None else Timings()
        yield from run_job(files, self.preparer, lambda chunk: self._classify_chunk(chunk, timings), timings,
                           on_progress=on_progress, started=started,
                           **job_settings(self.fixed_batch, batch=batch, depth=depth, workers=workers, decoding=decoding,
                                          exact=exact))

    def _classify_chunk(self, chunk: Chunk, timings: Timings) -> ChunkResult:
        if not chunk.paths:
            empty = np.empty((0, self.top_k))
            return ChunkResult([], empty.astype(np.int64), empty, chunk.failures)
        indices, top = model_step(chunk, self.logits, lambda logits: self.top(self._probabilities(logits)), timings)
        return ChunkResult(chunk.paths, indices, top, chunk.failures)

    def _probabilities(self, logits: np.ndarray) -> np.ndarray:
        if self.classes is None:
            self.classes = logits.shape[1]
            self.labels = self._check_labels(self.labels)
        if self.softmax is None:
            self.softmax = not _looks_like_probabilities(logits)
        return probabilities(logits) if self.softmax else logits

    def _flat(self, logits: np.ndarray) -> np.ndarray:
        if logits.ndim not in (2, 4) or (logits.ndim == 4 and _spatial(logits.shape)):
            raise ModelError(f"the model's output has shape {logits.shape}, not [batch, classes]; "
                             "for per-pixel outputs use `convtool segment`")
        return logits.reshape(len(logits), -1).astype(np.float32, copy=False)

    def _check_labels(self, labels: list[str] | None) -> list[str] | None:
        if labels is None or self.classes is None or len(labels) == self.classes:
            return labels
        self.warnings.append(
            f"{len(labels)} labels given but the model has {self.classes} classes; showing class indices instead"
        )
        return None


def job_settings(fixed_batch: int | None, *, batch: int, depth: int, workers: int | None, decoding: str,
                 exact: bool) -> dict:
    """run_job's settings for a classifier whose input has ``fixed_batch`` (None: dynamic)."""
    return dict(batch=batch, depth=depth, workers=workers, decoding=decoding, fixed_batch=fixed_batch,
                overlap=fixed_batch != 1, draft=not exact)


def start_decoding(model: str | Path, files: Sequence[str | Path], timings: Timings, *, batch: int = 64,
                   depth: int = 3, workers: int | None = None, decoding: str = "auto", exact: bool = False,
                   max_input: int = MAX_INPUT_VALUES, **overrides) -> Job | None:
    """Start decoding ``files`` for the classifier in ``model`` before its session exists, from the recipe
    its file's header gives (:mod:`model_header`, no onnxruntime): worker processes decode while
    onnxruntime loads. Pass the result to :meth:`Classifier.run` (it is checked against the session's
    recipe there). None when the header cannot tell, or the recipe would be refused: the session says why.
    """
    from convtool.infer.model_header import read_header
    from convtool.infer.preprocess import batch_recipe

    header = read_header(model)
    if header is None or not header.inputs:
        return None
    try:
        recipe = batch_recipe(header.inputs[0], header.metadata, batch=batch, max_input=max_input, **overrides)
    except ConvtoolError:
        return None
    fixed_batch = header.inputs[0].shape[0]
    return Job(files, Preparer(recipe), timings, **job_settings(fixed_batch, batch=batch, depth=depth, workers=workers,
                                                               decoding=decoding, exact=exact))


def probabilities(logits: np.ndarray) -> np.ndarray:
    """Class probabilities from logits: a row-wise softmax, stable for large logits."""
    shifted = logits - logits.max(axis=1, keepdims=True)
    np.exp(shifted, out=shifted)
    shifted /= shifted.sum(axis=1, keepdims=True)
    return shifted


def _looks_like_probabilities(values: np.ndarray) -> bool:
    """True when every row is already a probability distribution (the model ends in a softmax)."""
    if values.size == 0 or values.min() < 0 or values.max() > 1:
        return False
    return bool(np.allclose(values.sum(axis=1), 1.0, atol=1e-3))


def _spatial(shape: tuple[int | None, ...]) -> bool:
    """True for an N,C,H,W (or N,H,W,C) output whose H, W are not 1x1."""
    dims = [d for d in shape[1:] if d != 1]
    return len(dims) > 1


def read_labels(path: str | Path) -> list[str]:
    """Class names from a text file, one per line (blank lines at the end ignored), or a bundled set's name."""
    from convtool.infer.presets import LABEL_SETS, label_set

    path = Path(path)
    if str(path).lower() in LABEL_SETS and not path.exists():
        return label_set(str(path))
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise InputError(f"{path}: no such labels file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: cannot read the labels file ({exc})") from None
    while lines and not lines[-1].strip():
        lines.pop()
    if not lines:
        raise InputError(f"{path}: the labels file is empty; put one class name per line")
    return [line.strip() for line in lines]


def labels_from_metadata(metadata: dict[str, str]) -> list[str] | None:
    """The class names stored by ``convtool train`` in the model, if any."""
    if LABELS_KEY not in metadata:
        return None
    try:
        labels = json.loads(metadata[LABELS_KEY])
    except ValueError:
        return None
    return [str(label) for label in labels] if isinstance(labels, list) else None


@dataclass
class Evaluation:
    """Accuracy and confusion matrix against class-per-subfolder ground truth."""

    classes: int
    names: list[str]
    confusion: np.ndarray = field(init=False)  # rows: true class, columns: predicted class
    unknown_folders: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.confusion = np.zeros((self.classes, self.classes), dtype=np.int64)
        self._index = {name: i for i, name in enumerate(self.names)}

    def true_class(self, path: str | Path, root: Path | None) -> int | None:
        """The class a file belongs to: its first folder under ``root``, by name or number."""
        if root is None:
            return None
        parts = Path(path).relative_to(root).parts
        folder = parts[0] if len(parts) > 1 else None
        if folder is None:
            return None
        if folder in self._index:
            return self._index[folder]
        if folder.isdigit() and int(folder) < self.classes:
            return int(folder)
        self.unknown_folders[folder] = self.unknown_folders.get(folder, 0) + 1
        return None

    def add(self, truth: int, predicted: int) -> None:
        self.confusion[truth, predicted] += 1

    @property
    def total(self) -> int:
        return int(self.confusion.sum())

    @property
    def accuracy(self) -> float:
        return float(np.trace(self.confusion) / max(self.total, 1))

    def per_class(self) -> np.ndarray:
        """Recall per true class (nan for a class with no images)."""
        counts = self.confusion.sum(axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.diag(self.confusion) / counts
