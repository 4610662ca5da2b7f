"""The image operating point: an image is a defect when any of its windows is, so a threshold that lets 0.1 % of
normal windows through flags about half of the clean 4096x256 AITEX images (≈ 700 windows each:
1 − 0.999^700 ≈ 0.5). The image operating point is a number of false alarms per clean image,
α (operating_point.false_alarms_per_image). With n windows per image, each may pass the
threshold with probability p = 1 − (1 − α)^(1/n), far beyond what 4,000 calibration scores
show (α = 0.01, n = 700: p ≈ 1.4e-5). The tail is extrapolated as an exponential one,
P(score > t) = 0.10 · exp(−(t − q90) / σ) with σ = (q95 − q90) / ln 2, anchored at the 90 % and
95 % quantiles of the calibration scores: a few percent of odd normal windows (a border strip
the region missed) sit above q95 and do not move it, where a fit to the largest scores or
their 99.9 % quantile would follow them above the defects. On AITEX the scores' tail is lighter
than exponential (docs/EXPERIMENTS.md, entry 16), so α is an upper bound."""

from __future__ import annotations

import math

import numpy as np
import torch

TAIL_FROM, TAIL_TO = 0.90, 0.95  # the calibration quantiles the exponential tail is anchored at


def window_rate(false_alarms_per_image: float, windows_per_image: float) -> float:
    """The share of normal windows that may pass for an image of `windows_per_image` windows to be
    flagged with probability `false_alarms_per_image` (windows taken as independent)."""
    return -math.expm1(math.log1p(-false_alarms_per_image) / max(windows_per_image, 1.0))


def image_rate(window_rate: float, windows_per_image: float) -> float:
    """The share of clean images of `windows_per_image` windows flagged when each normal window passes
    with probability `window_rate` (windows taken as independent): the inverse of `window_rate`."""
    return float(-math.expm1(windows_per_image * math.log1p(-min(window_rate, 1 - 1e-12))))


def exponential_tail(scores: np.ndarray) -> tuple[float, float]:
    """(q90, σ) of the exponential tail fitted to calibration scores (Q,): P(score > t) =
    (1 − TAIL_FROM) · exp(−(t − q90) / σ) beyond the TAIL_FROM quantile (module docstring)."""
    q_from, q_to = np.quantile(np.asarray(scores, dtype=np.float64), [TAIL_FROM, TAIL_TO])
    return float(q_from), max(float(q_to - q_from), 1e-12) / math.log((1 - TAIL_FROM) / (1 - TAIL_TO))


def tail_threshold(scores: np.ndarray, rate: float) -> float:
    """The score that a share `rate` of normal windows exceeds, from their calibration scores (Q,):
    the empirical quantile down to 1 − TAIL_FROM, the exponential tail beyond (module docstring)."""
    if rate >= 1 - TAIL_FROM:
        return float(np.quantile(np.asarray(scores, dtype=np.float64), 1 - rate))
    q_from, sigma = exponential_tail(scores)
    return q_from + sigma * math.log((1 - TAIL_FROM) / rate)


def tail_rate(scores: np.ndarray, threshold: float) -> float:
    """The inverse of tail_threshold: the share of normal windows above `threshold`."""
    q_from, sigma = exponential_tail(scores)
    if threshold <= q_from:
        return float((np.asarray(scores) > threshold).mean())
    return float((1 - TAIL_FROM) * math.exp(-(threshold - q_from) / sigma))


NO_OVERLAP = ("the model has no calibration for overlapping windows (a file written before detection averaged "
              "them, or a run whose defect-free calibration images held fewer than 20 tiles): detect with "
              "overlap=false, or train it again, with more defect-free images for the latter")


# windows averaged per pixel by the overlap mode: the tiles' own grid and the one shifted by half a patch
# (rdcae.inference.image.overlap_grid); files written before it averaged 4, every half-stride window
OVERLAP_WINDOWS = 2


def no_overlap(setting: str) -> str:
    """NO_OVERLAP for a command line: `setting` names what asked for overlap and the model file."""
    return f"{setting} {NO_OVERLAP.removeprefix('the model ')}"


