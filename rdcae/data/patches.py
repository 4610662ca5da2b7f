"""Patches the paper's way (sections 4.2–4.3), for every dataset alike, prepared once and cached.

- normal patches: `n_normal` windows at random positions (fixed seed) of the defect-free
  images, then split `train_fraction` / rest into train and test;
- more training windows: with `n_train` above the split's training share, further windows of
  the defect-free images on a random stream of their own top the training set up to `n_train`
  (the paper's windows and its test split stay as they are);
- calibration patches: `n_calibration` further windows of the defect-free images, drawn with
  their own random stream (the `n_normal` windows stay the paper's); never trained on, they
  set the detection threshold (rdcae.metrics.threshold);
- real defect patches (test only): the defect images tiled into non-overlapping windows from
  the image origin (rdcae.data.tiling, which keeps each tile's position); a tile is a defect
  when its mask has defect pixels (`defect_rule`);
- unmarked defects (`unmarked_defect_images`, default 0): the last k defect images join the
  defect-free ones for the training windows alone, their defects unmarked, as when a line's
  "good" images were not all checked; they leave the test set, and the test normals and the
  calibration patches stay on the checked images (what S is meant to absorb: docs/EXPERIMENTS.md);
- normal windows must lie entirely on fabric (`rdcae.data.region`); defect tiles must have
  defect pixels on fabric. `edge_margin` (pixels, default 0) shrinks the fabric away from the
  bands, which leaves AITEX's selvedge strip out of every set; `texture_borders` also finds
  borders that are not blank (another surface, an edge line).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from omegaconf import OmegaConf

from rdcae.data.images import IMAGE_SUFFIXES, SEEN, fingerprint
from rdcae.data.lighting import FABRIC_LEVELS, LIGHTING_REFERENCE, even_lighting, fabric_levels, levels_range
from rdcae.data.lighting import MODES as LIGHTING_MODES
from rdcae.data.region import fabric_region, margin_setting
from rdcae.data.sources import SourceImage, calibration_count, held_out, holdout_count, load_sources, unmarked
from rdcae.data.tiling import crop, grid, windows_inside
from rdcae.errors import ConfigError, DataError

log = logging.getLogger(__name__)

CACHE_VERSION = 8  # 2: calibration patches; 3: defect tile positions; 4: windows per image; 5: fenced borders;
# 6: the fingerprints of the images trained or calibrated on; 7: the lighting measured on the fabric, edge_margin=auto;
# 8: the gray levels of the training images' fabric

# Real defect patches the paper reports per dataset (section 5.2), printed beside ours.
PAPER_DEFECT_PATCHES = {"aitex/00": 46, "aitex/01": 404, "aitex/02": 135, "aitex/03": 690, "aitex/04": 34,
                        "aitex/06": 10}


@dataclass
class PatchSet:
    """All patches of one run, uint8 (N, C, P, P) with the dataset's native channels."""

    train_normal: np.ndarray
    test_normal: np.ndarray
    test_defect: np.ndarray
    test_defect_mask: np.ndarray  # (K, P, P) bool
    stats: dict = field(default_factory=dict)
    calibration_normal: np.ndarray | None = None  # (Q, C, P, P); None: no calibration patches
    test_defect_source: np.ndarray | None = None  # (K,) index into stats["defect_images"]; None: unknown (-1)
    # (K, 2) top-left (y, x) of each tile in its image; None: unknown (-1)
    test_defect_position: np.ndarray | None = None

    def __post_init__(self) -> None:
        if self.calibration_normal is None:
            self.calibration_normal = np.zeros((0, *self.train_normal.shape[1:]), dtype=np.uint8)
        if self.test_defect_source is None:
            self.test_defect_source = np.full(len(self.test_defect), -1, dtype=np.int32)
        if self.test_defect_position is None:
            self.test_defect_position = np.full((len(self.test_defect), 2), -1, dtype=np.int64)


