"""Whether context beyond one window finds the embedded fabric's thick bar: two probes on a trained
embedded (dataset=woven) run, judged against clean images of the same fabric the run never saw.

    python benchmarks/context_probe.py outputs/runs/<embedded run> [--clean 12]

The run's fabric (dataset.seed) is woven again with `--clean` more defect-free images (those after
the run's own, never trained on) and the run's defect images.

  row profile   no network: the mean gray level of each image row over the fabric, less its running
                median over 65 rows, averaged over k rows (k = 4, 8, 16); an image's value is its
                largest |deviation| in units of the clean images' deviation std. A bar across the
                whole width moves its rows' mean; the weave's own weft-to-weft spread moves it too.
  tile runs     the run's window scores on the stride-32 grid (divided by its patch threshold); a
                tile's context is the highest mean score over the runs of m tiles along its row or
                its column that contain it (m = 4, 8, 16). A bar puts a whole row of tiles a little
                above the normals; so does an uneven weft.

Prints, per probe and setting, the clean images' largest values and, per defect image, how many of
its defect tiles (by the run's dataset.defect_min_fraction, 5 % on the woven data) lie above the largest
clean value.
"""

from __future__ import annotations

import argparse

import numpy as np
from omegaconf import OmegaConf
from scipy.ndimage import maximum_filter1d, median_filter, uniform_filter1d

from rdcae.data.region import fabric_region
from rdcae.data.woven import generate
from rdcae.inference.detector import load_detector
from rdcae.inference.image import ImageDetector


def row_deviation(image: np.ndarray, texture_borders: bool, k: int, trend: int = 65) -> np.ndarray:
    """(H,) the row means over the fabric, less their running median, averaged over k rows."""
    gray, fabric = image[..., 0].astype(float), fabric_region(image, 0, texture_borders)
    means = (gray * fabric).sum(1) / np.maximum(fabric.sum(1), 1)
    deviation = means - median_filter(means, size=trend, mode="reflect")
    return uniform_filter1d(deviation, k, mode="reflect")


def tile_scores(detector: ImageDetector, threshold: float, image: np.ndarray) -> np.ndarray:
    """(H/P, W/P) window scores on the stride-P grid over the threshold; NaN off fabric."""
    size = detector.preprocessing.patch_size
    detection = detector.detect(image)
    grid = np.full((image.shape[0] // size, image.shape[1] // size), np.nan)
    grid[detection.corners[:, 0] // size, detection.corners[:, 1] // size] = detection.window_scores / threshold
    return grid


def tile_context(grid: np.ndarray, m: int) -> np.ndarray:
    """Per tile, the highest mean over the runs of m tiles along its row or column that contain it."""
    out = np.full(grid.shape, -np.inf)
    for axis in (0, 1):
        if grid.shape[axis] < m:
            continue
        run_mean = uniform_filter1d(grid, m, axis=axis, mode="nearest")
        out = np.maximum(out, maximum_filter1d(run_mean, m, axis=axis, mode="nearest"))
    return out


def defect_tiles(mask: np.ndarray, shape: tuple[int, int], size: int, min_fraction: float) -> np.ndarray:
    """(H/P, W/P) the tiles the run's test set counts as defects (dataset.defect_min_fraction of their pixels)."""
    h, w = shape
    fraction = mask[: h * size, : w * size].reshape(h, size, w, size).mean((1, 3))
    return (fraction > 0) & (fraction >= min_fraction)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run")
    parser.add_argument("--clean", type=int, default=12, help="defect-free images the run never saw")
    args = parser.parse_args()
    config = OmegaConf.load(f"{args.run}/config.yaml")
    ds = config.dataset
    if ds.name != "woven":
        parser.error(f"{args.run} trained on dataset {ds.name}; this probe weaves the embedded fabric again")
    images = generate(int(ds.seed), int(ds.n_normal_images) + args.clean, int(ds.n_defect_images), int(ds.height),
                      int(ds.width), str(ds.weave))
    clean = [s for s in images if s.role == "normal"][int(ds.n_normal_images):]
    defect = [s for s in images if s.role == "defect"]
    texture = bool(ds.get("texture_borders", False))

    print("row profile (no network): largest |deviation| per image, in clean-deviation stds")
    for k in (4, 8, 16):
        clean_rows = [row_deviation(s.image, texture, k) for s in clean]
        std = np.concatenate(clean_rows).std()
        worst = max(np.abs(r).max() for r in clean_rows) / std
        found = [f"{s.path.rsplit('/', 1)[-1]} {np.abs(row_deviation(s.image, texture, k)).max() / std:.1f}"
                 for s in defect]
        print(f"  k={k:2d}: clean images up to {worst:.1f}; " + ", ".join(found))

    detector = load_detector(f"{args.run}/model.pt")
    image_detector = ImageDetector.from_detector(detector)
    threshold = float(detector.threshold)
    size = image_detector.preprocessing.patch_size
    clean_grids = [tile_scores(image_detector, threshold, s.image) for s in clean]
    defect_grids = [tile_scores(image_detector, threshold, s.image) for s in defect]
    print("tile runs (the run's scores / its patch threshold): defect tiles above every clean tile's context")
    for m in (4, 8, 16):
        worst = max(np.nanmax(tile_context(g, m)) for g in clean_grids)
        found = []
        for s, grid in zip(defect, defect_grids):
            tiles = defect_tiles(s.mask, grid.shape, size, float(ds.defect_min_fraction)) & ~np.isnan(grid)
            context = tile_context(grid, m)
            found.append(f"{s.path.rsplit('/', 1)[-1]} {int((context[tiles] > worst).sum())}/{int(tiles.sum())}")
        print(f"  m={m:2d}: clean images up to {worst:.2f}; " + ", ".join(found))


if __name__ == "__main__":
    main()
