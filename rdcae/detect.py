"""`python -m rdcae.detect model=<run>/model.pt input=<images> [output_dir=...]`: a trained model's
decisions on new images; with `dataset=...` instead of `input=`, its image- and pixel-level metrics
on a labelled dataset. `--help` shows the usage. Imports no Lightning.
"""

from __future__ import annotations

import csv
import difflib
import glob
import json
import math
import os
import sys
import time
from collections import Counter
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf
from tqdm import tqdm

from rdcae.data.aitex import settle_fabric
from rdcae.data.folder import ground_truth_of, stray_ground_truth, unmasked_defects
from rdcae.data.images import IMAGE_SUFFIXES, SEEN, fingerprint, looks_gray, portable, read_image, read_mask, unique
from rdcae.data.lighting import FABRIC_LEVELS, unlike_levels
from rdcae.data.region import margin_setting
from rdcae.errors import ConfigError, DataError
from rdcae.inference import load_detector
from rdcae.inference.backends import BACKENDS, EXPORTED_BACKENDS, on_backend, open_exported
from rdcae.inference.image import Detection, ImageDetector
from rdcae.inference.overlay import overlay
from rdcae.metrics.operating_point import check_false_alarms, has_overlap, image_rate, no_overlap, window_rate
from rdcae.overrides import check_overrides
from rdcae.precision import detection_precision
from rdcae.results.summary import json_safe

CONF = Path(__file__).resolve().parents[1] / "conf"
DATASET_KEYS = ("dataset", "fabric", "data_dir", "cache_dir")  # and dataset.*: composed as for training
USAGE = """\
python -m rdcae.detect: a trained model's decisions on new images.

Detect defects in images (a file, a folder or a glob; gray or RGB, any size at least the patch):
  python -m rdcae.detect model=outputs/runs/<run>/model.pt input=/path/to/images output_dir=out/
  python -m rdcae.detect model=.../model.pt input='line3/*.png' false_alarms_per_image=0.001
  python -m rdcae.detect model=.../model.pt input='line3/*.png' stride=16 threshold=1.5
  python -m rdcae.detect model=.../model.pt input=... device=cpu          # the network on the CPU (auto: the GPU)
  python -m rdcae.detect model=.../model.pt input=... backend=onnx        # onnxruntime, no Lightning
  python -m rdcae.detect model=.../model.pt input=... precision=fp32      # fp32 (auto: bf16 where computed natively)
  python -m rdcae.detect model=.../model.pt input=... backend=openvino    # OpenVINO: pip install 'openvino>=2024.2'
  python -m rdcae.detect model=.../model.onnx input=...                   # the exported graph alone
writes detections.csv (a row per image: verdict, score, threshold, defect tiles and area, region
boxes x0,y0,x1,y1, seconds, error, and a note where a warning names the image), and per image
<stem>_overlay.png (red: windows above the threshold, yellow: within 15 % below it, cyan boxes: defect
regions, white: the ground truth where known, dimmed: not inspected) and <stem>_map.npy (the anomaly map,
float32 at the image's size, NaN where not inspected).
An output_dir used before loses the previous detection's overlays and maps, and keeps anything else.
Exit status: 0 when every image was judged, 1 when some could not be judged (unreadable, or smaller than
the patch; named in detections.csv's error column, the rest judged and written), 2 for a setting or
model file that stops the run.

Evaluate on a labelled dataset (image AUROC and F1, false alarms per clean image, pixel AUROC, AUPRO):
  python -m rdcae.detect model=.../model.pt dataset=aitex fabric=03 data_dir=/path/to/AITEX
  dataset=aitex|ksdd2|folder|woven, with fabric=, data_dir=, cache_dir= and dataset.<key>= as for training;
  on the model's own dataset, those not given are the model's (python -m rdcae.detect model=... dataset=aitex).
The clean images are those the model never trained or calibrated on, as its model file names them:
the held-out ones on its own dataset (dataset.holdout_images=N at training; on dataset=woven, 4 further
images of the fabric too), all of them elsewhere.

Settings (key=value; defaults from conf/detect.yaml):
"""
COLUMNS = ["image", "verdict", "score", "threshold", "defect_tiles", "tiles", "defect_area_px", "regions", "seconds",
           "error", "note"]


@dataclass
class Item:
    """One image to detect on: where it comes from, its pixels when already read, its ground truth if known."""

    name: str
    path: str
    image: np.ndarray | None = None
    mask: np.ndarray | None = None
    unlabelled: bool = False  # filed among a dataset's defect images, but its mask marks nothing
    unmasked: bool = False  # a defect image without a mask (dataset=folder): its verdict counts, not its pixels


