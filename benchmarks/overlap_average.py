"""Tile scores from one window against scores from the residual averaged over overlapping windows.

    python benchmarks/overlap_average.py outputs/multirun/<sweep> [more run or sweep folders] [--stride 16] [--clean 40]

For every run folder (config.yaml + model.pt): every defect image of its dataset with a mask, and
clean images the run never saw (the `dataset.holdout_images` it kept out; on the embedded fabric,
`--clean` more defect-free images woven after the run's own), cut into tiles of the patch size on
fabric, as `rdcae.detect` does at its default stride. Each tile gets two scores with the run's
score (strip or norm), PyTorch fp32:

  single    the score of the tile's own window, as the detector computes it today;
  averaged  the same score of the residual energy Σ_c (x − x̂)² of each pixel averaged over every
            window at `--stride` that covers it (4 windows at stride 16 for 32-pixel patches);
  quincunx  the same over two of those grids only, the tiles' own and the one shifted by half a patch
            down and across (2 windows per pixel; what `rdcae.detect overlap=true` averages). Its
            seconds are estimated as half those of the single windows and half those of all windows
            at the stride (its windows are the tiles' and as many again); rdcae.bench times it.

Per score: the AUC of the defect tiles (any defect pixel; ≥ 5 % of the tile) against the clean
images' tiles, the share of defect tiles above the clean tiles' 99.9 % quantile (recall at 0.1 %
false alarms per tile), the image AUROC of the largest tile score, the defect images above every
clean image, and the seconds per image. One line per run and a Markdown table of mean ± std over
the seeds of each dataset and fabric (population std, as rdcae.report).
"""

from __future__ import annotations

import argparse
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch
from omegaconf import OmegaConf
from torchmetrics.functional.classification import binary_auroc

from rdcae.data.sources import held_out, load_sources
from rdcae.data.woven import generate
from rdcae.inference import load_detector
from rdcae.inference.image import ImageDetector, overlap_grid
from rdcae.model.score import strip_score
from rdcae.paper.report import find_run_folders

KINDS = ("single", "averaged", "quincunx")


def images(cfg, extra_clean: int) -> tuple[list, list]:
    """(clean images the run never saw, defect images with a mask)."""
    ds = cfg.dataset
    if ds.name == "woven":
        sources = generate(int(ds.seed), int(ds.n_normal_images) + extra_clean, int(ds.n_defect_images),
                           int(ds.height), int(ds.width), str(ds.weave))
        clean = [s for s in sources if s.role == "normal"][int(ds.n_normal_images):]
    else:
        sources = load_sources(ds)
        clean = held_out([s for s in sources if s.role == "normal"], int(ds.get("holdout_images") or 0))[1]
    defect = [s for s in sources if s.role == "defect" and s.mask is not None and s.mask.any()]
    return clean, defect


def score_of(energy: np.ndarray, kind: str, width: int) -> np.ndarray:
    e = torch.from_numpy(np.ascontiguousarray(energy, dtype=np.float32))
    return (e.flatten(1).sum(1).sqrt() if kind == "norm" else strip_score(e, width)).numpy()


def tiles(detector, image_detector: ImageDetector, source, stride: int) -> dict:
    """Both scores and the defect coverage of every tile of one image, and the seconds it took."""
    size = detector.spec.patch_size
    start = time.perf_counter()
    yx, windows, _ = image_detector.windows(source.image)
    single, _ = image_detector.score_fn(windows)
    seconds_single = time.perf_counter() - start
    start = time.perf_counter()
    yx_dense, windows_dense, _ = image_detector.windows(source.image, stride)
    _, energy = image_detector.score_fn(windows_dense)
    seconds_dense = time.perf_counter() - start

    def average(use: np.ndarray) -> np.ndarray:
        total, count = np.zeros(source.image.shape[:2]), np.zeros(source.image.shape[:2])
        for (y, x), e in zip(yx_dense[use], energy[use]):
            total[y:y + size, x:x + size] += e
            count[y:y + size, x:x + size] += 1
        mean = np.where(count > 0, total / np.maximum(count, 1), np.nan)
        tiles = np.stack([mean[y:y + size, x:x + size] for y, x in yx])
        # a tile no window of the chosen ones covers wholly keeps its own window's energy
        own = np.isnan(tiles).any((1, 2))
        tiles[own] = image_detector.score_fn(windows[own])[1] if own.any() else tiles[own]
        return score_of(tiles, detector.score_kind, int(detector.score_width))

    averaged = average(np.ones(len(yx_dense), bool))
    # the two grids of rdcae.detect's overlap mode: two windows per pixel
    two = {tuple(c) for c in overlap_grid(yx_dense, size).tolist()}
    quincunx = average(np.array([tuple(c) in two for c in yx_dense.tolist()], bool))
    mask = source.mask if source.mask is not None else np.zeros(source.image.shape[:2], bool)
    return {"single": single, "averaged": averaged, "quincunx": quincunx,
            "seconds": (seconds_single, seconds_dense, seconds_dense / 2 + seconds_single / 2),
            "coverage": np.array([mask[y:y + size, x:x + size].mean() for y, x in yx])}