def fabric_of(src: SourceImage, edge_margin: int | str = 0, texture_borders: bool = False) -> np.ndarray:
    """The fabric region of a source (H, W) bool: the one found before its lighting was evened out, or
    rdcae.data.region's on its image."""
    return src.fabric if src.fabric is not None else fabric_region(src.image, edge_margin, texture_borders)


def holds_patch(src: SourceImage, size: int) -> bool:
    """Whether an image holds a `size`-pixel window at all (one that does not is not used)."""
    return min(src.image.shape[:2]) >= size


def normal_positions(
    sources: list[SourceImage], size: int, exclude_background: bool = True, edge_margin: int | str = 0,
    texture_borders: bool = False, what: str = "normal"
) -> tuple[list[np.ndarray], dict]:
    """Every allowed top-left corner (K_i, 2) of a P×P window in each normal source, and counts; `what` the
    sources are, as an error names them."""
    positions, excluded, skipped, inspected = [], 0, [], []
    for src in sources:
        h, w = src.image.shape[:2]
        if not holds_patch(src, size):
            skipped.append(src.path)
            log.warning("%s: image %dx%d is smaller than patch_size=%d; not used", src.path, w, h, size)
            positions.append(np.zeros((0, 2), dtype=np.int64))
            continue
        allowed = (fabric_of(src, edge_margin, texture_borders) if exclude_background
                   else np.ones((h, w), dtype=bool))
        if src.mask is not None:  # a defect image lent as a normal source: keep away from its defects
            allowed &= ~src.mask
        ok = windows_inside(allowed, size)
        excluded += ok.size - int(ok.sum())
        positions.append(np.argwhere(ok))
        yx = grid(h, w, size, cover=True)  # the windows whole-image detection scores (rdcae.inference.image)
        inspected.append(int(ok[yx[:, 0], yx[:, 1]].sum()))
    total = sum(len(p) for p in positions)
    if total == 0:
        names = ", ".join(str(src.path) for src in sources[:3]) + (", ..." if len(sources) > 3 else "")
        raise DataError(
            f"no {size}x{size} window lies entirely on fabric in the {len(sources)} {what} image(s) ({names}); "
            "check data_dir, patch_size or dataset.exclude_background"
        )
    return positions, {"normal_positions": total, "normal_positions_excluded": excluded,
                       "normal_images_too_small": skipped,
                       # the image operating point's n: windows of a normal image on fabric, at stride P
                       "windows_per_image": float(np.mean([n for n in inspected if n])) if any(inspected) else 0.0}


