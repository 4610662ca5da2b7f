"""Whole-image detection: an image → the run's preprocessing (the fabric region and its edge margin,
found on the image as read; its lighting evened out as in training; channels) → windows on the
training grid → their scores → an anomaly map at the image's size → the defect regions and a verdict.

The decision is the run's: a window is a defect when its score is above the threshold, and an
image is a defect when any of its windows is. With `overlap` (for models that carry its calibration;
off by default) the image is cut into the same tiles, but each tile is scored from the residual energy
of its pixels averaged over two grids of windows: the tiles' own and the grid shifted by half the patch
size down and across (two per pixel): a pixel's error then comes from two placements of the window, so
the texture's error at a window's border averages out and a defect's does not (docs/EXPERIMENTS.md,
entries 25 and 34). Model files written before the two grids averaged every window at half the patch
size's stride (four per pixel), as their calibration was scored; they keep that.

The threshold is the image operating point of rdcae.metrics.operating_point: the window score at which
clean images are flagged at the run's rate (operating_point.false_alarms_per_image), not the patch
threshold that lets 0.1 % of windows by; with overlap, from the averaged tiles of defect-free images.
Only windows lying wholly on fabric are scored, as only such windows were trained and calibrated on:
nothing outside the fabric is reported.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from skimage.measure import label, regionprops

from rdcae.data.images import read_image, to_channels
from rdcae.data.lighting import LIGHTING_ON_FABRIC, LIGHTING_REFERENCE, even_lighting, fabric_levels
from rdcae.data.region import AUTO, fabric_region, margin_setting
from rdcae.data.tiling import crop, grid, inside_at, stitch
from rdcae.metrics.operating_point import OVERLAP_WINDOWS
from rdcae.model.network import NetworkSpec, chunk_size_for
from rdcae.model.score import energy_score

# uint8 windows (K, C, P, P) → (scores (K,), energy (K, P, P)), numpy float32
PatchScoreFn = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]


@dataclass(frozen=True)
class Preprocessing:
    """How the run turned images into patches: what a detector must repeat on a new image."""

    channels: int
    patch_size: int
    exclude_background: bool = True
    edge_margin: int | str = 0  # pixels, or auto (rdcae.data.region)
    texture_borders: bool = False
    lighting: str = "none"
    image_channels: int | None = None  # the training images': 1 gray, 3 colour; None: not recorded (older files)
    # the lighting measured on the fabric alone, as training does now; from_config reads False from files
    # written before, which measured it over the whole image
    lighting_on_fabric: bool = True
    lighting_reference: float | None = None  # lighting "gain": the training images' fabric median

    @classmethod
    def from_config(cls, config: dict, spec: NetworkSpec) -> "Preprocessing":
        dataset = config.get("dataset", {}) or {}
        margin = margin_setting(dataset.get("edge_margin"))
        if margin is None:
            raise ValueError(f"the model file's dataset.edge_margin={dataset.get('edge_margin')!r} is neither whole "
                             "pixels nor auto: the file is damaged or from another rdcae version")
        return cls(channels=spec.channels, patch_size=spec.patch_size,
                   exclude_background=bool(dataset.get("exclude_background", True)),
                   edge_margin=margin,
                   texture_borders=bool(dataset.get("texture_borders", False)),
                   lighting=str(dataset.get("lighting", "none")),
                   image_channels=config.get("image_channels"),
                   lighting_on_fabric=bool(config.get(LIGHTING_ON_FABRIC, False)),
                   lighting_reference=config.get(LIGHTING_REFERENCE))


@dataclass(frozen=True)
class Region:
    """A connected defect region: its bounding box (x0, y0) inclusive to (x1, y1) exclusive, in
    pixels of the image, its area in pixels and its highest score."""

    x0: int
    y0: int
    x1: int
    y1: int
    area: int
    peak: float


@dataclass
class Detection:
    """What detect() says of one image.

    score         the image's score: the highest score of its windows
    threshold     the operating point the verdict used
    verdict       "defect" when score > threshold, else "ok"
    anomaly_map   (H, W) float32: each pixel the highest score of the windows covering it; NaN
                  where no scored window lies (outside the fabric)
    overlap       whether each window (tile) was scored from residuals averaged over overlapping windows
    fabric        (H, W) bool: the fabric region the run's preprocessing keeps
    regions       the connected regions of anomaly_map > threshold
    windows       windows scored; defect_windows: those above the threshold
    corners, window_scores  (K, 2) top-left (y, x) and (K,) score of every window scored
    levels        the median and spread of the gray levels on the fabric, as the camera saw them
                  (rdcae.data.lighting.fabric_levels); None where the run evens the lighting out
    """

    score: float
    threshold: float
    anomaly_map: np.ndarray
    fabric: np.ndarray
    regions: list[Region] = field(default_factory=list)
    windows: int = 0
    defect_windows: int = 0
    corners: np.ndarray | None = None
    window_scores: np.ndarray | None = None
    overlap: bool = False
    levels: tuple[float, float] | None = None

    @property
    def verdict(self) -> str:
        return "defect" if self.score > self.threshold else "ok"

    @property
    def defect_area(self) -> int:
        return sum(r.area for r in self.regions)


def overlap_grid(dense: np.ndarray, size: int, windows: int = OVERLAP_WINDOWS) -> np.ndarray:
    """Of the corners (D, 2) of the windows at half the patch size's stride, those averaged: all of them
    (`windows`=4 per pixel), or (2) the two grids whose corners are both even or both odd multiples of half
    the patch size, the tiles' own and the one shifted by half a patch down and across."""
    if windows == 4:
        return dense
    parity = (dense // max(1, size // 2)) % 2
    return dense[parity[:, 0] == parity[:, 1]]


def overlap_tile_scores(energy: np.ndarray, yx_dense: np.ndarray, yx: np.ndarray, shape: tuple[int, int], size: int,
                        kind: str = "norm", width: int = 4) -> np.ndarray:
    """The scores (K,) of the tiles at corners yx (K, 2) of an image of `shape`, each from the residual
    energy of its pixels averaged over the windows at yx_dense (D, 2) that cover them, whose energy is
    `energy` (D, P, P); `kind` and `width` are the run's score."""
    mean = stitch(energy, yx_dense, shape, size, reduce="mean")
    tiles = crop(mean[:, :, None], yx, size)[:, 0]  # (K, P, P)
    return energy_score(torch.from_numpy(np.ascontiguousarray(tiles, dtype=np.float32)), kind, width).numpy()


def overlap_windows_of(point) -> int:
    """The windows per pixel a model's overlap calibration averaged (OVERLAP_WINDOWS without an operating point)."""
    return point.overlap_windows if point is not None else OVERLAP_WINDOWS


class ImageDetector:
    """Detection on whole images with any patch scorer (PyTorch, onnxruntime, OpenVINO).

    overlap: score each tile from the residual energy averaged over the windows of two grids that cover it
    (module docstring) instead of its own window's; `overlap_windows` = 4 averages every window at stride
    P // 2 instead, as model files written before the two grids were calibrated; `score_kind` and
    `score_width` are the run's score, which the averaged energy is scored with."""

    def __init__(self, score_fn: PatchScoreFn, preprocessing: Preprocessing, threshold: float,
                 overlap: bool = False, score_kind: str = "norm", score_width: int = 4,
                 overlap_windows: int = OVERLAP_WINDOWS) -> None:
        self.score_fn, self.preprocessing, self.threshold = score_fn, preprocessing, float(threshold)
        self.overlap, self.score_kind, self.score_width = bool(overlap), score_kind, int(score_width)
        self.overlap_windows = int(overlap_windows)

    @classmethod
    def from_detector(cls, detector, chunk_size: int | None = None, threshold: float | None = None,
                      overlap: bool = False) -> "ImageDetector":
        """The PyTorch backend: the detector's PatchScorer on the device it was loaded to, `chunk_size` windows
        per forward pass (default: as many as suit that device);
        `threshold` (a window score) defaults to the detector's image operating point, for tiles scored
        over overlapping windows with `overlap`."""
        scorer = detector.scorer()
        device = detector.threshold.device
        chunk_size = chunk_size or chunk_size_for(device)

        @torch.no_grad()
        def score_fn(windows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            x = torch.from_numpy(windows)
            scores, energy = [], []
            for chunk in x.split(chunk_size):
                s, e = scorer(chunk.to(device).contiguous(memory_format=torch.channels_last))
                scores.append(s.cpu())
                energy.append(e.cpu())
            return torch.cat(scores).numpy(), torch.cat(energy).numpy()

        threshold = detector.image_threshold(overlap=overlap) if threshold is None else threshold
        return cls(score_fn, Preprocessing.from_config(detector.config, detector.spec), threshold, overlap,
                   detector.score_kind, detector.score_width, overlap_windows_of(detector.operating_point))

    @classmethod
    def from_exported(cls, scorer, threshold: float | None = None, overlap: bool = False) -> "ImageDetector":
        """An exported detector (rdcae.inference.onnx's OnnxScorer or OpenVinoScorer), with the preprocessing
        of the run config it carries; `threshold` (a window score) defaults to its image operating point,
        for tiles scored over overlapping windows with `overlap`."""
        threshold = scorer.image_threshold(overlap=overlap) if threshold is None else threshold
        return cls(scorer, Preprocessing.from_config(scorer.config, scorer.spec), threshold, overlap,
                   scorer.score_kind, scorer.score_width, overlap_windows_of(scorer.operating_point))

    def check_image(self, image: np.ndarray, name: str = "image") -> np.ndarray:
        """(H, W, C) uint8 from an (H, W) or (H, W, C) uint8 array; refuses what the run cannot take. An alpha
        channel is dropped, as the image reader drops it; a colour image becomes its luminance (H, W, 1) where the
        run trained on gray images, as its patches were."""
        p = self.preprocessing
        if not isinstance(image, np.ndarray) or image.dtype != np.uint8:
            kind = getattr(image, "dtype", type(image).__name__)
            raise ValueError(f"{name}: detect takes a uint8 image (H, W) or (H, W, C) as read from a file, got {kind}")
        if image.ndim == 2:
            image = image[:, :, None]
        if image.ndim == 3 and image.shape[2] in (2, 4):  # gray or RGB with alpha: as a file's, alpha is dropped
            image = np.ascontiguousarray(image[:, :, :image.shape[2] - 1])
        if image.ndim != 3 or image.shape[2] not in (1, 3):
            raise ValueError(f"{name}: an image of shape {image.shape} has no 1 (gray) or 3 (RGB) channels, "
                             "with or without alpha")
        if min(image.shape[:2]) < p.patch_size:
            raise ValueError(f"{name}: {image.shape[1]}x{image.shape[0]} pixels is smaller than the model's "
                             f"{p.patch_size}x{p.patch_size} patch")
        if p.image_channels == 1 and image.shape[2] == 3:
            image = np.ascontiguousarray(to_channels(image.transpose(2, 0, 1)[None], 1)[0].transpose(1, 2, 0))
        return image

    def corners(self, image: np.ndarray, stride: int | None = None, fabric: np.ndarray | None = None,
                ) -> tuple[np.ndarray, np.ndarray]:
        """Top-left corners (K, 2) of the windows at `stride` lying wholly on fabric, and the fabric region
        (H, W) bool the run's preprocessing finds on the image (unless given)."""
        p = self.preprocessing
        height, width = image.shape[:2]
        if fabric is None:
            fabric = (fabric_region(image, p.edge_margin, p.texture_borders) if p.exclude_background
                      else np.ones((height, width), bool))
        yx = grid(height, width, p.patch_size, stride or p.patch_size, cover=True)
        return yx[inside_at(fabric, yx, p.patch_size)], fabric

    def cut(self, image: np.ndarray, yx: np.ndarray, fabric: np.ndarray | None = None) -> np.ndarray:
        """uint8 windows (K, C, P, P) at corners yx of the image with its lighting evened out (measured on the
        `fabric` region (H, W) bool where given), in the run's channels."""
        p = self.preprocessing
        evened = even_lighting(image, p.lighting, fabric=fabric if p.lighting_on_fabric else None,
                               reference=p.lighting_reference)
        return to_channels(crop(evened, yx, p.patch_size), p.channels)

    def windows(self, image: np.ndarray, stride: int | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The windows the run would score: corners (K, 2), uint8 windows (K, C, P, P) of the image with its
        lighting evened out and the run's channels, and the fabric region (H, W) bool."""
        yx, fabric = self.corners(image, stride)
        return yx, self.cut(image, yx, fabric), fabric

    def tile_scores(self, image: np.ndarray, stride: int | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Corners (K, 2) and scores (K,) of the image's windows at `stride` (with overlap, of its tiles), and
        the fabric region (H, W) bool."""
        yx, fabric = self.corners(image, stride)
        if not len(yx):
            return yx, np.zeros(0, np.float32), fabric
        if not self.overlap:
            return yx, self.score_fn(self.cut(image, yx, fabric))[0], fabric
        size = self.preprocessing.patch_size
        dense = overlap_grid(self.corners(image, max(1, size // 2), fabric)[0], size, self.overlap_windows)
        # the residual is averaged over the windows the calibration used, at any stride; a tile with
        # pixels none of them covers (beside a bend of the fabric's edge, at an image's last row or
        # column of tiles) brings its own
        covered = ~np.isnan(stitch(np.ones(len(dense)), dense, image.shape[:2], size, reduce="max"))
        alone = ~inside_at(covered, yx, size)
        dense = np.concatenate([dense, yx[alone]]) if alone.any() else dense
        energy = self.score_fn(self.cut(image, dense, fabric))[1]
        return yx, overlap_tile_scores(energy, dense, yx, image.shape[:2], size, self.score_kind,
                                       self.score_width), fabric

    def detect(self, image, stride: int | None = None, threshold: float | None = None,
               name: str = "image") -> Detection:
        """Detect defects in one image: an (H, W) or (H, W, C) uint8 array, or the path of an image file;
        `name` is what an error about an array names (a path names itself)."""
        if isinstance(image, (str, Path)):
            name, image = str(image), read_image(image)
        image = self.check_image(image, name)
        if stride is not None and not 1 <= int(stride) <= self.preprocessing.patch_size:
            raise ValueError(f"stride={stride} must be between 1 and the patch size {self.preprocessing.patch_size}")
        threshold = self.threshold if threshold is None else float(threshold)
        yx, scores, fabric = self.tile_scores(image, stride)
        size = self.preprocessing.patch_size
        if not len(yx):
            margin = self.preprocessing.edge_margin
            bilevel = ("; its pixels are black or white alone (a bilevel image), which the region detection takes for "
                       "a blank border: give the camera's gray levels"
                       if np.isin(image, (0, 255)).all() and (image == 0).any() and (image == 255).any() else "")
            raise ValueError(f"{name}: no {size}x{size} window lies wholly on fabric (the run's region detection and "
                             f"edge margin {margin}{'' if margin == AUTO else ' px'}), so nothing could be inspected"
                             + bilevel)
        anomaly_map = stitch(scores, yx, image.shape[:2], size, reduce="max").astype(np.float32)
        with np.errstate(invalid="ignore"):
            defect = anomaly_map > threshold
        regions = []
        for region in regionprops(label(defect, connectivity=2)):
            y0, x0, y1, x1 = region.bbox
            peak = float(np.nanmax(anomaly_map[region.slice][region.image]))
            regions.append(Region(int(x0), int(y0), int(x1), int(y1), int(region.area), peak))
        return Detection(score=float(scores.max()), threshold=threshold,
                         anomaly_map=anomaly_map, fabric=fabric, regions=regions, windows=len(yx),
                         defect_windows=int((scores > threshold).sum()), corners=yx, window_scores=scores,
                         overlap=self.overlap,
                         # what the levels warning compares; a model that evens the lighting out has none to compare
                         levels=fabric_levels(image, fabric) if self.preprocessing.lighting == "none" else None)


def overlap_calibration(detector, images: list[np.ndarray], n_tiles: int) -> np.ndarray:
    """The calibration scores of the overlap mode: the tile scores (overlap_tile_scores) of defect-free
    `images` (H, W, C) uint8 never flagged as anything, as detection would score them, from images spread
    evenly over the list until about `n_tiles` tiles are scored. `detector` is a Detector."""
    size = detector.spec.patch_size
    images = [image for image in images if min(image.shape[:2]) >= size]  # the patches left them out too
    if not images:
        return np.zeros(0, np.float32)
    image_detector = ImageDetector.from_detector(detector, threshold=math.inf, overlap=True)
    point = detector.operating_point
    per_image = max(point.windows_per_image if point is not None else 1.0, 1.0)
    count = min(len(images), max(1, math.ceil(n_tiles / per_image)))
    chosen = np.unique(np.linspace(0, len(images) - 1, count).round().astype(int))
    scores = []
    for i in chosen:
        try:
            scores.append(image_detector.tile_scores(image_detector.check_image(images[i]))[1])
        except ValueError:  # no window wholly on its fabric: an image the patches found nothing in either
            continue
    return np.concatenate(scores).astype(np.float32) if scores else np.zeros(0, np.float32)
