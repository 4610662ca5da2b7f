"""The patch threshold: a patch is a defect when its score is above the q-quantile of the scores of normal
patches (the paper's 99.9 %). Every patch threshold in rdcae, RDCAE's at each block end, the
baselines', the benchmarks', comes from here.

The image operating point, a number of false alarms per clean image, is in operating_point.py."""

from __future__ import annotations

import torch
from torchmetrics import Metric
from torchmetrics.utilities import dim_zero_cat

from rdcae.metrics.operating_point import normal_scores


class QuantileThreshold(Metric):
    """update(scores of normal patches) ... compute() → their `quantile`."""

    full_state_update = False

    def __init__(self, quantile: float) -> None:
        super().__init__()
        if not 0 < quantile < 1:
            raise ValueError(f"operating_point.quantile={quantile} must be in (0, 1)")
        self.quantile = quantile
        self.add_state("scores", default=[], dist_reduce_fx="cat")

    def update(self, scores: torch.Tensor) -> None:
        self.scores.append(scores.flatten())

    def compute(self) -> torch.Tensor:
        return torch.quantile(dim_zero_cat(self.scores), self.quantile)


def threshold_source(datamodule) -> str:
    """Which normal patches the threshold of a run on `datamodule` is the quantile of."""
    n = len(datamodule.calibration_x)
    patches = getattr(datamodule, "patches", None)
    images = len(patches.stats.get("calibration_images", [])) if patches is not None else 0
    where = f" of {images} images never trained on" if images else ""
    return f"{n} calibration patches{where}" if n else "normal training patches"


def detection_threshold(
    score, datamodule, quantile: float, train_scores: torch.Tensor | None = None,
    calibration_scores: torch.Tensor | None = None
) -> torch.Tensor:
    """The quantile of the scores of normal patches the model was not trained on, the datamodule's
    calibration patches; without them (dataset.n_calibration=0, the paper), of the normal training
    patches. A network that has memorised its training patches scores them lower than unseen normal
    patches, so the training quantile flags unseen normals. `score` maps (N, C, P, P) to (N,);
    `train_scores` and `calibration_scores`, when given, save scoring those sets again."""
    threshold = QuantileThreshold(quantile)
    threshold.update(normal_scores(score, datamodule, train_scores, calibration_scores))
    return threshold.compute()
