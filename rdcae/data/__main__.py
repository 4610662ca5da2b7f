"""`python -m rdcae.data summary [overrides]`: what a run would train and test on.

Prints images per role, patches per class, what was excluded and the paper's counts beside
ours, and writes a contact sheet of sampled normal and defect patches to look at, and a sheet of
whole images with what the fabric region leaves out tinted.

`python -m rdcae.data images [output_dir=DIR] [overrides]`: the dataset's images as files in the
MVTec AD layout (the embedded fabric's, by default), to point rdcae.detect at, to look at, or to
start a folder of one's own from (dataset=folder reads it as it is).
"""

from __future__ import annotations

import difflib
import hashlib
import logging
import os
import sys
from pathlib import Path

import numpy as np
from hydra import compose, initialize_config_dir
from hydra.errors import HydraException
from PIL import Image, ImageDraw, ImageFont

from rdcae.data.aitex import settle_fabric
from rdcae.data.patches import PatchSet, check_patch_settings, prepare_patches
from rdcae.data.region import AUTO, fabric_region, margin_setting
from rdcae.data.sources import load_sources
from rdcae.errors import ConfigError, DataError
from rdcae.overrides import check_overrides

CONF = Path(__file__).resolve().parents[2] / "conf"
LEFT_OUT = np.array([30.0, 60.0, 160.0])  # the region sheet's tint over what no window is cut from
USAGE = ("usage: python -m rdcae.data summary [dataset=aitex fabric=03 data_dir=/path/to/AITEX patch_size=32 ...]\n"
         "       python -m rdcae.data images [output_dir=DIR] [dataset=... as for summary]")


def sheet_labels(shown: tuple[int, int], total: tuple[int, int], lighting: str = "none") -> tuple[str, str]:
    """The contact sheet's two captions: normal and defect patches shown of how many, and, where the run
    evens out the lighting, that the patches are shown so, as the network sees them."""
    seen = "" if lighting == "none" else f"; lighting evened out as the network sees it (dataset.lighting={lighting})"
    return (f"normal patches ({shown[0]} of {total[0]}, drawn at random{seen})",
            f"defect patches ({shown[1]} of {total[1]}), their defect pixels tinted red")


