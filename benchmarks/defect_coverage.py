"""Which real defect tiles a trained run finds, by how much of the tile the defect covers.

    python benchmarks/defect_coverage.py outputs/multirun/<sweep> [more run or sweep folders]
        [--same-defect-images-as <run>]

A test tile is a real defect when its mask has a defect pixel on fabric (`dataset.defect_rule=any`,
the paper's count), so a defect that ends a pixel past a tile border makes that tile a defect
too. For every run folder (config.yaml + model.pt) this rebuilds the run's test patches (from
the cache), scores them with the exported detector (the run's score and threshold, fp32) and
splits the defect tiles by coverage, the share of their pixels the mask marks. Per coverage bin:

  tiles   defect tiles in the bin;
  AUC     of those tiles against the held-out normal test patches;
  recall  the share of them above the run's threshold.

Per run also the defect images of the tiles covered at least 25 % that stay below the threshold.
Then the test F1 with every defect tile, and with only the tiles the defect covers at least
5 % of (the others left out of the test, as `dataset.defect_rule=fraction
dataset.defect_min_fraction=0.05` would; the embedded fabric's default), and the best F1 any
threshold would give on the run's test set (an upper bound on what an operating point can do
with this ranking; that threshold is chosen on the test labels, so it is not one a user could
set), and the F1 at lower quantiles of the run's calibration scores (`operating_point.quantile`
0.995 and 0.99 instead of 0.999: the patch operating point traded for recall) with the test
normals flagged there, and where the paper's threshold (the 99.9 % quantile of the defect-free
training patches' scores) falls among the calibration scores. Prints one line per run and a
Markdown table of mean ± std over the seeds of each dataset and fabric. With
`--same-defect-images-as <run>`, only the defect tiles of the defect images that run tests on count
(a run with dataset.unmarked_defect_images trains on its last defect images and tests on the others:
this scores clean runs on the same test set).
"""

from __future__ import annotations

import sys
import tempfile
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np
import torch
from omegaconf import OmegaConf
from torchmetrics.functional.classification import binary_f1_score, binary_precision_recall_curve

from rdcae.config import upgrade
from rdcae.inference import load_detector
from rdcae.metrics.classification import auc
from rdcae.paper.report import find_run_folders, summarize
from rdcae.train import build

BINS = ((0.0, 0.01), (0.01, 0.05), (0.05, 0.25), (0.25, 1.01))
MIN_COVERAGE = 0.05
LOWER_QUANTILES = (0.995, 0.99)


def label(low: float, high: float) -> str:
    return f"{low:.0%}–{min(high, 1):.0%}"


def datamodule(folder: Path):
    cfg = upgrade(OmegaConf.load(folder / "config.yaml"))
    with tempfile.TemporaryDirectory() as scratch:
        dm, _, _, _ = build(cfg, Path(scratch))
        dm.setup()
    return dm


