"""The training loop: mini-batches, validation, schedules, early stopping, NaN and Ctrl-C handling.

It never prints: progress goes to the ``on_batch`` / ``on_epoch`` callbacks, and the outcome comes
back as a :class:`Result` holding the per-epoch records and the best and last good weights.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable

import numpy as np

from convtool.errors import UsageError
from convtool.nn import data as D
from convtool.nn._conv_kernels import max_threads, using_threads
from convtool.nn.losses import cross_entropy
from convtool.nn.models import Network
from convtool.nn.optim import SCHEDULES, Optimizer, learning_rate, make_optimizer

if TYPE_CHECKING:
    from convtool.nn.checkpoint import Checkpoint


# Each architecture's best recipe measured here: the defaults of ``convtool train ARCH``.
RECIPES: dict[str, dict] = {
    # models/lenet5-mnist.md: 98.95% validation accuracy on the bundled MNIST split
    "lenet5": dict(epochs=15, batch=64, optimizer="adam", lr=2e-3, schedule="cosine", shift=2),
    # models/unet-digits.md: mean IoU 0.961 on the synthetic digit canvases
    "unet": dict(epochs=20, batch=32, optimizer="adam", lr=2e-3, schedule="cosine", shift=0),
    # no shipped models: lenet5's recipe, not measured on their own
    "lenet5-local": dict(epochs=15, batch=64, optimizer="adam", lr=2e-3, schedule="cosine", shift=2),
    "resnet": dict(epochs=15, batch=64, optimizer="adam", lr=2e-3, schedule="cosine", shift=2),
}
RECIPE_KEYS = ("epochs", "batch", "optimizer", "lr", "schedule", "shift")
DEFAULT_THREADS = 2  # both cores; benchmarks/train_vs_torch.py measures 1 against 2 (see notes/issue-11)


@dataclass
class TrainConfig:
    """Hyper-parameters of one run (see :data:`RECIPES` for each architecture's defaults)."""

    epochs: int = 10
    batch: int = 64
    optimizer: str = "adam"
    lr: float = 1e-3
    momentum: float = 0.9
    weight_decay: float = 0.0
    schedule: str = "constant"  # constant, step, cosine
    step_size: int = 5
    gamma: float = 0.1
    patience: int | None = None  # early stopping: epochs without a lower validation loss
    seed: int = 0
    shift: int = 0  # augmentation: random shifts of up to this many pixels
    freeze: str | None = None  # "features": train only the output layer
    threads: int = DEFAULT_THREADS  # Numba threads of the convolution and pooling kernels

    @classmethod
    def recipe(cls, arch: str, **overrides) -> "TrainConfig":
        """The best measured recipe of ``arch`` with ``overrides`` (None values are ignored) applied."""
        if arch not in RECIPES:
            raise UsageError(f"unknown architecture {arch!r}; choose one of: {', '.join(RECIPES)}")
        return cls(**{**RECIPES[arch], **{k: v for k, v in overrides.items() if v is not None}})

    def validate(self) -> None:
        if not isinstance(self.epochs, int) or self.epochs < 1:
            raise UsageError(f"the number of epochs must be a positive integer, got {self.epochs}")
        if not isinstance(self.batch, int) or self.batch < 1:
            raise UsageError(f"the batch size must be a positive integer, got {self.batch}")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise UsageError(f"the learning rate must be a positive number such as 1e-3, got {self.lr}")
        if self.schedule not in SCHEDULES:
            raise UsageError(f"unknown schedule {self.schedule!r}; choose one of: {', '.join(SCHEDULES)}")
        if self.patience is not None and self.patience < 1:
            raise UsageError(f"patience must be a positive number of epochs, got {self.patience}")
        if not isinstance(self.threads, int) or not 1 <= self.threads <= max_threads():
            raise UsageError(f"the thread count must be between 1 and {max_threads()} (this machine's CPUs), got {self.threads}")
        if self.freeze not in (None, "features"):
            raise UsageError(f"the only part that can be frozen is 'features' (train only the output layer), got {self.freeze!r}")


@dataclass
class EpochRecord:
    epoch: int  # 1-based
    lr: float
    train_loss: float
    train_accuracy: float  # pixel accuracy for segmentation
    val_loss: float
    val_accuracy: float
    val_miou: float | None
    seconds: float  # training time of the epoch (validation excluded)


@dataclass
class Result:
    records: list[EpochRecord] = field(default_factory=list)
    stop_reason: str = "completed"  # completed, early-stop, nan, interrupted
    stop_epoch: int | None = None
    best_epoch: int | None = None
    best_state: dict[str, np.ndarray] | None = None
    confusion: np.ndarray | None = None  # validation confusion matrix of the best epoch (true x predicted)

    @property
    def best(self) -> EpochRecord | None:
        return next((r for r in self.records if r.epoch == self.best_epoch), None)


BatchCallback = Callable[[int, int, int, float, float], None]  # epoch, step, steps, loss, accuracy
EpochCallback = Callable[[EpochRecord], None]
CheckpointCallback = Callable[[Network, Optimizer, np.random.Generator, "Result"], None]


def confusion_matrix(labels: np.ndarray, predicted: np.ndarray, classes: int) -> np.ndarray:
    """``m[t, p]`` = how many samples (or pixels) of true class t were predicted as p."""
    return np.bincount(labels.ravel() * classes + predicted.ravel(), minlength=classes * classes).reshape(classes, classes)


def mean_iou(confusion: np.ndarray) -> float:
    """Mean intersection over union over the classes that occur (true or predicted)."""
    tp = np.diag(confusion).astype(np.float64)
    union = confusion.sum(0) + confusion.sum(1) - tp
    present = union > 0
    return float(np.mean(tp[present] / union[present])) if present.any() else 0.0


def evaluate(net: Network, x: np.ndarray, y: np.ndarray, batch: int = 250) -> tuple[float, np.ndarray]:
    """Mean validation loss and the confusion matrix (per image or per pixel)."""
    total, conf = 0.0, np.zeros((net.num_classes, net.num_classes), np.int64)
    for i in range(0, len(x), batch):
        logits, _ = net.forward(x[i : i + batch])
        loss, _ = cross_entropy(logits, y[i : i + batch])
        total += loss * len(logits)
        conf += confusion_matrix(y[i : i + batch], logits.argmax(axis=1), net.num_classes)
    return total / len(x), conf


def fit(net: Network, train_x: np.ndarray, train_y: np.ndarray, val_x: np.ndarray, val_y: np.ndarray,
        config: TrainConfig, on_batch: BatchCallback | None = None, on_epoch: EpochCallback | None = None,
        refresh: Callable[[int], tuple[np.ndarray, np.ndarray]] | None = None,
        on_checkpoint: CheckpointCallback | None = None, resume: Checkpoint | None = None) -> Result:
    """Train ``net`` in place on normalised float32 arrays; keep the best epoch's weights.

    The best epoch has the highest validation accuracy (mean IoU for segmentation). Training stops
    early after ``config.patience`` epochs without a lower validation loss, at a non-finite loss
    (reason "nan") and at Ctrl-C (reason "interrupted"); the best state is then that of the last
    complete epoch before it. ``refresh(epoch)``, if given, replaces the training data from the second
    epoch on (fresh synthetic samples). ``on_checkpoint(net, optimizer, rng, result)`` is called after
    every complete epoch; ``resume`` continues a run from such a checkpoint (weights, optimiser state,
    random state, epoch counter and history), giving the weights the uninterrupted run would have.
    """
    config.validate()
    run = _Run.start(net, config, train_x, resume)
    with using_threads(config.threads), np.errstate(over="ignore", invalid="ignore"):  # non-finite losses handled below
        try:
            for epoch in range(run.next_epoch, config.epochs + 1):
                run.optimizer.lr = learning_rate(config.schedule, config.lr, epoch - 1, config.epochs, config.step_size, config.gamma)
                if refresh is not None and epoch > 1:
                    train_x, train_y = refresh(epoch)
                record = _train_epoch(run, train_x, train_y, epoch, on_batch)
                if record is not None:
                    record = _validate(run, record, val_x, val_y)
                if record is None:
                    run.result.stop_reason, run.result.stop_epoch = "nan", epoch
                    break
                if on_checkpoint:
                    on_checkpoint(net, run.optimizer, run.rng, run.result)
                if on_epoch:
                    on_epoch(record)
                if _patience_ran_out(run.result.records, config.patience):
                    run.result.stop_reason, run.result.stop_epoch = "early-stop", epoch
                    break
        except KeyboardInterrupt:
            run.result.stop_reason, run.result.stop_epoch = "interrupted", run.epoch
    return run.result


@dataclass
class _Run:
    """What one run carries from epoch to epoch."""

    net: Network
    config: TrainConfig
    optimizer: Optimizer
    trainable: set[str]
    rng: np.random.Generator
    result: Result
    fill: float  # pixel value of the shifted-in border (the darkest training value)
    epoch: int = 0  # the epoch being trained

    @classmethod
    def start(cls, net: Network, config: TrainConfig, train_x: np.ndarray, resume: Checkpoint | None) -> "_Run":
        params = net.parameters()
        trainable = {k: v for k, v in params.items() if config.freeze != "features" or net.group_of(k) == "head"}
        optimizer = make_optimizer(config.optimizer, trainable, config.lr, config.momentum, config.weight_decay)
        fill = float(train_x.min()) if len(train_x) else 0.0
        run = cls(net, config, optimizer, set(trainable), np.random.default_rng(config.seed), Result(), fill)
        if resume is not None:
            resume.restore(net, optimizer, run.rng, run.result)
        return run

    @property
    def next_epoch(self) -> int:
        return len(self.result.records) + 1

    @property
    def segment(self) -> bool:
        return self.net.task == "segment"


def _train_epoch(run: _Run, train_x: np.ndarray, train_y: np.ndarray, epoch: int,
                 on_batch: BatchCallback | None) -> EpochRecord | None:
    """One pass over the shuffled training data; None at a non-finite loss."""
    config, run.epoch = run.config, epoch
    order = run.rng.permutation(len(train_x))
    steps = math.ceil(len(train_x) / config.batch)
    start = time.perf_counter()
    seen, loss_sum, correct, per = 0, 0.0, 0, train_y[0].size
    for step in range(steps):
        idx = order[step * config.batch : (step + 1) * config.batch]
        xb, yb = train_x[idx], train_y[idx]
        if config.shift and not run.segment:
            xb = D.random_shift(xb, config.shift, run.rng, run.fill)
        loss, logits, grads = _step(run.net, xb, yb)
        if not math.isfinite(loss):
            return None
        run.optimizer.step({k: g for k, g in grads.items() if k in run.trainable})
        seen += len(idx)
        loss_sum += loss * len(idx)
        correct += int(np.sum(logits.argmax(axis=1) == yb))
        if on_batch:
            on_batch(epoch, step + 1, steps, loss_sum / seen, correct / (seen * per))
    seconds = time.perf_counter() - start
    return EpochRecord(epoch, run.optimizer.lr, loss_sum / seen, correct / (seen * per), math.nan, math.nan, None, seconds)


def _validate(run: _Run, record: EpochRecord, val_x: np.ndarray, val_y: np.ndarray) -> EpochRecord | None:
    """Fill in the validation figures, keep the record and the best state; None at a non-finite loss."""
    val_loss, conf = evaluate(run.net, val_x, val_y)
    if not math.isfinite(val_loss):
        return None
    record.val_loss, record.val_accuracy = val_loss, float(np.trace(conf) / conf.sum())
    record.val_miou = mean_iou(conf) if run.segment else None
    result = run.result
    best = result.best
    if best is None or _score(record) > _score(best):
        result.best_epoch, result.best_state, result.confusion = record.epoch, run.net.state(), conf
    result.records.append(record)
    return record


def _score(record: EpochRecord) -> float:
    """What picks the best epoch: mean IoU for segmentation, accuracy otherwise."""
    return record.val_miou if record.val_miou is not None else record.val_accuracy


def _patience_ran_out(records: list[EpochRecord], patience: int | None) -> bool:
    """True when the last ``patience`` epochs brought no lower validation loss."""
    if patience is None or len(records) <= patience:
        return False
    best_before = min(r.val_loss for r in records[:-patience])
    return all(r.val_loss >= best_before for r in records[-patience:])


def _step(net: Network, x: np.ndarray, y: np.ndarray) -> tuple[float, np.ndarray, dict[str, np.ndarray]]:
    """Forward, loss and backward on one batch: (loss, logits, gradients)."""
    logits, caches = net.forward(x, train=True)
    loss, dlogits = cross_entropy(logits, y)
    return loss, logits, net.backward(dlogits, caches)
