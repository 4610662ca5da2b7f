"""How the image operating point holds on the clean images a sweep's runs never saw.

    python benchmarks/image_operating_point.py outputs/multirun/<sweep> [false_alarms_per_image ...]

For every run folder with a model.pt that carries an image operating point and a config with
dataset.holdout_images > 0: the image threshold at each rate asked for (default: the model's), the
clean held-out images and the defect images it flags (stride = patch size, PyTorch fp32), the same
for the patch threshold, and a check of the tail the threshold is extrapolated from: at the window
scores the exponential tail puts at 1e-2, 1e-3 and 1e-4 of the normal windows, the share of the
held-out images' windows (stride 8) above them. Windows are scored alone (`overlap=false`); where the
model carries the calibration of the overlap mode, its operating points and its tail (tiles at stride
16, each averaged over the windows its calibration averaged) follow as rows of their own. One Markdown table per part,
mean ± std over the runs of each fabric (population std, as rdcae.report).
"""

from __future__ import annotations

import sys
from collections import defaultdict
from pathlib import Path

import numpy as np
from omegaconf import OmegaConf

from rdcae.data.sources import held_out, load_sources, quiet_data
from rdcae.inference import load_detector
from rdcae.inference.image import ImageDetector
from rdcae.metrics.operating_point import has_overlap, tail_threshold
from rdcae.paper.report import find_run_folders, swept_settings

LEVELS = (1e-2, 1e-3, 1e-4)


def measure(run: Path, rates: list[float]) -> dict | None:
    cfg = OmegaConf.load(run / "config.yaml")
    detector = load_detector(run / "model.pt")
    point = detector.operating_point
    if point is None or not int(cfg.dataset.get("holdout_images") or 0):
        return None
    sources = load_sources(cfg.dataset)
    clean = held_out([s for s in sources if s.role == "normal"], int(cfg.dataset.holdout_images))[1]
    defect = [s for s in sources if s.role == "defect" and s.mask is not None and s.mask.any()]
    row = {"fabric": str(cfg.dataset.get("fabric", "")), "dataset": str(cfg.dataset.name), "clean": len(clean),
           "defect": len(defect), "windows": point.windows_per_image,
           "quantile": float(cfg.get("operating_point", {}).get("quantile", 0.999))}
    for overlap in (False, True) if has_overlap(point) else (False,):
        images = ImageDetector.from_detector(detector, overlap=overlap)
        mode = " (overlap)" if overlap else ""
        clean_max = np.array([images.detect(s.image).score for s in clean])
        defect_max = np.array([images.detect(s.image).score for s in defect])
        dense = np.concatenate([images.detect(s.image, stride=16 if overlap else 8).window_scores for s in clean])
        points = [(f"{r:g}{mode}", point.threshold(r, overlap=overlap)) for r in rates]
        for name, t in points + ([] if overlap else [("patch", float(detector.threshold))]):
            row[name] = {"threshold": t, "clean_flagged": float((clean_max > t).mean()),
                         "defect_flagged": float((defect_max > t).sum()),
                         "predicted": point.false_alarms_at(t, overlap=overlap)}
        calibration = point.scores_for(overlap)
        for level in LEVELS:
            t = tail_threshold(calibration, level)
            row[f"tail {level:g}{mode}"] = {"held_out": float((dense > t).mean()),
                                            "calibration": float((calibration > t).mean())}
    return row


def cell(values) -> str:
    values = np.asarray(values, dtype=float)
    return f"{values.mean():.3g} ± {values.std():.2g}"


def main(folder: str, rates: list[float]) -> None:
    runs = [r for r in find_run_folders(Path(folder)) if (r / "model.pt").is_file()]
    if not rates:
        points = [load_detector(r / "model.pt").operating_point for r in runs]
        rates = sorted({p.false_alarms_per_image for p in points if p is not None})
    groups: dict[tuple, list[dict]] = defaultdict(list)
    settings = swept_settings(runs)  # the sweep's variants other than seed and fabric, one group each
    for run in runs:
        with quiet_data():  # the data's notes were shown when the runs trained
            row = measure(run, rates)
        if row is not None:
            groups[(row["dataset"], row["fabric"], settings[run])].append(row)
    print("| dataset | fabric | settings | runs | operating point | window threshold | clean images flagged | "
          "predicted | defect images flagged |")
    print("| --- " * 9 + "|")
    for (dataset, fabric, setting), rows in sorted(groups.items()):
        labels = [(f"{r:g}", f"{r:g} false alarms per image") for r in rates]
        labels += [("patch", f"patch threshold ({100 * rows[0]['quantile']:g} % quantile)")]
        labels += [(f"{r:g} (overlap)", f"{r:g} false alarms per image, overlap") for r in rates
                   if f"{r:g} (overlap)" in rows[0]]
        for name, label in labels:
            print(f"| {dataset} | {fabric} | {setting or 'default'} | {len(rows)} | {label} | "
                  f"{cell([r[name]['threshold'] for r in rows])} | "
                  f"{cell([r[name]['clean_flagged'] for r in rows])} of {rows[0]['clean']} | "
                  f"{cell([r[name]['predicted'] for r in rows])} | "
                  f"{cell([r[name]['defect_flagged'] for r in rows])} of {rows[0]['defect']} |")
    print()
    print("| dataset | fabric | settings | windows | tail level | held-out windows above (stride 8; overlap: 16) | "
          "calibration windows above |")
    print("| --- " * 7 + "|")
    for (dataset, fabric, setting), rows in sorted(groups.items()):
        for mode in ("", " (overlap)"):
            for level in LEVELS:
                key = f"tail {level:g}{mode}"
                if key not in rows[0]:
                    continue
                print(f"| {dataset} | {fabric} | {setting or 'default'} | {'overlap' if mode else 'alone'} | "
                      f"{level:g} | {cell([r[key]['held_out'] for r in rows])} | "
                      f"{cell([r[key]['calibration'] for r in rows])} |")


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    main(sys.argv[1], [float(a) for a in sys.argv[2:]])