def evaluate(folder: Path, images: set[str] | None = None) -> dict:
    dm = datamodule(folder)
    detector = load_detector(folder / "model.pt").eval()
    scores = detector.score(dm.test_x)
    defect = dm.test_y.bool()
    names, source = dm.patches.stats.get("defect_images", []), dm.patches.test_defect_source
    if images is not None:  # only the tiles of these defect images count as defects
        tiles = np.array([i >= 0 and names[i] in images for i in source], bool)
        keep = torch.ones(len(scores), dtype=torch.bool)
        keep[defect.nonzero().flatten()[~torch.from_numpy(tiles)]] = False
        scores, defect, source = scores[keep], defect[keep], source[tiles]
        mask = dm.patches.test_defect_mask[tiles]
    else:
        mask = dm.patches.test_defect_mask
    normal_scores, defect_scores = scores[~defect], scores[defect]
    coverage = torch.from_numpy(mask).flatten(1).float().mean(1)
    threshold = float(detector.threshold)
    out = {}
    for low, high in BINS:
        inside = (coverage >= low) & (coverage < high)
        if not inside.any():
            continue
        chosen = defect_scores[inside]
        out[label(low, high)] = {"tiles": int(inside.sum()), "auc": auc(normal_scores, chosen),
                                 "recall": float((chosen > threshold).float().mean())}
    missed = ((defect_scores <= threshold) & (coverage >= BINS[-1][0])).numpy()
    out["missed, covered ≥ 25 %"] = dict(Counter(names[i] if i >= 0 else "?" for i in source[missed]).most_common())
    keep = torch.cat([torch.ones(len(normal_scores), dtype=torch.bool), coverage >= MIN_COVERAGE])
    truth = torch.cat([torch.zeros(len(normal_scores)), torch.ones(len(defect_scores))]).long()
    ordered = torch.cat([normal_scores, defect_scores])
    flagged = (ordered > threshold).long()  # labels, not scores: torchmetrics would squash scores outside [0, 1]
    out["f1"] = float(binary_f1_score(flagged, truth))
    out[f"f1 (≥ {MIN_COVERAGE:.0%})"] = float(binary_f1_score(flagged[keep], truth[keep]))
    out["f1 at the best threshold"] = best_f1(ordered, truth)
    if len(dm.calibration_x):
        calibration = detector.score(dm.calibration_x).double()
        for q in LOWER_QUANTILES:
            at = float(torch.quantile(calibration, q))
            out[f"f1 at quantile {q}"] = float(binary_f1_score((ordered > at).long(), truth))
            out[f"normals flagged at quantile {q}"] = int((normal_scores > at).sum())
        paper = torch.quantile(detector.score(dm.train_x[~dm.train_synthetic]).double(), 0.999)
        out["calibration quantile of the paper's threshold"] = float((calibration <= paper).double().mean())
    return out


def best_f1(scores: torch.Tensor, truth: torch.Tensor) -> float:
    """The highest F1 over every threshold on these scores (thresholds=None: each distinct score)."""
    # scaled into [0, 1] first: torchmetrics reads scores outside it as logits and squashes them
    scaled = (scores.double() - scores.min()) / (scores.max() - scores.min()).clamp_min(1e-12)
    precision, recall, _ = binary_precision_recall_curve(scaled, truth, thresholds=None)
    f1 = 2 * precision * recall / (precision + recall).clamp_min(1e-12)
    return float(f1.max())


def main(argv: list[str]) -> None:
    if not argv:
        raise SystemExit(__doc__)
    images = None
    if "--same-defect-images-as" in argv:
        at = argv.index("--same-defect-images-as")
        reference = datamodule(Path(argv[at + 1]))
        images = {reference.patches.stats["defect_images"][i] for i in set(reference.patches.test_defect_source)}
        argv = argv[:at] + argv[at + 2:]
    groups: dict[str, list[dict]] = defaultdict(list)
    for root in map(Path, argv):
        for folder in find_run_folders(root):
            if not (folder / "model.pt").is_file():
                continue
            cfg = upgrade(OmegaConf.load(folder / "config.yaml"))
            result = evaluate(folder, images)
            groups[f"{cfg.dataset.name} {cfg.dataset.get('fabric', '')} {root.name}"].append(result)
            print(folder, " | ".join(f"{k} {v}" for k, v in result.items()), flush=True)
    print()
    print("| runs | coverage | tiles | AUC | recall |")
    print("| --- | --- | --- | --- | --- |")
    for name, runs in groups.items():
        for low, high in BINS:
            key = label(low, high)
            rows = [r[key] for r in runs if key in r]
            if not rows:
                continue
            cells = [f"{summarize([r[k] for r in rows])[0]:.3f} ± {summarize([r[k] for r in rows])[1]:.3f}"
                     for k in ("auc", "recall")]
            print(f"| {name} ({len(runs)}) | {key} | {rows[0]['tiles']} | " + " | ".join(cells) + " |")
    print()
    for name, runs in groups.items():
        cells = [f"{k} {summarize([r[k] for r in runs])[0]:.3f} ± {summarize([r[k] for r in runs])[1]:.3f}"
                 for k in runs[0] if k.startswith(("f1", "normals", "calibration"))]
        print(f"{name} ({len(runs)} runs): " + ", ".join(cells))


if __name__ == "__main__":
    main(sys.argv[1:])
