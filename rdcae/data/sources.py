"""Source images: what every dataset adapter hands to the patch sampler.

An adapter turns a dataset on disk (or the embedded woven-fabric generator) into a list of
`SourceImage`s. Everything after that — patch sampling, background exclusion, the split,
caching — is the same for every dataset and lives in `rdcae.data.patches`.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
from dataclasses import dataclass
from typing import Literal

import numpy as np

from rdcae.errors import ConfigError, DataError

Role = Literal["normal", "defect"]


@dataclass
class SourceImage:
    """One image with its role and, for defect images, its pixel mask.

    image: (H, W, C) uint8, C = 1 or 3.
    mask:  (H, W) bool, True on defect pixels; None for images without a mask.
    role:  "normal" images feed normal patches (train and test), "defect" images are tiled
           into test patches and never feed training.
    group: what the image belongs to (fabric code, roll, split), for summaries.
    fabric: (H, W) bool, the fabric region found on the image as it was read, kept when its lighting
           is evened out (rdcae.data.patches); None: found on `image` where needed.
    """

    path: str
    image: np.ndarray
    role: Role
    mask: np.ndarray | None = None
    group: str = ""
    fabric: np.ndarray | None = None

    def __post_init__(self) -> None:
        if self.image.ndim == 2:
            self.image = self.image[:, :, None]
        if self.image.ndim != 3 or self.image.shape[2] not in (1, 3) or self.image.dtype != np.uint8:
            raise DataError(
                f"{self.path}: expected an (H, W, 1|3) uint8 image, got {self.image.shape} {self.image.dtype}"
            )
        if self.mask is not None and self.mask.shape != self.image.shape[:2]:
            raise DataError(
                f"{self.path}: mask size {self.mask.shape[::-1]} differs from image size "
                f"{self.image.shape[1::-1]} (width x height)"
            )


# dataset name -> "module:function"; each function takes the `dataset` config node and
# returns list[SourceImage].
ADAPTERS = {
    "woven": "rdcae.data.woven:load",
    "aitex": "rdcae.data.aitex:load",
    "ksdd2": "rdcae.data.ksdd2:load",
    "folder": "rdcae.data.folder:load",
}


@contextlib.contextmanager
def quiet_data():
    """The data readers' notes (a mask that marks nothing, a mask missing) silenced while a run reads its
    dataset again after training has shown them once."""
    log = logging.getLogger("rdcae.data")
    level = log.level
    log.setLevel(logging.ERROR)
    try:
        yield
    finally:
        log.setLevel(level)


def held_out(normal: list[SourceImage], n: int) -> tuple[list[SourceImage], list[SourceImage]]:
    """The defect-free images a run trains and calibrates on, and the last `n` (in the adapter's
    order, file names for every dataset on disk) that it never sees: whole images kept for the
    image-level false alarms of `python -m rdcae.detect` (dataset.holdout_images)."""
    return (normal[:-n], normal[-n:]) if n else (normal, [])


def holdout_count(dataset_cfg, normal: list[SourceImage]) -> int:
    """How many of the defect-free images `normal` (in the adapter's order) are held out: dataset.holdout_images
    as a number, or for `auto` those of test/good, which the MVTec AD layout (dataset=folder) keeps for the
    test and its adapter puts last."""
    setting = dataset_cfg.get("holdout_images", 0)
    if str(setting) == "auto":
        return sum(s.group == TEST_GOOD for s in normal)
    return int(setting or 0)


TEST_GOOD = "test/good"  # the group of the MVTec AD layout's defect-free test images
AUTO_CALIBRATION_SHARE = 5  # dataset.calibration_images=auto: one in this many of the defect-free images


def calibration_count(dataset_cfg, n_normal: int) -> int:
    """How many of `n_normal` defect-free images (those left after dataset.holdout_images) give the
    calibration patches alone: dataset.calibration_images as a number, or for `auto` one in five of
    them (the last, in the adapter's order, of those that hold a patch: rdcae.data.patches.split_calibration),
    none when fewer than five, as a run on a few images keeps them all for training, or when there are no
    calibration patches (dataset.n_calibration=0)."""
    setting = dataset_cfg.get("calibration_images", 0)
    if str(setting) == "auto":
        return n_normal // AUTO_CALIBRATION_SHARE if int(dataset_cfg.get("n_calibration") or 0) else 0
    return int(setting or 0)


def unmarked(defect: list[SourceImage], n: int) -> tuple[list[SourceImage], list[SourceImage]]:
    """The defect images a run tests on, and the last `n` that it trains on as if they were defect-free,
    their defects unmarked (dataset.unmarked_defect_images)."""
    return (defect[:-n], defect[-n:]) if n else (defect, [])


def load_sources(dataset_cfg, training: bool = True) -> list[SourceImage]:
    """Read the images of the dataset named by `dataset_cfg.name`. `training=False`: for an evaluation, which
    may need less of the dataset (a folder in the MVTec AD layout needs no train/good, rdcae.data.folder)."""
    name = dataset_cfg.name
    if name not in ADAPTERS:
        raise ConfigError(f"dataset.name={name!r} is not known; choose one of {sorted(ADAPTERS)}")
    module_name, function = ADAPTERS[name].split(":")
    return getattr(importlib.import_module(module_name), function)(dataset_cfg, training=training)
