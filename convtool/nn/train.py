"""The training loop: mini-batches, validation, schedules, early stopping, NaN and Ctrl-C handling.

It never prints: progress goes to the ``on_batch`` / ``on_epoch`` callbacks, and the outcome comes
back as a :class:`Result` holding the per-epoch records and the best and last good weights.
"""

from __future__ import annotations

import math
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from typing import Callable

import numpy as np

from convtool.errors import UsageError
from convtool.nn import data as D
from convtool.nn.layers import BatchNorm2d, Dropout
from convtool.nn.losses import cross_entropy
from convtool.nn.models import Network
from convtool.nn.optim import SCHEDULES, learning_rate, make_optimizer


@dataclass
class TrainConfig:
    """Hyper-parameters of one run (defaults are what ``convtool train`` uses)."""

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
    threads: int = 1  # split each batch over this many threads (nets without BatchNorm/Dropout)

    def validate(self) -> None:
        if not isinstance(self.epochs, int) or self.epochs < 1:
            raise UsageError(f"epochs must be a positive integer, got {self.epochs}")
        if not isinstance(self.batch, int) or self.batch < 1:
            raise UsageError(f"the batch size must be a positive integer, got {self.batch}")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise UsageError(f"the learning rate must be a positive number, got {self.lr}; try --lr 1e-3")
        if self.schedule not in SCHEDULES:
            raise UsageError(f"unknown schedule {self.schedule!r}; choose one of: {', '.join(SCHEDULES)}")
        if self.patience is not None and self.patience < 1:
            raise UsageError(f"patience must be a positive number of epochs, got {self.patience}")
        if not isinstance(self.threads, int) or self.threads < 1:
            raise UsageError(f"threads must be a positive integer, got {self.threads}")
        if self.freeze not in (None, "features"):
            raise UsageError(f"--freeze takes 'features' (train only the output layer), got {self.freeze!r}")


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


