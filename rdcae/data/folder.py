"""Any dataset in the MVTec AD folder layout:

    data_dir/train/good/*                      defect-free
    data_dir/test/good/*                       defect-free
    data_dir/test/<defect type>/<name>.<ext>   defect image
    data_dir/ground_truth/<defect type>/<name>_mask.png   (or <name>.png, as some datasets name them)

Images may be gray or RGB, as png, jpg, bmp or tif.
"""

from __future__ import annotations

import logging
from pathlib import Path

from rdcae.data.images import IMAGE_SUFFIXES, read_image, read_mask, unify_channels
from rdcae.data.sources import SourceImage

log = logging.getLogger(__name__)

GOOD = "good"  # its test/good images come last, held out by dataset.holdout_images=auto


def _image_paths(folder: Path) -> list[Path]:
    paths = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not paths:
        training = folder.name == GOOD and folder.parent.name == "train"  # the one folder a run cannot do without
        inner = sorted(p.name for p in folder.iterdir() if p.is_dir())
        if inner:  # a roll or a batch per folder: images are read from the folder itself
            hint = (f", only folders ({', '.join(inner[:3])}{', ...' * (len(inner) > 3)}), which are not searched; "
                    "move their images into it")
        else:
            hint = "; add the defect-free training images there." if training else "; add some or remove the folder."
        raise FileNotFoundError(f"{folder} holds no images ({', '.join(IMAGE_SUFFIXES)}){hint}")
    return paths


def _mask_path(folder: Path, stem: str, listings: dict | None = None) -> Path | None:
    """The mask of image `stem` in its ground_truth folder: <stem>_mask.png as MVTec AD names it, else
    <stem>_mask or <stem> with any image suffix (Magnetic Tile and others name a mask as its image), in
    any letter case of the suffix, as images are read. `listings` keeps the folder's files for later calls."""
    if listings is not None and folder in listings:
        files = listings[folder]
    elif not folder.is_dir():
        return None
    else:
        files = {p.name.lower(): p for p in folder.iterdir() if p.is_file()}
        if listings is not None:
            listings[folder] = files
    names = [f"{stem}_mask.png"] + [f"{stem}_mask{s}" for s in IMAGE_SUFFIXES] + [f"{stem}{s}" for s in IMAGE_SUFFIXES]
    return next((files[n.lower()] for n in names if n.lower() in files), None)


def ground_truth_of(image: Path, listings: dict | None = None) -> Path | None:
    """The mask of an image that lies in the MVTec AD layout, test/<defect type>/<stem>.png with
    ground_truth/<defect type>/ beside test/ (_mask_path's names, `listings` its cache), else None."""
    if image.parent.parent.name != "test" or image.parent.name == GOOD:
        return None
    return _defect_mask(image, listings)


def _defect_mask(image: Path, listings: dict | None = None) -> Path | None:
    """The mask of test/<defect type>/<stem>.<ext>: in ground_truth/<defect type>/ beside test/."""
    return _mask_path(image.parent.parent.parent / "ground_truth" / image.parent.name, image.stem, listings)


def unmasked_defects(data_dir) -> list[Path]:
    """The images of test/<defect type>/ without a mask, which `load` skips: defect images without pixel
    labels, which an evaluation judges at the image level alone."""
    test_dir = Path(str(data_dir)).expanduser() / "test"
    if not test_dir.is_dir():
        return []
    listings: dict = {}  # each ground_truth folder listed once
    return [path for folder in sorted(p for p in test_dir.iterdir() if p.is_dir() and p.name != GOOD)
            for path in _image_paths(folder) if _defect_mask(path, listings) is None]


def load(dataset_cfg, training: bool = True) -> list[SourceImage]:
    """train/good and test/good as "normal", test/<defect type> with masks as "defect". `training`: the
    folder must hold train/good, and a defect image without a mask is named as skipped; an evaluation
    (rdcae.detect dataset=folder) needs test/ alone."""
    data_dir = Path(str(dataset_cfg.data_dir)).expanduser()
    if not data_dir.is_dir():
        raise FileNotFoundError(
            f"data_dir={data_dir} does not exist; point data_dir= (or $RDCAE_DATA) at a dataset in the "
            "MVTec AD layout."
        )
    train_good = data_dir / "train" / GOOD
    test_dir = data_dir / "test"
    if not train_good.is_dir() and (training or not test_dir.is_dir()):
        needs = f"{train_good} does not exist" if training else f"neither {train_good} nor {test_dir} exists"
        raise FileNotFoundError(
            f"{needs}; data_dir={data_dir} must be in the MVTec AD layout "
            "(train/good/, test/good/, test/<defect type>/, ground_truth/<defect type>/)."
        )
    test_folders = sorted(p for p in test_dir.iterdir() if p.is_dir()) if test_dir.is_dir() else []

    sources = [
        SourceImage(str(p), read_image(p), "normal", group=f"train/{GOOD}")
        for p in (_image_paths(train_good) if train_good.is_dir() else [])
    ]
    for folder in test_folders:
        group = f"test/{folder.name}"
        for path in _image_paths(folder):
            if folder.name == GOOD:
                sources.append(SourceImage(str(path), read_image(path), "normal", group=group))
                continue
            mask_path = _defect_mask(path)
            if mask_path is None:
                if training:  # an evaluation judges it as an image (unmasked_defects) and says so itself
                    log.warning("%s: no mask %s (nor %s); image skipped", path,
                                data_dir / "ground_truth" / folder.name / f"{path.stem}_mask.png", f"{path.stem}.png")
                continue
            image = read_image(path)
            mask = read_mask([mask_path], image.shape, image_path=path)
            if not mask.any():
                log.warning("%s: its mask marks no pixel; image kept, it adds no defect pixels", path)
            sources.append(SourceImage(str(path), image, "defect", mask=mask, group=group))
    if training and not any(s.role == "defect" for s in sources):
        stray = stray_ground_truth(data_dir)
        log.warning("no defect images with masks under %s; the test set has no defects%s", test_dir,
                    f" ({', '.join(stray)} {'matches' if len(stray) == 1 else 'match'} no folder of test/)"
                    if stray else "")
    return unify_channels(sources, data_dir)


def stray_ground_truth(data_dir) -> list[str]:
    """The folders of ground_truth/ named like no defect type of test/ (a mask folder misnamed: ground_truth/10
    beside test/010), as `ground_truth/<name>`."""
    data_dir = Path(str(data_dir)).expanduser()
    masks, test_dir = data_dir / "ground_truth", data_dir / "test"
    if not masks.is_dir():
        return []
    return [f"ground_truth/{p.name}" for p in sorted(masks.iterdir())
            if p.is_dir() and not (test_dir / p.name).is_dir()]