def draw_positions(positions: list[np.ndarray], n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """n window corners drawn uniformly over `positions` (from `normal_positions`): the index of each
    one's image (n,) and its top-left corner (n, 2)."""
    counts = np.array([len(p) for p in positions])
    flat = rng.choice(int(counts.sum()), size=n, replace=n > counts.sum())
    image_of = np.searchsorted(np.cumsum(counts), flat, side="right")
    yx = np.zeros((n, 2), dtype=np.int64)
    for i in np.unique(image_of):
        pick = image_of == i
        yx[pick] = positions[i][flat[pick] - (counts[:i].sum())]
    return image_of, yx


def crop_drawn(images: list[np.ndarray], image_of: np.ndarray, yx: np.ndarray, size: int) -> np.ndarray:
    """The windows (n, C, P, P) at the corners `draw_positions` drew, from (H, W, C) images."""
    patches = np.empty((len(yx), images[0].shape[2], size, size), dtype=images[0].dtype)
    for i in np.unique(image_of):
        pick = image_of == i
        patches[pick] = crop(images[i], yx[pick], size)
    return patches


def draw_windows(sources: list[SourceImage], positions: list[np.ndarray], n: int, size: int,
                 rng: np.random.Generator) -> np.ndarray:
    """n windows (n, C, P, P) drawn uniformly over `positions` (from `normal_positions`)."""
    return crop_drawn([s.image for s in sources], *draw_positions(positions, n, rng), size)


def tile_defect_patches(
    sources: list[SourceImage], size: int, rule: str = "any", min_fraction: float = 0.0,
    exclude_background: bool = True, edge_margin: int | str = 0, texture_borders: bool = False
) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict]:
    """Non-overlapping P×P tiles from the origin of each defect image; keep the defective ones.
    Returns the tiles (K, C, P, P), their masks (K, P, P), the index of each tile's image in
    `sources` (K,), their top-left corners (K, 2), and counts."""
    patches, masks, origin, corners, excluded, all_zero = [], [], [], [], 0, []
    for index, src in enumerate(sources):
        h, w = src.image.shape[:2]
        th, tw = h // size, w // size
        if th == 0 or tw == 0:
            log.warning("%s: image %dx%d is smaller than patch_size=%d; not used", src.path, w, h, size)
            continue
        mask = src.mask[: th * size, : tw * size].reshape(th, size, tw, size)
        fraction = mask.mean(axis=(1, 3))  # (th, tw)
        defective = fraction > 0 if rule == "any" else (fraction > 0) & (fraction >= min_fraction)
        if not src.mask.any():
            all_zero.append(src.path)
        if exclude_background:
            # A defect tile stays when its defect touches fabric, even if the tile straddles the
            # band edge (AITEX 0102_010_03 has two such tiles; the paper's 690 counts them).
            on_fabric = ((src.mask & fabric_of(src, edge_margin, texture_borders))[: th * size, : tw * size]
                         .reshape(th, size, tw, size).any(axis=(1, 3)))
            excluded += int((defective & ~on_fabric).sum())
            defective &= on_fabric
        yx = grid(h, w, size)[defective.ravel()]  # the grid runs row by row, as defective does
        patches.append(crop(src.image, yx, size))
        masks.append(crop(src.mask[..., None], yx, size)[:, 0])
        origin.append(np.full(len(yx), index, dtype=np.int32))
        corners.append(yx)
    channels = sources[0].image.shape[2] if sources else 1
    patches = np.concatenate(patches) if patches else np.zeros((0, channels, size, size), np.uint8)
    masks = np.concatenate(masks) if masks else np.zeros((0, size, size), bool)
    origin = np.concatenate(origin) if origin else np.zeros(0, np.int32)
    corners = np.concatenate(corners) if corners else np.zeros((0, 2), np.int64)
    return patches, masks, origin, corners, {"defect_tiles_excluded": excluded,
                                             "defect_images_without_defect_pixels": all_zero}


def add_unmarked_windows(train_normal: np.ndarray, unmarked: list[SourceImage], positions: list[np.ndarray],
                         size: int, ds, rng: np.random.Generator) -> tuple[np.ndarray, dict]:
    """The training windows with those of the `unmarked` defect images added, as many per window on
    fabric as the checked images give, their defects unmarked; and how many of them hold defect pixels,
    with their indices in the training set (what S should take: benchmarks/unmarked_s.py)."""
    images = [SourceImage(s.path, s.image, "normal", None, s.group, s.fabric) for s in unmarked]
    where, _ = normal_positions(images, size, ds.exclude_background, margin_setting(ds.get("edge_margin")),
                                bool(ds.get("texture_borders", False)))
    n = int(round(len(train_normal) * sum(map(len, where)) / sum(map(len, positions))))
    drawn = draw_positions(where, n, np.random.default_rng(rng.integers(2**63)))
    windows = crop_drawn([s.image for s in unmarked], *drawn, size)
    masks = [(s.mask if s.mask is not None else np.zeros(s.image.shape[:2], bool))[:, :, None] for s in unmarked]
    defective = crop_drawn(masks, *drawn, size).any(axis=(1, 2, 3))
    return np.concatenate([train_normal, windows]), {
        "unmarked_windows": n, "unmarked_defect_windows": int(defective.sum()),
        "unmarked_defect_indices": (len(train_normal) + np.flatnonzero(defective)).tolist()}