def contact_sheet(patches: PatchSet, per_row: int = 16, rows: int = 3, zoom: int = 3, seed: int = 0,
                  lighting: str = "none") -> Image.Image:
    """Rows of random normal patches, then rows of defect patches with their mask tinted red."""
    rng = np.random.default_rng(seed)

    def pick(x: np.ndarray) -> np.ndarray:
        return rng.choice(len(x), size=min(len(x), per_row * rows), replace=False) if len(x) else np.zeros(0, int)

    def rgb(x: np.ndarray) -> np.ndarray:  # (N, C, P, P) -> (N, P, P, 3) float
        x = x.transpose(0, 2, 3, 1).astype(np.float32)
        return np.repeat(x, 3, axis=3) if x.shape[3] == 1 else x

    normals = np.concatenate([patches.train_normal, patches.test_normal])
    normal = rgb(normals[pick(normals)])
    idx = pick(patches.test_defect)
    defect = rgb(patches.test_defect[idx])
    if len(idx):
        mask = patches.test_defect_mask[idx][..., None]
        defect = np.where(mask, 0.6 * defect + 0.4 * np.array([255.0, 0, 0]), defect)

    p, gap = patches.train_normal.shape[-1], 2
    labels = sheet_labels((len(normal), len(defect)), (len(normals), len(patches.test_defect)), lighting)
    pieces = []
    for label, block in zip(labels, (normal, defect)):
        if not len(block):
            continue
        n_rows = -(-len(block) // per_row)
        grid = np.full((n_rows * (p + gap), per_row * (p + gap), 3), 255, np.float32)
        for i, patch in enumerate(block):
            r, c = divmod(i, per_row)
            grid[r * (p + gap) : r * (p + gap) + p, c * (p + gap) : c * (p + gap) + p] = patch
        tile = Image.fromarray(grid.clip(0, 255).astype(np.uint8))
        pieces.append((label, tile.resize((tile.width * zoom, tile.height * zoom), Image.NEAREST)))
    return captioned(pieces)


def captioned(pieces: list[tuple[str, Image.Image]], head: int = 22) -> Image.Image:
    """The pictures of `pieces` one under the other on white, each under its caption, as wide as the widest
    picture or caption."""
    font = ImageFont.load_default(size=14)
    wide = max(max(p.width for _, p in pieces), *(int(font.getlength(label)) + 8 for label, _ in pieces))
    sheet = Image.new("RGB", (wide, sum(head + p.height for _, p in pieces)), "white")
    draw, y = ImageDraw.Draw(sheet), 0
    for label, picture in pieces:
        draw.text((4, y + 3), label, fill=(0, 0, 0), font=font)
        sheet.paste(picture, (0, y + head))
        y += head + picture.height
    return sheet


def describe(cfg, patches: PatchSet) -> str:
    s = patches.stats
    counts, margin = s["patches"], margin_setting(cfg.dataset.get("edge_margin"))
    lines = [
        f"dataset {cfg.dataset.name}" + (f" fabric {cfg.dataset.fabric}" if "fabric" in cfg.dataset else "")
        + f", patch {cfg.patch_size}x{cfg.patch_size}, seed {cfg.seed}",
        f"  images          : {s['images']['normal']} normal (training and test patches), "
        f"{s['images']['defect']} defect"
        + (f"; {len(s['calibration_images'])} more normal give the calibration patches alone"
           if s.get("calibration_images") else "")
        + (f"; {len(s['held_out_images'])} more normal held out for rdcae.detect (never trained or calibrated on)"
           if s.get("held_out_images") else ""),
        f"  normal patches  : {counts['train_normal']} train + {counts['test_normal']} test "
        f"(random positions among {s['normal_positions']:,} allowed; "
        f"{s['normal_positions_excluded']:,} positions excluded as non-fabric)",
        f"  defect patches  : {counts['test_defect']} (test only; "
        f"{s['defect_tiles_excluded']} defect tiles excluded: no defect pixel on fabric"
        + (f" beyond dataset.edge_margin={margin}{'' if margin == AUTO else ' px'} from a band)" if margin else ")")
        + (f"; the paper reports {s['paper_test_defect']}" if "paper_test_defect" in s else "")
        + (" (dataset.edge_margin=0 or recipe=paper gives the paper's tiles)"
           if margin and "paper_test_defect" in s else ""),
    ]
    if s.get("defect_images_without_defect_pixels"):
        lines.append(f"  defect images whose mask marks no pixel: {len(s['defect_images_without_defect_pixels'])}")
    if s.get("normal_images_too_small"):
        lines.append(f"  normal images smaller than the patch (not used): {len(s['normal_images_too_small'])}")
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in ("summary", "images"):
        if argv and not argv[0].startswith("-"):
            close = difflib.get_close_matches(argv[0], ["summary", "images"], n=1)
            print(f"error: {argv[0]}: no such command" + (f"; did you mean {close[0]}?" if close else ""),
                  file=sys.stderr)
        print(USAGE, file=sys.stderr)
        return 2
    try:
        (summarize if argv[0] == "summary" else write_images)(argv[1:])
    except (ConfigError, DataError, FileNotFoundError, ValueError, HydraException, OSError) as error:
        if os.environ.get("RDCAE_DEBUG") == "1":
            raise
        print(f"error: {str(error).strip().splitlines()[0]}", file=sys.stderr)
        return 2
    return 0


def composed(overrides: list[str], command: str):
    """The training config with the command line's settings, checked first (rdcae.overrides)."""
    check_overrides(overrides, f"python -m rdcae.data {command}")
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose(config_name="train", overrides=overrides)
    settle_fabric(cfg)
    return cfg


def summarize(overrides: list[str]) -> None:
    cfg = composed(overrides, "summary")
    check_patch_settings(cfg)
    patches = prepare_patches(cfg)
    print(describe(cfg, patches))
    out = Path("outputs") / "data_summary"
    out.mkdir(parents=True, exist_ok=True)
    tag = (cfg.dataset.name + (f"_{cfg.dataset.fabric}" if "fabric" in cfg.dataset else "")
           + f"_p{cfg.patch_size}_s{cfg.seed}")
    if cfg.dataset.name in ("folder", "ksdd2"):  # one sheet per dataset folder, not one for every folder dataset
        where = str(Path(str(cfg.dataset.data_dir)).expanduser().resolve())
        tag += f"_{Path(where).name}-{hashlib.sha256(where.encode()).hexdigest()[:8]}"
    path = out / f"{tag}.png"
    contact_sheet(patches, seed=int(cfg.seed), lighting=str(cfg.dataset.get("lighting", "none"))).save(path)
    print(f"  contact sheet   : {path} (normal patches above, defect patches below, each labelled)")
    regions = out / f"{tag}_regions.png"
    logging.disable(logging.WARNING)  # the data warnings were printed above, once
    try:
        sources = load_sources(cfg.dataset)
    finally:
        logging.disable(logging.NOTSET)
    region_sheet(sources, cfg.dataset).save(regions)
    print(f"  fabric regions  : {regions} (whole images: what is left out of the windows tinted blue, masks "
          "outlined in white)")


def region_sheet(sources: list, dataset, per_role: int = 2, width: int = 1600) -> Image.Image:
    """The first `per_role` normal and defect images, each at most `width` pixels wide, with what the fabric
    region leaves out tinted blue (a border, a band, the selvedge margin; a tint, since a dimmed white band
    would look like fabric) and the defect masks outlined in white: the check that windows come from the
    surface alone."""
    margin, texture = margin_setting(dataset.get("edge_margin")), bool(dataset.get("texture_borders", False))
    chosen = [s for role in ("normal", "defect") for s in [s for s in sources if s.role == role][:per_role]]
    pieces = []
    for src in chosen:
        fabric = (fabric_region(src.image, margin, texture) if dataset.get("exclude_background", True)
                  else np.ones(src.image.shape[:2], bool))
        rgb = np.repeat(src.image, 3, axis=2) if src.image.shape[2] == 1 else src.image[:, :, :3]
        out = np.where(fabric[..., None], rgb, 0.3 * rgb + 0.7 * LEFT_OUT).astype(np.uint8)
        if src.mask is not None:
            inner = src.mask.copy()
            inner[1:-1, 1:-1] &= src.mask[:-2, 1:-1] & src.mask[2:, 1:-1] & src.mask[1:-1, :-2] & src.mask[1:-1, 2:]
            out[src.mask & ~inner] = 255
        picture = Image.fromarray(out)
        if picture.width > width:
            picture = picture.resize((width, max(1, round(picture.height * width / picture.width))), Image.BILINEAR)
        label = (f"{src.role}: {Path(src.path).name}; {100 * (1 - fabric.mean()):.0f} % left out (blue)"
                 + ("" if fabric.any() else " (no fabric found)"))
        pieces.append((label, picture))
    return captioned(pieces)


def write_images(argv: list[str]) -> Path:
    """The dataset's images as files in the MVTec AD layout under output_dir= (default
    outputs/data_images/<dataset>): train/good/, test/good/ (its held-out clean images), test/defect/ and
    ground_truth/defect/<name>_mask.png. Refuses a folder that holds anything."""
    from rdcae.data.images import portable, unique
    from rdcae.data.sources import held_out, holdout_count
    from rdcae.data.woven import UNSEEN

    overrides = [a for a in argv if not a.startswith("output_dir=")]
    given = [a.partition("=")[2] for a in argv if a.startswith("output_dir=")]
    cfg = composed(overrides, "images")
    if cfg.dataset.name == "woven" and not int(cfg.dataset.holdout_images or 0):
        # clean images to try a model on too: those an evaluation adds, further images of the same fabric, which
        # no run trained on
        cfg.dataset.n_normal_images = int(cfg.dataset.n_normal_images) + UNSEEN
        cfg.dataset.holdout_images = UNSEEN
    out = Path(given[-1]).expanduser() if given and given[-1] else Path("outputs") / "data_images" / cfg.dataset.name
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ConfigError(f"output_dir={out} already holds files; give a new or empty folder")
    sources = load_sources(cfg.dataset)
    normal = [s for s in sources if s.role == "normal"]
    train, test = held_out(normal, holdout_count(cfg.dataset, normal))
    defect = [s for s in sources if s.role == "defect"]
    folders = {"train/good": train, "test/good": test, "test/defect": defect}
    for folder, group in folders.items():
        # 000.png of two defect types: 000 and 000_2, none overwritten
        stems = unique([portable(Path(str(src.path).replace("://", "/")).stem) for src in group])
        for src, stem in zip(group, stems):
            (out / folder).mkdir(parents=True, exist_ok=True)
            Image.fromarray(src.image.squeeze(2) if src.image.shape[2] == 1 else src.image).save(
                out / folder / f"{stem}.png")
            if src.mask is not None and folder == "test/defect":
                (out / "ground_truth/defect").mkdir(parents=True, exist_ok=True)
                Image.fromarray(src.mask.astype(np.uint8) * 255).save(out / "ground_truth/defect" / f"{stem}_mask.png")
    counts = ", ".join(f"{len(group)} in {folder}/" for folder, group in folders.items() if group)
    print(f"{out}: {counts}" + (", their masks in ground_truth/defect/" if defect else ""))
    print(f"  detect on them  : python -m rdcae.detect model=<run folder>/model.pt input={out / 'test'}")
    print(f"  train on them   : python -m rdcae.train dataset=folder data_dir={out} (with dataset=folder's "
          "defaults, conf/dataset/folder.yaml, not this dataset's)")
    return out


if __name__ == "__main__":
    # what reading the data says (a missing mask, an image skipped), once, as rdcae.train's log shows it;
    # without a handler of its own the patch cache's collecting one would keep it from the terminal
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    sys.exit(main(sys.argv[1:]))
