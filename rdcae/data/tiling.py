"""Where the P×P windows of an image lie, cutting them out, and putting per-window values back into
an image-sized map. The test tiles of training and whole-image detection use the same grid, so both
cut an image the same way."""

from __future__ import annotations

import numpy as np


def grid(height: int, width: int, size: int, stride: int | None = None) -> np.ndarray:
    """Top-left corners (y, x) of the P×P windows from the image origin every `stride` pixels
    (default: `size`, non-overlapping tiles), row by row; windows lie wholly inside the image. (K, 2)"""
    stride = stride or size
    ys = np.arange(0, height - size + 1, stride)
    xs = np.arange(0, width - size + 1, stride)
    yy, xx = np.meshgrid(ys, xs, indexing="ij")
    return np.stack([yy.ravel(), xx.ravel()], 1).astype(np.int64)


def crop(image: np.ndarray, yx: np.ndarray, size: int) -> np.ndarray:
    """The windows of an (H, W, C) image at top-left corners yx (K, 2). (K, C, P, P)"""
    rows = yx[:, 0, None] + np.arange(size)  # (K, P)
    cols = yx[:, 1, None] + np.arange(size)
    return image[rows[:, :, None], cols[:, None, :]].transpose(0, 3, 1, 2)


def stitch(values: np.ndarray, yx: np.ndarray, shape: tuple[int, int], size: int) -> np.ndarray:
    """An (H, W) float map from per-window values at corners yx (K, 2): `values` (K,) gives every
    pixel of a window its window's value, (K, P, P) its own; where windows overlap, the mean; NaN
    where no window lies."""
    values = np.asarray(values, dtype=np.float64)
    if values.ndim == 1:
        values = np.broadcast_to(values[:, None, None], (len(values), size, size))
    total, count = np.zeros(shape), np.zeros(shape)
    for (y, x), value in zip(yx, values):
        total[y : y + size, x : x + size] += value
        count[y : y + size, x : x + size] += 1
    with np.errstate(invalid="ignore"):
        return np.where(count > 0, total / np.maximum(count, 1), np.nan)
