"""AITEX Fabric Image Database (AFID): defect-free and defect images of one fabric.

Layout (as distributed, https://www.aitex.es/afid/):
    data_dir/Defect_images/nnnn_ddd_ff.png          nnnn image, ddd defect code, ff fabric code
    data_dir/Mask_images/nnnn_ddd_ff_mask*.png      one or more masks per defect image
    data_dir/NODefect_images/<roll>/nnnn_000_ff.png defect-free images, one folder per roll
"""

from __future__ import annotations

import logging
import re
from collections import defaultdict
from pathlib import Path

from omegaconf import open_dict

from rdcae.data.images import read_image, read_mask, unify_channels
from rdcae.data.sources import SourceImage
from rdcae.errors import ConfigError

log = logging.getLogger(__name__)

SOURCE = "https://www.aitex.es/afid/"
IMAGE_NAME = re.compile(r"^(\d{4})_(\d{3})_(\d{2})\.png$")
# `_mask.png`, `_mask1.png`, `_mask2.png`: one file per defect, or (in some copies) also
# their union; all are merged, so a pixel is a defect once however many files mark it.
MASK_NAME = re.compile(r"^(\d{4}_\d{3}_\d{2})_mask\d*\.png$")
NO_DEFECT_CODE = "000"


def fabric_code(fabric) -> str:
    """'03' from 3, '3' or '03'."""
    text = "" if fabric is None else str(fabric).strip()
    if not text.isdigit() or len(text) > 2:
        raise ConfigError(f"fabric={fabric!r} is not an AITEX fabric code; use two digits, 00..06.")
    return text.zfill(2)


def settle_fabric(cfg) -> None:
    """fabric=3 in a composed config is AITEX's fabric 03, the code its file names, the paper and a run's
    config.yaml use (refused, as fabric_code says, where it is no code)."""
    if cfg.dataset.get("name") == "aitex" and cfg.get("fabric") is not None:
        with open_dict(cfg):
            cfg.fabric = fabric_code(cfg.fabric)


def _folder(data_dir: Path, name: str) -> Path:
    folder = data_dir / name
    if not folder.is_dir():
        # one level off: the folder above AITEX's, or one of its own folders
        near = [data_dir.parent] if data_dir.name in ("Defect_images", "Mask_images", "NODefect_images") else []
        try:
            near += sorted(p for p in data_dir.iterdir() if (p / name).is_dir()) if data_dir.is_dir() else []
        except OSError:  # a folder that cannot be listed: no hint
            pass
        hint = f"; did you mean data_dir={near[0]}?" if near and (near[0] / name).is_dir() else ""
        raise FileNotFoundError(
            f"{folder} does not exist; data_dir={data_dir} must hold the AITEX folders "
            f"Defect_images/, Mask_images/ and NODefect_images/ as distributed at {SOURCE}{hint}"
        )
    return folder


def _fabric_codes(paths) -> list[str]:
    return sorted({m.group(3) for p in paths if (m := IMAGE_NAME.match(p.name))})


def load(dataset_cfg, training: bool = True) -> list[SourceImage]:
    """Defect-free images of fabric `dataset_cfg.fabric` as "normal", defect images as "defect".
    `training`: the same images for an evaluation."""
    data_dir = Path(str(dataset_cfg.data_dir)).expanduser()
    fabric = fabric_code(dataset_cfg.get("fabric"))
    if not data_dir.is_dir():
        raise FileNotFoundError(
            f"data_dir={data_dir} does not exist. Download the AITEX Fabric Image Database from "
            f"{SOURCE}, unpack it so that this folder holds Defect_images/, Mask_images/ and "
            "NODefect_images/, or set data_dir= (or $RDCAE_DATA) to where it is."
        )
    defect_dir = _folder(data_dir, "Defect_images")
    mask_dir = _folder(data_dir, "Mask_images")
    normal_dir = _folder(data_dir, "NODefect_images")

    # Defect-free images are chosen by the fabric code in their name, not by roll folder:
    # roll names do not say which fabric they hold. Only `_000_` names count, so a defect
    # image copied into NODefect_images by mistake never becomes a normal source.
    normal_paths = sorted(
        p
        for p in normal_dir.rglob("*.png")
        if (m := IMAGE_NAME.match(p.name)) and m.group(2) == NO_DEFECT_CODE and m.group(3) == fabric
    )
    defect_paths = sorted(
        p for p in defect_dir.glob("*.png") if (m := IMAGE_NAME.match(p.name)) and m.group(3) == fabric
    )
    if not normal_paths:
        present = _fabric_codes(normal_dir.rglob("*.png"))
        raise FileNotFoundError(
            f"fabric={fabric}: no defect-free images nnnn_000_{fabric}.png under {normal_dir} "
            f"(data_dir={data_dir}); fabric codes found there: {', '.join(present) or 'none'}. "
            f"The full database ({SOURCE}) has fabrics 00..06."
        )
    if not defect_paths:
        log.warning("fabric=%s: no defect images nnnn_ddd_%s.png in %s", fabric, fabric, defect_dir)

    masks: dict[str, list[Path]] = defaultdict(list)
    for path in sorted(mask_dir.glob("*.png")):
        if m := MASK_NAME.match(path.name):
            masks[m.group(1)].append(path)

    sources = [SourceImage(str(p), read_image(p), "normal", group=fabric) for p in normal_paths]
    for path in defect_paths:
        if not masks[path.stem]:
            log.warning("%s: no mask %s_mask*.png in %s; image skipped", path, path.stem, mask_dir)
            continue
        image = read_image(path)
        mask = read_mask(masks[path.stem], image.shape, image_path=path)
        if not mask.any():
            log.warning("%s: its mask marks no pixel; image kept, it adds no defect pixels", path)
        sources.append(SourceImage(str(path), image, "defect", mask=mask, group=fabric))
    return unify_channels(sources, data_dir)
