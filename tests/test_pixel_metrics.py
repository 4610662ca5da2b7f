"""Pixel AUROC and AUPRO of whole-image anomaly maps: known answers on hand-made maps, and agreement with a slow
reference that loops over every threshold."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import ndimage
from torchmetrics.functional.classification import binary_auroc

from rdcae.metrics.pixel import TOLERANCE, aupro, pixel_auroc, pixel_metrics, pro_curve

# The reference and the exact metrics compute the same sums in another order: float64 rounding over a few thousand
# terms stays far below this.
EXACT = 1e-9


def two_regions() -> np.ndarray:
    """A 6 × 8 mask with a 1-pixel region and a 9-pixel region."""
    mask = np.zeros((6, 8), bool)
    mask[0, 0] = True
    mask[2:5, 4:7] = True
    return mask


# --- the slow reference: every distinct score is a threshold, a pixel at or above it is flagged -----------------

def reference_pool(maps, masks, valid=None):
    """Scores and regions of the valid pixels; regions as MVTec's code labels them (scipy, 3 × 3 structure)."""
    scores, regions, offset = [], [], 0
    for i, (anomaly_map, mask) in enumerate(zip(maps, masks)):
        labels, n = ndimage.label(mask, np.ones((3, 3)))
        labels[labels > 0] += offset
        offset += n
        keep = np.ones(mask.shape, bool) if valid is None else valid[i]
        scores.append(np.where(np.isnan(anomaly_map), -np.inf, anomaly_map)[keep])
        regions.append(labels[keep])
    return np.concatenate(scores), np.concatenate(regions)


def reference_pro_curve(maps, masks, valid=None):
    scores, regions = reference_pool(maps, masks, valid)
    normal = scores[regions == 0]
    inside = [scores[regions == r] for r in np.unique(regions[regions > 0])]
    fpr, pro = [0.0], [0.0]
    for threshold in sorted(set(scores.tolist()), reverse=True):
        fpr.append(np.mean(normal >= threshold))
        pro.append(np.mean([np.mean(region >= threshold) for region in inside]))
    return np.array(fpr), np.array(pro)


def reference_area(x, y, limit):
    """Trapezoids up to x = limit, y interpolated linearly at the limit, over limit."""
    area = 0.0
    for x0, y0, x1, y1 in zip(x[:-1], y[:-1], x[1:], y[1:]):
        if x0 >= limit:
            break
        if x1 > limit:
            x1, y1 = limit, y0 + (y1 - y0) * (limit - x0) / (x1 - x0)
        area += (x1 - x0) * (y0 + y1) / 2
    return area / limit


def reference_auroc(maps, masks, valid=None):
    """P(defect pixel > normal pixel) + P(equal) / 2 over all pairs."""
    scores, regions = reference_pool(maps, masks, valid)
    defect, normal = scores[regions > 0][:, None], scores[regions == 0][None, :]
    return float(np.mean((defect > normal) + 0.5 * (defect == normal)))


def random_images(seed: int):
    """Three small images of different sizes: smooth scores, touching and diagonal rectangles, some NaNs, ties in
    one image, a valid region."""
    rng = np.random.default_rng(seed)
    maps, masks, valid = [], [], []
    for h, w in [(16, 24), (20, 12), (9, 30)]:
        mask = np.zeros((h, w), bool)
        for _ in range(rng.integers(1, 4)):
            y, x = rng.integers(0, h - 2), rng.integers(0, w - 2)
            mask[y:y + rng.integers(1, 6), x:x + rng.integers(1, 6)] = True
        anomaly_map = ndimage.gaussian_filter(rng.normal(size=(h, w)), 1.0) + rng.uniform(0, 2) * mask
        anomaly_map[rng.random((h, w)) < 0.02] = np.nan
        keep = np.zeros((h, w), bool)
        keep[1:, rng.integers(0, 3):] = True
        maps.append(anomaly_map)
        masks.append(mask)
        valid.append(keep)
    maps[1] = np.round(maps[1], 1)  # ties, within the image and with defect pixels
    return maps, masks, valid


# --- known answers ----------------------------------------------------------------------------------------------

def test_a_perfect_map_gives_one_for_both():
    mask = two_regions()
    perfect = mask.astype(float)
    assert pixel_auroc([perfect], [mask]) == 1.0
    assert aupro([perfect], [mask]) == 1.0


def test_an_inverted_map_gives_zero():
    mask = two_regions()
    inverted = 1.0 - mask
    assert pixel_auroc([inverted], [mask]) == 0.0
    assert aupro([inverted], [mask]) == 0.0


