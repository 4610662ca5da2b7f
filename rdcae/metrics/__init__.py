"""What rdcae measures: the ranking and decision metrics of a set of scores (classification.py,
torchmetrics underneath) and the operating point set from normal scores (threshold.py)."""

from rdcae.metrics.classification import as_probability, as_unit_interval, auc, aucs_by_kind, evaluate, per_defect_image
from rdcae.metrics.threshold import QuantileThreshold, detection_threshold

__all__ = ["QuantileThreshold", "as_probability", "as_unit_interval", "auc", "aucs_by_kind", "detection_threshold",
           "evaluate", "per_defect_image"]