def keep_freed_memory() -> bool:
    """Ask glibc to keep freed blocks for reuse instead of returning them to the OS.

    Training allocates the same few-MB arrays at every step; fresh pages cost page faults, about a
    fifth of a LeNet-5 step here. Process-wide, so only the CLI and benchmarks call it. Returns
    False where it does not apply (not glibc).
    """
    import ctypes
    import ctypes.util

    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name or "libc.so.6")
        trim_threshold, mmap_threshold = -1, -3  # M_TRIM_THRESHOLD, M_MMAP_THRESHOLD from malloc.h
        return bool(libc.mallopt(mmap_threshold, 32 << 20) and libc.mallopt(trim_threshold, 1 << 30))
    except (OSError, AttributeError):
        return False


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
        refresh: Callable[[int], tuple[np.ndarray, np.ndarray]] | None = None) -> Result:
    """Train ``net`` in place on normalised float32 arrays; keep the best epoch's weights.

    The best epoch has the highest validation accuracy (mean IoU for segmentation). Training stops
    early after ``config.patience`` epochs without a lower validation loss, at a non-finite loss
    (reason "nan") and at Ctrl-C (reason "interrupted"); the best state is then that of the last
    complete epoch before it. ``refresh(epoch)``, if given, replaces the training data from the second
    epoch on (fresh synthetic samples).
    """
    config.validate()
    rng = np.random.default_rng(config.seed)
    params = net.parameters()
    trainable = {k: v for k, v in params.items() if config.freeze != "features" or net.group_of(k) == "head"}
    optimizer = make_optimizer(config.optimizer, trainable, config.lr, config.momentum, config.weight_decay)
    segment = net.task == "segment"
    fill = float(train_x.min()) if len(train_x) else 0.0
    result = Result()
    best_score, best_loss, waited = -1.0, math.inf, 0
    steps = math.ceil(len(train_x) / config.batch)
    split = config.threads > 1 and not any(isinstance(n.layer, (BatchNorm2d, Dropout)) for n in net.nodes)
    pool = ThreadPoolExecutor(config.threads) if split else None
    run_batch = partial(_parallel_step, net, pool, config.threads) if pool is not None else partial(_step, net)
    epoch = 0
    try:
        with np.errstate(over="ignore", invalid="ignore"):  # a non-finite loss is handled below
            for epoch in range(1, config.epochs + 1):
                optimizer.lr = learning_rate(config.schedule, config.lr, epoch - 1, config.epochs, config.step_size, config.gamma)
                if refresh is not None and epoch > 1:
                    train_x, train_y = refresh(epoch)
                order = rng.permutation(len(train_x))
                start = time.perf_counter()
                seen, loss_sum, correct = 0, 0.0, 0
                for step in range(steps):
                    idx = order[step * config.batch : (step + 1) * config.batch]
                    xb, yb = train_x[idx], train_y[idx]
                    if config.shift and not segment:
                        xb = D.random_shift(xb, config.shift, rng, fill)
                    loss, logits, grads = run_batch(xb, yb)
                    if not math.isfinite(loss):
                        result.stop_reason, result.stop_epoch = "nan", epoch
                        return result
                    optimizer.step({k: g for k, g in grads.items() if k in trainable})
                    seen += len(idx)
                    loss_sum += loss * len(idx)
                    hits = int(np.sum(logits.argmax(axis=1) == yb))
                    correct += hits
                    if on_batch:
                        per = yb[0].size
                        on_batch(epoch, step + 1, steps, loss_sum / seen, correct / (seen * per))
                seconds = time.perf_counter() - start
                val_loss, conf = evaluate(net, val_x, val_y)
                if not math.isfinite(val_loss):
                    result.stop_reason, result.stop_epoch = "nan", epoch
                    return result
                per = train_y[0].size
                record = EpochRecord(epoch, optimizer.lr, loss_sum / seen, correct / (seen * per), val_loss,
                                     float(np.trace(conf) / conf.sum()), mean_iou(conf) if segment else None, seconds)
                result.records.append(record)
                score = (record.val_miou or 0.0) if segment else record.val_accuracy  # val_miou is set when segmenting
                if score > best_score:
                    best_score, result.best_epoch, result.best_state, result.confusion = score, epoch, net.state(), conf
                if on_epoch:
                    on_epoch(record)
                if val_loss < best_loss:
                    best_loss, waited = val_loss, 0
                else:
                    waited += 1
                    if config.patience is not None and waited >= config.patience:
                        result.stop_reason, result.stop_epoch = "early-stop", epoch
                        break
    except KeyboardInterrupt:
        result.stop_reason, result.stop_epoch = "interrupted", epoch
    finally:
        if pool:
            pool.shutdown()
    return result


def _step(net: Network, x: np.ndarray, y: np.ndarray) -> tuple[float, np.ndarray, dict[str, np.ndarray]]:
    """Forward, loss and backward on one batch: (loss, logits, gradients)."""
    with np.errstate(over="ignore", invalid="ignore"):  # per thread; a non-finite loss is handled by fit
        logits, caches = net.forward(x, train=True)
        loss, dlogits = cross_entropy(logits, y)
        return loss, logits, net.backward(dlogits, caches)


def _parallel_step(net: Network, pool: ThreadPoolExecutor, parts: int, x: np.ndarray, y: np.ndarray):
    """``_step`` on slices of the batch in threads (the kernels and BLAS release the GIL), combined
    exactly: the mean loss and gradient are the size-weighted means of the slices'. Only for
    networks without batch statistics (no BatchNorm) or randomness (no Dropout)."""
    bounds = np.linspace(0, len(x), parts + 1).astype(int)
    slices = [slice(a, b) for a, b in zip(bounds[:-1], bounds[1:]) if b > a]
    outcomes = list(pool.map(lambda s: _step(net, x[s], y[s]), slices))
    weights = [(s.stop - s.start) / len(x) for s in slices]
    loss = sum(w * o[0] for w, o in zip(weights, outcomes))
    grads = {k: sum(w * o[2][k] for w, o in zip(weights, outcomes)) for k in outcomes[0][2]}
    return loss, np.concatenate([o[1] for o in outcomes]), grads
