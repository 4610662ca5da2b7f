"""The operating point: a patch is a defect when its score is above the q-quantile of the scores of
normal patches (the paper's 99.9 %). Every threshold in rdcae, RDCAE's at each block end, the
baselines', the benchmarks', comes from here."""

from __future__ import annotations

import torch
from torchmetrics import Metric
from torchmetrics.utilities import dim_zero_cat


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
    return f"{n} calibration patches" if n else "normal training patches"


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
    if len(datamodule.calibration_x):
        threshold.update(score(datamodule.calibration_x) if calibration_scores is None else calibration_scores)
    else:
        scores = score(datamodule.train_x) if train_scores is None else train_scores
        threshold.update(scores[~datamodule.train_synthetic.to(scores.device)])
    return threshold.compute()
