"""The image operating point: false alarms per clean image, from the tail of the calibration scores."""

from __future__ import annotations

import math

import numpy as np
import pytest

from rdcae.metrics.operating_point import ImageOperatingPoint, tail_rate, tail_threshold, window_rate
from rdcae.metrics.threshold import threshold_source


def test_the_window_rate_makes_the_image_rate_for_independent_windows():
    p = window_rate(0.01, 700)
    assert 1 - (1 - p) ** 700 == pytest.approx(0.01, rel=1e-9)
    assert p == pytest.approx(1.436e-5, rel=1e-3)
    assert window_rate(0.5, 1) == pytest.approx(0.5)


def test_an_exponential_tail_is_extrapolated_beyond_the_calibration_scores():
    rng = np.random.default_rng(0)
    scores = 1 + rng.exponential(0.2, 4000)
    # 1e-5 of the windows: 1 + 0.2 ln(1e5) = 3.30, beyond the largest of 4,000 scores (~2.7)
    assert scores.max() < tail_threshold(scores, 1e-5) == pytest.approx(1 + 0.2 * math.log(1e5), abs=0.15)
    assert tail_threshold(scores, 0.5) == pytest.approx(np.quantile(scores, 0.5))  # the body: the empirical quantile
    for t in (1.6, 2.0, 3.0):  # beyond the 90 % quantile (1.46), where the tail is the fitted one
        assert tail_threshold(scores, tail_rate(scores, t)) == pytest.approx(t, rel=1e-6)


def test_a_heavy_calibration_tail_does_not_push_the_image_threshold_above_the_defects():
    """Fabric C: normal windows on an edge line the region kept score up to 7 (99.9 % quantile 7.4) while its
    defect windows score 1.6-2.0; 2 % of the calibration windows are such outliers."""
    rng = np.random.default_rng(1)
    bulk = rng.normal(0.96, 0.08, 3920)
    outliers = rng.uniform(2.6, 7.4, 80)
    scores = np.concatenate([bulk, outliers])
    defects = np.linspace(1.61, 2.04, 20)
    assert np.quantile(scores, 0.999) > defects.max()  # the paper's quantile flags no defect
    point = ImageOperatingPoint(scores, windows_per_image=780, false_alarms_per_image=0.01)
    assert point.threshold() < defects.max()
    assert (defects > point.threshold()).mean() >= 0.5
    clean = ImageOperatingPoint(bulk, 780, 0.01).threshold()
    assert clean < point.threshold() < clean + 0.3  # the outliers move it, by less than the gap to the defects
    # and the image rate it promises holds for clean images of the bulk
    images = rng.normal(0.96, 0.08, (2000, 780)).max(axis=1)
    assert (images > point.threshold()).mean() <= 0.01


def test_the_interval_brackets_the_threshold_and_shrinks_with_more_calibration_scores():
    rng = np.random.default_rng(2)
    small = ImageOperatingPoint(rng.gamma(4, 0.2, 400), 700, 0.01)
    large = ImageOperatingPoint(rng.gamma(4, 0.2, 8000), 700, 0.01)
    for point in (small, large):
        low, high = point.interval()
        assert low < point.threshold() < high
    assert np.diff(large.interval())[0] < np.diff(small.interval())[0]


def test_a_share_outside_zero_and_one_is_refused_naming_the_setting():
    with pytest.raises(ValueError, match="operating_point.false_alarms_per_image=0"):
        ImageOperatingPoint(np.ones(100), 10, 0)
    with pytest.raises(ValueError, match="at least 20 calibration scores"):
        ImageOperatingPoint(np.ones(5), 10, 0.01)


def test_the_threshold_says_whether_its_calibration_images_were_never_trained_on():
    from types import SimpleNamespace

    def datamodule(calibration: int, images: list[str] | None):
        stats = {"calibration_images": images} if images is not None else {}
        return SimpleNamespace(calibration_x=np.zeros((calibration, 1, 8, 8)), patches=SimpleNamespace(stats=stats))

    assert threshold_source(datamodule(400, None)) == "400 calibration patches"
    own = threshold_source(datamodule(400, ["a.png", "b.png"]))
    assert own == "400 calibration patches of 2 images never trained on"
    assert threshold_source(datamodule(0, None)) == "normal training patches"
