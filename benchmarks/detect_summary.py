"""Whole-image results of a sweep, mean ± std over its runs per fabric.

    python benchmarks/detect_summary.py outputs/multirun/<sweep>

For every run folder that holds detect/evaluation.json (written by `python -m rdcae.detect model=<run>/model.pt
dataset=... output_dir=<run>/detect`) and metrics.json, prints one Markdown row per dataset and fabric: the
patch-level test AUC and F1 of the run, and the image- and pixel-level metrics of its evaluation; a row
per variant where the sweep varied more than seed and fabric. std is the
population std over the runs (ddof=0), as in rdcae.report.
"""

from __future__ import annotations

import json
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np
from omegaconf import OmegaConf

from rdcae.paper.report import find_run_folders, swept_settings

COLUMNS = [("patch AUC", "test", "auc"), ("patch F1", "test", "f1"), ("image AUROC", "evaluation", "image_auroc"),
           ("image F1", "evaluation", "image_f1"), ("defect images flagged", "evaluation", "defect_images_flagged"),
           ("false alarms per clean image", "evaluation", "false_alarms_per_image"),
           ("pixel AUROC", "evaluation", "pixel_auroc"), ("AUPRO (30 % FPR)", "evaluation", "pixel_aupro")]


def main(folders: list[str]) -> None:
    groups: dict[tuple, list[dict]] = defaultdict(list)
    evaluated = [run for folder in folders for run in find_run_folders(Path(folder))
                 if (run / "detect" / "evaluation.json").is_file()]
    settings = swept_settings(evaluated)  # the sweep's variants other than seed and fabric, one row each
    for run in evaluated:
        cfg = OmegaConf.load(run / "config.yaml")
        key = (str(cfg.dataset.name), str(cfg.dataset.get("fabric", "")), settings[run])
        groups[key].append({"test": json.loads((run / "metrics.json").read_text())["test"],
                            "evaluation": json.loads((run / "detect" / "evaluation.json").read_text())})
    print("| dataset | fabric | settings | runs | defect / clean images | " + " | ".join(c[0] for c in COLUMNS) + " |")
    print("| --- " * (5 + len(COLUMNS)) + "|")
    for (dataset, fabric, setting), runs in sorted(groups.items()):
        e = runs[0]["evaluation"]
        cells = []
        for _, where, key in COLUMNS:
            values = np.array([r[where][key] for r in runs], dtype=float)
            cells.append(f"{values.mean():.3f} ± {values.std():.3f}" if key != "defect_images_flagged"
                         else f"{values.mean():.1f} ± {values.std():.1f}")
        images = f"{e['defect_images']} / {e['normal_images']}"
        print(f"| {dataset} | {fabric} | {setting or 'default'} | {len(runs)} | {images} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    main(sys.argv[1:])
