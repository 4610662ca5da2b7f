"""A surface in the MVTec AD layout whose images are each lit differently: the test bed of
`dataset=folder` runs under illumination changes between images (and across each image).

    python benchmarks/lit_surface.py OUT [--source woven|aitex] [--data-dir DIR --fabric 03 [--whole]]
                                         [--gain 0.6 1.4] [--ramp 0.3] [--offset 20] [--seed 0]

Sources:
  woven   the embedded fabric (rdcae.data.woven, dataset.seed 0): 12 defect-free and 8 defect images
  aitex   one AITEX fabric (--data-dir, --fabric), each image cut to its fabric columns less 96 px of
          selvedge on either side (rdcae.data.region), so that only the surface is left; with --whole,
          each image as the camera gave it, its white band and selvedge included

Lighting, drawn per image from --seed: the pixels are multiplied by a gain, log-uniform in --gain,
and by a ramp across the width from 1 − r to 1 + r (r uniform in ±--ramp), then shifted by an offset
uniform in ±--offset gray levels, and clipped to 0–255. `--gain 1 1 --ramp 0 --offset 0` writes the
images as they are.

Layout: train/good (the first 75 % of the defect-free images), test/good (the rest), test/defect with
ground_truth/defect/<name>_mask.png. Prints the counts and the gray-level range of the images.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from omegaconf import OmegaConf
from PIL import Image

from rdcae.data import aitex, woven
from rdcae.data.region import fabric_region

SELVEDGE = 96


def light(image: np.ndarray, rng: np.random.Generator, gain: tuple[float, float], ramp: float,
          offset: float) -> np.ndarray:
    """(H, W) uint8 under one draw of gain, ramp and offset."""
    g = float(np.exp(rng.uniform(np.log(gain[0]), np.log(gain[1]))))
    r = float(rng.uniform(-ramp, ramp))
    o = float(rng.uniform(-offset, offset))
    across = 1 + r * np.linspace(-1, 1, image.shape[1])[None, :]
    return np.clip(image.astype(np.float64) * g * across + o, 0, 255).round().astype(np.uint8)


def sources(args) -> list:
    if args.source == "woven":
        return woven.generate(seed=0, n_normal_images=12, n_defect_images=8, height=256, width=1024)
    cfg = OmegaConf.create({"data_dir": args.data_dir, "fabric": args.fabric})
    if args.whole:
        return aitex.load(cfg)
    cut = []
    for src in aitex.load(cfg):
        columns = np.flatnonzero(fabric_region(src.image).any(0))
        x0, x1 = columns[0] + SELVEDGE, columns[-1] + 1 - SELVEDGE
        src.image = src.image[:, x0:x1]
        src.mask = None if src.mask is None else src.mask[:, x0:x1]
        cut.append(src)
    return cut


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--source", choices=("woven", "aitex"), default="woven")
    parser.add_argument("--data-dir", help="the AITEX folder (Defect_images/, Mask_images/, NODefect_images/)")
    parser.add_argument("--fabric", default="03")
    parser.add_argument("--whole", action="store_true", help="aitex: the whole images, band and selvedge included")
    parser.add_argument("--gain", type=float, nargs=2, default=(0.6, 1.4))
    parser.add_argument("--ramp", type=float, default=0.3)
    parser.add_argument("--offset", type=float, default=20.0)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if args.source == "aitex" and not args.data_dir:
        parser.error("--source aitex needs --data-dir, the AITEX folder")
    if args.whole and args.source != "aitex":
        parser.error("--whole keeps AITEX's white band and selvedge: it goes with --source aitex")

    rng = np.random.default_rng(args.seed)
    images = sources(args)
    normal = [s for s in images if s.role == "normal"]
    defect = [s for s in images if s.role == "defect"]
    n_train = int(round(0.75 * len(normal)))
    folders = {"train/good": normal[:n_train], "test/good": normal[n_train:], "test/defect": defect}
    (args.out / "ground_truth" / "defect").mkdir(parents=True, exist_ok=True)
    levels = []
    for folder, group in folders.items():
        (args.out / folder).mkdir(parents=True, exist_ok=True)
        for i, src in enumerate(group):
            name = f"{i:03d}"
            lit = light(src.image[..., 0], rng, tuple(args.gain), args.ramp, args.offset)
            levels.append(np.median(lit))
            Image.fromarray(lit).save(args.out / folder / f"{name}.png")
            if src.mask is not None:
                Image.fromarray((src.mask * 255).astype(np.uint8)).save(
                    args.out / "ground_truth" / "defect" / f"{name}_mask.png")
    print(f"{args.out}: {n_train} train/good, {len(normal) - n_train} test/good, {len(defect)} test/defect; "
          f"image medians {min(levels):.0f}-{max(levels):.0f} of 255")


if __name__ == "__main__":
    main()
