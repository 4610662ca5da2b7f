"""Where the P×P windows of an image lie, cutting them out, and putting per-window values back into
an image-sized map. The test tiles of training and whole-image detection use the same grid, so both
cut an image the same way."""

from __future__ import annotations

import numpy as np


def grid(height: int, width: int, size: int, stride: int | None = None, cover: bool = False) -> np.ndarray:
    """Top-left corners (y, x) of the P×P windows from the image origin every `stride` pixels
    (default: `size`, non-overlapping tiles), row by row; windows lie wholly inside the image.
    cover: add a last row and column of windows flush with the bottom and right edges, so that
    every pixel lies in a window (whole-image detection). (K, 2)"""
    stride = stride or size

    def starts(length: int) -> np.ndarray:
        first = np.arange(0, length - size + 1, stride)
        if cover and len(first) and first[-1] != length - size:
            first = np.append(first, length - size)
        return first

    ys, xs = starts(height), starts(width)
    yy, xx = np.meshgrid(ys, xs, indexing="ij")
    return np.stack([yy.ravel(), xx.ravel()], 1).astype(np.int64)


def windows_inside(allowed: np.ndarray, size: int) -> np.ndarray:
    """(H − P + 1, W − P + 1) bool: True where the P×P window with that top-left corner lies wholly
    on the True pixels of `allowed` (H, W)."""
    bad = np.pad((~allowed).astype(np.int32), ((1, 0), (1, 0))).cumsum(0).cumsum(1)
    count = bad[size:, size:] - bad[:-size, size:] - bad[size:, :-size] + bad[:-size, :-size]
    return count == 0


def inside_at(allowed: np.ndarray, yx: np.ndarray, size: int) -> np.ndarray:
    """(K,) bool: whether the P×P window at each top-left corner yx (K, 2) lies wholly on the True pixels of
    `allowed` (H, W), as windows_inside says; at once where `allowed` is one rectangle, as a fabric region is."""
    rows, cols = np.flatnonzero(allowed.any(axis=1)), np.flatnonzero(allowed.any(axis=0))
    if not len(rows):
        return np.zeros(len(yx), bool)
    top, bottom, left, right = rows[0], rows[-1] + 1, cols[0], cols[-1] + 1
    if not allowed[top:bottom, left:right].all():
        return windows_inside(allowed, size)[yx[:, 0], yx[:, 1]]
    y, x = yx[:, 0], yx[:, 1]
    return (y >= top) & (y + size <= bottom) & (x >= left) & (x + size <= right)


def crop(image: np.ndarray, yx: np.ndarray, size: int) -> np.ndarray:
    """The windows of an (H, W, C) image at top-left corners yx (K, 2). (K, C, P, P)"""
    rows = yx[:, 0, None] + np.arange(size)  # (K, P)
    cols = yx[:, 1, None] + np.arange(size)
    return image[rows[:, :, None], cols[:, None, :]].transpose(0, 3, 1, 2)


def stitch(values: np.ndarray, yx: np.ndarray, shape: tuple[int, int], size: int, reduce: str = "mean") -> np.ndarray:
    """An (H, W) float map from per-window values at corners yx (K, 2): `values` (K,) gives every
    pixel of a window its window's value, (K, P, P) its own; where windows overlap, their mean
    (reduce="mean") or their largest (reduce="max"); NaN where no window lies."""
    values = np.asarray(values, dtype=np.float64)
    if values.ndim == 1 and reduce == "max" and len(values):
        return _stitch_max(values, np.asarray(yx), shape, size)
    if values.ndim == 1:
        values = np.broadcast_to(values[:, None, None], (len(values), size, size))
    count = np.zeros(shape)
    total = np.zeros(shape) if reduce == "mean" else np.full(shape, -np.inf)
    for (y, x), value in zip(yx, values):
        window = (slice(y, y + size), slice(x, x + size))
        if reduce == "mean":
            total[window] += value
        else:
            np.maximum(total[window], value, out=total[window])
        count[window] += 1
    if reduce == "max":
        return np.where(count > 0, total, np.nan)
    with np.errstate(invalid="ignore"):
        return np.where(count > 0, total / np.maximum(count, 1), np.nan)


def _stitch_max(values: np.ndarray, yx: np.ndarray, shape: tuple[int, int], size: int) -> np.ndarray:
    """stitch(values (K,), reduce="max") at once: the window edges cut the image into cells that each window
    covers whole, so each cell takes the largest value of the windows over it, and its pixels the cell's."""
    height, width = shape
    ys = np.unique(np.concatenate([[0, height], yx[:, 0], yx[:, 0] + size]).clip(0, height))
    xs = np.unique(np.concatenate([[0, width], yx[:, 1], yx[:, 1] + size]).clip(0, width))
    y0, y1 = np.searchsorted(ys, yx[:, 0]), np.searchsorted(ys, np.minimum(yx[:, 0] + size, height))
    x0, x1 = np.searchsorted(xs, yx[:, 1]), np.searchsorted(xs, np.minimum(yx[:, 1] + size, width))
    cells = np.full((len(ys) - 1, len(xs) - 1), -np.inf)
    covered = np.zeros(cells.shape, bool)
    for dy in range(int((y1 - y0).max())):  # a window spans a few cells each way: one pass per offset
        for dx in range(int((x1 - x0).max())):
            inside = (y0 + dy < y1) & (x0 + dx < x1)
            where = (y0[inside] + dy, x0[inside] + dx)
            np.maximum.at(cells, where, values[inside])
            covered[where] = True
    cells[~covered] = np.nan  # no window there
    return np.repeat(np.repeat(cells, np.diff(ys), axis=0), np.diff(xs), axis=1)