def torch_device(setting, backend: str) -> torch.device:
    """The device `device=` names for the PyTorch backend: auto (the GPU when there is one), cpu, cuda or
    cuda:N; the exported backends run where their runtime does, so they take auto or cpu alone."""
    name = str(setting)
    if name == "auto":
        return torch.device("cuda" if backend == "torch" and torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        device = None
    if device is None or device.type not in ("cpu", "cuda"):
        raise ConfigError(f"device={name}: choose auto, cpu, cuda or cuda:N")
    if device.type == "cuda" and backend != "torch":
        raise ConfigError(f"device={name}: backend={backend} runs on the CPU; use backend=torch for the GPU")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device={name}: no CUDA GPU is visible to PyTorch here; use device=cpu (or auto)")
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise ConfigError(f"device={name}: this machine has {torch.cuda.device_count()} CUDA GPU(s), "
                          f"cuda:0 to cuda:{torch.cuda.device_count() - 1}")
    return device


def image_detector(cfg: DictConfig) -> tuple[ImageDetector, dict, str, str, tuple[float, float] | None]:
    """The model file's detector on the chosen backend at the threshold asked for, the run config the file
    carries, what the threshold stands for, where the network runs, and the rate the threshold was set for
    (false alarms per clean image, windows per image) when an operating point set it at the training grid.
    The model is a run's model.pt (every backend; onnx and openvino run the model.onnx beside it, exported
    when missing or older) or an exported model.onnx alone (onnx, the default for it, or openvino)."""
    model = Path(str(cfg.model))
    exported = model.suffix.lower() == ".onnx"
    backend = cfg.backend if cfg.backend is not None else ("onnx" if exported else "torch")
    if backend not in BACKENDS:
        raise ConfigError(f"backend={backend}: choose one of {', '.join(BACKENDS)}")
    if exported and backend not in EXPORTED_BACKENDS:
        raise ConfigError(f"backend={backend}: model={model} is an exported graph, which runs on "
                          f"{' or '.join(EXPORTED_BACKENDS)}; give the run's model.pt for backend=torch")
    if cfg.precision not in ("auto", "fp32", "bf16"):
        raise ConfigError(f"precision={cfg.precision}: choose auto, fp32 or bf16")
    if cfg.precision == "bf16" and backend == "onnx":
        raise ConfigError("precision=bf16: onnxruntime runs the graph in fp32; use backend=openvino or backend=torch "
                          "for bf16, or precision=fp32")
    device = torch_device(cfg.get("device", "auto"), backend)
    precision = detection_precision(str(cfg.precision), backend, device)
    alpha = cfg.get("false_alarms_per_image")
    if alpha is not None:
        try:
            check_false_alarms(alpha, "false_alarms_per_image")
        except ValueError as error:
            raise ConfigError(str(error)) from None
    detector = (open_exported(model, backend, precision) if exported
                else load_detector(model, map_location=device, precision=precision))
    size = detector.spec.patch_size
    if cfg.stride is not None and not (isinstance(cfg.stride, int) and not isinstance(cfg.stride, bool)
                                       and 1 <= cfg.stride <= size):
        raise ConfigError(f"stride={cfg.stride} must be a whole number of pixels between 1 and the patch size {size}")
    if cfg.threshold is not None and (isinstance(cfg.threshold, bool) or not isinstance(cfg.threshold, (int, float))
                                      or not math.isfinite(cfg.threshold) or cfg.threshold < 0):
        raise ConfigError(f"threshold={cfg.threshold} must be a number of at least 0: a window score, like the "
                          f"model's {detector.image_threshold():.4f}")
    if cfg.threshold is not None and alpha is not None:
        raise ConfigError(f"threshold={cfg.threshold} and false_alarms_per_image={alpha}: give one; threshold= is a "
                          "window score that replaces the operating point false_alarms_per_image= sets")
    point = detector.operating_point
    card = getattr(detector, "card", None)  # an export without the calibration scores holds its point's card
    if point is not None:
        card = {"false_alarms_per_image": point.false_alarms_per_image, "windows_per_image": point.windows_per_image}
    if alpha is not None and card is None:
        raise ConfigError(f"false_alarms_per_image={alpha}: model={model} was written before detectors carried an "
                          "image operating point; give threshold= (a window score) or train it again")
    for key in ("overlays", "maps"):
        if not (isinstance(cfg.get(key), bool) or cfg.get(key) == FLAGGED):
            raise ConfigError(f"{key}={cfg.get(key)} must be true, false or {FLAGGED} (written for the images flagged "
                              "as defect only)")
    overlap = cfg.get("overlap")
    if not isinstance(overlap, bool):
        raise ConfigError(f"overlap={overlap} must be true or false (true: tiles scored over overlapping windows; "
                          "false, the default: each window alone)")
    if overlap and not has_overlap(detector.operating_point):
        raise ConfigError(no_overlap(f"overlap=true: model={model}"))
    threshold = (float(cfg.threshold) if cfg.threshold is not None
                 else detector.image_threshold(alpha, None if cfg.stride is None else int(cfg.stride), overlap))
    stated = None
    if cfg.threshold is not None:
        what = "window score given"
    elif card is None:
        what = "the model's patch threshold: a model file without an image operating point"
    else:
        rate = float(card["false_alarms_per_image"] if alpha is None else alpha)
        what = f"{rate:g} false alarms per clean image of {card['windows_per_image']:.0f} windows"
        stated = (rate, float(card["windows_per_image"])) if cfg.stride is None else None
        if cfg.stride is not None and int(cfg.stride) != detector.spec.patch_size:  # the windows counted at the patch
            what += f" at stride {detector.spec.patch_size}, the threshold set for windows at stride {cfg.stride}"
    if overlap:
        what += "; tiles scored over overlapping windows"
    runtime = f"{backend} {precision} on " + (str(device) if backend == "torch" else "cpu")
    region = region_settings(cfg)
    if exported:
        images = ImageDetector.from_exported(detector, threshold, overlap)
    else:
        def announce(message: str) -> None:
            print(f"{message}; python -m rdcae.export model={model} format=onnx does the same", file=sys.stderr)

        images = on_backend(detector, backend, model.with_suffix(".onnx"), threshold, overlap, announce)
    if region:
        images.preprocessing = replace(images.preprocessing, **region)
        what += "; " + ", ".join(f"{k}={str(v).lower()}" for k, v in region.items()) + " instead of the model's"
    return images, detector.config, what, runtime, stated


def region_settings(cfg: DictConfig) -> dict:
    """The fabric-region settings given on the command line in place of the model's (edge_margin=,
    texture_borders=): for images framed unlike the training images, e.g. a selvedge the training crops lacked."""
    region = {}
    margin, borders = cfg.get("edge_margin"), cfg.get("texture_borders")
    if margin is not None:
        if margin_setting(margin) is None:
            raise ConfigError(f"edge_margin={margin} must be a whole number of pixels >= 0 (the fabric next to a band "
                              "left out, e.g. 96 for AITEX's selvedge) or auto (the selvedge as each image shows it)")
        region["edge_margin"] = margin
    if borders is not None:
        if not isinstance(borders, bool):
            raise ConfigError(f"texture_borders={borders} must be true or false (true: also leave out borders that are "
                              "not blank, such as another surface, a dark band or an edge line beside the fabric)")
        region["texture_borders"] = borders
    return region


def input_items(spec: str, skip: Path | None = None) -> list[Item]:
    """The images `input=` names: a file, a folder (recursively; masks left out, named *_mask* or lying in a
    ground_truth folder as the MVTec AD layout keeps them, and the folder `skip` when it lies inside, where a
    detection writes its overlays, and any other folder inside that holds a detections.csv, an earlier
    detection's) or a glob; in the folder itself, and where a glob's images lie, the overlays and maps that a
    detections.csv there names are left out."""
    path = Path(spec).expanduser()
    if path.is_file():
        paths = [path]
    elif path.is_dir():
        root = path.resolve()
        skip = skip.resolve() if skip is not None else None
        # the overlays and maps an earlier detection wrote into the input folder itself are no input, whatever
        # the output folder is now
        written = earlier_outputs(root)
        skip = skip if skip is not None and skip != root and skip.is_relative_to(root) else None  # inside it only
        files = {p: p.resolve() for p in path.rglob("*")}  # as named under input=, and where they lie
        # earlier detections' output folders inside it (a detections.csv beside their overlays) too
        skipped = [skip] * (skip is not None) + [r.parent for r in files.values() if r.name == "detections.csv"
                                                 and r.parent != root]
        paths = sorted(p for p, r in files.items() if p.suffix.lower() in IMAGE_SUFFIXES and "_mask" not in p.stem
                       and "ground_truth" not in p.relative_to(path).parts[:-1]
                       and not any(r.is_relative_to(s) for s in skipped) and r not in written)
        if not paths and written:
            raise ConfigError(f"input={spec}: the folder holds no image but the overlays an earlier detection wrote "
                              "there (its detections.csv names them); give the folder of the images it judged")
        if not paths:
            raise ConfigError(f"input={spec}: the folder holds no image ({', '.join(IMAGE_SUFFIXES)})")
    else:
        matches = glob.glob(str(path), recursive=True)
        # what earlier detections wrote where the glob's files lie (the output folder among them, or not)
        folders = {Path(p).resolve().parent for p in matches} | ({skip.resolve()} if skip is not None else set())
        written = {f for folder in folders for f in earlier_outputs(folder)}
        paths = sorted(Path(p) for p in matches if Path(p).suffix.lower() in IMAGE_SUFFIXES
                       and Path(p).resolve() not in written)
        if not paths and matches and all(Path(p).resolve() in written for p in matches):
            raise ConfigError(f"input={spec}: matches no image but the overlays an earlier detection wrote (its "
                              "detections.csv names them); give the images it judged")
        if not paths:
            raise ConfigError(f"input={spec}: no such file or folder, and no image matches it as a glob")
    root = path if path.is_dir() else None
    return [Item(str(p.relative_to(root)) if root else p.name, str(p)) for p in paths]


def surface(dataset) -> str:
    """The surface a dataset config describes, in words: `aitex fabric 03`, `woven fabric of dataset.seed=0`
    (the embedded data's dataset.seed draws the fabric), `folder`."""
    name = str(dataset.get("name"))
    if name == "woven":
        return f"woven fabric of dataset.seed={dataset.get('seed')}"
    fabric = dataset.get("fabric")
    return f"{name} fabric {fabric}" if fabric not in (None, "") else name


def dataset_items(cfg: DictConfig, model_config: dict) -> tuple[list[Item], str]:
    """Evaluation: the dataset's defect images with their masks and its defect-free images, but those the model
    trained or calibrated on, as its file names them (SEEN: its held-out images on its own dataset, and on the
    embedded fabric the further clean images rdcae.data.woven.load adds, every image elsewhere but copies of its
    own). Files written before they named their images: the held-out images of
    dataset.holdout_images, and the defect images but the last dataset.unmarked_defect_images."""
    from rdcae.data.patches import display_name
    from rdcae.data.sources import held_out, holdout_count, load_sources, unmarked
    from rdcae.data.woven import UNSEEN

    ds = cfg.dataset
    sources = load_sources(ds, training=False)
    trained = model_config.get("dataset", {}) or {}
    normal = [s for s in sources if s.role == "normal"]
    trained_on, evaluated = surface(trained), surface(ds)
    same_dir = trained.get("data_dir") is None or same_folder(trained["data_dir"], ds.get("data_dir"))
    defect = [s for s in sources if s.role == "defect"]
    recorded = model_config.get(SEEN)  # the images it trained or calibrated on, as its file names them
    further = UNSEEN if ds.get("name") == "woven" else 0  # the evaluation's further images of the fabric, last
    if recorded is None and trained_on == evaluated:  # files written before they named them: by the hold-out count
        listed = normal[:len(normal) - further]
        normal = held_out(listed, holdout_count(trained, listed))[1] + normal[len(listed):]
        how = f"{len(normal)} held-out defect-free images (dataset.holdout_images at training)"
        if not same_dir:
            how = (f"the {len(normal)} defect-free images that dataset.holdout_images={trained.get('holdout_images')} "
                   f"of the model's training picks in {ds.get('data_dir')} (it trained on {trained['data_dir']})")
        # the last dataset.unmarked_defect_images of its training are training images of such a run, not test images
        tested = unmarked(defect, int(trained.get("unmarked_defect_images") or 0))[0]
        same_images = False
    else:  # older files elsewhere: the images they trained on, read again where they were (a copy, an export)
        seen = set(recorded) if recorded is not None else trained_fingerprints(trained)
        unseen = [s for s in normal if fingerprint(s.image) not in seen]
        # the folder it trained in tells two folders apart, which surface() names alike
        where = f"{trained_on} in {trained['data_dir']}" if trained_on == evaluated and not same_dir else trained_on
        if trained_on == evaluated and same_dir:
            how = f"{len(unseen)} held-out defect-free images (dataset.holdout_images at training)"
        elif len(unseen) == len(normal):
            how = f"all {len(unseen)} defect-free images (the model was trained on {where})"
        else:
            how = some_seen(normal, unseen, where, ds.get("data_dir"))
        same_images, normal = len(unseen) < len(normal), unseen
        tested = [s for s in defect if fingerprint(s.image) not in seen]  # not those it trained on unmarked
    if further and trained_on == evaluated and same_dir and len(normal) >= further:
        how = (f"{len(normal)} defect-free images no run trained on ({len(normal) - further} held out by "
               f"dataset.holdout_images at training, {further} further images of the fabric)")
    if not normal and (same_images or trained_on == evaluated):
        how = ("no defect-free image: the model trained on all of them (train with dataset.holdout_images=N, or "
               "for dataset=folder with clean images in test/good, to measure false alarms per image)")
    # Its threshold is the trained surface's: on another one, clean images may well be flagged. Not said where
    # some of the images are its own training images: the same surface under another dataset's name.
    if trained_on != evaluated and not same_images:
        print(f"warning: the model was trained on {trained_on}, not on {evaluated}; its threshold and "
              f"operating point are those of {trained_on}, so the decisions here say how that model "
              f"does on a surface it has never seen (train on {evaluated} to evaluate a model of it)",
              file=sys.stderr)
    chosen = normal + tested
    items = [Item(display_name(s.path, ds.get("data_dir")), s.path, s.image,
                  s.mask if s.mask is not None else np.zeros(s.image.shape[:2], bool),
                  unlabelled=s.role == "defect" and (s.mask is None or not s.mask.any())) for s in chosen]
    if ds.get("name") == "folder":  # defect images without masks, which training skips: judged as images
        unmasked = [Item(display_name(str(p), ds.get("data_dir")), str(p), mask=None, unmasked=True)
                    for p in unmasked_defects(ds.get("data_dir"))]
        if unmasked:
            names = ", ".join(item.name for item in unmasked[:3]) + ", ..." * (len(unmasked) > 3)
            stray = stray_ground_truth(ds.get("data_dir"))
            print(f"note: {len(unmasked)} defect images have no mask ({names}; the mask of test/<defect type>/<name> "
                  "is ground_truth/<defect type>/<name>_mask.png or <name>.png"
                  + (f", and {', '.join(stray)} {'matches' if len(stray) == 1 else 'match'} no folder of test/"
                     if stray else "")
                  + "): their verdicts count in the image metrics, and they are left out of the pixel metrics",
                  file=sys.stderr)
        items += unmasked
    return items, how


def some_seen(normal: list, unseen: list, trained_on: str, data_dir) -> str:
    """Where the clean images of an evaluation come from when some of them are images the model trained or
    calibrated on: how many, and which are left out."""
    from rdcae.data.patches import display_name

    kept = {id(s) for s in unseen}
    seen = [display_name(s.path, data_dir) for s in normal if id(s) not in kept]
    names = ", ".join(seen[:3]) + ", ..." * (len(seen) > 3)
    return (f"{len(unseen)} of the {len(normal)} defect-free images: the other {len(seen)} ({names}) "
            f"{'is an image' if len(seen) == 1 else 'are images'} the model trained or calibrated on "
            f"(trained on {trained_on})")


def trained_fingerprints(trained: dict) -> set[str]:
    """The fingerprints of the images a model with training dataset config `trained` trained or calibrated on
    (its defect-free images but the held-out ones, and any defect images it trained on unmarked), read
    again from where they were; none when they cannot be read there any more."""
    from rdcae.data.sources import held_out, holdout_count, load_sources, quiet_data, unmarked

    try:
        with quiet_data():
            sources = load_sources(OmegaConf.create(trained))
    except (DataError, ConfigError, ValueError, OSError, KeyError, AttributeError):
        return set()
    normal = [s for s in sources if s.role == "normal"]
    defect = [s for s in sources if s.role == "defect"]
    seen = held_out(normal, holdout_count(trained, normal))[0]
    seen += unmarked(defect, int(trained.get("unmarked_defect_images") or 0))[1]
    return {fingerprint(s.image) for s in seen}


def writable_folder(folder: Path) -> Path:
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / f".rdcae-write-test-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as error:
        raise ConfigError(f"output_dir={folder}: cannot write there ({error.strerror}); "
                          "choose another output_dir") from None
    return folder


def row(item: Item, detection: Detection | None, seconds: float, error: str = "") -> dict:
    if detection is None:
        return {"image": item.name, "verdict": "failed", "seconds": f"{seconds:.3f}", "error": error}
    boxes = ";".join(f"{r.x0},{r.y0},{r.x1},{r.y1}" for r in detection.regions)
    return {"image": item.name, "verdict": detection.verdict, "score": f"{detection.score:.6g}",
            "threshold": f"{detection.threshold:.6g}", "defect_tiles": detection.defect_windows,
            "tiles": detection.windows,
            "defect_area_px": detection.defect_area, "regions": boxes, "seconds": f"{seconds:.3f}", "error": ""}


def output_stems(items: list[Item]) -> list[str]:
    """The file stem each item's overlay and map are written under: its path in the input with the folders
    joined by `__` and the suffix dropped, or kept (`cam_jpg`) where two images would share a stem."""
    stems = [portable(str(Path(item.name).with_suffix("")).replace(os.sep, "__")) for item in items]
    shared = {s for s, n in Counter(stems).items() if n > 1}
    # and numbered where names still meet, differing only in characters portable() replaced
    return unique([portable(str(Path(item.name)).replace(os.sep, "__").replace(".", "_")) if s in shared else s
                   for item, s in zip(items, stems)])


def earlier_outputs(out: Path) -> set[Path]:
    """The overlays and maps an earlier detection wrote into `out`, as its detections.csv names them
    (resolved paths of the files there); none without a readable detections.csv."""
    return {f.resolve() for files in _earlier_outputs(out) for f in files}


def _earlier_outputs(out: Path) -> list[list[Path]]:
    try:
        with open(out / "detections.csv", newline="") as f:
            names = [r["image"] for r in csv.DictReader(f) if r.get("image")]
    except (OSError, KeyError, csv.Error, UnicodeDecodeError):
        return []
    return [[f for f in (out / f"{stem}_overlay.png", out / f"{stem}_map.npy") if f.is_file()]
            for stem in output_stems([Item(name, name) for name in names])]


def clear_earlier(out: Path, items: list[Item]) -> int:
    """Removes the overlays and maps an earlier detection wrote into `out`, as its detections.csv names
    them, so that the folder shows this detection's alone; anything else there stays, and so does any
    file among `items`, this detection's images. Returns how many images' outputs it removed."""
    inputs = {Path(item.path).resolve() for item in items}
    removed = 0
    for written in _earlier_outputs(out):
        files = [f for f in written if f.resolve() not in inputs]
        removed += bool(files)
        for f in files:
            f.unlink()
    return removed


def unlike_training_colour(image: np.ndarray, preprocessing) -> bool:
    """Whether `image` (H, W, C) is colour where the run trained on gray images (it is judged on its
    luminance), or gray where it trained on colour ones in colour (its gray stands in every channel)."""
    if preprocessing.image_channels == 1:
        return not looks_gray(image, axis=2)
    return preprocessing.image_channels == 3 and preprocessing.channels == 3 and looks_gray(image, axis=2)


def first_names(names: list[str]) -> str:
    """The first three of `names`, comma-separated, and ', ...' where there are more: how a warning lists images."""
    return f"{', '.join(names[:3])}{', ...' * (len(names) > 3)}"


def colour_note(names: list[str], images: int, image_channels: int | None) -> str:
    """The note naming the images whose colour differs from the training images' (unlike_training_colour)."""
    if not names:
        return ""
    listed = first_names(names)
    if image_channels == 1:
        return (f"note: {len(names)} of {images} images ({listed}) are in colour and the model was trained on gray "
                "images: they were judged on their luminance (0.299 R + 0.587 G + 0.114 B), as gray training "
                "images would be; a defect seen only in its colour cannot show")
    return (f"note: {len(names)} of {images} images ({listed}) are gray and the model was trained on colour "
            "images: they were judged with their gray in every channel, which the training images never had; "
            "train on gray images for gray cameras")


def unlike_training_levels(done: list, model_config: dict, images: int | None = None) -> tuple[list[str], str]:
    """The images flagged as defect whose fabric is brighter, darker or of another contrast than that of every
    image the model trained on (rdcae.data.lighting.unlike_levels), and the warning that names them; ([], '')
    for none, and for models that even lighting out or whose file does not keep their training images' levels.
    At an evaluation an image known to hold a defect is flagged rightly, and only the false alarms are named.
    `images`: how many images were judged in all (default: those in `done`)."""
    unlike = outside_training_levels(done, model_config)
    if not unlike:
        return [], ""
    names = [name for name, _, _ in unlike]
    return names, (f"warning: {len(unlike)} of the {images or len(done)} images judged, flagged as defect "
            f"({first_names(names)}), "
            f"{'has its' if len(unlike) == 1 else 'have their'} {levels_words(unlike, model_config[FABRIC_LEVELS])}: "
            "the camera's exposure or lighting has changed, the surface is another, or a defect covers much of the "
            "image; the network judges gray levels it never saw, so where it is not a defect these are false alarms. "
            "Keep the exposure of the training images, or train with dataset.lighting=gain, which scales each "
            "image's gray levels to the training images' (docs/EXPERIMENTS.md, entry 40)")


def outside_training_levels(done: list, model_config: dict) -> list[tuple[str, str, tuple[float, float]]]:
    """(name, how, levels) of the images flagged as defect, not known to hold one, whose fabric's levels lie
    outside those of every training image (rdcae.data.lighting.unlike_levels: how, e.g. 'brighter'); none for
    models that even lighting out or whose file does not keep their training images' levels."""
    known = model_config.get(FABRIC_LEVELS)
    if not known or str((model_config.get("dataset") or {}).get("lighting", "none")) != "none":
        return []

    def known_defect(item: Item) -> bool:
        return item.unmasked or item.unlabelled or (item.mask is not None and bool(item.mask.any()))

    return [(item.name, said, d.levels) for item, d in done
            if d.verdict == "defect" and not known_defect(item) and d.levels is not None
            and (said := unlike_levels(d.levels, known))]


def levels_words(unlike: list, known: dict) -> str:
    """'fabric brighter than every image the model trained on (median ... against ... gray levels, spread ...
    against ...)' for the images of outside_training_levels, against the training images' range `known`."""
    ways = [w for w in ("brighter", "darker", "of higher contrast", "of lower contrast")
            if any(w in said for _, said, _ in unlike)]
    medians, spreads = [levels[0] for *_, levels in unlike], [levels[1] for *_, levels in unlike]

    def span(values: list[float]) -> str:
        return f"{min(values):.1f}" if max(values) - min(values) < 0.05 else f"{min(values):.1f}-{max(values):.1f}"

    return (f"fabric {' or '.join(ways)} than every image the model trained on (median {span(medians)} against "
            f"{span(known['median'])} gray levels, spread {span(spreads)} against {span(known['spread'])})")


def most_windows_levels(flagged: list, model_config: dict) -> str:
    """The clause the warning on images flagged in most of their windows ends with, naming those of `flagged`
    whose fabric's gray levels lie outside the training images' (outside_training_levels), with the numbers:
    an exposure that changed rather than another surface; '' for none."""
    outside = outside_training_levels(flagged, model_config)
    if not outside:
        return ""
    names = [name for name, _, _ in outside]
    if len(flagged) == 1:
        whose = "it has its"
    else:
        listed = first_names(names)
        whose = f"{len(outside)} of them ({listed}) {'has its' if len(outside) == 1 else 'have their'}"
    return (f"; {whose} {levels_words(outside, model_config[FABRIC_LEVELS])}: if only the exposure or the "
            "lighting changed, keep the training images' or train with dataset.lighting=gain")


def image_note(item: Item, detection: Detection, model_config: dict, patch_size: int) -> str:
    """detections.csv's note and the overlay's for an image flagged as defect that a warning names: what rather
    than a defect may have flagged it (unlike_training, outside_training_levels, flagged_at_the_edge); ''
    for any other."""
    if detection.verdict != "defect":
        return ""
    done = [(item, detection)]
    outside, most = outside_training_levels(done, model_config), bool(unlike_training(done))
    said = ["above the threshold in most windows: unlike the training surface rather than defective"] if most else []
    if outside:
        said.append(levels_words(outside, model_config[FABRIC_LEVELS]))
    if not most and flagged_at_the_edge(done, patch_size):
        said.append("flagged only by a column at the edge of the inspected fabric")
    return "; ".join(said)


def unlike_training(done: list) -> list[str]:
    """The images most of whose windows score above the threshold: a surface, scale or lighting the
    model has not seen rather than a defect, which covers a small part of an image."""
    return [item.name for item, d in done if d.windows and d.defect_windows > d.windows / 2]


def rate_for_these_images(done: list, stated: tuple[float, float] | None) -> str:
    """A note when the images judged hold more or fewer windows than those the false-alarm rate is stated
    for (by more than a tenth): each window may pass at the same small rate, so an image of n windows is
    a false alarm at 1 - (1 - rate)^(n / n0); '' when the rate holds as stated or none was set."""

    windows = [d.windows for _, d in done if d.windows]
    if stated is None or not windows:
        return ""
    rate, n0 = stated
    n = float(np.mean(windows))
    if abs(n / n0 - 1) <= 0.1:
        return ""
    theirs = image_rate(window_rate(rate, n0), n)
    return (f"note: these images hold {n:.0f} windows on average, the model's rate is stated for images of {n0:.0f}; "
            f"at this threshold about {theirs:.3g} false alarms per clean image of theirs")


EDGE_COLUMNS = 2  # patch widths from the fabric's left or right bound that count as its edge


def flagged_at_the_edge(done: list, patch_size: int) -> list[str]:
    """The defect images all of whose regions lie at one edge of the inspected fabric (each starting within
    EDGE_COLUMNS patch widths of where it begins or ends, and no wider than one patch more) and together cover
    at least half of its rows: a column there, whole or broken, the mark of a selvedge, an edge line or another
    border rather than of a defect."""
    names = []
    for item, d in done:
        columns, inspected = np.flatnonzero(d.fabric.any(axis=0)), np.flatnonzero(d.fabric.any(axis=1))
        if d.verdict != "defect" or not d.regions or not len(columns):
            continue
        near, first, last = EDGE_COLUMNS * patch_size, columns[0], columns[-1] + 1
        rows = np.zeros(d.fabric.shape[0], bool)
        for r in d.regions:
            rows[r.y0:r.y1] = True
        at_left = all(r.x0 - first < near and r.x1 - first <= near + patch_size for r in d.regions)
        at_right = all(last - r.x1 < near and last - r.x0 <= near + patch_size for r in d.regions)
        if (at_left or at_right) and rows[inspected].sum() >= 0.5 * len(inspected):
            names.append(item.name)
    return names


def detect_all(detector: ImageDetector, items: list[Item], out: Path, cfg: DictConfig,
               model_config: dict | None = None) -> tuple[list[dict], list, list[str]]:
    """Detect on every item, writing the overlays and maps as it goes; a file that cannot be read is
    named in its CSV row and the rest go on. Returns the CSV rows, the (item, detection) pairs and the
    names of the images whose colour is unlike the training images' (unlike_training_colour). `model_config`,
    the model file's: each flagged image's note (image_note), in its row and its overlay."""
    rows, done, recoloured, listings = [], [], [], {}
    stride = None if cfg.stride is None else int(cfg.stride)
    threshold = detector.threshold
    for item, stem in tqdm(zip(items, output_stems(items)), total=len(items), desc="detect", unit="image",
                           disable=True if len(items) < 2 else None, file=sys.stderr):  # None: only on a terminal
        start = time.perf_counter()
        try:
            image = item.image if item.image is not None else read_image(item.path)
            detection = detector.detect(image, stride=stride, threshold=threshold, name=str(item.path))
            if image.ndim == 3 and unlike_training_colour(image, detector.preprocessing):
                recoloured.append(item.name)
        except (DataError, ValueError, OSError) as error:
            message = str(error).splitlines()[0]
            rows.append(row(item, None, time.perf_counter() - start, message))
            named = message.startswith((f"{item.path}:", f"{item.name}:"))  # the reader names the file itself
            tqdm.write(f"skipped {message}" if named else f"skipped {item.name}: {message}", file=sys.stderr)
            continue
        note = image_note(item, detection, model_config or {}, detector.preprocessing.patch_size)
        wanted = {True: True, False: False, FLAGGED: detection.verdict == "defect"}  # overlays=, maps=
        if wanted[cfg.overlays]:
            picture = overlay(image, detection, ground_truth(item, image, listings), note)
            picture.save(out / f"{stem}_overlay.png", compress_level=1)
        if wanted[cfg.maps]:
            np.save(out / f"{stem}_map.npy", detection.anomaly_map)
        rows.append(row(item, detection, time.perf_counter() - start) | {"note": note})
        done.append((item, detection))
    return rows, done, recoloured


def ground_truth(item: Item, image: np.ndarray, listings: dict) -> np.ndarray | None:
    """The item's ground truth for its overlay: its mask, or the mask file beside an image of input= in the
    MVTec AD layout (`listings` keeps each ground_truth folder's files, read once a detection); one that
    cannot be read or has another size is named, and the overlay drawn without it."""
    if item.mask is not None:
        return item.mask
    mask_path = ground_truth_of(Path(item.path).resolve(), listings)
    if mask_path is None:
        return None
    try:
        return read_mask([mask_path], image.shape, image_path=item.path)
    except (DataError, ValueError, OSError) as error:
        tqdm.write(f"warning: {str(error).splitlines()[0]}; {item.name}'s overlay is drawn without it", file=sys.stderr)
        return None


AUPRO_FPR_LIMIT = 0.3  # the false-positive rate the PRO curve is integrated to, as MVTec AD and anomalib do


PIXEL_REGION = ("pixel_auroc and pixel_aupro: the pixels each detection inspected (where the dataset leaves part of "
                "an image out: a blank band, a border, the edge margin); *_whole_image: every pixel, those without a "
                "score (NaN in the maps) counted as the lowest")


def evaluate(done: list) -> dict:
    """Image-level AUROC and F1 (an image is a defect when its mask has a pixel, or when it is a defect
    image without a mask; F1 of the verdicts at the image threshold), false alarms per clean image, and
    pixel-level AUROC and AUPRO of the images with masks: over the fabric each detection inspected, and over
    whole images, where the pixels without a score count as the lowest (to repeat it with another tool,
    replace the maps' NaN by a value below every score). An image filed among the defect images whose mask
    marks nothing is neither clean nor a known defect: it is detected and written, left out of the metrics
    and named under `unlabelled_images`."""
    import torch
    from torchmetrics.functional.classification import binary_f1_score

    from rdcae.metrics.classification import auc
    from rdcae.metrics.pixel import pixel_metrics

    unlabelled = [item.name for item, _ in done if item.unlabelled]
    done = [(item, d) for item, d in done if not item.unlabelled]

    defect = [item.unmasked or bool(item.mask.any()) for item, _ in done]
    labels = torch.tensor(defect)
    throughout = set(unlike_training(done))
    scores = torch.tensor([d.score if math.isfinite(d.score) else 0.0 for _, d in done], dtype=torch.float64)
    flagged = torch.tensor([d.verdict == "defect" for _, d in done])
    pixels = [(item, d) for item, d in done if not item.unmasked]  # the images whose pixels are labelled
    maps = [d.anomaly_map for _, d in pixels]  # NaN where no window scored a pixel: the lowest score
    masks = [item.mask for item, _ in pixels]
    valid = [d.fabric for _, d in pixels]
    n_normal = int((~labels).sum())
    pixel_auroc, pixel_aupro = pixel_metrics(maps, masks, valid, AUPRO_FPR_LIMIT)
    pixel_auroc_whole, pixel_aupro_whole = pixel_metrics(maps, masks, None, AUPRO_FPR_LIMIT)
    return {
        "images": len(done), "defect_images": int(labels.sum()), "normal_images": n_normal,
        "image_auroc": round(auc(scores[~labels], scores[labels]), 6),
        # with no clean image no false alarm can count against it: F1 would be the recall alone
        "image_f1": (round(float(binary_f1_score(flagged.long(), labels.long())), 6)
                     if labels.any() and not labels.all() else math.nan),
        "defect_images_flagged": int((flagged & labels).sum()),
        # flagged in most of their windows: more than most defects cover, as a surface unlike the training one is
        "defect_images_flagged_throughout": sum(is_defect and item.name in throughout
                                                for is_defect, (item, _) in zip(defect, done)),
        "false_alarms": int((flagged & ~labels).sum()),
        "false_alarms_per_image": float((flagged & ~labels).sum()) / n_normal if n_normal else math.nan,
        "pixel_auroc": round(pixel_auroc, 6),
        "pixel_aupro": round(pixel_aupro, 6),
        "pixel_aupro_fpr_limit": AUPRO_FPR_LIMIT,
        "pixel_region": PIXEL_REGION,
        "pixel_auroc_whole_image": round(pixel_auroc_whole, 6),
        "pixel_aupro_whole_image": round(pixel_aupro_whole, 6),
        "defect_image_names": [item.name for is_defect, (item, _) in zip(defect, done) if is_defect],
        "normal_image_names": [item.name for is_defect, (item, _) in zip(defect, done) if not is_defect],
        "defect_images_without_masks": [item.name for item, _ in done if item.unmasked],
        "unlabelled_images": unlabelled,
    }


def parse(argv: list[str]) -> DictConfig:
    """conf/detect.yaml with the command line's key=value settings; dataset settings composed from the
    training config's dataset group."""
    cfg = OmegaConf.load(CONF / "detect.yaml")
    own, dataset, given = [], [], {}
    for arg in argv:
        key, sep, _ = arg.partition("=")
        if sep and key in given:
            raise ConfigError(f"{key}= given twice ({given[key]} and {arg}): give it once")
        given[key] = arg
        if not sep:
            hint = (f"model={arg}" if Path(arg).suffix.lower() in (".pt", ".onnx") else
                    f"input={arg}" if Path(arg).suffix.lower() in IMAGE_SUFFIXES or Path(arg).is_dir() else "")
            raise ConfigError(f"{arg}: settings are key=value" + (f"; did you mean {hint}?" if hint else "")
                              + " (python -m rdcae.detect --help)")
        if key in DATASET_KEYS or key.startswith("dataset."):
            dataset.append(arg)
        elif key in cfg:
            own.append(arg)
        else:
            close = difflib.get_close_matches(key, [*cfg, *DATASET_KEYS], n=1)
            hint = f"did you mean {close[0]}=? " if close else ""
            known = ", ".join([*cfg, *DATASET_KEYS])
            raise ConfigError(f"{key}: unknown setting; {hint}python -m rdcae.detect takes {known}")
    cfg = OmegaConf.merge(cfg, OmegaConf.from_dotlist(own))
    cfg.dataset = None
    if dataset:
        if not any(a.startswith("dataset=") for a in dataset):
            raise ConfigError(f"{dataset[0]}: a dataset setting without dataset=<aitex|ksdd2|folder|woven>")
        from hydra import compose, initialize_config_dir
        from hydra.errors import HydraException

        check_overrides(dataset, "python -m rdcae.detect")
        try:
            with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
                composed = compose(config_name="train", overrides=dataset)
        except HydraException as error:  # what check_overrides leaves to Hydra, e.g. a list for a number
            raise ConfigError(f"{' '.join(dataset)}: {str(error).strip().splitlines()[0]}") from None
        # resolved here: its data_dir and fabric come from the composed config's top level
        settle_fabric(composed)  # fabric=3 is 03, as training settles it
        cfg.dataset = OmegaConf.to_container(composed.dataset, resolve=True)
        cfg.dataset_given = [a.partition("=")[0] for a in dataset]
    return cfg


# dataset settings that say which of its images a model trained, calibrated or never saw: an evaluation takes
# them from the model file (dataset_items), and they are no setting of its own
MODEL_SPLIT = ("holdout_images", "calibration_images", "unmarked_defect_images")


def same_folder(a, b) -> bool:
    """Whether two data_dir values name one folder (one absolute, as the model file keeps it, one relative)."""
    return Path(str(a)).expanduser().resolve() == Path(str(b)).expanduser().resolve()


def from_the_model(cfg: DictConfig, model_config: dict) -> str:
    """Evaluating on the dataset the model was trained on: every dataset setting not given on the command line
    is the model's own, as at training (its fabric, its data folder where it still is, the embedded fabric's
    seed). Returns a note naming what was taken, or ''."""
    trained = model_config.get("dataset") or {}
    if trained.get("name") != cfg.dataset.get("name"):
        return ""
    given = {key.removeprefix("dataset.") for key in cfg.get("dataset_given") or []}
    taken, notes = [], []
    for key, value in trained.items():
        if key in MODEL_SPLIT:  # not a setting of the evaluation: which images the model never saw
            continue
        if key in given or key not in cfg.dataset or value is None or str(value) == str(cfg.dataset[key]):
            continue
        if key == "data_dir" and same_folder(value, cfg.dataset[key]):  # kept absolute, given relative
            continue
        if key == "data_dir" and not Path(str(value)).is_dir():  # a model moved to another machine
            notes.append(f"the model's data_dir={value} is not here, so data_dir={cfg.dataset[key]} (give data_dir=)")
            continue
        cfg.dataset[key] = value
        taken.append(f"{key}={value}")
    if taken:
        notes.insert(0, f"{', '.join(taken)} from the model file, as it was trained; give "
                        f"{'it' if len(taken) == 1 else 'them'} on the command line to evaluate other images")
    # (a file written before a setting existed has no value of it to hold an evaluation to)
    for key in (k for k in MODEL_SPLIT if k in given and k in trained and str(cfg.dataset.get(k)) != str(trained[k])):
        why = (f"an evaluation takes which images the model never saw from the model file (dataset.{key}="
               f"{trained.get(key)} at training)" if surface(trained) == surface(cfg.dataset) else
               f"on a surface the model was not trained on, every "
               f"{'defect' if key == 'unmarked_defect_images' else 'defect-free'} image is evaluated")
        raise ConfigError(f"dataset.{key}={cfg.dataset.get(key)}: {why}; drop dataset.{key}=")
    return f"note: {'; '.join(notes)}" if notes else ""


def run(cfg: DictConfig, out: Path | None = None) -> dict:
    """Detect (input=) or evaluate (dataset=) as the config says; writes into `out` (default:
    output_dir, else outputs/detect/<time>) and returns the counts, and the metrics when evaluating."""
    if cfg.get("model") is None:
        raise ConfigError("give model=<run folder>/model.pt, the detector a training run wrote")
    if cfg.get("input") is None and cfg.get("dataset") is None:
        raise ConfigError("give input=<image, folder or glob> to detect, "
                          "or dataset=<name> (with data_dir=) to evaluate")
    detector, model_config, what, runtime, stated = image_detector(cfg)
    out = (Path(str(cfg.output_dir)) if cfg.output_dir else
           out or Path("outputs") / "detect" / time.strftime("%Y-%m-%d_%H-%M-%S"))
    if cfg.get("dataset") is not None:
        if note := from_the_model(cfg, model_config):
            print(note, file=sys.stderr)
        items, how = dataset_items(cfg, model_config)
    else:
        items, how = input_items(str(cfg.input), skip=out), ""
    out = writable_folder(out)
    if (out / "detections.csv").is_file() and (removed := clear_earlier(out, items)):
        print(f"{out}: removed the earlier detection's overlays and maps of {removed} images", file=sys.stderr)
    start = time.perf_counter()
    rows, done, recoloured = detect_all(detector, items, out, cfg, model_config)
    seconds = time.perf_counter() - start
    unlike = unlike_training(done)
    # an image flagged in most of its windows is named below, as a surface unlike the training images'
    _, levels_warning = unlike_training_levels([(i, d) for i, d in done if i.name not in unlike], model_config,
                                               len(done))
    at_edge = [name for name in flagged_at_the_edge(done, detector.preprocessing.patch_size) if name not in unlike]
    with open(out / "detections.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS, lineterminator="\n")  # as the other files here end lines
        writer.writeheader()
        writer.writerows(rows)
    result = {"images": len(items), "flagged": sum(r["verdict"] == "defect" for r in rows),
              "failed": sum(r["verdict"] == "failed" for r in rows), "seconds": seconds, "output_dir": str(out),
              "runtime": runtime,
              "written": [f + (" of the flagged images" if on == FLAGGED else "")
                          for f, on in zip(OUTPUTS, (True, cfg.overlays, cfg.maps)) if on]}
    if result["failed"] == result["images"]:  # no image judged: no overlay or map either
        result["written"] = result["written"][:1]
    if cfg.get("dataset") is not None and done:
        result["evaluation"] = evaluate(done) | {
            "normal_images_from": how, "model": str(cfg.model), "dataset": cfg.dataset.get("name"),
            **({"fabric": cfg.dataset.fabric} if cfg.dataset.get("fabric") is not None else {}),
            "data_dir": (cfg.dataset or {}).get("data_dir"),
            "threshold": detector.threshold, "operating_point": what,
            "image_f1_at": "the verdicts at threshold, not the best threshold for these images",
            "stride": cfg.stride or detector.preprocessing.patch_size, "overlap": bool(cfg.overlap),
            "runtime": runtime}
        (out / "evaluation.json").write_text(json.dumps(json_safe(result["evaluation"]), indent=2))
    print(summary(result, detector.threshold, what))
    if levels_warning:
        print(levels_warning, file=sys.stderr)
    if unlike:
        trained_on = surface(OmegaConf.create(model_config.get("dataset") or {}))
        print(f"warning: {len(unlike)} of {len(done)} images ({first_names(unlike)}) "
              f"score above the threshold in most of their windows: they look unlike the {trained_on} the model "
              "was trained on (another surface, weave, scale or lighting) rather than defective; if that is the "
              "surface you now produce, train a model on clean images of it" + most_windows_levels(
                  [(i, d) for i, d in done if i.name in unlike], model_config), file=sys.stderr)
    if at_edge:
        print(f"warning: {len(at_edge)} of {len(done)} images ({first_names(at_edge)}) "
              "are flagged only by a column at the edge of the inspected fabric: a selvedge, an edge line or a "
              "border rather than a defect? " + ("Trained with dataset.edge_margin=auto (or <pixels>) and "
              "dataset.texture_borders=true, a model leaves it out; " if not detector.preprocessing.edge_margin else "")
              + "edge_margin= and texture_borders= here leave it out for images framed unlike the model's training "
              "images (the overlays show where)", file=sys.stderr)
    if note := rate_for_these_images(done, stated):
        print(note, file=sys.stderr)
    if note := colour_note(recoloured, len(done), detector.preprocessing.image_channels):
        print(note, file=sys.stderr)
    if result["failed"]:
        others = ", and the others were judged" if result["failed"] < result["images"] else ""
        print(f"error: {result['failed']} of {result['images']} images could not be judged; each is named with "
              f"the reason in the error column of {out / 'detections.csv'}{others}", file=sys.stderr)
    return result


OUTPUTS = ("detections.csv", "*_overlay.png", "*_map.npy")  # what a detection writes, with overlays and maps on
FLAGGED = "flagged"  # overlays= and maps=: written for the images flagged as defect only


def summary(result: dict, threshold: float, what: str = "window score") -> str:
    n = max(result["images"] - result["failed"], 1)
    lines = ["", "rdcae detect finished",
             f"  images          : {result['images']} given, {result['flagged']} flagged as defect, "
             f"{result['failed']} could not be judged",
             f"  threshold       : {threshold:.4f} ({what})",
             f"  time            : {result['seconds']:.1f} s, {result['seconds'] / n:.3f} s per image"
             + (f" ({result['runtime']})" if result.get("runtime") else ""),
             f"  outputs         : {result['output_dir']} "
             f"({', '.join(result.get('written', OUTPUTS))})"]
    e = result.get("evaluation")
    if e:
        auroc = (f"{e['image_auroc']:.4f}" if math.isfinite(e["image_auroc"]) else
                 "n/a (it needs clean and defect images)")
        f1 = f"{e['image_f1']:.4f}" if math.isfinite(e["image_f1"]) else "n/a"
        if e.get("dataset"):
            lines += [f"  evaluated on    : {e['dataset']}" + (f" fabric {e['fabric']}" if e.get("fabric") else "")
                      + (f" in {e['data_dir']}" if e.get("data_dir") else "")]
        lines += [f"  evaluation      : image AUROC {auroc}  F1 {f1}  "
                  f"({e['defect_images_flagged']} of {e['defect_images']} defect images flagged"
                  + (f" ({e['defect_images_flagged_throughout']} of them in most of their windows, as a surface unlike "
                     "the training images' would be)" if e.get("defect_images_flagged_throughout") else "") + ", "
                  f"{e['false_alarms']} false alarms on {e['normal_images']} clean images)",
                  f"                    pixel AUROC {e['pixel_auroc']:.4f}  AUPRO(30 % FPR) {e['pixel_aupro']:.4f}"
                  + (f" over the inspected fabric; {e['pixel_auroc_whole_image']:.4f} and "
                     f"{e['pixel_aupro_whole_image']:.4f} over whole images" if "pixel_auroc_whole_image" in e else ""),
                  f"  clean images    : {e['normal_images_from']}"]
        if e.get("unlabelled_images"):
            lines += [f"  left out        : {', '.join(e['unlabelled_images'])} (filed as defect images, "
                      "but the mask marks nothing)"]
    return "\n".join(lines + [""])


def settings_help() -> str:
    """Every setting of conf/detect.yaml with its default and what it does (the file's own comments)."""
    lines = (CONF / "detect.yaml").read_text().splitlines()
    start = next((i for i, line in enumerate(lines) if line and not line.startswith("#")), len(lines))
    return "\n".join(lines[start:]) + "\n"


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or any(arg in ("-h", "--help") for arg in argv):  # anywhere on the line, as rdcae.train takes it
        print(USAGE + settings_help(), file=sys.stdout if argv else sys.stderr)
        return 0 if argv else 2
    try:
        result = run(parse(argv))
    except (ConfigError, DataError, FileNotFoundError, ValueError, ImportError) as error:
        if os.environ.get("RDCAE_DEBUG") == "1":
            raise
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 1 if result["failed"] else 0


if __name__ == "__main__":
    sys.exit(main())
