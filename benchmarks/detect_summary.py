"""Whole-image results of a sweep, mean ± std over its runs per fabric.

    python benchmarks/detect_summary.py outputs/multirun/<sweep> [more folders] [--detect detect other_detect ...]

For every run folder that holds detect/evaluation.json (written by `python -m rdcae.detect model=<run>/model.pt
dataset=... output_dir=<run>/detect`) and metrics.json, prints one Markdown row per dataset and fabric: the
patch-level test AUC and F1 of the run, the image- and pixel-level metrics of its evaluation and the mean
seconds per image of its detections.csv; a row per variant where the sweep varied more than seed and fabric,
and per folder name given to --detect (default: detect), one per detect setting compared. std is the
population std over the runs (ddof=0), as in rdcae.report.
"""

from __future__ import annotations

import argparse
import csv
import json
from collections import defaultdict
from pathlib import Path

import numpy as np
from omegaconf import OmegaConf

from rdcae.paper.report import find_run_folders, swept_settings

COLUMNS = [("patch AUC", "test", "auc"), ("patch F1", "test", "f1"), ("image AUROC", "evaluation", "image_auroc"),
           ("image F1", "evaluation", "image_f1"), ("defect images flagged", "evaluation", "defect_images_flagged"),
           ("of them in most windows", "evaluation", "defect_images_flagged_throughout"),
           ("false alarms per clean image", "evaluation", "false_alarms_per_image"),
           ("pixel AUROC", "evaluation", "pixel_auroc"), ("AUPRO (30 % FPR)", "evaluation", "pixel_aupro"),
           ("seconds per image", "evaluation", "seconds")]


def seconds_per_image(folder: Path) -> float:
    with open(folder / "detections.csv") as f:
        return float(np.mean([float(row["seconds"]) for row in csv.DictReader(f) if row["verdict"] != "failed"]))


def main(folders: list[str], detects: list[str]) -> None:
    groups: dict[tuple, list[dict]] = defaultdict(list)
    evaluated = [run for folder in folders for run in find_run_folders(Path(folder))
                 if any((run / d / "evaluation.json").is_file() for d in detects)]
    settings = swept_settings(evaluated)  # the sweep's variants other than seed and fabric, one row each
    for run in evaluated:
        cfg = OmegaConf.load(run / "config.yaml")
        for detect in detects:
            if not (run / detect / "evaluation.json").is_file():
                continue
            key = (str(cfg.dataset.name), str(cfg.dataset.get("fabric", "")), settings[run], detect)
            groups[key].append({"test": json.loads((run / "metrics.json").read_text())["test"],
                                "evaluation": json.loads((run / detect / "evaluation.json").read_text())
                                | {"seconds": seconds_per_image(run / detect)}})
    print("| dataset | fabric | settings | detect | runs | defect / clean images | "
          + " | ".join(c[0] for c in COLUMNS) + " |")
    print("| --- " * (6 + len(COLUMNS)) + "|")
    for (dataset, fabric, setting, detect), runs in sorted(groups.items()):
        e = runs[0]["evaluation"]
        cells = []
        for _, where, key in COLUMNS:
            values = np.array([r[where].get(key, np.nan) for r in runs], dtype=float)  # nan: written before the key
            cells.append(f"{values.mean():.3f} ± {values.std():.3f}" if not key.startswith("defect_images_flagged")
                         else f"{values.mean():.1f} ± {values.std():.1f}")
        images = f"{e['defect_images']} / {e['normal_images']}"
        print(f"| {dataset} | {fabric} | {setting or 'default'} | {detect} | {len(runs)} | {images} | "
              + " | ".join(cells) + " |")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folders", nargs="+")
    parser.add_argument("--detect", nargs="+", default=["detect"], help="the detect output folders of each run")
    args = parser.parse_args()
    main(args.folders, args.detect)