@pytest.mark.parametrize("bins", [None, 4])
def test_covering_one_of_two_regions_gives_a_pro_of_one_half_whatever_their_sizes(bins):
    """Also binned: one curve point per nonempty bin, here one per distinct score."""
    mask = two_regions()
    anomaly_map = np.full(mask.shape, 0.5)
    anomaly_map[mask] = 0.0
    anomaly_map[0, 0] = 1.0  # covers the 1-pixel region, none of the 9-pixel region: 1/10 of the defect pixels
    fpr, pro = pro_curve([anomaly_map], [mask], bins=bins)
    # thresholds in (0.5, 1]: no normal pixel, PRO 1/2; in (0, 0.5]: all normal pixels, still 1/2; then all
    assert fpr.tolist() == [0.0, 0.0, 1.0, 1.0]
    assert pro.tolist() == [0.0, 0.5, 0.5, 1.0]
    assert aupro([anomaly_map], [mask], fpr_limit=0.3, bins=bins) == pytest.approx(0.5)
    assert aupro([anomaly_map], [mask], fpr_limit=1.0, bins=bins) == pytest.approx(0.5)


@pytest.mark.parametrize("fpr_limit", [0.05, 0.3, 1.0])
def test_a_constant_map_gives_half_the_limit(fpr_limit):
    mask = two_regions()
    constant = np.full(mask.shape, 0.7)
    # one threshold: nothing flagged, then everything; the PRO rises linearly with the FPR
    assert pixel_auroc([constant], [mask]) == 0.5
    assert aupro([constant], [mask], fpr_limit=fpr_limit) == pytest.approx(fpr_limit / 2)


def test_diagonal_neighbours_are_one_region():
    mask = np.zeros((5, 5), bool)
    mask[0, 0] = mask[1, 1] = True  # 8-connected: one region of 2 pixels
    mask[4, 4] = True
    anomaly_map = np.zeros((5, 5))
    anomaly_map[0, 0] = anomaly_map[4, 4] = 1.0
    _, pro = pro_curve([anomaly_map], [mask])
    assert pro[1] == pytest.approx((1 / 2 + 1) / 2)  # 4-connectivity would give (1 + 0 + 1) / 3


def test_images_of_different_sizes_pool_their_pixels_and_keep_their_regions_apart():
    small, large = np.zeros((1, 1), bool), np.ones((3, 4), bool)
    small[0, 0] = True
    small_map, large_map = np.ones((1, 1)), np.zeros((3, 4))
    normal, normal_map = np.zeros((2, 7), bool), np.full((2, 7), 0.5)
    maps, masks = [small_map, large_map, normal_map], [small, large, normal]
    scores = torch.cat([torch.from_numpy(m.ravel()) for m in maps])
    labels = torch.cat([torch.from_numpy(m.ravel()) for m in masks]).long()
    assert pixel_auroc(maps, masks) == pytest.approx(float(binary_auroc(scores, labels)))
    # both masks are a region at (0, 0): still two regions, the first covered, the second not
    _, pro = pro_curve(maps, masks)
    assert pro[1] == 0.5


def test_valid_excludes_pixels_from_both_classes():
    mask = np.zeros((6, 8), bool)
    mask[2:4, 2:5] = True
    mask[0, 7] = True  # a region outside the valid area: it does not count
    anomaly_map = np.where(mask, 1.0, 0.0)
    anomaly_map[:, 6:] = 2.0  # glare beyond the fabric edge
    anomaly_map[0, 7] = 0.0
    valid = np.zeros((6, 8), bool)
    valid[:, :6] = True
    assert pixel_auroc([anomaly_map], [mask]) < 1.0
    assert aupro([anomaly_map], [mask]) < 1.0
    assert pixel_auroc([anomaly_map], [mask], [valid]) == 1.0
    assert aupro([anomaly_map], [mask], [valid]) == 1.0
    cropped = pixel_auroc([anomaly_map[:, :6]], [mask[:, :6]])
    assert pixel_auroc([anomaly_map], [mask], [valid]) == cropped


def test_a_region_cut_by_the_invalid_area_stays_one_region():
    mask = np.zeros((3, 7), bool)
    mask[1] = True
    valid = np.ones((3, 7), bool)
    valid[1, 2] = False  # leaves 2 valid pixels on the left, 4 on the right
    anomaly_map = np.zeros((3, 7))
    anomaly_map[1, :2] = 1.0
    _, pro = pro_curve([anomaly_map], [mask], [valid])
    assert pro[1] == pytest.approx(2 / 6)  # as two regions: (1 + 0) / 2


