"""Kolektor Surface-Defect Dataset 2 (KolektorSDD2), https://www.vicos.si/resources/kolektorsdd2/
(CC BY-NC-SA 4.0).

Layout: data_dir/train/ and data_dir/test/ hold images NNNNN.png with masks NNNNN_GT.png of the
same size. An image whose mask is all zero is defect-free.
"""

from __future__ import annotations

import logging
from pathlib import Path

from rdcae.data.images import read_image, read_mask, unify_channels
from rdcae.data.sources import SourceImage
from rdcae.errors import DataError

log = logging.getLogger(__name__)

SOURCE = "https://www.vicos.si/resources/kolektorsdd2/"
MASK_SUFFIX = "_GT"


def _splits(dataset_cfg, key: str) -> list[str]:
    value = dataset_cfg.get(key, ["train", "test"])
    return [value] if isinstance(value, str) else [str(v) for v in value]


def load(dataset_cfg, training: bool = True) -> list[SourceImage]:
    """Defect-free images of `normal_splits` as "normal", defect images of `defect_splits` as "defect".
    `training`: the same images for an evaluation."""
    data_dir = Path(str(dataset_cfg.data_dir)).expanduser()
    normal_splits = _splits(dataset_cfg, "normal_splits")
    defect_splits = _splits(dataset_cfg, "defect_splits")
    if not data_dir.is_dir():
        raise FileNotFoundError(
            f"data_dir={data_dir} does not exist. Download KolektorSDD2 from {SOURCE}, unpack it "
            "so that this folder holds train/ and test/, or set data_dir= (or $RDCAE_DATA) to where it is."
        )

    sources: list[SourceImage] = []
    for split in dict.fromkeys(normal_splits + defect_splits):
        folder = data_dir / split
        if not folder.is_dir():
            raise FileNotFoundError(
                f"{folder} does not exist; dataset.normal_splits={normal_splits} and "
                f"dataset.defect_splits={defect_splits} name folders of data_dir={data_dir}."
            )
        image_paths = sorted(p for p in folder.glob("*.png") if not p.stem.endswith(MASK_SUFFIX))
        if not image_paths:
            raise FileNotFoundError(f"{folder} holds no images NNNNN.png (data_dir={data_dir}).")
        for path in image_paths:
            mask_path = path.with_name(f"{path.stem}{MASK_SUFFIX}.png")
            if not mask_path.is_file():
                raise FileNotFoundError(
                    f"{path}: its mask {mask_path.name} is missing; every KolektorSDD2 image has one "
                    f"(all zero when defect-free). Restore it from {SOURCE}."
                )
            image = read_image(path)
            mask = read_mask([mask_path], image.shape, image_path=path)
            if mask.any() and split in defect_splits:
                sources.append(SourceImage(str(path), image, "defect", mask=mask, group=split))
            elif not mask.any() and split in normal_splits:
                sources.append(SourceImage(str(path), image, "normal", group=split))
    if not any(s.role == "normal" for s in sources):
        raise DataError(
            f"no defect-free images in dataset.normal_splits={normal_splits} of data_dir={data_dir}; "
            "training needs some."
        )
    return unify_channels(sources, data_dir)
