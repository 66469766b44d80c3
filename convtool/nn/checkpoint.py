"""Checkpoints of a training run, written atomically after every epoch, and resuming from them.

A checkpoint is one ``.npz`` file (no pickles) beside the model: the weights after the last complete
epoch, the optimiser's state, the random generator's state, the epoch records (the history the best
epoch and early stopping are worked out from), the best epoch's weights and confusion matrix, and the
run's settings (architecture, recipe, data options) as JSON, so ``--resume`` needs nothing else.
"""

from __future__ import annotations

import io
import json
import zipfile
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from convtool.errors import InputError
from convtool.io.publish import publish_bytes
from convtool.nn.models import Network
from convtool.nn.optim import Optimizer
from convtool.nn.train import EpochRecord, Result

SUFFIX = ".checkpoint.npz"
FORMAT = "convtool-checkpoint-1"


def path_for(model: Path) -> Path:
    """The checkpoint file of a run writing ``model`` (``lenet5.onnx`` -> ``lenet5.checkpoint.npz``)."""
    return model.with_suffix("").with_name(model.stem + SUFFIX)


@dataclass
class Checkpoint:
    settings: dict  # arch, config, data options, output: whatever the caller saved
    weights: dict[str, np.ndarray]
    optimizer: dict[str, dict[str, np.ndarray]]
    rng_state: dict
    records: list[EpochRecord]
    best_epoch: int | None
    best_state: dict[str, np.ndarray] | None
    confusion: np.ndarray | None

    @property
    def arch(self) -> str:
        return str(self.settings.get("arch"))

    @property
    def epoch(self) -> int:
        """The last complete epoch."""
        return len(self.records)

    def restore(self, net: Network, optimizer: Optimizer, rng: np.random.Generator, result: Result) -> None:
        """Put the run back where the checkpoint left it."""
        missing = sorted(set(net.state()) - set(self.weights))
        if missing:
            raise InputError(f"the checkpoint does not fit this {net.arch} network (no {missing[0]})")
        net.load_state(self.weights)
        optimizer.state = {name: {k: (int(v) if v.ndim == 0 else v.copy()) for k, v in state.items()}
                           for name, state in self.optimizer.items()}
        rng.bit_generator.state = self.rng_state
        result.records = list(self.records)
        result.best_epoch, result.best_state, result.confusion = self.best_epoch, self.best_state, self.confusion


def save(path: Path, settings: dict, net: Network, optimizer: Optimizer, rng: np.random.Generator, result: Result) -> None:
    """Write the run's state to ``path`` through a temporary file and a rename (never half-written)."""
    arrays = {f"weights/{k}": v for k, v in net.state().items()}
    for name, state in optimizer.state.items():
        arrays.update({f"optimizer/{name}/{k}": np.asarray(v) for k, v in state.items()})
    if result.best_state is not None:
        arrays.update({f"best/{k}": v for k, v in result.best_state.items()})
    if result.confusion is not None:
        arrays["confusion"] = result.confusion
    meta = {"format": FORMAT, "settings": settings, "rng": rng.bit_generator.state,
            "records": [asdict(r) for r in result.records], "best_epoch": result.best_epoch}
    arrays["meta"] = np.array(json.dumps(meta))
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)  # type: ignore[arg-type]
    publish_bytes(path, buffer.getvalue(), overwrite=True)  # the run's own file, renewed every epoch


def load(path: Path) -> Checkpoint:
    """Read a checkpoint file; a one-line InputError if it is not one."""
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {k: data[k] for k in data.files}
        meta = json.loads(str(arrays.pop("meta")))
    except (OSError, ValueError, KeyError, zipfile.BadZipFile, json.JSONDecodeError):
        raise InputError(f"{path}: not a convtool training checkpoint (or a damaged one)") from None
    if meta.get("format") != FORMAT:
        raise InputError(f"{path}: not a convtool training checkpoint (format {meta.get('format')!r})")
    weights: dict[str, np.ndarray] = {}
    best: dict[str, np.ndarray] = {}
    optimizer: dict[str, dict[str, np.ndarray]] = {}
    for key, value in arrays.items():
        kind, _, rest = key.partition("/")
        if kind == "weights":
            weights[rest] = value
        elif kind == "best":
            best[rest] = value
        elif kind == "optimizer":
            name, _, field = rest.rpartition("/")
            optimizer.setdefault(name, {})[field] = value
    records = [EpochRecord(**r) for r in meta["records"]]
    return Checkpoint(meta["settings"], weights, optimizer, meta["rng"], records, meta["best_epoch"], best or None,
                      arrays.get("confusion"))


def find(path: Path) -> Path:
    """The checkpoint named by ``path``: the file itself, or the one checkpoint inside a run folder."""
    if path.is_file():
        return path
    if not path.is_dir():
        raise InputError(f"{path}: no such run folder or checkpoint file")
    found = sorted(path.glob(f"*{SUFFIX}"))
    if not found:
        raise InputError(f"{path} holds no training checkpoint (*{SUFFIX}); runs write one beside the model after each epoch")
    if len(found) > 1:
        names = ", ".join(p.name for p in found[:3])
        raise InputError(f"{path} holds {len(found)} checkpoints ({names}); name the one to resume")
    return found[0]
