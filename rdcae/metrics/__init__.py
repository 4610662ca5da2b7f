"""What rdcae measures: the ranking and decision metrics of a set of scores (classification.py,
torchmetrics underneath), the operating point set from normal scores (threshold.py), and the
pixel-level metrics of anomaly maps against defect masks (pixel.py: pixel AUROC, AUPRO)."""

from rdcae.metrics.classification import as_probability, as_unit_interval, auc, aucs_by_kind, evaluate, per_defect_image
from rdcae.metrics.pixel import aupro, pixel_auroc, pro_curve
from rdcae.metrics.threshold import QuantileThreshold, detection_threshold

__all__ = ["QuantileThreshold", "as_probability", "as_unit_interval", "auc", "aucs_by_kind", "aupro",
           "detection_threshold", "evaluate", "per_defect_image", "pixel_auroc", "pro_curve"]
