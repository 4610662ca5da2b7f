"""Per image of an AITEX fabric: the gray level, the contrast and the weave's periods of its central
fabric, to see whether defect images and defect-free images show the same fabric.

    python benchmarks/fabric_images.py /path/to/AITEX --fabric 00

Prints one row per image: mean and std of the gray levels over columns 1,500-3,500 (inside the fabric on
every 4096-wide AITEX image), and the period in pixels of the strongest spatial frequency along the rows
(across the warp) and along the columns (across the weft)."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image

CENTRE = slice(1500, 3500)


def periods(gray: np.ndarray) -> tuple[float, float]:
    """The period in pixels of the strongest frequency along the rows and along the columns (the lowest few
    frequencies, shading rather than weave, left out)."""
    centred = gray - gray.mean()
    across = np.abs(np.fft.rfft(centred, axis=1)).mean(0)
    down = np.abs(np.fft.rfft(centred, axis=0)).mean(1)
    k_across = int(np.argmax(across[5:])) + 5
    k_down = int(np.argmax(down[3:])) + 3
    return gray.shape[1] / k_across, gray.shape[0] / k_down


def main(root: Path, fabric: str) -> None:
    paths = (sorted((root / "Defect_images").glob(f"*_{fabric}.png"))
             + sorted((root / "NODefect_images").glob(f"*/*_{fabric}.png")))
    print("| image | role | mean gray | std | period along rows (px) | period along columns (px) |")
    print("| --- | --- | --- | --- | --- | --- |")
    for path in paths:
        gray = np.asarray(Image.open(path).convert("L"), dtype=np.float64)[:, CENTRE]
        across, down = periods(gray)
        role = "defect" if path.parent.name == "Defect_images" else "defect-free"
        print(f"| {path.stem} | {role} | {gray.mean():.1f} | {gray.std():.1f} | {across:.1f} | {down:.1f} |")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("root", type=Path, help="the AITEX folder (Defect_images/, NODefect_images/)")
    parser.add_argument("--fabric", default="00")
    args = parser.parse_args()
    main(args.root, args.fabric)