def display_name(path: str, data_dir: str | None) -> str:
    """`path` relative to data_dir when it lies there (MVTec names repeat across defect types)."""
    try:
        return str(Path(path).relative_to(Path(str(data_dir)).expanduser()))
    except ValueError:
        return str(path)


def _source_fingerprint(data_dir: str | None) -> list:
    """(path, size, mtime) of every image under data_dir, so the cache notices changed files."""
    if not data_dir or not Path(data_dir).is_dir():
        return []
    files = sorted(p for p in Path(data_dir).rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    return [(str(p.relative_to(data_dir)), p.stat().st_size, p.stat().st_mtime_ns) for p in files]


def cache_key(cfg) -> str:
    """Everything that changes the patches: the dataset node, patch size, seed and the source files."""
    dataset = OmegaConf.to_container(cfg.dataset, resolve=True)
    payload = {"version": CACHE_VERSION, "dataset": dataset, "patch_size": cfg.patch_size, "seed": cfg.seed,
               "files": _source_fingerprint(dataset.get("data_dir") if dataset.get("name") != "woven" else None)}
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:16]


def check_patch_settings(cfg) -> None:
    """Refuse, naming the setting, what `build_patches` cannot cut (rdcae.config calls this before any work)."""
    ds, size = cfg.dataset, cfg.patch_size
    numbers = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (ds.n_normal, ds.train_fraction))
    split = round(ds.train_fraction * ds.n_normal) if numbers else 0  # the training windows of the paper's split
    calibration_images = ds.get("calibration_images", 0)
    checks = [
        (isinstance(size, int) and size > 0 and size % 8 == 0, f"patch_size={size} must be a positive multiple of 8"),
        (cfg.get("channels", 3) in (1, 3),
         f"channels={cfg.get('channels')} must be 1 (gray) or 3 (gray replicated / RGB)"),
        (0 < ds.train_fraction < 1, f"dataset.train_fraction={ds.train_fraction} must be in (0, 1)"),
        (isinstance(ds.n_normal, int) and ds.n_normal >= 2,
         f"dataset.n_normal={ds.n_normal} must be a whole number >= 2: the defect-free patches, "
         "split into train and test"),
        (ds.get("n_train") is None or (isinstance(ds.n_train, int) and not isinstance(ds.n_train, bool)
                                        and ds.n_train >= split),
         f"dataset.n_train={ds.get('n_train')} must be a whole number of training windows, at least the "
         f"{split} that train_fraction leaves of n_normal, or null for those alone"),
        (int(ds.get("n_calibration") or 0) >= 0,
         f"dataset.n_calibration={ds.get('n_calibration')} must be >= 0 "
         "(0: the threshold comes from the normal training patches)"),
        (margin_setting(ds.get("edge_margin")) is not None,
         f"dataset.edge_margin={ds.get('edge_margin')} must be a whole number of pixels >= 0 (0: all fabric next to "
         "the bands is used) or auto (the selvedge as each image shows it)"),
        (ds.defect_rule in ("any", "fraction"), f"dataset.defect_rule={ds.defect_rule!r}: choose 'any' or 'fraction'"),
        (str(ds.get("lighting", "none")) in LIGHTING_MODES,
         f"dataset.lighting={ds.get('lighting')!r}: choose one of {', '.join(LIGHTING_MODES)} "
         "(image: each image's gain and offset evened out; local: its shading too; gain: its gain alone)"),
        (type(ds.get("unmarked_defect_images", 0)) is int and ds.get("unmarked_defect_images", 0) >= 0,
         f"dataset.unmarked_defect_images={ds.get('unmarked_defect_images')} must be a whole number >= 0 "
         "(defect images whose windows join the training set unmarked)"),
        ((type(calibration_images) is int and calibration_images >= 0 or calibration_images == "auto")
         and (calibration_images in (0, "auto") or int(ds.get("n_calibration") or 0) > 0),
         f"dataset.calibration_images={calibration_images} must be a whole number >= 0 or auto, and needs "
         "dataset.n_calibration > 0 (defect-free images that give the calibration patches alone; with "
         "dataset.n_calibration=0 set dataset.calibration_images=0 too)"),
        (type(ds.get("holdout_images", 0)) is int and ds.get("holdout_images", 0) >= 0
         or ds.get("holdout_images") == "auto",
         f"dataset.holdout_images={ds.get('holdout_images')} must be a whole number >= 0 or auto "
         "(defect-free images kept out of training for the image-level false alarms; auto: those of test/good)"),
    ]
    for ok, message in checks:
        if not ok:
            raise ConfigError(message)


