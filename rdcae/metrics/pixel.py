"""Pixel-level metrics of whole-image anomaly maps (higher = more anomalous): the AUROC of all pixels pooled over
the images, and the AUPRO of MVTec AD (Bergmann et al., "The MVTec Anomaly Detection Dataset", IJCV 2021), the
per-region overlap against the false positive rate, integrated up to an FPR limit.

Both sweep one threshold over the pooled pixels. A pool of 40 images of 4096 × 256 (42 M pixels) takes long to sort
on a CPU (and torchmetrics' binned curves loop over their thresholds, a pass over the pool each), so a pool of more
than BINS pixels is first put into BINS equal-width bins: one pass, and every bin edge is an exact point of the
curve. Between two exact points the trapezoid can differ from the exact area by at most half the product of their
FPR and TPR (PRO) steps, unless the bin holds one distinct score (a tie: a straight segment on the exact curve too,
as the lowest level of NaN and -inf always is). Where the bounds of the bins holding several scores add up to more
than TOLERANCE (an outlier has squeezed the scores into a few bins), the curve is computed again with every
distinct score a threshold. Stitched maps hold few distinct scores (one per window), so their bins seldom do.

An evaluation reports both metrics of the same pixels: `pixel_metrics` pools them and sorts them into levels once.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from skimage.measure import label
from torchmetrics.utilities.compute import auc

BINS = 2**22
TOLERANCE = 1e-5  # the most a binned AUROC or AUPRO may differ from its value with every distinct score a threshold


def pixel_auroc(maps, masks, valid=None, *, bins: int | None = BINS) -> float:
    """AUROC of the valid pixels of all images pooled, against the masks (True = defect); ties count half, as in
    torchmetrics' `binary_auroc`, and NaN scores are the lowest. NaN without a defect or a normal pixel.
    maps, masks, valid: lists of (H_i, W_i) arrays or tensors; bins=None: every distinct score is a threshold."""
    scores, defect = _pool(maps, [_numpy(mask).astype(bool) for mask in masks], valid)
    if defect.all() or not defect.any():
        return math.nan
    return min(1.0, _area_to(scores, defect, None, 1.0, bins))


def pro_curve(maps, masks, valid=None, *, bins: int | None = BINS) -> tuple[torch.Tensor, torch.Tensor]:
    """The PRO curve, (FPR, PRO) (K,) each from (0, 0) to (1, 1), thresholds falling: at a threshold, the FPR is the
    fraction of valid normal pixels at or above it, the PRO the mean over the ground-truth regions of all images
    (8-connected, as in anomalib and MVTec's code) of the fraction of the region's valid pixels at or above it.
    A region is labelled on its whole mask; one without valid pixels does not count. NaN PRO without a region."""
    scores, defect, weight = _regions_pool(maps, masks, valid)
    return _curve(scores, defect, weight, bins)[:2]


def aupro(maps, masks, valid=None, fpr_limit: float = 0.3, *, bins: int | None = BINS) -> float:
    """Area under the PRO curve (see `pro_curve`) from FPR 0 to `fpr_limit`, divided by `fpr_limit`; the PRO at the
    limit is interpolated linearly between its neighbours on the curve. NaN without a region or a normal pixel.

    The AUPRO of anomalib's `src/anomalib/metrics/aupro.py` (openvinotoolkit/anomalib, commit 161bb36, which tests
    itself against MVTec's evaluation code, `tests/unit/metrics/aupro/aupro_reference.py`), with one difference:
    anomalib computes each region's ROC on its own thresholds and averages the curves after resampling them to a
    common number of points; here all regions are read at the same thresholds, as in the definition."""
    if not 0 < fpr_limit <= 1:
        raise ValueError(f"fpr_limit={fpr_limit} must be in (0, 1]")
    scores, defect, weight = _regions_pool(maps, masks, valid)
    if defect.all() or not defect.any():
        return math.nan
    return min(1.0, _area_to(scores, defect, weight, fpr_limit, bins))


def pixel_metrics(maps, masks, valid=None, fpr_limit: float = 0.3, *, bins: int | None = BINS) -> tuple[float, float]:
    """(pixel_auroc, aupro) of the same pixels, as the two functions give them, from one pool and one set of levels."""
    if not 0 < fpr_limit <= 1:
        raise ValueError(f"fpr_limit={fpr_limit} must be in (0, 1]")
    scores, defect, weight = _regions_pool(maps, masks, valid)
    if defect.all() or not defect.any():
        return math.nan, math.nan
    levels = _Levels(scores)
    return (min(1.0, _area_to(scores, defect, None, 1.0, bins, levels)),
            min(1.0, _area_to(scores, defect, weight, fpr_limit, bins, levels)))


class _Levels:
    """The levels of one pool of scores (`_levels`), binned and exact, each computed once, when first asked for."""

    def __init__(self, scores: torch.Tensor) -> None:
        self.scores, self.found = scores, {}

    def __call__(self, bins: int | None) -> tuple[torch.Tensor, int, torch.Tensor | None]:
        if bins not in self.found:
            self.found[bins] = _levels(self.scores, bins)
        return self.found[bins]


def _area_to(scores: torch.Tensor, defect: torch.Tensor, weight: torch.Tensor | None, limit: float,
             bins: int | None, levels: _Levels | None = None) -> float:
    """Area under the curve of `_curve` up to FPR `limit`, over `limit`, the curve linearly interpolated at the
    limit (MVTec's `trapezoid`); binned, or exact where binning may be off by more than TOLERANCE."""
    levels = levels or _Levels(scores)
    fpr, tpr, mixed = _curve(scores, defect, weight, bins, levels)
    k = int(torch.searchsorted(fpr, fpr.new_tensor([limit]), right=True))  # points with FPR ≤ limit, ≥ 1
    x, y = fpr[:k], tpr[:k]
    crossing = bool(x[-1] < limit)  # the curve crosses the limit between points k-1 and k
    if crossing:
        t = (limit - fpr[k - 1]) / (fpr[k] - fpr[k - 1])
        x, y = torch.cat([x, x.new_tensor([limit])]), torch.cat([y, (tpr[k - 1] + t * (tpr[k] - tpr[k - 1]))[None]])
    # Between two exact points the exact curve stays inside their rectangle: the trapezoid is off by at most half of
    # it, the segment cut at the limit (interpolated between other points) by at most all of it.
    # the segments inside [0, limit]: a bin of one distinct score is a tie, straight on the exact curve too
    gaps = (fpr.diff() * tpr.diff() if mixed is None else fpr.diff() * tpr.diff() * mixed)[:k if crossing else k - 1]
    if mixed is not None and float(gaps.sum() + (gaps[-1] if crossing else 0)) / 2 / limit > TOLERANCE:
        return _area_to(scores, defect, weight, limit, None, levels)
    return float(auc(x, y)) / limit


def _curve(scores: torch.Tensor, defect: torch.Tensor, weight: torch.Tensor | None, bins: int | None,
           levels: _Levels | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """(FPR, TPR) (K,) float64 at falling thresholds, from (0, 0) to (1, 1), and for each of the K - 1 segments
    whether its level holds more than one distinct score (None where every level is one score). The TPR weighs
    each defect pixel by `weight` (D,) (1 when None): with 1 / its region's size, the TPR is the PRO. One point per
    nonempty level."""
    level, n, mixed = (levels or _Levels(scores))(bins)
    normal = torch.bincount(level[~defect], minlength=n).double()  # (n,) pixels per level, lowest level first
    hit = torch.bincount(level[defect], weight, minlength=n).double()
    keep = (normal > 0) | (hit > 0)
    normal, hit = normal[keep].flip(0), hit[keep].flip(0)
    zero = normal.new_zeros(1)
    return (torch.cat([zero, normal.cumsum(0)]) / normal.sum(), torch.cat([zero, hit.cumsum(0)]) / hit.sum(),
            None if mixed is None else mixed[keep].flip(0))


def _levels(scores: torch.Tensor, bins: int | None) -> tuple[torch.Tensor, int, torch.Tensor | None]:
    """Each score's level (N,) long, monotone in the score, the number of levels, and whether each level (n,) holds
    more than one distinct score (None where none does): 0 for NaN and -inf, then one level per distinct score
    (bins=None or at most `bins` scores: a sort) or per equal-width bin between the finite min and max."""
    lowest = ~(scores > -torch.inf)  # NaN and -inf
    finite = scores[torch.isfinite(scores)]
    if bins is None or len(scores) <= bins or not len(finite):
        values, level = torch.unique(torch.where(lowest, -torch.inf, scores), return_inverse=True)
        return level, len(values), None
    low, high = finite.min(), finite.max()
    scale = bins / float(high - low) if high > low else math.inf
    if not math.isfinite(scale) or scale == 0:  # one score, a span too small to divide or too large to hold: exact
        return _levels(scores, None)
    level = ((scores.clamp(low, high) - low) * scale).floor_().clamp_(max=bins - 1) + 1  # 1 ... bins
    level = torch.where(lowest, 0, level).long()
    inside = torch.where(lowest, low, scores)  # the lowest level: one tie, whatever NaN and -inf it holds
    smallest = scores.new_full((bins + 1,), torch.inf).scatter_reduce_(0, level, inside, "amin")
    largest = scores.new_full((bins + 1,), -torch.inf).scatter_reduce_(0, level, inside, "amax")
    return level, bins + 1, smallest < largest


def _regions_pool(maps, masks, valid) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The pooled valid pixels: scores (N,), defect (N,) bool, and per defect pixel 1 / its region's valid size (D,)."""
    scores, region = _pool(maps, _regions(masks), valid)
    defect = region > 0
    inside = region[defect]
    return scores, defect, 1 / torch.bincount(inside).double()[inside]


def _regions(masks) -> list[np.ndarray]:
    """The 8-connected regions of each mask, (H_i, W_i) int64: 0 = normal, 1, 2, ... numbered over all images."""
    out, offset = [], 0
    for mask in masks:
        regions, n = label(_numpy(mask).astype(bool), connectivity=2, return_num=True)
        out.append(np.where(regions > 0, regions + offset, 0))
        offset += n
    return out


def _pool(maps, targets, valid) -> tuple[torch.Tensor, torch.Tensor]:
    """The valid pixels of all images, flattened: scores (N,) float64 and their targets (N,)."""
    if len(maps) != len(targets) or (valid is not None and len(valid) != len(maps)):
        raise ValueError(f"{len(maps)} maps, {len(targets)} masks and {'no' if valid is None else len(valid)} valid "
                         "masks: one of each per image")
    scores, labels = [], []
    for i, (anomaly_map, target) in enumerate(zip(maps, targets)):
        anomaly_map, target = np.asarray(_numpy(anomaly_map), dtype=np.float64), _numpy(target)
        keep = None if valid is None else _numpy(valid[i]).astype(bool)
        if anomaly_map.shape != target.shape or (keep is not None and keep.shape != target.shape):
            raise ValueError(f"image {i}: map {anomaly_map.shape}, mask {target.shape}"
                             f"{'' if keep is None else f', valid {keep.shape}'} differ in shape")
        scores.append(torch.from_numpy(anomaly_map.ravel() if keep is None else anomaly_map[keep]))
        labels.append(torch.from_numpy(target.ravel() if keep is None else target[keep]))
    if not scores:
        return torch.zeros(0, dtype=torch.float64), torch.zeros(0, dtype=torch.bool)
    return torch.cat(scores), torch.cat(labels)


def _numpy(x) -> np.ndarray:
    return x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)
