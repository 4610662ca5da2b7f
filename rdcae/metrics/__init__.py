"""What rdcae measures: the ranking and decision metrics of a set of scores (classification.py,
torchmetrics underneath), the patch threshold set from normal scores (threshold.py), the image
operating point in false alarms per clean image (operating_point.py), and the pixel-level metrics of
anomaly maps against defect masks (pixel.py: pixel AUROC, AUPRO). Import from the file: this package
imports nothing, so that detection loads without torchmetrics."""
