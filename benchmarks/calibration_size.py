"""How the threshold and F1 of trained runs depend on the number of calibration patches.

    python benchmarks/calibration_size.py outputs/multirun/<sweep> [more run or sweep folders]

For every run folder (config.yaml + model.pt) it draws the calibration set of the run's own
data again with dataset.n_calibration = 400, 1000, 2000 and 4000 (the run's random stream for
calibration windows), takes the run's threshold rule (the operating_point.quantile of
the calibration scores, with the exported detector's score), and prints the threshold, the two
largest calibration scores, F1 on the run's test set, the false alarms among its held-out
normals, and the largest held-out normal score. The network is the trained
one; only the calibration set changes. The 99.9 % quantile of 400 patches is their largest
score up to interpolation, so one unusual normal patch can set it.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from omegaconf import OmegaConf, open_dict
from torchmetrics.functional.classification import binary_f1_score

from rdcae.config import upgrade
from rdcae.inference import load_detector
from rdcae.metrics.threshold import QuantileThreshold
from rdcae.paper.report import find_run_folders
from rdcae.train import build

SIZES = (400, 1000, 2000, 4000)


def evaluate(folder: Path) -> list[str]:
    cfg = upgrade(OmegaConf.load(folder / "config.yaml"))
    detector = load_detector(folder / "model.pt")
    cells = []
    for n in SIZES:
        with open_dict(cfg):
            cfg.dataset.n_calibration = n
        with tempfile.TemporaryDirectory() as scratch:
            dm, _, _, _ = build(cfg, Path(scratch))
        calibration = detector.score(dm.calibration_x)
        quantile = QuantileThreshold(float(cfg.operating_point.quantile))
        quantile.update(calibration)
        threshold = quantile.compute()
        test = detector.score(dm.test_x)
        flagged, defect = test > threshold, dm.test_y.bool()
        # labels, not scores: torchmetrics would squash scores outside [0, 1]
        f1 = float(binary_f1_score(flagged.long(), dm.test_y))
        largest = " ".join(f"{v:.2f}" for v in calibration.topk(2).values.tolist())
        cells.append(f"n={n}: threshold {float(threshold):.3f} (largest {largest}) F1 {f1:.3f} "
                     f"FP {int((flagged & ~defect).sum())}")
    cells.append(f"largest held-out normal {float(test[~defect].max()):.2f}")
    return cells


def main(argv: list[str]) -> None:
    if not argv:
        raise SystemExit(__doc__)
    for root in map(Path, argv):
        for folder in find_run_folders(root):
            if (folder / "model.pt").is_file():
                print(folder, load_detector(folder / "model.pt").score_kind, " | ".join(evaluate(folder)), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