class ImageOperatingPoint:
    """The image operating point of a detector: calibration scores (Q,) of normal windows the network
    never trained on, and the windows an image of the training images' size has on fabric.

    threshold(α) is the window score above which an image is a defect so that clean images of that
    size are flagged at the rate α; at a detection stride s below the patch size P an image has
    (P / s)² times the windows, counted as independent (an upper bound on the false alarms).

    overlap_scores (optional): the scores of the tiles of whole defect-free images when each pixel's
    residual is averaged over the overlapping windows that cover it (rdcae.inference.image, overlap);
    `overlap=True` puts threshold(), interval() and false_alarms_at() on them. overlap_windows: the
    windows averaged per pixel when they were scored, 2 (two grids) or 4 (every window at
    half the patch size's stride, in files written before the two grids)."""

    def __init__(self, scores, windows_per_image: float, false_alarms_per_image: float,
                 overlap_scores=None, overlap_windows: int = OVERLAP_WINDOWS) -> None:
        self.scores = np.sort(np.asarray(scores, dtype=np.float64).ravel())
        self.windows_per_image = float(windows_per_image)
        self.false_alarms_per_image = float(false_alarms_per_image)
        self.overlap_scores = (None if overlap_scores is None
                               else np.sort(np.asarray(overlap_scores, dtype=np.float64).ravel()))
        if overlap_windows not in (2, 4):
            raise ValueError(f"overlap_windows={overlap_windows!r}: 2 (two grids) or 4 (every half-stride window)")
        self.overlap_windows = int(overlap_windows)
        for name, values in (("", self.scores), ("overlap ", self.overlap_scores)):
            if values is not None and len(values) < 20:
                raise ValueError(f"an image operating point needs at least 20 {name}calibration scores, "
                                 f"got {len(values)}")
        check_false_alarms(self.false_alarms_per_image)

    def scores_for(self, overlap: bool = False) -> np.ndarray:
        """The calibration scores of the single windows, or with `overlap` of the averaged tiles."""
        if not overlap:
            return self.scores
        if self.overlap_scores is None:
            raise ValueError(NO_OVERLAP)
        return self.overlap_scores

    def windows(self, stride_ratio: float = 1.0) -> float:
        return self.windows_per_image / stride_ratio ** 2

    def threshold(self, false_alarms_per_image: float | None = None, stride_ratio: float = 1.0,
                  overlap: bool = False) -> float:
        """The window threshold for `false_alarms_per_image` (default: the detector's), at a stride of
        `stride_ratio` patch sizes, for single windows or (`overlap`) averaged tiles."""
        alpha = self.false_alarms_per_image if false_alarms_per_image is None else float(false_alarms_per_image)
        return tail_threshold(self.scores_for(overlap), window_rate(alpha, self.windows(stride_ratio)))

    def interval(self, false_alarms_per_image: float | None = None, resamples: int = 200,
                 level: float = 0.9, overlap: bool = False) -> tuple[float, float]:
        """A bootstrap interval of threshold(): how far the calibration scores pin it down."""
        alpha = self.false_alarms_per_image if false_alarms_per_image is None else float(false_alarms_per_image)
        rate = window_rate(alpha, self.windows_per_image)
        scores = self.scores_for(overlap)
        rng = np.random.default_rng(0)
        draws = [tail_threshold(rng.choice(scores, len(scores)), rate) for _ in range(resamples)]
        low, high = np.quantile(draws, [(1 - level) / 2, (1 + level) / 2])
        return float(low), float(high)

    def false_alarms_at(self, threshold: float, stride_ratio: float = 1.0, overlap: bool = False) -> float:
        """The expected share of clean images flagged at a window `threshold`."""
        return image_rate(tail_rate(self.scores_for(overlap), threshold), self.windows(stride_ratio))

    def with_overlap(self, overlap_scores, overlap_windows: int = OVERLAP_WINDOWS) -> "ImageOperatingPoint":
        """This operating point with the averaged tiles' calibration scores added, scored over
        `overlap_windows` windows per pixel."""
        return ImageOperatingPoint(self.scores, self.windows_per_image, self.false_alarms_per_image, overlap_scores,
                                   overlap_windows)

    def to_dict(self) -> dict:
        state = {"scores": torch.tensor(self.scores, dtype=torch.float32), "windows_per_image": self.windows_per_image,
                 "false_alarms_per_image": self.false_alarms_per_image}
        if self.overlap_scores is not None:
            state["overlap_scores"] = torch.tensor(self.overlap_scores, dtype=torch.float32)
            state["overlap_windows"] = self.overlap_windows
        return state

    @classmethod
    def from_dict(cls, state: dict) -> "ImageOperatingPoint":
        overlap = state.get("overlap_scores")
        return cls(state["scores"].numpy(), state["windows_per_image"], state["false_alarms_per_image"],
                   None if overlap is None else overlap.numpy(),
                   int(state.get("overlap_windows", 4 if overlap is not None else OVERLAP_WINDOWS)))


def check_false_alarms(value, key: str = "operating_point.false_alarms_per_image") -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < 1:
        raise ValueError(f"{key}={value!r} must be a share of clean images in (0, 1), e.g. 0.01 for one false alarm "
                         "per 100 clean images")
    return float(value)


def normal_scores(score, datamodule, train_scores: torch.Tensor | None = None,
                  calibration_scores: torch.Tensor | None = None) -> torch.Tensor:
    """The scores the operating points come from: the calibration patches, else the normal training
    patches (dataset.n_calibration=0, the paper). `train_scores` and `calibration_scores`, when
    given, save scoring those sets again."""
    if len(datamodule.calibration_x):
        return score(datamodule.calibration_x) if calibration_scores is None else calibration_scores
    scores = score(datamodule.train_x) if train_scores is None else train_scores
    return scores[~datamodule.train_synthetic.to(scores.device)]


def image_operating_point(score, datamodule, false_alarms_per_image: float) -> ImageOperatingPoint | None:
    """The image operating point of a trained run: `score` maps patches (N, C, P, P) to (N,); the
    windows per image come from the datamodule's normal images. None without enough normal scores."""
    windows = float(datamodule.patches.stats.get("windows_per_image", 0) or 0)
    with torch.no_grad():
        scores = normal_scores(score, datamodule).detach().cpu().numpy()
    if windows <= 0 or len(scores) < 20:
        return None
    return ImageOperatingPoint(scores, windows, false_alarms_per_image)


def has_overlap(point: ImageOperatingPoint | None) -> bool:
    """Whether an operating point carries the calibration of tiles averaged over overlapping windows."""
    return point is not None and point.overlap_scores is not None
