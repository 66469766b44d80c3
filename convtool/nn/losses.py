"""Softmax cross-entropy for classification (per image) and segmentation (per pixel)."""

from __future__ import annotations

import numpy as np


def softmax(logits: np.ndarray, axis: int = 1) -> np.ndarray:
    shifted = logits - logits.max(axis=axis, keepdims=True)
    e = np.exp(shifted)
    return e / e.sum(axis=axis, keepdims=True)


def cross_entropy(logits: np.ndarray, labels: np.ndarray) -> tuple[float, np.ndarray]:
    """Mean softmax cross-entropy and its gradient w.r.t. ``logits``.

    ``logits`` (N, K) with ``labels`` (N,), or per pixel (N, K, H, W) with ``labels`` (N, H, W);
    the mean is over images, or over every pixel of every image.
    """
    k = logits.shape[1]
    flat = np.moveaxis(logits, 1, -1).reshape(-1, k)  # M, K
    target = labels.reshape(-1)
    shifted = flat - flat.max(axis=1, keepdims=True)
    log_z = np.log(np.exp(shifted).sum(axis=1))
    rows = np.arange(len(target))
    loss = float(np.mean(log_z - shifted[rows, target]))
    grad = np.exp(shifted - log_z[:, None])
    grad[rows, target] -= 1
    grad /= len(target)
    grad = np.moveaxis(grad.reshape(*logits.shape[:1], *logits.shape[2:], k), -1, 1)
    return loss, np.ascontiguousarray(grad, dtype=logits.dtype)