def split_calibration(normal: list[SourceImage], n: int, size: int) -> tuple[list[SourceImage], list[SourceImage]]:
    """The defect-free images a run trains on and the last `n` (dataset.calibration_images) that give its
    calibration patches alone, these taken among the images that hold a `size`-pixel window: one too small
    for the patch is not used (normal_positions) and would leave a calibration place empty."""
    _, calibrating = held_out([s for s in normal if holds_patch(s, size)], n)
    chosen = {id(s) for s in calibrating}
    return [s for s in normal if id(s) not in chosen], calibrating


def calibration_sources(ds, size: int) -> list[SourceImage]:
    """The defect-free images of dataset config `ds` that its calibration patches of `size` pixels come from:
    those before the held-out ones (dataset.holdout_images), or the dataset.calibration_images among them,
    as read."""
    normal = [s for s in load_sources(ds) if s.role == "normal"]
    normal = held_out(normal, holdout_count(ds, normal))[0]
    normal, calibrating = split_calibration(normal, calibration_count(ds, len(normal)), size)
    return calibrating or normal


def build_patches(cfg) -> PatchSet:
    """Read the sources and cut the patches (no cache; the settings checked by `check_patch_settings`)."""
    ds, size = cfg.dataset, int(cfg.patch_size)
    n_calibration = int(ds.get("n_calibration") or 0)
    edge_margin = margin_setting(ds.get("edge_margin"))
    texture_borders = bool(ds.get("texture_borders", False))
    sources = load_sources(ds)
    prints = {id(s): fingerprint(s.image) for s in sources}  # of the images as read, before any lighting
    lighting = str(ds.get("lighting", "none"))
    if lighting in ("image", "local"):  # as rdcae.inference.image does: the fabric found as the camera saw it, evened
        for src in sources:
            src.fabric = fabric_region(src.image, edge_margin, texture_borders) if ds.exclude_background else None
            src.image = even_lighting(src.image, lighting, fabric=src.fabric)
    else:  # the gray levels of the defect-free images' fabric, which detection compares a new image's with (none)
        # or scales it to (gain)
        levels = {}
        for src in (s for s in sources if s.role == "normal"):
            src.fabric = fabric_region(src.image, edge_margin, texture_borders) if ds.exclude_background else None
            levels[id(src)] = fabric_levels(src.image, src.fabric)
    normal = [s for s in sources if s.role == "normal"]
    defect = [s for s in sources if s.role == "defect"]
    holdout = holdout_count(ds, normal)
    unmarked_n = int(ds.get("unmarked_defect_images") or 0)
    if unmarked_n and unmarked_n >= len(defect):
        raise ConfigError(f"dataset.unmarked_defect_images={unmarked_n} leaves none of the {len(defect)} defect "
                          f"images of dataset {ds.name} to test on")
    defect, unmarked_images = unmarked(defect, unmarked_n)
    if holdout and holdout >= len(normal):
        raise ConfigError(f"dataset.holdout_images={holdout} leaves none of the {len(normal)} defect-free images of "
                          f"dataset {ds.name} to train on")
    normal, kept_out = held_out(normal, holdout)
    calibration_images = calibration_count(ds, len(normal))
    fits = sum(holds_patch(s, size) for s in normal)  # the calibration images come from these
    if calibration_images and calibration_images >= fits:
        small = f"; {len(normal) - fits} more are smaller than the {size}x{size} patch" if fits < len(normal) else ""
        raise ConfigError(f"dataset.calibration_images={calibration_images} leaves none of the {fits} "
                          f"defect-free images of dataset {ds.name} (after dataset.holdout_images{small}) to train on")
    normal, calibrating = split_calibration(normal, calibration_images, size)
    reference = None
    if lighting == "gain":  # every image scaled to the median fabric level of those trained or calibrated on
        if not normal:
            raise ConfigError(f"dataset.lighting=gain: dataset {ds.name} has no defect-free image to take the "
                              "fabric's level from")
        reference = float(np.median([levels[id(s)][0] for s in [*normal, *calibrating]]))
        for src in sources:
            if src.fabric is None and ds.exclude_background:
                src.fabric = fabric_region(src.image, edge_margin, texture_borders)
            src.image = even_lighting(src.image, lighting, fabric=src.fabric, reference=reference)
    # what the model will have seen, so that an evaluation anywhere (another folder, a copy) leaves those images
    # out (an image of its training set smaller than the patch among them, which it cannot judge either); not
    # the test's defect images that dataset.normals_from_defect_images adds
    seen = sorted({prints[id(src)] for src in [*normal, *calibrating, *unmarked_images]})
    if ds.get("normals_from_defect_images", False):
        normal = normal + defect
    if not normal:
        raise DataError(f"dataset {ds.name}: no defect-free image found under data_dir={ds.get('data_dir')}")
    channel_counts = {s.image.shape[2] for s in sources}
    if len(channel_counts) > 1:
        raise DataError(f"dataset {ds.name}: images mix {sorted(channel_counts)} channels; "
                         "the adapter must unify them")
    largest = max(min(s.image.shape[:2]) for s in normal)
    if size > largest:
        raise ConfigError(f"patch_size={size} is larger than every normal image (largest side pair min {largest})")

    rng = np.random.default_rng(int(cfg.seed))
    positions, stats = normal_positions(normal, size, ds.exclude_background, edge_margin, texture_borders,
                                        "defect-free training")
    normal_patches = draw_windows(normal, positions, int(ds.n_normal), size, rng)
    n_train = int(round(ds.train_fraction * len(normal_patches)))
    order = rng.permutation(len(normal_patches))
    train_normal = normal_patches[order[:n_train]]
    n_more = int(ds.get("n_train") or 0) - n_train
    if n_more > 0:
        # A stream of its own, so that the paper's windows and their train/test split stay the same.
        more = draw_windows(normal, positions, n_more, size, np.random.default_rng([int(cfg.seed), 2]))
        train_normal = np.concatenate([train_normal, more])
    if unmarked_images:
        train_normal, unmarked_stats = add_unmarked_windows(train_normal, unmarked_images, positions, size, ds,
                                                            np.random.default_rng([int(cfg.seed), 3]))
        stats.update(unmarked_stats)
    defect_patches, defect_masks, defect_source, defect_position, defect_stats = tile_defect_patches(
        defect, size, ds.defect_rule, float(ds.defect_min_fraction), ds.exclude_background, edge_margin, texture_borders
    )
    stats.update(defect_stats)
    stats["defect_images"] = [display_name(src.path, ds.get("data_dir")) for src in defect]
    stats["held_out_images"] = [display_name(src.path, ds.get("data_dir")) for src in kept_out]
    if calibrating:
        stats["calibration_images"] = [display_name(src.path, ds.get("data_dir")) for src in calibrating]
    stats[SEEN] = seen
    if reference is not None:
        stats[LIGHTING_REFERENCE] = reference
    trained_levels = [levels[id(s)] for s in [*normal, *calibrating] if id(s) in levels] if lighting == "none" else []
    if trained_levels:  # none where every normal image is a defect image (dataset.normals_from_defect_images)
        stats[FABRIC_LEVELS] = levels_range(trained_levels)
    calibration = None
    if n_calibration:
        # A stream of its own, so that n_calibration leaves the train/test patches unchanged; with
        # dataset.calibration_images, from whole images the network never sees, as a new image is to it.
        images, where = (calibrating, normal_positions(calibrating, size, ds.exclude_background, edge_margin,
                                                       texture_borders, "calibration (dataset.calibration_images)")[0]
                         ) if calibrating else (normal, positions)
        calibration = draw_windows(images, where, n_calibration, size, np.random.default_rng([int(cfg.seed), 1]))
    stats.update(
        images={"normal": len(normal), "defect": len(defect)},
        patches={"train_normal": len(train_normal), "test_normal": len(order) - n_train,
                 "test_defect": len(defect_patches), "calibration_normal": n_calibration},
    )
    paper_key = f"{ds.name}/{ds.get('fabric', '')}"
    if size == 32 and paper_key in PAPER_DEFECT_PATCHES:
        stats["paper_test_defect"] = PAPER_DEFECT_PATCHES[paper_key]
    return PatchSet(
        train_normal=train_normal,
        test_normal=normal_patches[order[n_train:]],
        test_defect=defect_patches,
        test_defect_mask=defect_masks,
        stats=stats,
        calibration_normal=calibration,
        test_defect_source=defect_source,
        test_defect_position=defect_position,
    )