@pytest.mark.parametrize("bins", [None, 2])
def test_nan_scores_count_as_the_lowest(bins):
    mask = two_regions()
    anomaly_map = np.where(mask, 1.0, 0.0)  # 0 on 38 normal pixels, 1 on 10 defect pixels
    anomaly_map[2:5, 4:6] = np.nan  # 6 of the 9-pixel region's pixels
    assert pixel_auroc([anomaly_map], [mask], bins=bins) == pytest.approx(4 / 10)
    _, pro = pro_curve([anomaly_map], [mask], bins=bins)
    assert pro.tolist() == pytest.approx([0.0, (1 + 3 / 9) / 2, (1 + 3 / 9) / 2, 1.0])


def test_no_defect_or_no_normal_pixel_gives_nan():
    mask = two_regions()
    anomaly_map = np.random.default_rng(0).random(mask.shape)
    nothing, everything = np.zeros_like(mask), np.ones_like(mask)
    for masks, valid in [([nothing], None), ([everything], None), ([mask], [~mask])]:
        assert math.isnan(pixel_auroc([anomaly_map], masks, valid))
        assert math.isnan(aupro([anomaly_map], masks, valid))
    assert math.isnan(pixel_auroc([], []))


def test_tensors_and_arrays_give_the_same_value():
    maps, masks, valid = random_images(0)
    as_tensors = [[torch.from_numpy(a) for a in arrays] for arrays in (maps, masks, valid)]
    assert pixel_auroc(*as_tensors) == pixel_auroc(maps, masks, valid)
    assert aupro(*as_tensors) == aupro(maps, masks, valid)


def test_bad_inputs_are_rejected():
    mask = two_regions()
    with pytest.raises(ValueError, match="image 0"):
        pixel_auroc([np.zeros((6, 7))], [mask])
    with pytest.raises(ValueError, match="one of each per image"):
        aupro([np.zeros((6, 8))], [mask, mask])
    with pytest.raises(ValueError, match="fpr_limit"):
        aupro([np.zeros((6, 8))], [mask], fpr_limit=0.0)


# --- agreement with the reference -------------------------------------------------------------------------------

@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("bins", [None, 64])
def test_the_metrics_match_a_loop_over_every_threshold(seed, bins):
    """Exact (bins=None, and pools no larger than BINS) to rounding; binned within TOLERANCE by construction."""
    maps, masks, valid = random_images(seed)
    tolerance = EXACT if bins is None else TOLERANCE
    for keep in (None, valid):
        assert pixel_auroc(maps, masks, keep, bins=bins) == pytest.approx(reference_auroc(maps, masks, keep),
                                                                          abs=tolerance)
        fpr, pro = reference_pro_curve(maps, masks, keep)
        for fpr_limit in (0.05, 0.3, 1.0):
            expected = reference_area(fpr, pro, fpr_limit)
            assert aupro(maps, masks, keep, fpr_limit, bins=bins) == pytest.approx(expected, abs=tolerance)
        if bins is None:
            ours = pro_curve(maps, masks, keep, bins=None)
            np.testing.assert_allclose(ours[0].numpy(), fpr, atol=EXACT)
            np.testing.assert_allclose(ours[1].numpy(), pro, atol=EXACT)


def smooth_images(n: int = 4, size: int = 256, seed: int = 0):
    rng = np.random.default_rng(seed)
    masks = [np.zeros((size, size), bool) for _ in range(n)]
    for mask in masks:
        for _ in range(3):
            y, x = rng.integers(0, size - 20, size=2)
            mask[y:y + rng.integers(2, 20), x:x + rng.integers(2, 20)] = True
    maps = [ndimage.gaussian_filter(rng.normal(size=mask.shape), 2.0) + 0.3 * mask for mask in masks]
    return maps, masks


def test_binned_metrics_differ_from_the_exact_ones_by_less_than_the_tolerance():
    """2**18 bins for 8 × 256 × 256 pixels: the binned path runs (the values differ, by about 1e-8 and 1e-7) and
    stays within TOLERANCE of the exact value, which is torchmetrics' exact AUROC."""
    maps, masks = smooth_images(n=8)
    scores = torch.cat([torch.from_numpy(m.ravel()) for m in maps])
    labels = torch.cat([torch.from_numpy(m.ravel()) for m in masks]).long()
    exact = pixel_auroc(maps, masks, bins=None)
    in_unit_interval = (scores - scores.min()) / (scores.max() - scores.min())  # no sigmoid in torchmetrics
    assert exact == pytest.approx(float(binary_auroc(in_unit_interval, labels)), abs=1e-6)  # float32 there
    binned = pixel_auroc(maps, masks, bins=2**18)
    assert 0 < abs(binned - exact) < TOLERANCE
    exact, binned = aupro(maps, masks, bins=None), aupro(maps, masks, bins=2**18)
    assert 0 < abs(binned - exact) < TOLERANCE


