"""Optimisers (SGD with momentum or Nesterov, RMSProp, Adam; L2 weight decay) and learning-rate schedules.

An optimiser updates a dict of named parameter arrays in place from a dict of gradients of the
same names; names missing from ``grads`` (frozen parameters) are left alone.
"""

from __future__ import annotations

import math

import numpy as np

from convtool.errors import UsageError


class Optimizer:
    def __init__(self, params: dict[str, np.ndarray], lr: float, weight_decay: float = 0.0) -> None:
        if not lr > 0 or not math.isfinite(lr):
            raise UsageError(f"the learning rate must be a positive number, got {lr}")
        if weight_decay < 0:
            raise UsageError(f"weight decay must not be negative, got {weight_decay}")
        self.params, self.lr, self.weight_decay = params, lr, weight_decay
        self.state: dict[str, dict] = {}

    def step(self, grads: dict[str, np.ndarray]) -> None:
        for name, grad in grads.items():
            if name not in self.params:
                continue
            p = self.params[name]
            if self.weight_decay and not name.endswith("bias"):
                grad = grad + self.weight_decay * p
            self.update(name, p, grad.astype(p.dtype, copy=False))

    def update(self, name: str, p: np.ndarray, grad: np.ndarray) -> None:
        raise NotImplementedError


class SGD(Optimizer):
    """``v = mu v + g``; ``p -= lr v`` (PyTorch's form), or ``p -= lr (g + mu v)`` with Nesterov."""

    def __init__(self, params, lr: float, momentum: float = 0.0, nesterov: bool = False, weight_decay: float = 0.0) -> None:
        super().__init__(params, lr, weight_decay)
        if not 0 <= momentum < 1:
            raise UsageError(f"momentum must be in [0, 1), got {momentum}")
        self.momentum, self.nesterov = momentum, nesterov

    def update(self, name, p, grad):
        if not self.momentum:
            p -= self.lr * grad
            return
        v = self.state.setdefault(name, {"v": np.zeros_like(p)})["v"]
        v *= self.momentum
        v += grad
        p -= self.lr * (grad + self.momentum * v if self.nesterov else v)


class RMSProp(Optimizer):
    """``s = a s + (1 - a) g^2``; ``p -= lr g / (sqrt(s) + eps)``."""

    def __init__(self, params, lr: float, alpha: float = 0.99, eps: float = 1e-8, weight_decay: float = 0.0) -> None:
        super().__init__(params, lr, weight_decay)
        self.alpha, self.eps = alpha, eps

    def update(self, name, p, grad):
        s = self.state.setdefault(name, {"s": np.zeros_like(p)})["s"]
        s *= self.alpha
        s += (1 - self.alpha) * grad * grad
        p -= self.lr * grad / (np.sqrt(s) + self.eps)


class Adam(Optimizer):
    """Adam (Kingma and Ba 2015) with bias correction."""

    def __init__(self, params, lr: float, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 0.0) -> None:
        super().__init__(params, lr, weight_decay)
        self.betas, self.eps = betas, eps

    def update(self, name, p, grad):
        st = self.state.setdefault(name, {"m": np.zeros_like(p), "v": np.zeros_like(p), "t": 0})
        b1, b2 = self.betas
        st["t"] += 1
        st["m"] *= b1
        st["m"] += (1 - b1) * grad
        st["v"] *= b2
        st["v"] += (1 - b2) * grad * grad
        m_hat = st["m"] / (1 - b1 ** st["t"])
        v_hat = st["v"] / (1 - b2 ** st["t"])
        p -= self.lr * m_hat / (np.sqrt(v_hat) + self.eps)


OPTIMIZERS = ("sgd", "nesterov", "rmsprop", "adam")


def make_optimizer(name: str, params: dict[str, np.ndarray], lr: float, momentum: float = 0.9,
                   weight_decay: float = 0.0) -> Optimizer:
    """Optimiser by name: sgd (with ``momentum``), nesterov, rmsprop, adam."""
    if name == "sgd":
        return SGD(params, lr, momentum, weight_decay=weight_decay)
    if name == "nesterov":
        return SGD(params, lr, momentum or 0.9, nesterov=True, weight_decay=weight_decay)
    if name == "rmsprop":
        return RMSProp(params, lr, weight_decay=weight_decay)
    if name == "adam":
        return Adam(params, lr, weight_decay=weight_decay)
    raise UsageError(f"unknown optimizer {name!r}; choose one of: {', '.join(OPTIMIZERS)}")


SCHEDULES = ("constant", "step", "cosine")


def learning_rate(schedule: str, base_lr: float, epoch: int, epochs: int, step_size: int = 5, gamma: float = 0.1) -> float:
    """Learning rate of 0-based ``epoch``: constant, step (times ``gamma`` every ``step_size``
    epochs) or cosine (from ``base_lr`` towards 0 over ``epochs``)."""
    if schedule == "constant":
        return base_lr
    if schedule == "step":
        return base_lr * gamma ** (epoch // step_size)
    if schedule == "cosine":
        return 0.5 * base_lr * (1 + math.cos(math.pi * epoch / max(epochs, 1)))
    raise UsageError(f"unknown schedule {schedule!r}; choose one of: {', '.join(SCHEDULES)}")