def auroc(negative: np.ndarray, positive: np.ndarray) -> float:
    scores = torch.from_numpy(np.concatenate([negative, positive]).astype(np.float32))
    labels = torch.cat([torch.zeros(len(negative)), torch.ones(len(positive))]).long()
    return float(binary_auroc(scores, labels))


def measure(run: Path, stride: int, extra_clean: int) -> dict | None:
    cfg = OmegaConf.load(run / "config.yaml")
    clean, defect = images(cfg, extra_clean)
    if not clean or not defect:
        print(f"{run}: skipped, it needs clean images the run never saw (dataset.holdout_images) and defect images")
        return None
    detector = load_detector(run / "model.pt")
    image_detector = ImageDetector.from_detector(detector)
    clean_tiles = [tiles(detector, image_detector, s, stride) for s in clean]
    defect_tiles = [tiles(detector, image_detector, s, stride) for s in defect]
    coverage = np.concatenate([t["coverage"] for t in defect_tiles])
    row = {"dataset": str(cfg.dataset.name), "fabric": str(cfg.dataset.get("fabric", "") or ""),
           "clean": len(clean), "defect": len(defect)}
    for kind in KINDS:
        normal = np.concatenate([t[kind] for t in clean_tiles])
        scores = np.concatenate([t[kind] for t in defect_tiles])
        clean_max = np.array([t[kind].max() for t in clean_tiles])
        defect_max = np.array([t[kind].max() for t in defect_tiles])
        row[kind] = {
            "auc any": auroc(normal, scores[coverage > 0]),
            "auc 5%": auroc(normal, scores[coverage >= 0.05]),
            "recall at 0.1%": float((scores[coverage > 0] > np.quantile(normal, 0.999)).mean()),
            "image auroc": auroc(clean_max, defect_max),
            "images above every clean": float((defect_max > clean_max.max()).sum()),
            "seconds per image": float(np.mean([t["seconds"][KINDS.index(kind)] for t in clean_tiles + defect_tiles])),
        }
    print(run, {k: ({m: round(v, 4) for m, v in row[k].items()} if isinstance(row[k], dict) else row[k]) for k in row})
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folders", nargs="+")
    parser.add_argument("--stride", type=int, default=16, help="stride of the overlapping windows averaged")
    parser.add_argument("--clean", type=int, default=40, help="new clean images woven for an embedded-fabric run")
    args = parser.parse_args()
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for folder in args.folders:
        for run in find_run_folders(Path(folder)):
            if (run / "model.pt").is_file() and (row := measure(run, args.stride, args.clean)) is not None:
                groups[(row["dataset"], row["fabric"])].append(row)
    metrics = list(next(iter(groups.values()))[0]["single"]) if groups else []
    print("\n| dataset | fabric | runs | tile score | " + " | ".join(metrics) + " |")
    print("| --- " * (4 + len(metrics)) + "|")
    for (dataset, fabric), rows in sorted(groups.items()):
        for kind in KINDS:
            label = {"single": "one window", "averaged": f"averaged over windows at stride {args.stride}",
                     "quincunx": "averaged over two grids"}[kind]
            cells = [np.array([r[kind][m] for r in rows]) for m in metrics]
            print(f"| {dataset} | {fabric} | {len(rows)} | {label} | "
                  + " | ".join(f"{c.mean():.3f} ± {c.std():.3f}" for c in cells) + " |")


if __name__ == "__main__":
    main()