def test_an_outlier_that_squeezes_the_bins_falls_back_to_the_exact_value():
    maps, masks = smooth_images(n=2, size=96)
    maps[0][0, 0] = 1e12  # a normal pixel: all other scores land in the lowest of the equal-width bins
    assert pixel_auroc(maps, masks, bins=2**10) == pixel_auroc(maps, masks, bins=None)
    assert aupro(maps, masks, bins=2**10) == aupro(maps, masks, bins=None)


def test_pixels_not_scored_are_one_tie_that_keeps_the_binned_value(monkeypatch):
    """A quarter of the pixels NaN (not inspected): one segment at the lowest level, exact as it is, so the binned
    value stands instead of a second, exact pass over every pixel; and it is within TOLERANCE of that pass."""
    import rdcae.metrics.pixel as pixel

    maps, masks = smooth_images(n=8)
    for m in maps:
        m[:, :64] = np.nan
    exact = pixel_auroc(maps, masks, bins=None)
    passes = []
    real = pixel._curve
    monkeypatch.setattr(pixel, "_curve", lambda *a: passes.append(a[3]) or real(*a))  # bins
    binned = pixel_auroc(maps, masks, bins=2**18)
    assert passes == [2**18] and abs(binned - exact) < TOLERANCE
    # the PRO curve too, with the FPR limit inside that segment (the NaN pixels: the last quarter of the normals)
    exact, passes[:] = aupro(maps, masks, None, 0.9, bins=None), []
    binned = aupro(maps, masks, None, 0.9, bins=2**18)
    assert passes == [2**18] and abs(binned - exact) < TOLERANCE


def stitched_images(n: int = 6, size: int = 128, patch: int = 16, seed: int = 0):
    """Maps as detection stitches them: one score per window, constant over its patch, a defect square in some."""
    rng = np.random.default_rng(seed)
    maps, masks = [], []
    for i in range(n):
        cells = rng.gamma(4.0, 0.25, (size // patch, size // patch))
        mask = np.zeros((size, size), bool)
        if i % 2:
            mask[40:60, 70:90] = True
            cells[40 // patch: 60 // patch + 1, 70 // patch: 90 // patch + 1] += 1.0
        maps.append(np.kron(cells, np.ones((patch, patch))))
        masks.append(mask)
    return maps, masks


def test_bins_of_one_score_each_keep_the_binned_value_and_it_is_the_exact_one(monkeypatch):
    """Few distinct scores make big steps, whose bound alone would call for the exact pass; but each bin holds one
    score, so the binned curve has the exact curve's points."""
    import rdcae.metrics.pixel as pixel

    maps, masks = stitched_images()
    passes = []
    real = pixel._curve
    monkeypatch.setattr(pixel, "_curve", lambda *a: passes.append(a[3]) or real(*a))  # bins
    for metric in (pixel_auroc, aupro):
        passes[:] = []
        binned = metric(maps, masks, bins=2**16)
        assert passes == [2**16] and binned == pytest.approx(metric(maps, masks, bins=None), abs=1e-12)
    # an image whose scores are two within one bin, its defect in one of them: that bin's bound counts again, and
    # the exact pass runs
    maps[1][:, :64], maps[1][:, 64:] = 3.0, 3.0 + 1e-9  # among the highest scores: inside the FPR limit
    passes[:] = []
    aupro(maps, masks, bins=2**16)
    assert passes == [2**16, None]


@pytest.mark.parametrize("bins", [None, 2**10])
def test_both_metrics_at_once_are_each_metric_alone(bins):
    maps, masks, valid = random_images(3)
    assert pixel_metrics(maps, masks, valid, 0.3, bins=bins) == (pixel_auroc(maps, masks, valid, bins=bins),
                                                                  aupro(maps, masks, valid, 0.3, bins=bins))
    maps, masks = stitched_images()
    assert pixel_metrics(maps, masks, bins=bins) == (pixel_auroc(maps, masks, bins=bins), aupro(maps, masks, bins=bins))
    assert all(math.isnan(v) for v in pixel_metrics(maps, [np.zeros_like(m, bool) for m in masks]))


def test_scores_whose_span_cannot_be_binned_give_the_exact_values():
    for values in ([-1e308, 0.0, 1e308], [0.0, 5e-324]):  # a span that overflows, one too small to divide
        scores = np.array(values * 20).reshape(4, -1)
        masks = np.zeros(scores.shape, bool)
        masks[0, :2] = True
        assert pixel_auroc([scores], [masks], bins=4) == pixel_auroc([scores], [masks], bins=None)
        assert aupro([scores], [masks], bins=4) == aupro([scores], [masks], bins=None)
