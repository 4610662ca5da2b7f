"""An AITEX fabric framed as fabrics whose white band is replaced by other things: an end-to-end test of
the fabric region on a frame the default recipe never saw.

    python benchmarks/framed_fabric.py /path/to/AITEX /tmp/framed [--fabric 03] [--surface 00] [--contrast 0.5] \
        [--no-band]

Writes a copy of `--fabric`'s images in AITEX's layout (Defect_images, Mask_images, NODefect_images) under
the output folder, each image framed as AITEX fabrics with a textured border are: left of the fabric,
where AITEX has its white band, lies 640 px of another textured surface (the fabric `--surface`'s
weave, a different stretch per image, shifted to the fabric's mean gray; with `--no-band` it fills the
white band to the image's edge), then a dark band 24 px wide, then a bright edge line 2 px wide over the
full height, then the fabric with its own selvedge.
The fabric's gray levels are scaled around its mean by `--contrast` (a lower-contrast weave). An image
without a white band wide enough for the border (fabric 00's `0062_022_00`, framed by brushed metal
already) is copied as it is. Masks are copied as they are: no defect lies in the border. Train and
detect on the copy as on AITEX:

    python -m rdcae.train dataset=aitex fabric=03 data_dir=/tmp/framed dataset.holdout_images=5
    python -m rdcae.detect model=<run>/model.pt dataset=aitex fabric=03 data_dir=/tmp/framed

`--check <run>/model.pt` prints, per image, where the fabric starts, the first column a window of the model's
fabric region covers, and whether that lies on the border (the border must never be inspected).
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

import numpy as np
from PIL import Image

SURFACE, DARK, LINE = 640, 24, 2  # widths in pixels, left to right before the fabric


def band_end(gray: np.ndarray) -> int:
    """The first column after AITEX's white band (saturated columns at the left edge)."""
    saturated = (gray >= 250).mean(axis=0) > 0.99
    return int(np.argmin(saturated)) if saturated[0] else 0


def framed(gray: np.ndarray, surface: np.ndarray, contrast: float) -> np.ndarray:
    """`gray` (H, W uint8) with its white band's last len(surface) + DARK + LINE columns replaced as
    described above."""
    width = surface.shape[1]
    start = band_end(gray)
    if start < width + DARK + LINE:
        raise ValueError(f"white band of {start} px: too narrow for a border of {width + DARK + LINE} px")
    out = gray.astype(np.float32)
    fabric = out[:, start:]
    mean = float(fabric.mean())
    out[:, start:] = mean + contrast * (fabric - mean)
    x = start - LINE
    out[:, x:start] = 245.0
    out[:, x - DARK:x] = 25.0
    texture = surface.astype(np.float32)
    out[:, x - DARK - width:x - DARK] = texture - texture.mean() + mean
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def surface_stretches(root: Path, fabric: str, count: int, width: int = SURFACE) -> list[np.ndarray]:
    """`count` stretches of `width` columns of `fabric`'s defect-free weave, from its images in turn."""
    files = sorted((root / "NODefect_images").glob(f"*/*_{fabric}.png"))
    if not files:
        raise SystemExit(f"{root}/NODefect_images: no defect-free image of fabric {fabric} for the surface")
    stretches = []
    for i in range(count):
        gray = np.asarray(Image.open(files[i % len(files)]).convert("L"))
        start = band_end(gray) + 200  # past the selvedge
        offset = start + (i * 97) % max(1, gray.shape[1] - start - width)
        stretches.append(gray[:, offset:offset + width])
    return stretches


def build(root: Path, out: Path, fabric: str, surface: str, contrast: float, no_band: bool = False) -> None:
    images = fabric_images(root, fabric)
    if not images:
        raise SystemExit(f"{root}: no image of fabric {fabric} in AITEX's layout")
    stretches = surface_stretches(root, surface, len(images), 1400 if no_band else SURFACE)
    unframed = []
    for i, path in enumerate(images):
        gray = np.asarray(Image.open(path).convert("L"))
        target = out / path.relative_to(root)
        target.parent.mkdir(parents=True, exist_ok=True)
        if band_end(gray) < (1 if no_band else SURFACE) + DARK + LINE:  # no white band to replace (0062_022_00)
            shutil.copyfile(path, target)
            unframed.append(path.name)
            continue
        surface_cols = band_end(gray) - DARK - LINE if no_band else SURFACE
        image = framed(gray, stretches[i][:, :surface_cols], contrast)
        Image.fromarray(image).save(target)
    masks = sorted(root.glob(f"Mask_images/*_{fabric}_mask*.png"))
    (out / "Mask_images").mkdir(parents=True, exist_ok=True)
    for mask in masks:
        shutil.copyfile(mask, out / "Mask_images" / mask.name)
    print(f"{len(images) - len(unframed)} images of fabric {fabric} framed ({len(masks)} masks) under {out}"
          + (f"; copied as they are, without a white band to replace: {', '.join(unframed)}" if unframed else ""))


def check(model: str, out: Path, fabric: str) -> None:
    """The first column the model's windows cover on every framed image, against the fabric's first."""
    from rdcae.inference import load_detector
    from rdcae.inference.image import ImageDetector

    detector = ImageDetector.from_detector(load_detector(model))
    inspected = checked = 0
    paths = fabric_images(out, fabric)
    for path in paths:
        gray = np.asarray(Image.open(path).convert("L"))
        start = fabric_start(gray)
        if start is None:
            print(f"{path.name}: not framed")
            continue
        yx, _ = detector.corners(detector.check_image(gray, path.name))
        first = int(yx[:, 1].min()) if len(yx) else None
        on_border = first is not None and first < start
        inspected += on_border
        checked += 1
        print(f"{path.name}: fabric from column {start}; first window at column {first}"
              + ("  <-- the border is inspected" if on_border else ""))
    print(f"{inspected} of {checked} framed images have a window on the border")


def fabric_images(root: Path, fabric: str) -> list[Path]:
    """The defect images, then the defect-free ones, of `fabric` in AITEX's layout under `root`."""
    return sorted(root.glob(f"Defect_images/*_{fabric}.png")) + sorted(root.glob(f"NODefect_images/*/*_{fabric}.png"))


def fabric_start(gray: np.ndarray) -> int | None:
    """The fabric's first column on a framed image: right of the bright edge line (None: no such line)."""
    line = np.flatnonzero(gray.min(axis=0) >= 240)
    return int(line[-1]) + 1 if len(line) else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("root", type=Path, help="the AITEX folder (Defect_images, Mask_images, NODefect_images)")
    parser.add_argument("out", type=Path, help="where the framed copy goes")
    parser.add_argument("--fabric", default="03")
    parser.add_argument("--surface", default="00", help="the fabric whose weave lies beside the fabric")
    parser.add_argument("--contrast", type=float, default=0.5, help="the fabric's gray levels scaled around its mean")
    parser.add_argument("--no-band", action="store_true", help="the surface fills the white band to the image's edge")
    parser.add_argument("--check", metavar="MODEL", help="a model.pt: print the columns its fabric region keeps")
    args = parser.parse_args()
    if args.check:
        check(args.check, args.out, args.fabric)
    else:
        build(args.root, args.out, args.fabric, args.surface, args.contrast, args.no_band)


if __name__ == "__main__":
    main()
