"""What the fabric region's border search sees: the numbers behind its constants, on real and framed images.

    python benchmarks/region_borders.py contrast /path/to/AITEX [--fabric 00 03]
    python benchmarks/region_borders.py framed /tmp/framed00 [--fabric 00]
    python benchmarks/region_borders.py variants /path/to/AITEX [--fabric 03] [--every 3]
    python benchmarks/region_borders.py bounds DIR [DIR ...] > bounds.txt
    python benchmarks/region_borders.py time DIR
    python benchmarks/region_borders.py crease /path/to/AITEX [--fabric 03 00]

`contrast`: on AITEX as distributed (blank bands peeled off), for every place a fence could be (at least
MIN_SURFACE columns in, in the outer third), the median contrast of the bands outside it over the
fabric's: the range over images and places, per fabric (what FABRIC_CONTRAST must stay clear of).
`framed`: on a copy written by framed_fabric.py, per image the surface outside the dark band (its bands'
median weave z and contrast over the fabric's) and whether the region starts right of the edge line.
`variants`: every `--every`-th image framed to the image's edge in other ways (the fabric's contrast, the
line's and the dark band's width and gray) and whether the border is found on each.
`bounds`: the fabric region's bounds (first and last column and row, edge margin 96) of every PNG under the
folders, outside Mask_images: run it with two checkouts on the path (PYTHONPATH=) and diff the outputs to
see whether a change moves any region.
`crease`: a soft full-height crease painted into the first 6 clean images of each fabric (a shadow and a
highlight, Gaussian profiles of ±15, 30 or 60 gray levels, sigma 3 or 8 px, 2 sigma either side of a column
300 or 600 px into the fabric): on how many the region is cut short there, the crease taken for an edge.
`time`: the fabric region's seconds per image (edge margin 96, textured borders searched) over the PNGs of a
folder, three passes after two to warm up.
"""

from __future__ import annotations

import argparse
import itertools
import time
from pathlib import Path

import numpy as np
from framed_fabric import DARK, band_end, fabric_images, fabric_start, surface_stretches  # beside this script
from PIL import Image

from rdcae.data import region as region_module
from rdcae.data.region import MIN_SURFACE, TEXTURE_WINDOW, _band_widths, _weave_z, fabric_region


def gray(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("L"))


def border_found(image: np.ndarray, start: int) -> bool:
    region = fabric_region(image[:, :, None], 0, texture=True)
    columns = np.flatnonzero(region.any(axis=0))
    return len(columns) > 0 and columns[0] >= start


def contrast(root: Path, fabrics: list[str]) -> None:
    for fabric in fabrics:
        low, high = [], []
        for path in fabric_images(root, fabric):
            g = gray(path).astype(np.float32)
            left, right = _band_widths(g, 1)
            g = g[:, left : g.shape[1] - right]
            starts, ratio = _weave_z(g)[0], region_module._band_contrast(g)
            width = g.shape[1] - TEXTURE_WINDOW
            outside = [np.median(ratio[:i]) for i, x in enumerate(starts) if MIN_SURFACE <= x <= width / 3]
            outside += [np.median(ratio[::-1][:i]) for i, x in enumerate((width - starts)[::-1])
                        if MIN_SURFACE <= x <= width / 3]
            low.append((min(outside), path.name))
            high.append((max(outside), path.name))
        print(f"fabric {fabric}: outside a place a fence could be, {min(low)[0]:.3f} ({min(low)[1]}) to "
              f"{max(high)[0]:.3f} ({max(high)[1]}) times the fabric's contrast; without the lowest image "
              f"{sorted(low)[1][0]:.3f} ({sorted(low)[1][1]})")


def framed(out: Path, fabric: str) -> None:
    """Also with code from before the contrast test (no `_band_contrast`): the borders found alone."""
    band_contrast = getattr(region_module, "_band_contrast", None)
    found = checked = 0
    zs, ratios = [], []
    for path in fabric_images(out, fabric):
        image = gray(path)
        start = fabric_start(image)
        if start is None:
            print(f"{path.name}: not framed")
            continue
        g = image.astype(np.float32)
        starts, z = _weave_z(g)
        outside = starts + TEXTURE_WINDOW <= start - DARK - 2
        zs.append(float(np.median(z[outside])))
        ratios.append(float(np.median(band_contrast(g)[outside])) if band_contrast else np.nan)
        ok = border_found(image, start)
        found += ok
        checked += 1
        print(f"{path.name}: surface {zs[-1]:.2f} deviations unlike the fabric's weave, {ratios[-1]:.2f} times its "
              f"contrast; border {'found' if ok else 'MISSED'}")
    print(f"border found on {found} of {checked} framed images; the surface {min(zs):.2f}-{max(zs):.2f} deviations "
          f"unlike the fabric's weave (median {np.median(zs):.2f}), {min(ratios):.2f}-{max(ratios):.2f} times its "
          "contrast")