class _Notes(logging.Handler):
    """The warnings the data readers log while the patches are built, kept with the cached patches so that
    a run that loads them says them again."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.notes: list[list[str]] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.notes.append([record.name, record.getMessage()])


def prepare_patches(cfg) -> PatchSet:
    """`build_patches`, cached under cfg.cache_dir by `cache_key` so the second run starts at once."""
    if not cfg.get("cache_dir"):
        return build_patches(cfg)
    path = Path(cfg.cache_dir) / f"{cfg.dataset.name}-{cache_key(cfg)}.npz"
    if path.exists():
        try:
            with np.load(path, allow_pickle=False) as f:
                patchset = PatchSet(f["train_normal"], f["test_normal"], f["test_defect"], f["test_defect_mask"],
                                    json.loads(str(f["stats"])), f["calibration_normal"], f["test_defect_source"],
                                    f["test_defect_position"])
                notes = json.loads(str(f["notes"])) if "notes" in f.files else []
            log.info("patches loaded from cache %s", path)
            for name, message in notes:  # what reading the data said, said again: the data has not changed
                logging.getLogger(name).warning("%s", message)
            return patchset
        # allow_pickle=False: nothing in the file runs. A damaged file fails in many ways (BadZipFile, EOFError,
        # a header numpy cannot parse: SyntaxError, tokenize.TokenError); each means the same: build it again.
        except Exception as err:
            log.warning("cache file %s is unreadable (%s); rebuilding it", path, err)
    notes = _Notes()
    logging.getLogger("rdcae.data").addHandler(notes)
    try:
        patchset = build_patches(cfg)
    finally:
        logging.getLogger("rdcae.data").removeHandler(notes)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + f".{os.getpid()}.tmp.npz")
        np.savez(tmp, train_normal=patchset.train_normal, test_normal=patchset.test_normal,
                 test_defect=patchset.test_defect, test_defect_mask=patchset.test_defect_mask,
                 stats=json.dumps(patchset.stats), calibration_normal=patchset.calibration_normal,
                 test_defect_source=patchset.test_defect_source, test_defect_position=patchset.test_defect_position,
                 notes=json.dumps(notes.notes))
        os.replace(tmp, path)
    except OSError as err:  # a read-only or impossible cache_dir costs the next run's start, nothing else
        log.warning("cannot write the patch cache %s (%s); going on without it (give cache_dir= a writable folder, "
                    "or cache_dir= empty to switch the cache off)", path, err.strerror or err)
        return patchset
    log.info("patches cached in %s", path)
    return patchset
