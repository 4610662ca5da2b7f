"""Ranking and decision metrics of anomaly scores (higher = more anomalous), on torchmetrics."""

from __future__ import annotations

import math

import numpy as np
import torch
from torchmetrics.functional.classification import binary_accuracy, binary_auroc, binary_f1_score


def as_probability(scores: torch.Tensor) -> torch.Tensor:
    """Map errors in [0, ∞) monotonically into [0, 1) so torchmetrics does not apply a sigmoid
    (which saturates at float precision for errors above ~17 and would create ties)."""
    return scores / (1 + scores)


def as_unit_interval(scores) -> torch.Tensor:
    """Scores of any sign mapped monotonically into [0, 1) by their rank: equal scores stay equal and no
    new ties appear (a sigmoid saturates), so torchmetrics gets probabilities with the same ROC."""
    values, rank = np.unique(np.asarray(_numpy(scores), dtype=np.float64), return_inverse=True)
    return torch.from_numpy(rank.reshape(-1).astype(np.float64) / len(values))


def auc(normal: torch.Tensor, defect: torch.Tensor) -> float:
    """AUC of defect scores against normal scores; NaN when either set is empty. Clamped at 1:
    float32 summation can put a perfect AUC a rounding step above it, which would pass auc_target=1.0."""
    if not len(normal) or not len(defect):
        return math.nan
    labels = torch.cat([torch.zeros(len(normal)), torch.ones(len(defect))]).long().to(normal.device)
    return min(1.0, float(binary_auroc(as_probability(torch.cat([normal, defect])), labels)))


def aucs_by_kind(normal: dict[str, torch.Tensor], synthetic: dict[str, torch.Tensor]) -> dict[str, float]:
    """The validation AUC of every score kind, from {kind: scores} of normal and synthetic patches."""
    return {kind: auc(normal[kind], synthetic[kind]) for kind in synthetic}


def evaluate(scores, labels, decisions=None) -> dict[str, float | None]:
    """AUC of the scores (of any sign), F1 and accuracy of the decisions (1 = defect); None where undefined."""
    labels = torch.as_tensor(_numpy(labels)).long()
    both = bool((labels == 0).any()) and bool((labels == 1).any())
    out: dict[str, float | None] = {"auc": float(binary_auroc(as_unit_interval(scores), labels)) if both else None}
    if decisions is None:
        return out | {"f1": None, "accuracy": None}
    pred = torch.as_tensor(_numpy(decisions)).long()
    return out | {"f1": float(binary_f1_score(pred, labels)), "accuracy": float(binary_accuracy(pred, labels))}


def per_defect_image(scores: torch.Tensor, labels: torch.Tensor, source: np.ndarray, names: list[str],
                     threshold: float) -> list[dict]:
    """For each defect image: its defect tiles, how many score above the threshold, and the AUC of its
    tiles against all normal test patches (None without normals), which says which images a detector
    misses. scores, labels (M,) of the test set; source (K,) the image index of each defect tile."""
    source = torch.as_tensor(source, dtype=torch.long)
    normal, defect = scores[labels == 0], scores[labels == 1]
    rows = []
    for index in torch.unique(source[source >= 0]).tolist():
        tiles = defect[source == index]
        rows.append({"image": names[index], "tiles": len(tiles), "detected": int((tiles > threshold).sum()),
                     "auc": auc(normal, tiles) if len(normal) else None})
    return rows


def _numpy(x) -> np.ndarray:
    return x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)
