"""Class masks from low-resolution score maps: bilinear resize and argmax, computed only where needed.

A segmenter gives C score maps at its own resolution; the mask at the photo's size is the argmax of the
maps resized bilinearly. Resizing C full-size maps costs C passes over the photo. But bilinear weights are
non-negative, so where every input pixel that an output pixel reads has the same best class, that class
also wins the weighted sum: only output pixels near a class boundary need the scores interpolated.

The taps and weights are Pillow's ``BILINEAR`` ones (pixel centres aligned, support widened when
shrinking), so masks equal those from resizing each map with Pillow, up to float round-off on near-ties.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np


@lru_cache(maxsize=64)
def bilinear_taps(size_in: int, size_out: int) -> tuple[np.ndarray, np.ndarray]:
    """Input indices and weights, each (size_out, taps), of Pillow's bilinear resize along one axis.

    Unused taps repeat the first index with weight 0, so every row can be gathered the same way.
    """
    scale = size_in / size_out
    filter_scale = max(scale, 1.0)
    centres = (np.arange(size_out) + 0.5) * scale
    first = np.maximum(0, np.trunc(centres - filter_scale + 0.5)).astype(np.int64)
    last = np.minimum(size_in, np.trunc(centres + filter_scale + 0.5)).astype(np.int64)
    taps = int((last - first).max())
    index = first[:, None] + np.arange(taps)[None, :]
    valid = index < last[:, None]
    weights = np.where(valid, np.clip(1.0 - np.abs((index - centres[:, None] + 0.5) / filter_scale), 0, None), 0.0)
    weights /= weights.sum(axis=1, keepdims=True)
    index = np.where(valid, index, first[:, None])
    return index, weights.astype(np.float32)


def resize_scores(scores: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """C,h,w -> C,height,width bilinearly (the plain way; the oracle of :func:`argmax_resized`)."""
    width, height = size
    ys, wy = bilinear_taps(scores.shape[1], height)
    xs, wx = bilinear_taps(scores.shape[2], width)
    rows = np.einsum("cyth,yt->cyh", scores[:, ys, :], wy)
    return np.einsum("cyxt,xt->cyx", rows[:, :, xs], wx)


def argmax_resized(scores: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """The best class per pixel of ``scores`` (C,h,w) resized to (width, height), as uint8 (uint16 if C > 256)."""
    classes, h, w = scores.shape
    width, height = size
    dtype = np.uint8 if classes <= 256 else np.uint16
    labels = _argmax_classes(scores, dtype)
    if (h, w) == (height, width):
        return labels
    ys, wy = bilinear_taps(h, height)
    xs, wx = bilinear_taps(w, width)
    across = np.take(labels, xs, axis=1)  # h, width, taps_x: the classes each output column reads
    first_x = across[:, :, 0]
    mixed_x = (across != first_x[:, :, None]).any(axis=2)
    down = np.take(first_x, ys, axis=0)  # height, taps_y, width
    mask = down[:, 0, :]
    mixed = (down != mask[:, None, :]).any(axis=1) | np.take(mixed_x, ys, axis=0).any(axis=1)
    oy, ox = np.nonzero(mixed)
    if oy.size:
        # the weighted sum over taps of every class's scores, at the mixed pixels only
        gathered = scores[:, ys[oy][:, :, None], xs[ox][:, None, :]]  # C, pixels, taps_y, taps_x
        weight = wy[oy][:, :, None] * wx[ox][:, None, :]
        mask[oy, ox] = np.einsum("cpyx,pyx->cp", gathered, weight).argmax(axis=0)
    return np.ascontiguousarray(mask)


def _argmax_classes(scores: np.ndarray, dtype: type) -> np.ndarray:
    """``scores.argmax(axis=0)`` (first maximum wins) by contiguous passes over one class map at a time."""
    best = scores[0].copy()
    index = np.zeros(best.shape, dtype=dtype)
    for c in range(1, scores.shape[0]):
        better = scores[c] > best
        np.copyto(best, scores[c], where=better)
        np.copyto(index, c, where=better)
    return index