VARIANTS = [  # the fabric's contrast, dark band width and gray, line width and gray
    (1.0, 24, 25, 2, 245), (0.5, 24, 25, 2, 245), (0.25, 24, 25, 2, 245), (0.25, 24, 25, 1, 245),
    (0.25, 24, 25, 3, 245), (0.25, 8, 25, 2, 245), (0.25, 24, 60, 2, 245), (0.25, 24, 25, 2, 190),
    (0.25, 60, 60, 1, 200), (0.25, 24, 70, 2, 245)]


def variants(root: Path, fabric: str, surface: str, every: int) -> None:
    paths = [p for p in fabric_images(root, fabric) if band_end(gray(p)) >= 700][::every]
    stretches = surface_stretches(root, surface, len(paths), 1400)
    for contrast_, dark, dark_gray, line, line_gray in VARIANTS:
        missed = []
        for path, stretch in zip(paths, stretches):
            g = gray(path).astype(np.float32)
            start = band_end(g)
            fabric_mean = float(g[:, start:].mean())
            g[:, start:] = fabric_mean + contrast_ * (g[:, start:] - fabric_mean)
            g[:, start - line : start] = line_gray
            g[:, start - line - dark : start - line] = dark_gray
            other = stretch[:, : start - line - dark].astype(np.float32)
            g[:, : start - line - dark] = other - other.mean() + fabric_mean
            if not border_found(np.clip(np.rint(g), 0, 255).astype(np.uint8), start):
                missed.append(path.name)
        print(f"fabric contrast x{contrast_}, dark band {dark} px of gray {dark_gray}, line {line} px of gray "
              f"{line_gray}: border found on {len(paths) - len(missed)} of {len(paths)}"
              + (f" (missed: {', '.join(missed)})" if missed else ""))


def bounds(folders: list[Path]) -> None:
    for folder in folders:
        for path in sorted(folder.rglob("*.png")):
            if "Mask_images" in path.parts:
                continue
            region = fabric_region(gray(path)[:, :, None], 96, texture=True)
            columns, rows = np.flatnonzero(region.any(axis=0)), np.flatnonzero(region.any(axis=1))
            ends = [int(a[i]) if len(a) else -1 for a in (columns, rows) for i in (0, -1)]
            print(path, *ends)


def timed(folder: Path) -> None:
    images = [gray(p)[:, :, None] for p in sorted(folder.glob("*.png"))]
    for image in images[:2]:
        fabric_region(image, 96, texture=True)
    start = time.perf_counter()
    for _ in range(3):
        for image in images:
            fabric_region(image, 96, texture=True)
    print(f"fabric region: {(time.perf_counter() - start) / (3 * len(images)) * 1000:.1f} ms per image "
          f"over {len(images)} images of {folder}")


def first_column(image: np.ndarray) -> int:
    """The first column of `image`'s fabric region (no edge margin, textured borders searched)."""
    return int(np.flatnonzero(fabric_region(image[:, :, None], 0, texture=True).any(axis=0))[0])


def crease(root: Path, fabrics: list[str]) -> None:
    cut = total = 0
    for fabric, amplitude, sigma, inset in itertools.product(fabrics, (15, 30, 60), (3, 8), (300, 600)):
        paths = sorted(root.glob(f"NODefect_images/*/*_{fabric}.png"))[:6]
        short = 0
        for path in paths:
            g = gray(path)
            start = first_column(g)
            x = np.arange(g.shape[1]) - (start + inset)
            shadow, highlight = np.exp(-((x + 2 * sigma) / sigma) ** 2), np.exp(-((x - 2 * sigma) / sigma) ** 2)
            creased = np.clip(g + amplitude * (highlight - shadow)[None, :], 0, 255).astype(np.uint8)
            short += first_column(creased) > start + 16
        cut, total = cut + short, total + len(paths)
        print(f"fabric {fabric}, a crease of ±{amplitude} gray, sigma {sigma} px, {inset} px into the fabric: "
              f"the region cut short on {short} of {len(paths)}")
    print(f"in all: cut short on {cut} of {total}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("what", choices=["contrast", "framed", "variants", "bounds", "time", "crease"])
    parser.add_argument("folders", type=Path, nargs="+", help="the AITEX folder, a framed copy, or folders to bound")
    parser.add_argument("--fabric", nargs="+", default=None, help="fabric codes (default 00 03; framed, variants: one)")
    parser.add_argument("--surface", default=None, help="variants: the weave beside the fabric (default: the other)")
    parser.add_argument("--every", type=int, default=3, help="variants: every n-th image with a white band")
    args = parser.parse_args()
    fabrics = args.fabric or (["00", "03"] if args.what in ("contrast", "crease") else ["03"])
    if args.what == "contrast":
        contrast(args.folders[0], fabrics)
    elif args.what == "framed":
        framed(args.folders[0], fabrics[0])
    elif args.what == "variants":
        variants(args.folders[0], fabrics[0], args.surface or ("00" if fabrics[0] == "03" else "03"), args.every)
    elif args.what == "bounds":
        bounds(args.folders)
    elif args.what == "crease":
        crease(args.folders[0], fabrics)
    else:
        timed(args.folders[0])


if __name__ == "__main__":
    main()
