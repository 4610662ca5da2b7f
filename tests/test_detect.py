"""`python -m rdcae.detect` and Detector.detect: from a trained run to verdicts, maps and overlays on
whole images, and image- and pixel-level metrics on a labelled dataset."""

from __future__ import annotations

import csv
import dataclasses
import math
import pickle
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import TINY, compose_config
from PIL import Image

from rdcae.data.sources import load_sources
from rdcae.detect import Item, main
from rdcae.errors import ConfigError
from rdcae.inference import load_detector
from rdcae.inference.onnx import export_onnx
from rdcae.precision import detection_precision

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny run on the woven fabric that keeps its last defect-free image out of training."""
    from rdcae.train import run

    out = tmp_path_factory.mktemp("run")
    cfg = compose_config(TINY + ["dataset.holdout_images=1", "figures=false"], out)
    run(cfg, out)
    return cfg, out / "model.pt"


@pytest.fixture(scope="module")
def clean_image(trained):
    cfg, _ = trained
    return next(s for s in load_sources(cfg.dataset) if s.role == "normal").image[:, :, 0]  # (H, W) gray


def bar(image: np.ndarray) -> tuple[np.ndarray, tuple[slice, slice]]:
    where = (slice(50, 56), slice(100, 180))
    painted = image.copy()
    painted[where] = 10
    return painted, where


def test_an_image_with_no_window_on_fabric_is_refused_naming_a_bilevel_image_as_the_cause(trained, clean_image):
    detector = load_detector(trained[1])
    from rdcae.inference.image import ImageDetector

    image_detector = ImageDetector.from_detector(detector)
    blank = np.full(clean_image.shape, 255, np.uint8)  # a white band alone: nothing to inspect
    with pytest.raises(ValueError, match="no 32x32 window lies wholly on fabric") as refused:
        image_detector.detect(blank, name="blank.png")
    assert "bilevel" not in str(refused.value)
    bilevel = np.where(clean_image > np.median(clean_image), 255, 0).astype(np.uint8)  # saved as black and white
    with pytest.raises(ValueError, match="its pixels are black or white alone \\(a bilevel image\\)"):
        image_detector.detect(bilevel, name="bilevel.png")


def test_a_dark_bar_painted_on_clean_fabric_is_found_where_it_is(trained, clean_image):
    detector = load_detector(trained[1])
    painted, (rows, cols) = bar(clean_image)
    detection = detector.detect(painted)
    assert detection.verdict == "defect" and detection.score > detection.threshold
    y, x = np.unravel_index(np.nanargmax(detection.anomaly_map), detection.anomaly_map.shape)
    assert rows.start - 32 < y < rows.stop + 32 and cols.start - 32 < x < cols.stop + 32
    assert any(r.x0 <= 140 < r.x1 and r.y0 <= 52 < r.y1 for r in detection.regions)
    assert detection.anomaly_map.shape == painted.shape and detection.defect_area > 0
    assert detector.detect(clean_image).score < detection.score


def test_overlapping_windows_and_a_threshold_override_change_the_decision_as_asked(trained, clean_image):
    detector = load_detector(trained[1])
    painted, _ = bar(clean_image)
    coarse, fine = detector.detect(painted), detector.detect(painted, stride=16)
    assert fine.windows > 3 * coarse.windows and fine.verdict == "defect"
    assert detector.detect(painted, threshold=coarse.score + 1).verdict == "ok"


def test_the_command_writes_a_csv_row_an_overlay_and_a_map_per_image(trained, clean_image, tmp_path, capsys):
    images = tmp_path / "images"
    images.mkdir()
    painted, _ = bar(clean_image)
    Image.fromarray(painted).save(images / "barred.png")
    Image.fromarray(np.stack([clean_image] * 3, axis=2)).save(images / "clean_rgb.jpg", quality=98)
    (images / "notes.png").write_text("not an image")
    Image.fromarray(clean_image[:20, :20]).save(images / "tiny.png")
    out = tmp_path / "out"
    assert main([f"model={trained[1]}", f"input={images}", f"output_dir={out}"]) == 1  # two could not be read
    rows = {r["image"]: r for r in csv.DictReader(open(out / "detections.csv"))}
    assert set(rows) == {"barred.png", "clean_rgb.jpg", "notes.png", "tiny.png"}
    assert rows["barred.png"]["verdict"] == "defect" and int(rows["barred.png"]["defect_tiles"]) >= 1
    assert rows["barred.png"]["regions"] and float(rows["barred.png"]["score"]) > float(rows["barred.png"]["threshold"])
    assert rows["notes.png"]["verdict"] == "failed" and "notes.png" in rows["notes.png"]["error"]
    assert rows["tiny.png"]["verdict"] == "failed" and "smaller than" in rows["tiny.png"]["error"]
    for stem in ("barred", "clean_rgb"):
        width, height = Image.open(out / f"{stem}_overlay.png").size  # the image, or below it a strip for the
        assert width >= clean_image.shape[1] and height >= clean_image.shape[0]  # caption where it would hide much
        assert np.load(out / f"{stem}_map.npy").shape == clean_image.shape
    captured = capsys.readouterr()
    printed = captured.out
    assert ("4 given, 1 flagged as defect, 2 could not be judged" in printed
            or "4 given, 2 flagged as defect, 2 could not be judged" in printed)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    assert f"s per image (torch {detection_precision('auto', 'torch', device)} on {device})" in printed
    last = captured.err.strip().splitlines()[-1]
    assert last.startswith("error: 2 of 4 images could not be judged") and str(out / "detections.csv") in last
    assert last.endswith("and the others were judged")
    assert f"skipped {images / 'notes.png'}: cannot be read as an image" in captured.err  # each named by its path
    assert f"skipped {images / 'tiny.png'}: 20x20 pixels is smaller than" in captured.err
    assert "remove it from the dataset folder" not in captured.err  # not a dataset here
    clean = tmp_path / "clean"
    clean.mkdir()
    Image.fromarray(painted).save(clean / "barred.png")
    assert main([f"model={trained[1]}", f"input={clean}", f"output_dir={tmp_path / 'out2'}"]) == 0  # all judged
    capsys.readouterr()
    unreadable = tmp_path / "unreadable"
    unreadable.mkdir()
    (unreadable / "notes.png").write_text("not an image")
    assert main([f"model={trained[1]}", f"input={unreadable}", f"output_dir={tmp_path / 'out3'}"]) == 1
    printed = capsys.readouterr().out
    assert f"outputs         : {tmp_path / 'out3'} (detections.csv)" in printed  # nothing else was written
    assert sorted(p.name for p in (tmp_path / "out3").iterdir()) == ["detections.csv"]


def test_overlays_and_maps_can_be_written_for_the_flagged_images_alone(trained, clean_image, tmp_path, capsys):
    images, out = tmp_path / "images", tmp_path / "out"
    images.mkdir()
    Image.fromarray(bar(clean_image)[0]).save(images / "barred.png")
    Image.fromarray(clean_image).save(images / "clean.png")
    assert main([f"model={trained[1]}", f"input={images}", f"output_dir={out}", "overlays=flagged",
                 "maps=flagged"]) == 0
    rows = {r["image"]: r["verdict"] for r in csv.DictReader(open(out / "detections.csv"))}
    assert rows == {"barred.png": "defect", "clean.png": "ok"}
    assert sorted(p.name for p in out.iterdir()) == ["barred_map.npy", "barred_overlay.png", "detections.csv"]
    assert "*_overlay.png of the flagged images" in capsys.readouterr().out
    assert main([f"model={trained[1]}", f"input={images}", f"output_dir={out}", "overlays=some"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == "error: overlays=some must be true, false or flagged (written for the images flagged as defect only)"


def test_evaluation_without_clean_images_writes_strict_json_and_portable_file_names(trained, tmp_path, capsys,
                                                                                    monkeypatch):
    import json

    import rdcae.data.sources as sources

    cfg, model = trained
    real = sources.load_sources
    monkeypatch.setattr(sources, "load_sources", lambda ds, **kw: [s for s in real(ds, **kw) if s.role == "defect"])
    overrides = [f"dataset.{k}={v}" for k, v in cfg.dataset.items() if k not in ("name", "data_dir")]
    assert main([f"model={model}", "dataset=woven", *overrides, f"output_dir={tmp_path}", "maps=false"]) == 0
    assert "n/a (it needs clean and defect images)" in capsys.readouterr().out
    evaluation = json.loads((tmp_path / "evaluation.json").read_text(), parse_constant=lambda c: pytest.fail(c))
    assert evaluation["normal_images"] == 0 and evaluation["image_auroc"] is None and evaluation["image_f1"] is None
    overlays = sorted(p.name for p in tmp_path.glob("*_overlay.png"))
    assert len(overlays) == evaluation["defect_images"] and all(re.fullmatch(r"[\w.\-]+", n) for n in overlays)


def test_evaluation_elsewhere_leaves_out_the_images_the_model_trained_on(trained, tmp_path, capsys):
    import json

    from rdcae.data.__main__ import main as data_main

    cfg, model = trained
    settings = [f"dataset.{k}={v}" for k, v in cfg.dataset.items() if k not in ("name", "data_dir")]
    assert data_main(["images", f"output_dir={tmp_path / 'copy'}", *settings]) == 0  # its images, as files
    assert main([f"model={model}", "dataset=folder", f"data_dir={tmp_path / 'copy'}", f"output_dir={tmp_path / 'out'}",
                 "overlays=false", "maps=false"]) == 0
    evaluation = json.loads((tmp_path / "out" / "evaluation.json").read_text())
    n = cfg.dataset.n_normal_images
    assert evaluation["normal_images"] == 1  # the held-out image; the others it trained or calibrated on
    printed = capsys.readouterr()
    assert re.search(rf"1 of the {n} defect-free images: the other {n - 1} \(train/good/\S+\.png\) is an image the "
                     "model trained", printed.out)
    assert "a surface it has never seen" not in printed.err  # its own images under another dataset's name


def test_evaluation_without_dataset_settings_takes_the_models_own(trained, tmp_path, capsys):
    import json

    cfg, model = trained
    assert main([f"model={model}", "dataset=woven", f"output_dir={tmp_path}", "overlays=false", "maps=false"]) == 0
    printed = capsys.readouterr()
    # the tiny run's images (their size and counts), not the default embedded fabric's
    assert "n_normal_images=2, n_defect_images=3, height=128, width=256" in printed.err
    assert "from the model file, as it was trained" in printed.err
    # its held-out image, and the further images of the fabric an evaluation adds
    assert "5 defect-free images no run trained on (1 held out by dataset.holdout_images at training, 4 further " \
        "images of the fabric)" in printed.out and "warning: the model was trained on" not in printed.err
    evaluation = json.loads((tmp_path / "evaluation.json").read_text())
    assert evaluation["normal_images"] == 5 and evaluation["defect_images"] == cfg.dataset.n_defect_images


def test_an_evaluation_of_another_folder_says_where_its_clean_images_come_from(tmp_path):
    from rdcae.detect import dataset_items, parse

    for i, sub in enumerate(("train/good/000", "train/good/001", "test/good/000", "test/crack/000")):
        (tmp_path / "new" / sub).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.random.default_rng(i).integers(0, 255, (48, 48), dtype=np.uint8)).save(
            tmp_path / "new" / f"{sub}.png")
    (tmp_path / "new" / "ground_truth" / "crack").mkdir(parents=True)
    Image.fromarray(np.full((48, 48), 255, np.uint8)).save(tmp_path / "new" / "ground_truth/crack/000_mask.png")
    cfg = parse(["model=m.pt", "dataset=folder", f"data_dir={tmp_path / 'new'}"])
    trained = {"dataset": {"name": "folder", "data_dir": str(tmp_path / "old"), "holdout_images": "auto"}}
    items, how = dataset_items(cfg, trained)
    assert sorted(item.name for item in items if not item.mask.any()) == ["test/good/000.png"]
    assert how == (f"the 1 defect-free images that dataset.holdout_images=auto of the model's training picks in "
                   f"{tmp_path / 'new'} (it trained on {tmp_path / 'old'})")
    trained["dataset"]["data_dir"] = str(tmp_path / "new")  # the folder it trained on
    assert dataset_items(cfg, trained)[1] == "1 held-out defect-free images (dataset.holdout_images at training)"


def test_the_model_file_names_the_images_it_trained_on_and_an_evaluation_elsewhere_counts_the_others(tmp_path,
                                                                                                    trained):
    import json

    from rdcae.data.images import SEEN, fingerprint
    from rdcae.detect import dataset_items, parse

    cfg, model = trained
    config = load_detector(model).config
    normal = [s for s in load_sources(cfg.dataset) if s.role == "normal"]
    assert config[SEEN] == [fingerprint(normal[0].image)]  # the one it trained on, not the one held out
    assert SEEN not in json.loads((model.parent / "metrics.json").read_text())["patches"]

    mvtec_folder(tmp_path / "new", ("train/good/000", "train/good/001", "test/good/000", "test/good/001",
                                    "test/crack/000", "test/crack/001"))
    (tmp_path / "new" / "ground_truth" / "crack" / "000_mask.png").replace(
        tmp_path / "new" / "ground_truth" / "crack" / "001_mask.png")
    Image.fromarray(np.full((64, 64), 255, np.uint8)).save(tmp_path / "new" / "ground_truth/crack/000_mask.png")
    evaluated = parse(["model=m.pt", "dataset=folder", f"data_dir={tmp_path / 'new'}"])
    # trained elsewhere on none of these images, and holding out one image there: here every clean image is unseen
    elsewhere = {"dataset": {"name": "folder", "data_dir": str(tmp_path / "old"), "holdout_images": 1}, SEEN: []}
    items, how = dataset_items(evaluated, elsewhere)
    assert sum(not item.mask.any() for item in items) == 4
    assert how == f"all 4 defect-free images (the model was trained on folder in {tmp_path / 'old'})"
    # trained on a copy of two of them (one clean, one defect image unmarked), its own folder gone since
    first = [fingerprint(np.asarray(Image.open(tmp_path / "new" / f"{sub}.png"))[:, :, None])
             for sub in ("train/good/000", "test/crack/000")]
    items, how = dataset_items(evaluated, elsewhere | {SEEN: first})
    assert sorted(item.name for item in items) == ["test/crack/001.png", "test/good/000.png", "test/good/001.png",
                                                   "train/good/001.png"]
    assert how == (f"3 of the 4 defect-free images: the other 1 (train/good/000.png) is an image the model trained "
                   f"or calibrated on "
                   f"(trained on folder in {tmp_path / 'old'})")
    # on the folder it trained on, the held-out images, as the file names them
    here = {"dataset": {"name": "folder", "data_dir": str(tmp_path / "new"), "holdout_images": 1}, SEEN: first[:1]}
    assert dataset_items(evaluated, here)[1] == "3 held-out defect-free images (dataset.holdout_images at training)"


def mvtec_folder(root, images: tuple[str, ...]) -> None:
    """64×64 noise images at `images` (paths without .png) under `root`, and a mask for test/crack/000 alone."""
    rng = np.random.default_rng(0)
    for sub in images:
        (root / sub).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 255, (64, 64), dtype=np.uint8)).save(root / f"{sub}.png")
    (root / "ground_truth" / "crack").mkdir(parents=True)
    mask = np.zeros((64, 64), np.uint8)
    mask[10:30, 10:30] = 255
    Image.fromarray(mask).save(root / "ground_truth" / "crack" / "000_mask.png")


def test_a_folder_of_test_images_alone_is_evaluated_and_a_folder_without_test_is_refused_in_one_line(trained,
                                                                                                     tmp_path, capsys):
    import json

    mvtec_folder(tmp_path / "new", ("test/good/000", "test/good/001", "test/crack/000"))
    assert main([f"model={trained[1]}", "dataset=folder", f"data_dir={tmp_path / 'new'}",
                 f"output_dir={tmp_path / 'out'}", "overlays=false", "maps=false"]) == 0
    e = json.loads((tmp_path / "out" / "evaluation.json").read_text())
    assert (e["defect_images"], e["normal_images"]) == (1, 2) and e["pixel_auroc"] is not None
    capsys.readouterr()
    assert main([f"model={trained[1]}", "dataset=folder", f"data_dir={tmp_path / 'out'}",
                 f"output_dir={tmp_path / 'out2'}"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "neither" in err and "train/good does not exist" not in err
    assert str(tmp_path / "out" / "test") in err and not (tmp_path / "out2").exists()
    # training still needs train/good
    from omegaconf import OmegaConf

    from rdcae.data.folder import load

    with pytest.raises(FileNotFoundError, match="train/good does not exist"):
        load(OmegaConf.create({"data_dir": str(tmp_path / "new")}))


def test_a_folder_defect_image_without_a_mask_counts_as_a_defect_image_and_not_in_the_pixel_metrics(trained,
                                                                                                    tmp_path, capsys):
    import json

    mvtec_folder(tmp_path / "line", ("train/good/000", "train/good/001", "test/good/000", "test/crack/000",
                                      "test/scratch/000"))
    (tmp_path / "line" / "ground_truth" / "scrach").mkdir()  # its masks' folder, misspelt
    assert main([f"model={trained[1]}", "dataset=folder", f"data_dir={tmp_path / 'line'}",
                 f"output_dir={tmp_path / 'out'}", "overlays=false", "maps=false"]) == 0
    err = capsys.readouterr().err
    assert "note: 1 defect images have no mask (test/scratch/000.png; the mask of test/<defect type>/<name> is " in err
    assert "ground_truth/scrach matches no folder of test/" in err and "image skipped" not in err
    e = json.loads((tmp_path / "out" / "evaluation.json").read_text())
    assert (e["defect_images"], e["normal_images"]) == (2, 3)  # another surface: every clean image counts
    assert e["defect_images_without_masks"] == ["test/scratch/000.png"]
    assert "test/scratch/000.png" in e["defect_image_names"] and e["image_auroc"] is not None
    # its pixels are in no pixel metric: the crack's image alone is, as with the scratch left out
    with open(tmp_path / "out" / "detections.csv") as f:
        assert {r["image"] for r in csv.DictReader(f)} >= {"test/scratch/000.png", "test/crack/000.png"}
    (tmp_path / "line" / "test" / "scratch" / "000.png").unlink()
    (tmp_path / "line" / "test" / "scratch").rmdir()
    assert main([f"model={trained[1]}", "dataset=folder", f"data_dir={tmp_path / 'line'}",
                 f"output_dir={tmp_path / 'out2'}", "overlays=false", "maps=false"]) == 0
    without = json.loads((tmp_path / "out2" / "evaluation.json").read_text())
    assert (without["pixel_auroc"], without["pixel_aupro"]) == (e["pixel_auroc"], e["pixel_aupro"])


def test_the_models_data_folder_is_taken_only_where_it_still_is(tmp_path):
    from omegaconf import OmegaConf

    from rdcae.detect import from_the_model

    def cfg(given):
        return OmegaConf.create({"dataset": {"name": "aitex", "fabric": "03", "data_dir": "data/aitex"},
                                 "dataset_given": given})

    here = cfg(["dataset"])
    note = from_the_model(here, {"dataset": {"name": "aitex", "fabric": "00", "data_dir": str(tmp_path)}})
    assert here.dataset.fabric == "00" and here.dataset.data_dir == str(tmp_path)
    assert note == (f"note: fabric=00, data_dir={tmp_path} from the model file, as it was trained; give them on the "
                    "command line to evaluate other images")
    moved = cfg(["dataset"])
    note = from_the_model(moved, {"dataset": {"name": "aitex", "fabric": "03", "data_dir": str(tmp_path / "gone")}})
    assert moved.dataset.data_dir == "data/aitex"
    assert note == (f"note: the model's data_dir={tmp_path / 'gone'} is not here, so data_dir=data/aitex "
                    "(give data_dir=)")
    one = cfg(["dataset"])
    assert from_the_model(one, {"dataset": {"name": "aitex", "fabric": "00"}}) == (
        "note: fabric=00 from the model file, as it was trained; give it on the command line to evaluate other images")
    kept = cfg(["dataset"])  # the model file keeps the default folder as an absolute path: the same folder
    assert from_the_model(kept, {"dataset": {"name": "aitex", "fabric": "03",
                                             "data_dir": str(Path("data/aitex").resolve())}}) == ""
    assert kept.dataset.data_dir == "data/aitex"
    told = cfg(["dataset", "fabric"])  # a setting given stays as given; another dataset takes nothing
    assert from_the_model(told, {"dataset": {"name": "aitex", "fabric": "00"}}) == "" and told.dataset.fabric == "03"
    assert from_the_model(cfg(["dataset"]), {"dataset": {"name": "ksdd2", "data_dir": str(tmp_path)}}) == ""


def test_which_images_the_model_never_saw_comes_from_the_model_file_and_is_refused_on_the_command_line():
    from omegaconf import OmegaConf

    from rdcae.detect import from_the_model

    def cfg(given, **dataset):
        return OmegaConf.create({"dataset": {"name": "aitex", "fabric": "03", "holdout_images": 0} | dataset,
                                 "dataset_given": given})

    trained = {"dataset": {"name": "aitex", "fabric": "03", "holdout_images": 5}}
    taken = cfg(["dataset"])
    assert from_the_model(taken, trained) == ""  # no note offering to change it: it is no evaluation setting
    with pytest.raises(ConfigError, match=r"dataset.holdout_images=3: an evaluation takes which images the model "
                                          r"never saw from the model file \(dataset.holdout_images=5 at training\)"):
        from_the_model(cfg(["dataset", "dataset.holdout_images"], holdout_images=3), trained)
    with pytest.raises(ConfigError, match="dataset.holdout_images=3: on a surface the model was not trained on, every "
                                          "defect-free image is evaluated"):
        from_the_model(cfg(["dataset", "fabric", "dataset.holdout_images"], fabric="00", holdout_images=3), trained)
    assert from_the_model(cfg(["dataset", "dataset.holdout_images"], holdout_images=5), trained) == ""  # the same


def test_pixel_metrics_over_whole_images_count_defect_pixels_the_detection_did_not_inspect():
    from types import SimpleNamespace

    from rdcae.detect import evaluate

    fabric = np.ones((64, 64), bool)
    fabric[:, :16] = False  # a band the detection left out, with part of the defect in it
    mask = np.zeros((64, 64), bool)
    mask[20:30, 8:40] = True
    anomaly_map = np.where(mask, 2.0, 1.0).astype(np.float32)
    anomaly_map[~fabric] = np.nan  # as detection writes it: NaN where not inspected
    item = SimpleNamespace(name="d.png", mask=mask, unlabelled=False, unmasked=False)
    done = [(item, SimpleNamespace(score=2.0, verdict="defect", anomaly_map=anomaly_map, fabric=fabric,
                                   windows=4, defect_windows=1))]
    e = evaluate(done)
    assert e["pixel_auroc"] == 1.0 and e["pixel_aupro"] == 1.0  # over the inspected fabric: every defect pixel found
    # over the whole image the band's 80 defect pixels score lowest, tied with the band's normal ones
    normal_band, defect_band, normal_fabric = 64 * 16 - 80, 80, 64 * 48 - 240
    normals = normal_band + normal_fabric
    expected = (240 * normals + defect_band * normal_band / 2) / (320 * normals)
    assert e["pixel_auroc_whole_image"] == pytest.approx(expected, abs=1e-6)
    assert e["pixel_aupro_whole_image"] == pytest.approx(0.75)  # 3/4 of the region found up to the band's tie
    assert (e["defect_image_names"], e["normal_image_names"]) == (["d.png"], [])


def test_defect_images_flagged_in_most_of_their_windows_are_counted_apart():
    from types import SimpleNamespace

    from rdcae.detect import evaluate, summary

    def done(name, defect, windows_flagged, score):
        mask = np.zeros((64, 64), bool)
        mask[10:14, 10:20] = defect
        anomaly_map = np.full((64, 64), score, np.float32)
        item = SimpleNamespace(name=name, mask=mask, unlabelled=False, unmasked=False)
        detection = SimpleNamespace(score=score, verdict="defect" if windows_flagged else "ok", windows=4,
                                    defect_windows=windows_flagged, anomaly_map=anomaly_map,
                                    fabric=np.ones((64, 64), bool))
        return item, detection

    images = [done("whole.png", True, 4, 3.0), done("spot.png", True, 1, 2.0), done("missed.png", True, 0, 0.5),
              done("clean.png", False, 0, 0.4), done("clean_alike.png", False, 3, 2.5)]
    evaluation = evaluate(images)
    assert evaluation["defect_images_flagged"] == 2 and evaluation["defect_images_flagged_throughout"] == 1
    text = summary({"images": 5, "flagged": 3, "failed": 0, "seconds": 1.0, "output_dir": "out",
                    "evaluation": evaluation | {"normal_images_from": "x"}}, 1.0)
    assert "2 of 3 defect images flagged (1 of them in most of their windows, as a surface unlike" in text


def test_evaluation_on_the_training_dataset_uses_only_the_held_out_clean_image(trained, tmp_path, capsys):
    cfg, model = trained
    overrides = [f"dataset.{k}={v}" for k, v in cfg.dataset.items() if k not in ("name", "data_dir")]
    assert main([f"model={model}", "dataset=woven", *overrides, f"output_dir={tmp_path}"]) == 0
    printed = capsys.readouterr()
    assert "5 defect-free images no run trained on (1 held out" in printed.out  # and the evaluation's 4 further
    assert "warning: the model was trained on" not in printed.err  # the surface it was trained on
    import json

    evaluation = json.loads((tmp_path / "evaluation.json").read_text())
    assert evaluation["normal_images"] == 5 and evaluation["defect_images"] == 3
    for key in ("image_auroc", "image_f1", "pixel_auroc", "pixel_aupro"):
        assert 0 <= evaluation[key] <= 1, key
    # the file says what it measured: the model, the operating point and its threshold, the AUPRO's FPR limit
    assert evaluation["model"] == str(model) and evaluation["pixel_aupro_fpr_limit"] == 0.3
    assert "false alarms per clean image" in evaluation["operating_point"] and evaluation["threshold"] > 0
    # ... which images, how they were scored, and over which pixels
    assert (evaluation["dataset"], evaluation["stride"], evaluation["overlap"]) == ("woven", cfg.patch_size, False)
    assert evaluation["runtime"].startswith("torch") and "inspected" in evaluation["pixel_region"]
    assert (len(evaluation["defect_image_names"]), len(evaluation["normal_image_names"])) == (3, 5)
    assert 0 <= evaluation["pixel_auroc_whole_image"] <= 1 and 0 <= evaluation["pixel_aupro_whole_image"] <= 1
    assert "over whole images" in printed.out and "evaluated on    : woven" in printed.out
    # the last defect image is a training image of a run with dataset.unmarked_defect_images=1: not evaluated,
    # whether the model file names the images it trained on or (written before it did) only that setting
    from rdcae.data.images import SEEN, fingerprint

    payload = torch.load(model, weights_only=True)
    payload["config"]["dataset"]["unmarked_defect_images"] = 1
    last = [s for s in load_sources(cfg.dataset) if s.role == "defect"][-1]
    payload["config"][SEEN] = [*payload["config"][SEEN], fingerprint(last.image)]
    torch.save(payload, tmp_path / "unmarked.pt")
    del payload["config"][SEEN]
    torch.save(payload, tmp_path / "older.pt")
    given = [o for o in overrides if not o.startswith("dataset.unmarked_defect_images=")]
    for name in ("unmarked", "older"):
        assert main([f"model={tmp_path / name}.pt", "dataset=woven", *given, f"output_dir={tmp_path / name}",
                     "overlays=false", "maps=false"]) == 0
        evaluation = json.loads((tmp_path / name / "evaluation.json").read_text())
        assert evaluation["defect_images"] == 2 and evaluation["normal_images"] == 5, name  # 1 held out, 4 further
    # which images it trained on is the model's to say
    assert main([f"model={model}", "dataset=woven", *given, "dataset.unmarked_defect_images=1",
                 f"output_dir={tmp_path / 'refused'}"]) == 2
    assert "dataset.unmarked_defect_images=1: an evaluation takes which images" in capsys.readouterr().err


def test_a_defect_image_whose_mask_marks_nothing_is_left_out_of_the_metrics_and_named(trained, tmp_path,
                                                                                     monkeypatch):
    import dataclasses
    import json

    import rdcae.data.sources as sources

    cfg, model = trained
    real = sources.load_sources

    def one_mask_lost(dataset_cfg, **options):
        loaded = real(dataset_cfg, **options)
        first = next(i for i, s in enumerate(loaded) if s.role == "defect")
        loaded[first] = dataclasses.replace(loaded[first], mask=np.zeros_like(loaded[first].mask))
        return loaded

    monkeypatch.setattr(sources, "load_sources", one_mask_lost)
    overrides = [f"dataset.{k}={v}" for k, v in cfg.dataset.items() if k not in ("name", "data_dir")]
    assert main([f"model={model}", "dataset=woven", *overrides, f"output_dir={tmp_path}", "maps=false"]) == 0
    evaluation = json.loads((tmp_path / "evaluation.json").read_text())
    assert evaluation["normal_images"] == 5 and evaluation["defect_images"] == 2  # not counted as clean
    assert len(evaluation["unlabelled_images"]) == 1
    with open(tmp_path / "detections.csv") as f:  # ... but detected and written like every other image
        assert evaluation["unlabelled_images"][0] in {r["image"] for r in csv.DictReader(f)}


def test_evaluation_on_another_fabric_warns_naming_both_and_counts_every_clean_image(trained, tmp_path, capsys):
    cfg, model = trained
    overrides = [f"dataset.{k}={v}" for k, v in cfg.dataset.items() if k not in ("name", "data_dir", "seed")]
    other = cfg.dataset.seed + 1
    assert main([f"model={model}", "dataset=woven", f"dataset.seed={other}", *overrides,
                 f"output_dir={tmp_path}", "overlays=false", "maps=false"]) == 0
    printed = capsys.readouterr()
    warnings = [line for line in printed.err.splitlines() if line.startswith("warning: the model was trained on")]
    assert len(warnings) == 1  # once, not per image
    assert (f"trained on woven fabric of dataset.seed={cfg.dataset.seed}, not on woven fabric of "
            f"dataset.seed={other}") in warnings[0]
    # none held out on another fabric: its training images, and the further ones an evaluation adds
    assert f"all {cfg.dataset.n_normal_images + 4} defect-free images" in printed.out


def test_evaluation_on_the_aitex_sample_gives_finite_image_and_pixel_metrics(trained, aitex_dir, tmp_path):
    from rdcae.detect import parse, run

    result = run(parse([f"model={trained[1]}", "dataset=aitex", "fabric=00", f"data_dir={aitex_dir}",
                        f"output_dir={tmp_path}", "overlays=false", "maps=false"]))
    e = result["evaluation"]
    assert e["normal_images"] == 20 and e["defect_images"] == 7  # another dataset: every clean image is unseen
    assert all(math.isfinite(e[k]) and 0 <= e[k] <= 1 for k in ("image_auroc", "pixel_auroc", "pixel_aupro"))


def test_patches_the_detector_cannot_take_are_refused_saying_what_it_expects(trained):
    detector = load_detector(trained[1])
    with pytest.raises(TypeError, match=r"divide uint8 pixels by 255"):
        detector.score(torch.zeros(2, 3, 32, 32, dtype=torch.uint8))
    with pytest.raises(ValueError, match=r"got values in \[0, 255\]"):
        detector.score(torch.full((2, 3, 32, 32), 255.0).index_fill_(0, torch.tensor([0]), 0.0))
    with pytest.raises(ValueError, match=r"\(N, 3, 32, 32\).*got shape \(2, 3, 64, 64\)"):
        detector.score(torch.rand(2, 3, 64, 64))
    with pytest.raises(ValueError, match=r"got shape \(3, 32, 32\)"):
        detector.score(torch.rand(3, 32, 32))
    with pytest.raises(ValueError, match="uint8 image"):
        detector.detect(np.zeros((64, 64), np.float32))
    with pytest.raises(ValueError, match="no 1 \\(gray\\) or 3 \\(RGB\\) channels, with or without alpha"):
        detector.detect(np.zeros((64, 64, 5), np.uint8))


class _RunsCode:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


@pytest.mark.parametrize("case", ["not_a_detector", "carries_code", "zero_bytes", "nan_threshold", "missing",
                                  "onnx_on_torch", "onnx_damaged", "an_image", "run_folder",
                                  "bad_overlap_windows", "no_weights", "other_shape"])
def test_a_model_file_that_is_not_a_safe_detector_is_refused_in_one_line(case, trained, clean_image, tmp_path, capsys):
    model, marker = tmp_path / "model.pt", tmp_path / "code_ran"
    settings = []
    if case == "onnx_on_torch":  # an exported graph asked to run on PyTorch, which needs the run's model.pt
        model = export_onnx(load_detector(trained[1]), tmp_path / "model.onnx")
        settings = ["backend=torch"]
    elif case == "onnx_damaged":
        model = tmp_path / "model.onnx"
        model.write_bytes(b"not a protobuf at all")
    elif case == "not_a_detector":
        torch.save({"weights": torch.zeros(3)}, model)
    elif case == "carries_code":
        model.write_bytes(pickle.dumps(_RunsCode(marker)))
    elif case == "zero_bytes":
        model.write_bytes(b"")
    elif case == "an_image":
        Image.fromarray(clean_image).save(model, format="PNG")
    elif case == "run_folder":  # the run's folder instead of its model.pt
        model = tmp_path / "run"
        model.mkdir()
        (model / "model.pt").write_bytes(trained[1].read_bytes())
    elif case == "nan_threshold":
        payload = torch.load(trained[1], weights_only=True)
        payload["threshold"] = float("nan")
        torch.save(payload, model)
    elif case in ("bad_overlap_windows", "no_weights", "other_shape"):  # a file edited or from another version
        payload = torch.load(trained[1], weights_only=True)
        if case == "bad_overlap_windows":
            payload["operating_point"]["overlap_windows"] = 3
        elif case == "no_weights":
            del payload["state_dict"]
        else:
            name = next(iter(payload["state_dict"]))
            payload["state_dict"][name] = torch.zeros(1)
        torch.save(payload, model)
    Image.fromarray(clean_image).save(tmp_path / "a.png")
    assert main([f"model={model}", f"input={tmp_path / 'a.png'}", f"output_dir={tmp_path / 'out'}", *settings]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("error: ") and "Traceback" not in err
    assert f"model={model}" in err and not marker.exists()
    expected = {"not_a_detector": "not an rdcae detector file", "carries_code": "nothing in it ran",
                "zero_bytes": "not an rdcae detector file", "nan_threshold": "threshold is nan",
                "missing": "no such file", "an_image": "not an rdcae detector file (empty, or an image",
                "run_folder": f"a folder, not a model file; point it at model={model / 'model.pt'}",
                "onnx_on_torch": "is an exported graph, which runs on onnx or openvino; "
                "give the run's model.pt for backend=torch", "onnx_damaged": "not a readable ONNX file",
                "bad_overlap_windows": "its contents are damaged or from another rdcae version (ValueError: "
                "overlap_windows=3", "no_weights": "its contents are damaged or from another rdcae version (KeyError",
                "other_shape": "its contents are damaged or from another rdcae version (RuntimeError"}
    assert expected[case] in err and "weights_only=False" not in err


def test_bad_command_lines_get_one_clear_line(trained, tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    (tmp_path / "img").mkdir()
    Image.fromarray(np.full((64, 64), 128, np.uint8)).save(tmp_path / "img" / "x.png")
    cases = {
        (f"model={trained[1]}", f"input={empty}"): "holds no image",
        (f"model={trained[1]}", f"input={tmp_path}/nothing*.png"): "no image matches",
        (f"model={trained[1]}", f"input={tmp_path / 'img'}", f"output_dir={blocker}/out"): "cannot write there",
        (f"model={trained[1]}", f"input={tmp_path / 'img'}", "backend=cuda"): "backend=cuda",

        (f"model={trained[1]}", f"input={tmp_path / 'img'}", "device=tpu"): "device=tpu: choose auto, cpu, cuda",
        (f"model={trained[1]}", f"input={tmp_path / 'img'}", "backend=onnx", "device=cuda"):
            "backend=onnx runs on the CPU; use backend=torch for the GPU",
        (f"model={trained[1]}", "dataset=aitx"): "dataset=aitx: no such dataset; did you mean dataset=aitex?",
        (f"model={trained[1]}", "dataset=woven", "dataset.holdout_imgs=3"):
            "dataset.holdout_imgs=3: unknown setting; did you mean dataset.holdout_images=?",
        (f"model={trained[1]}", f"input={tmp_path / 'img'}", "strid=16"):
            "strid: unknown setting; did you mean stride=?",
        (f"model={trained[1]}", f"input={tmp_path / 'img'}", "false_alarm_per_image=0.001"):
            "did you mean false_alarms_per_image=?",
        (f"model={trained[1]}", f"input={tmp_path / 'img'}", "stride=64"): "stride=64 must be a whole number",
        (f"model={trained[1]}", f"input={tmp_path / 'img'}", "threshold=high"): "threshold=high must be a number",
        (f"model={trained[1]}", f"input={tmp_path / 'img'}", "threshold=-1"): "threshold=-1 must be a number of at "
                                                                             "least 0",
        (f"model={trained[1]}", f"input={tmp_path / 'img'}", "threshold=1.5", "false_alarms_per_image=0.001"):
            "threshold=1.5 and false_alarms_per_image=0.001: give one",
        (f"model={trained[1]}", f"input={tmp_path / 'img'}", "backend=onnx", "precision=bf16"):
            "precision=bf16: onnxruntime runs the graph in fp32",
        (f"model={trained[1]}", f"input={tmp_path / 'img'}", "false_alarms_per_image=1"):
            "false_alarms_per_image=1 must be a share of clean images",
        (f"model={trained[1]}", f"input={tmp_path / 'img'}", "threshold=1.0", "threshold=5"):
            "threshold= given twice (threshold=1.0 and threshold=5): give it once",
        (f"input={tmp_path / 'img'}",): "give model=",
        (f"model={trained[1]}",): "give input=",
    }
    if not torch.cuda.is_available():
        cases[(f"model={trained[1]}", f"input={tmp_path / 'img'}", "device=cuda")] = "no CUDA GPU is visible"
    for argv, message in cases.items():
        assert main(list(argv)) == 2, argv
        err = capsys.readouterr().err.strip()
        assert err.startswith("error: ") and message in err and len(err.splitlines()) == 1, (argv, err)


def test_the_network_runs_on_the_gpu_when_there_is_one_and_exported_graphs_on_the_cpu(monkeypatch):
    from rdcae.detect import torch_device

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert torch_device("auto", "torch") == torch.device("cuda")
    assert torch_device("auto", "onnx") == torch.device("cpu") == torch_device("cpu", "torch")
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    assert torch_device("cuda:0", "torch") == torch.device("cuda:0")
    with pytest.raises(ConfigError, match="has 1 CUDA GPU"):
        torch_device("cuda:1", "torch")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert torch_device("auto", "torch") == torch.device("cpu")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_on_a_gpu_the_detector_decides_as_on_the_cpu(trained, clean_image, tmp_path, capsys):
    painted, _ = bar(clean_image)
    cpu, gpu = load_detector(trained[1]), load_detector(trained[1], map_location="cuda")
    assert gpu.threshold.device.type == "cuda"
    on_cpu, on_gpu = cpu.detect(painted), gpu.detect(painted)
    assert on_gpu.verdict == on_cpu.verdict == "defect"
    np.testing.assert_allclose(on_gpu.window_scores, on_cpu.window_scores, rtol=1e-2, atol=1e-3)  # TF32 convolutions
    Image.fromarray(painted).save(tmp_path / "painted.png")
    assert main([f"model={trained[1]}", f"input={tmp_path / 'painted.png'}", f"output_dir={tmp_path / 'out'}",
                 "device=cuda", "precision=fp32", "overlays=false", "maps=false"]) == 0
    with open(tmp_path / "out" / "detections.csv") as f:
        assert [row["verdict"] for row in csv.DictReader(f)] == ["defect"]
    assert "(torch fp32 on cuda)" in capsys.readouterr().out


@pytest.mark.parametrize("native, backend, expected", [
    (True, "torch", "bf16"), (False, "torch", "fp32"), (True, "onnx", "fp32"),
])
def test_precision_auto_scores_in_bf16_only_where_the_runtime_computes_it_natively(native, backend, expected, trained,
                                                                                      clean_image, tmp_path, capsys,
                                                                                      monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: native)
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False)
    painted, _ = bar(clean_image)
    Image.fromarray(painted).save(tmp_path / "painted.png")

    def anomaly_map(*settings: str) -> np.ndarray:
        out = tmp_path / "out"
        assert main([f"model={trained[1]}", f"input={tmp_path / 'painted.png'}", f"output_dir={out}",
                     f"backend={backend}", "overlays=false", *settings]) == 0
        return np.load(out / "painted_map.npy")

    auto = anomaly_map()  # precision=auto, the default
    assert f"({backend} {expected} on cpu)" in capsys.readouterr().out
    np.testing.assert_array_equal(auto, anomaly_map(f"precision={expected}"))
    if expected == "bf16":
        assert not np.array_equal(auto, anomaly_map("precision=fp32"), equal_nan=True)  # it reaches the network


@pytest.mark.parametrize("capabilities, expected", [(["FP32", "BF16", "INT8"], "bf16"), (["FP32", "INT8"], "fp32")])
def test_precision_auto_on_openvino_follows_what_openvino_lists_for_the_cpu(capabilities, expected, monkeypatch):
    import types

    class Core:
        def get_property(self, device, key):
            assert (device, key) == ("CPU", "OPTIMIZATION_CAPABILITIES")
            return capabilities

    monkeypatch.setitem(sys.modules, "openvino", types.SimpleNamespace(Core=Core))
    assert detection_precision("auto", "openvino") == expected
    assert detection_precision("fp32", "openvino") == "fp32"  # a precision given is kept


def test_help_shows_usage_with_model_and_input_examples():
    out = subprocess.run([sys.executable, "-m", "rdcae.detect", "--help"], capture_output=True, text=True, cwd=REPO,
                         timeout=120)
    assert out.returncode == 0
    assert "model=outputs/runs/<run>/model.pt input=" in out.stdout and "dataset=aitex" in out.stdout
    assert "stride:" in out.stdout and "backend:" in out.stdout
    # each setting with what it does, not its default alone
    settings = {line.split(":")[0]: line for line in out.stdout.splitlines() if line and line[0].isalpha()}
    assert "onnxruntime" in settings["backend"] and "clean images flagged" in settings["false_alarms_per_image"]
    assert "two grids" in out.stdout and "# `python -m rdcae.detect`" not in out.stdout


def test_help_anywhere_on_the_line_shows_the_usage_and_a_bare_path_is_named_as_the_setting_it_wants(tmp_path, capsys):
    assert main(["model=m.pt", "--help"]) == 0 and "model=outputs/runs/<run>/model.pt" in capsys.readouterr().out
    for arg, hint in [("run/model.pt", "did you mean model=run/model.pt?"), ("a.png", "did you mean input=a.png?"),
                      (str(tmp_path), f"did you mean input={tmp_path}?"), ("nonsense", "key=value (python")]:
        assert main([arg]) == 2
        err = capsys.readouterr().err.strip()
        assert err.count("\n") == 0 and err.startswith(f"error: {arg}: settings are key=value") and hint in err


def test_the_onnx_backend_gives_the_torch_decisions_without_importing_lightning(trained, clean_image, tmp_path):
    images = tmp_path / "images"
    images.mkdir()
    Image.fromarray(bar(clean_image)[0]).save(images / "barred.png")
    Image.fromarray(clean_image).save(images / "clean.png")
    code = ("import sys; from rdcae.detect import main; code = main(sys.argv[1:]); "
            "loaded = any(m.split('.')[0] == 'lightning' for m in sys.modules); "
            "print('lightning loaded' if loaded else 'no lightning'); sys.exit(code)")
    results = {}
    for backend in ("torch", "onnx"):
        out = tmp_path / backend
        argv = [f"model={trained[1]}", f"input={images}", f"output_dir={out}", f"backend={backend}", "precision=fp32"]
        done = subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, text=True, cwd=REPO,
                              timeout=300)
        assert done.returncode == 0, done.stderr
        assert "no lightning" in done.stdout
        results[backend] = {r["image"]: r for r in csv.DictReader(open(out / "detections.csv"))}
    assert (trained[1].parent / "model.onnx").is_file()  # exported on first use, beside the model file
    for name, torch_row in results["torch"].items():
        onnx_row = results["onnx"][name]
        assert onnx_row["verdict"] == torch_row["verdict"] and onnx_row["defect_tiles"] == torch_row["defect_tiles"]
        assert float(onnx_row["score"]) == pytest.approx(float(torch_row["score"]), rel=1e-3)


def test_an_exported_onnx_file_alone_decides_as_the_model_file_it_came_from(trained, clean_image, tmp_path, capsys):
    from rdcae.inference.backends import load_exported

    detector = load_detector(trained[1])
    (tmp_path / "line3").mkdir()
    deployed = export_onnx(detector, tmp_path / "line3" / "model.onnx")  # no model.pt beside it
    images = tmp_path / "images"
    images.mkdir()
    barred = bar(clean_image)[0]
    Image.fromarray(barred).save(images / "barred.png")
    Image.fromarray(clean_image).save(images / "clean.png")
    rows = {}
    for name, model, settings in [("torch", trained[1], []), ("onnx", deployed, []),
                                  ("torch_moved", trained[1], ["false_alarms_per_image=0.2", "stride=16"]),
                                  ("onnx_moved", deployed, ["false_alarms_per_image=0.2", "stride=16"]),
                                  ("openvino", deployed, ["backend=openvino"])]:
        out = tmp_path / name  # every backend in fp32: the same arithmetic, whatever this CPU computes natively
        assert main([f"model={model}", f"input={images}", f"output_dir={out}", "precision=fp32", *settings]) == 0
        rows[name] = {r["image"]: r for r in csv.DictReader(open(out / "detections.csv"))}
    printed = capsys.readouterr().out
    assert "0.2 false alarms per clean image" in printed
    assert printed.count("at stride 32, the threshold set for windows at stride 16") == 2  # torch and onnx
    assert not (deployed.parent / "model.pt").exists()
    moved = detector.image_threshold(0.2, stride=16)
    assert moved < detector.image_threshold()  # the two settings do move it
    default = detector.image_threshold()
    for ref, exported, threshold in [("torch", "onnx", default), ("torch_moved", "onnx_moved", moved),
                                     ("torch", "openvino", default)]:
        for image, torch_row in rows[ref].items():
            onnx_row = rows[exported][image]
            assert float(onnx_row["threshold"]) == pytest.approx(threshold, rel=1e-5)
            assert float(onnx_row["threshold"]) == pytest.approx(float(torch_row["threshold"]), rel=1e-5)
            assert onnx_row["verdict"] == torch_row["verdict"] and onnx_row["defect_tiles"] == torch_row["defect_tiles"]
            assert float(onnx_row["score"]) == pytest.approx(float(torch_row["score"]), rel=1e-3)
    assert rows["onnx"]["barred.png"]["verdict"] == "defect"
    # from Python, with no model.pt and no PyTorch network code
    detection = load_exported(deployed).detect(barred)
    assert detection.verdict == "defect" and detection.threshold == pytest.approx(detector.image_threshold(), rel=1e-6)
    assert load_exported(deployed, threshold=1e9).detect(barred).verdict == "ok"


def test_a_second_detection_on_a_folder_does_not_read_the_overlays_the_first_wrote_inside_it(trained, clean_image,
                                                                                             tmp_path, capsys):
    folder = tmp_path / "line3"
    folder.mkdir()
    Image.fromarray(clean_image).save(folder / "a.png")
    for _ in range(2):
        assert main([f"model={trained[1]}", f"input={folder}", f"output_dir={folder / 'out'}", "maps=false"]) == 0
        assert [r["image"] for r in csv.DictReader(open(folder / "out" / "detections.csv"))] == ["a.png"]
    assert (folder / "out" / "a_overlay.png").is_file()
    # an earlier detection's output folder as input=: its overlays are no images to judge
    capsys.readouterr()
    assert main([f"model={trained[1]}", f"input={folder / 'out'}", f"output_dir={folder}", "maps=false"]) == 2
    assert "holds no image but the overlays an earlier detection wrote there" in capsys.readouterr().err
    # the input folder itself as the output folder: the overlays and maps an earlier detection wrote there, as
    # its detections.csv names them, are not read again (else each run would judge the last one's overlays)
    alone = tmp_path / "alone"
    alone.mkdir()
    Image.fromarray(clean_image).save(alone / "b.png")
    Image.fromarray(clean_image).save(alone / "c_overlay.png")  # an image of the user's own, named so
    for _ in range(2):
        assert main([f"model={trained[1]}", f"input={alone}", f"output_dir={alone}"]) == 0
        assert sorted(r["image"] for r in csv.DictReader(open(alone / "detections.csv"))) == ["b.png", "c_overlay.png"]
    assert (alone / "b_overlay.png").is_file() and (alone / "b_map.npy").is_file()
    assert not (alone / "b_overlay_overlay.png").exists()
    # a glob over that folder alike
    assert main([f"model={trained[1]}", f"input={alone}/*.png", f"output_dir={alone}"]) == 0
    assert sorted(r["image"] for r in csv.DictReader(open(alone / "detections.csv"))) == ["b.png", "c_overlay.png"]
    # and a later detection that writes elsewhere does not judge them either, for a folder or a glob
    for given in (str(alone), f"{alone}/*.png"):
        out = tmp_path / f"elsewhere{len(given)}"
        assert main([f"model={trained[1]}", f"input={given}", f"output_dir={out}"]) == 0
        assert sorted(r["image"] for r in csv.DictReader(open(out / "detections.csv"))) == ["b.png", "c_overlay.png"]


def test_an_onnx_file_exported_without_its_calibration_scores_keeps_its_own_operating_point(trained, clean_image,
                                                                                           tmp_path, capsys):
    import onnx

    detector = load_detector(trained[1])
    graph = onnx.load(str(export_onnx(detector, tmp_path / "model.onnx")))
    kept = [(p.key, p.value) for p in graph.metadata_props if not p.key.startswith("operating_point_")]
    # the scores of windows and of overlapping tiles, and the windows per pixel the latter averaged
    assert len(kept) == len(graph.metadata_props) - 3
    del graph.metadata_props[:]
    onnx.helper.set_model_props(graph, dict(kept))
    onnx.save(graph, str(tmp_path / "older.onnx"))
    Image.fromarray(clean_image).save(tmp_path / "clean.png")
    older, clean = tmp_path / "older.onnx", tmp_path / "clean.png"
    assert main([f"model={older}", f"input={clean}", f"output_dir={tmp_path / 'a'}"]) == 0
    row = next(csv.DictReader(open(tmp_path / "a" / "detections.csv")))
    assert float(row["threshold"]) == pytest.approx(detector.image_threshold(overlap=False), rel=1e-6)
    assert "0.01 false alarms per clean image" in capsys.readouterr().out
    assert main([f"model={older}", f"input={clean}", "false_alarms_per_image=0.2", f"output_dir={tmp_path / 'b'}"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "exported without its calibration scores" in err and "export it again" in err


def test_the_image_threshold_is_the_operating_point_the_model_carries_and_can_be_moved(trained, clean_image, tmp_path,
                                                                                      capsys):
    cfg, model = trained
    detector = load_detector(model)
    point = detector.operating_point
    assert point is not None and len(point.scores) == cfg.dataset.n_calibration
    assert point.windows_per_image == (128 // 32) * (256 // 32)  # every window of a woven image lies on fabric
    assert point.false_alarms_per_image == 0.01
    detection = detector.detect(clean_image)
    assert detection.threshold == pytest.approx(detector.image_threshold())
    # the image threshold is above the patch threshold: 8 windows per image at 1 % of clean images flagged
    # allow each window 1 − 0.99^(1/32) ≈ 0.03 %, less than the patch quantile's 0.1 %
    assert detector.image_threshold() > float(detector.threshold)
    looser, finer = detector.image_threshold(0.2), detector.image_threshold(stride=16)
    assert looser < detector.image_threshold() < finer  # more false alarms allowed; 4x the windows at stride 16
    assert main([f"model={model}", f"input={tmp_path / 'none'}.png", "false_alarms_per_image=0.2"]) == 2
    capsys.readouterr()
    Image.fromarray(clean_image).save(tmp_path / "clean.png")
    assert main([f"model={model}", f"input={tmp_path / 'clean.png'}", f"output_dir={tmp_path / 'a'}",
                 "false_alarms_per_image=0.2"]) == 0
    row = next(csv.DictReader(open(tmp_path / "a" / "detections.csv")))
    assert float(row["threshold"]) == pytest.approx(looser, rel=1e-5)
    assert "0.2 false alarms per clean image" in capsys.readouterr().out


def test_a_model_file_without_an_operating_point_judges_images_at_its_patch_threshold(trained, clean_image, tmp_path,
                                                                                      capsys):
    payload = torch.load(trained[1], weights_only=True)
    del payload["operating_point"]
    old = tmp_path / "old.pt"
    torch.save(payload, old)
    detector = load_detector(old)
    assert detector.operating_point is None
    assert detector.detect(clean_image).threshold == pytest.approx(float(detector.threshold))
    Image.fromarray(clean_image).save(tmp_path / "clean.png")
    assert main([f"model={old}", f"input={tmp_path / 'clean.png'}", "false_alarms_per_image=0.1"]) == 2
    err = capsys.readouterr().err.strip()
    assert "written before detectors carried an image operating point" in err and len(err.splitlines()) == 1


def test_the_summary_says_why_there_is_no_image_auroc_without_clean_images():
    from rdcae.detect import summary

    evaluation = {"image_auroc": math.nan, "image_f1": 0.8, "defect_images_flagged": 4, "defect_images": 5,
                  "false_alarms": 0, "normal_images": 0, "pixel_auroc": 0.9, "pixel_aupro": 0.5,
                  "normal_images_from": "no defect-free image"}
    result = {"images": 5, "flagged": 4, "failed": 0, "seconds": 1.0, "output_dir": "out", "evaluation": evaluation}
    text = summary(result, 1.5, "window score given")
    assert "image AUROC n/a (it needs clean and defect images)" in text and "nan" not in text
    assert "image AUROC 0.7500" in summary(result | {"evaluation": evaluation | {"image_auroc": 0.75}}, 1.5)


def test_overlap_scores_a_tile_from_the_residual_averaged_over_every_window_that_covers_it():
    from rdcae.data.tiling import grid
    from rdcae.inference.image import overlap_tile_scores
    from rdcae.model.score import strip_score

    rng = np.random.default_rng(0)
    size, shape = 8, (16, 24)
    field = rng.random(shape)  # a residual every window agrees on: averaging changes nothing
    dense, tiles = grid(*shape, size, size // 2), grid(*shape, size)
    agreed = np.stack([field[y:y + size, x:x + size] for y, x in dense])
    own = torch.from_numpy(np.stack([field[y:y + size, x:x + size] for y, x in tiles]))
    assert np.allclose(overlap_tile_scores(agreed, dense, tiles, shape, size, "norm"), own.flatten(1).sum(1).sqrt())
    assert np.allclose(overlap_tile_scores(agreed, dense, tiles, shape, size, "strip", 2), strip_score(own, 2))
    # an error at one window's border only is divided by the windows that cover the pixel (here 2 or 4)
    spiked = agreed.copy()
    k = next(i for i, (y, x) in enumerate(dense) if (y, x) == (4, 4))
    spiked[k, 0, 0] += 8.0  # pixel (4, 4): covered by the windows at (0, 0), (0, 4), (4, 0), (4, 4)
    before = overlap_tile_scores(agreed, dense, tiles, shape, size, "norm")
    after = overlap_tile_scores(spiked, dense, tiles, shape, size, "norm")
    first = next(i for i, (y, x) in enumerate(tiles) if (y, x) == (0, 0))
    assert float(after[first]) ** 2 - float(before[first]) ** 2 == pytest.approx(8.0 / 4, rel=1e-4)  # float32
    assert np.allclose(np.delete(after, first), np.delete(before, first))


def test_a_trained_model_carries_the_overlap_calibration_of_its_calibration_images_and_detect_uses_it(
        trained, clean_image, tmp_path, capsys):
    from rdcae.data.patches import calibration_sources
    from rdcae.inference.image import ImageDetector, overlap_calibration

    cfg, model = trained
    detector = load_detector(model)
    point = detector.operating_point
    images = [s.image for s in calibration_sources(cfg.dataset, int(cfg.patch_size))]
    assert len(images) == cfg.dataset.n_normal_images - 1  # the held-out image does not calibrate
    again = overlap_calibration(detector, images, len(point.scores))
    assert point.overlap_scores is not None and len(point.overlap_scores) == len(again) == 32
    assert np.allclose(point.overlap_scores, np.sort(again), atol=1e-6)
    # overlap scores tiles over overlapping windows, at the threshold of their own calibration; the
    # default scores each window alone
    painted, _ = bar(clean_image)
    averaged, single = ImageDetector.from_detector(detector, overlap=True).detect(painted), detector.detect(painted)
    assert averaged.overlap and not single.overlap and averaged.windows == single.windows
    assert averaged.threshold == pytest.approx(point.threshold(overlap=True))
    assert single.threshold == pytest.approx(point.threshold())
    assert averaged.verdict == "defect" and not np.allclose(averaged.window_scores, single.window_scores)
    Image.fromarray(painted).save(tmp_path / "barred.png")
    for setting, expected in [("overlap=false", single), ("overlap=true", averaged), ("stride=32", single)]:
        out = tmp_path / setting
        assert main([f"model={model}", f"input={tmp_path / 'barred.png'}", f"output_dir={out}", setting,
                     "precision=fp32"]) == 0
        row = next(csv.DictReader(open(out / "detections.csv")))
        assert float(row["threshold"]) == pytest.approx(expected.threshold, rel=1e-5)
        assert float(row["score"]) == pytest.approx(expected.score, rel=1e-5)
    assert "tiles scored over overlapping windows" in capsys.readouterr().out


def test_overlap_averages_over_the_half_patch_grid_of_its_calibration_at_any_stride(trained, clean_image):
    from rdcae.inference.image import ImageDetector

    detector = ImageDetector.from_detector(load_detector(trained[1]), overlap=True)
    painted, _ = bar(clean_image)
    half, fine = detector.detect(painted, stride=16), detector.detect(painted, stride=8)
    assert half.overlap and fine.overlap and fine.windows > half.windows
    at = {tuple(c): v for c, v in zip(fine.corners.tolist(), fine.window_scores)}
    common = [i for i, c in enumerate(half.corners.tolist()) if tuple(c) in at]
    assert len(common) == half.windows  # the stride-16 tiles are among the stride-8 ones
    # a tile's score does not depend on the stride it was asked for: the same windows per pixel
    assert np.allclose([at[tuple(half.corners[i])] for i in common], half.window_scores[common], rtol=1e-5)


def test_overlap_averages_two_grids_and_an_older_file_the_four_windows_its_calibration_averaged(
        trained, clean_image, tmp_path):
    from rdcae.inference.image import ImageDetector, overlap_grid, overlap_tile_scores
    from rdcae.inference.onnx import OnnxScorer

    def counting(image_detector) -> list[int]:
        seen, score_fn = [], image_detector.score_fn
        image_detector.score_fn = lambda windows: (seen.append(len(windows)), score_fn(windows))[1]
        return seen

    detector = load_detector(trained[1])
    assert detector.operating_point.overlap_windows == 2
    image_detector = ImageDetector.from_detector(detector, overlap=True)
    seen, image = counting(image_detector), image_detector.check_image(clean_image)  # (H, W, 1)
    yx, scores, fabric = image_detector.tile_scores(image)
    dense = image_detector.corners(image, 16, fabric)[0]
    two = overlap_grid(dense, 32)
    # the tiles' own grid and the one shifted by half a patch down and across: about two windows a tile
    assert seen == [len(two)] and len(yx) < len(two) < len(dense) and set(map(tuple, yx.tolist())) <= set(
        map(tuple, two.tolist()))
    assert {(y // 16 % 2, x // 16 % 2) for y, x in two.tolist()} == {(0, 0), (1, 1)}
    energy = image_detector.score_fn(image_detector.cut(image, two))[1]
    assert np.allclose(scores, overlap_tile_scores(energy, two, yx, image.shape[:2], 32, detector.score_kind,
                                                   detector.score_width), rtol=1e-5)
    # a file written before the two grids was calibrated on every half-stride window, and is scored so
    payload = torch.load(trained[1], weights_only=True)
    del payload["operating_point"]["overlap_windows"]
    torch.save(payload, tmp_path / "older.pt")
    older = ImageDetector.from_detector(load_detector(tmp_path / "older.pt"), overlap=True)
    seen = counting(older)
    assert older.overlap_windows == 4 and older.tile_scores(image)[0].tolist() == yx.tolist()
    assert seen == [len(dense)]
    # an exported file carries the windows of its calibration
    exported = OnnxScorer(export_onnx(detector, tmp_path / "model.onnx"))
    assert exported.operating_point.overlap_windows == 2
    assert ImageDetector.from_exported(exported, overlap=True).overlap_windows == 2


def test_a_model_file_without_the_overlap_calibration_scores_windows_alone_and_refuses_overlap(
        trained, clean_image, tmp_path, capsys):
    payload = torch.load(trained[1], weights_only=True)
    del payload["operating_point"]["overlap_scores"]
    older = tmp_path / "older.pt"
    torch.save(payload, older)
    detector = load_detector(older)
    assert detector.operating_point.overlap_scores is None
    detection = detector.detect(clean_image)
    assert not detection.overlap and detection.threshold == pytest.approx(detector.operating_point.threshold())
    Image.fromarray(clean_image).save(tmp_path / "clean.png")
    assert main([f"model={older}", f"input={tmp_path / 'clean.png'}", f"output_dir={tmp_path / 'a'}"]) == 0
    capsys.readouterr()
    assert main([f"model={older}", f"input={tmp_path / 'clean.png'}", "overlap=true"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "overlap=true" in err and "overlap=false" in err and str(older) in err
    assert "fewer than 20 tiles" in err  # the other way to a file without it: too few calibration tiles
    assert main([f"model={trained[1]}", f"input={tmp_path / 'clean.png'}", "overlap=maybe"]) == 2
    assert "must be true or false" in capsys.readouterr().err
    # the benchmark's image rows refuse it the same way, before timing anything
    from omegaconf import OmegaConf

    from rdcae.bench import bench_image
    from rdcae.errors import ConfigError

    bench = OmegaConf.create({"bench": {"image": str(tmp_path / "clean.png"), "overlap": True}})
    with pytest.raises(ConfigError, match="bench.overlap=true: bench.model=.*overlap=false"):
        bench_image(bench, older, tmp_path / "bench")


def test_a_rerun_with_a_new_output_folder_inside_the_input_does_not_read_the_earlier_one(trained, clean_image,
                                                                                         tmp_path, capsys):
    folder = tmp_path / "camera"
    folder.mkdir()
    Image.fromarray(clean_image).save(folder / "a.png")
    for stamp in ("first", "second"):  # as the default outputs/detect/<time> folders land inside input=.
        out = folder / "outputs" / "detect" / stamp
        assert main([f"model={trained[1]}", f"input={folder}", f"output_dir={out}", "maps=false"]) == 0
        assert [r["image"] for r in csv.DictReader(open(out / "detections.csv"))] == ["a.png"]
        assert f"{out} (detections.csv, *_overlay.png)\n" in capsys.readouterr().out  # no maps written, none named


def test_two_images_with_one_stem_get_overlays_and_maps_of_their_own(trained, clean_image, tmp_path):
    images = tmp_path / "images"
    images.mkdir()
    Image.fromarray(bar(clean_image)[0]).save(images / "cam.png")
    Image.fromarray(clean_image).save(images / "cam.bmp")
    Image.fromarray(clean_image).save(images / "other.png")
    out = tmp_path / "out"
    assert main([f"model={trained[1]}", f"input={images}", f"output_dir={out}"]) == 0
    assert {p.name for p in out.glob("*_overlay.png")} == {"cam_png_overlay.png", "cam_bmp_overlay.png",
                                                           "other_overlay.png"}
    barred, clean = np.load(out / "cam_png_map.npy"), np.load(out / "cam_bmp_map.npy")
    assert np.nanmax(barred) > np.nanmax(clean)  # each map is its own image's


def test_an_onnx_file_from_another_model_beside_the_model_file_is_exported_again(trained, clean_image, tmp_path,
                                                                                capsys):
    import shutil

    from rdcae.inference.onnx import load_onnx_metadata

    run = tmp_path / "run"
    run.mkdir()
    model = Path(shutil.copy(trained[1], run / "model.pt"))
    other = load_detector(model)
    other.threshold = other.threshold + 1.0  # another run's detector, exported after this model file was written
    export_onnx(other, run / "model.onnx")
    images = tmp_path / "images"
    images.mkdir()
    Image.fromarray(clean_image).save(images / "clean.png")
    assert main([f"model={model}", f"input={images}", f"output_dir={tmp_path / 'out'}", "backend=onnx"]) == 0
    assert "exported from another model" in capsys.readouterr().err
    assert load_onnx_metadata(run / "model.onnx")["threshold"] == pytest.approx(float(load_detector(model).threshold))
    row = next(csv.DictReader(open(tmp_path / "out" / "detections.csv")))
    assert float(row["threshold"]) == pytest.approx(load_detector(model).image_threshold(), rel=1e-5)


def test_a_reused_output_folder_loses_the_earlier_overlays_and_maps_and_keeps_other_files(trained, clean_image,
                                                                                         tmp_path, capsys):
    first, second = tmp_path / "first", tmp_path / "second"
    first.mkdir()
    second.mkdir()
    Image.fromarray(clean_image).save(first / "a.png")
    Image.fromarray(clean_image).save(first / "b.png")
    Image.fromarray(clean_image).save(second / "c.png")
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes_overlay.png").write_bytes(b"the user's own file")  # named like an output, not the detection's
    assert main([f"model={trained[1]}", f"input={first}", f"output_dir={out}"]) == 0
    assert {p.name for p in out.glob("*_overlay.png")} == {"a_overlay.png", "b_overlay.png", "notes_overlay.png"}
    assert main([f"model={trained[1]}", f"input={second}", f"output_dir={out}"]) == 0
    assert "removed the earlier detection's overlays and maps of 2 images" in capsys.readouterr().err
    assert {p.name for p in out.iterdir()} == {"detections.csv", "c_overlay.png", "c_map.npy", "notes_overlay.png"}
    assert (out / "notes_overlay.png").read_bytes() == b"the user's own file"


def test_images_unlike_the_training_fabric_get_a_warning_and_clean_ones_none(trained, clean_image, tmp_path, capsys):
    images = tmp_path / "images"
    images.mkdir()
    Image.fromarray(clean_image).save(images / "clean.png")
    assert main([f"model={trained[1]}", f"input={images}", f"output_dir={tmp_path / 'a'}"]) == 0
    assert "look unlike" not in capsys.readouterr().err
    noise = np.random.default_rng(0).integers(0, 256, clean_image.shape, dtype=np.uint8)  # no weave at all
    Image.fromarray(noise).save(images / "noise.png")
    assert main([f"model={trained[1]}", f"input={images}", f"output_dir={tmp_path / 'b'}"]) == 0
    err = capsys.readouterr().err
    assert "warning: 1 of 2 images (noise.png) score above the threshold in most of their windows" in err
    assert "look unlike the woven fabric" in err


def test_an_image_flagged_in_most_windows_for_its_exposure_gets_its_gray_levels_in_the_warning(trained, clean_image,
                                                                                                tmp_path, capsys):
    from rdcae.detect import most_windows_levels

    images = tmp_path / "images"
    images.mkdir()
    Image.fromarray(clean_image).save(images / "clean.png")
    brighter = np.clip(clean_image.astype(np.float32) * 1.6, 0, 255).astype(np.uint8)  # the exposure, far off
    Image.fromarray(brighter).save(images / "brighter.png")
    assert main([f"model={trained[1]}", f"input={images}", f"output_dir={tmp_path / 'out'}"]) == 0
    err = capsys.readouterr().err
    most = [line for line in err.splitlines() if "in most of their windows" in line]
    assert len(most) == 1 and "(brighter.png)" in most[0]
    assert "; it has its fabric brighter" in most[0] and "than every image the model trained on (median" in most[0]
    assert "dataset.lighting=gain" in most[0]
    assert "images judged, flagged as defect" not in err  # named once, in the warning above
    with open(tmp_path / "out" / "detections.csv", newline="") as f:  # and in the file, beside its verdict
        notes = {r["image"]: r["note"] for r in csv.DictReader(f)}
    assert notes["clean.png"] == "" and notes["brighter.png"].startswith(
        "above the threshold in most windows: unlike the training surface rather than defective; fabric brighter")
    assert "than every image the model trained on (median " in notes["brighter.png"]
    detector = load_detector(trained[1])
    clean = detector.detect(clean_image)
    as_trained = dataclasses.replace(clean, threshold=clean.score / 2)  # flagged, its levels those trained on
    flagged = [(Item("b.png", "b.png"), detector.detect(brighter)), (Item("c.png", "c.png"), as_trained)]
    assert most_windows_levels(flagged[1:], detector.config) == ""
    assert most_windows_levels(flagged, detector.config).startswith("; 1 of them (b.png) has its fabric brighter")
    lit_model = {**detector.config, "dataset": {**detector.config["dataset"], "lighting": "image"}}
    assert most_windows_levels(flagged, lit_model) == ""  # a model that evens the lighting out


def test_the_overlay_keeps_the_weave_visible_under_its_tint_and_carries_a_legend_where_it_fits(trained, clean_image):
    from rdcae.inference.overlay import RED, YELLOW, legend, overlay

    painted, (rows, cols) = bar(clean_image)
    painted = np.hstack([painted, clean_image, clean_image])  # wide enough for the legend beside the caption
    detection = load_detector(trained[1]).detect(painted)
    mask = np.zeros(painted.shape, bool)
    mask[rows, cols] = True
    inspected_all = not np.isnan(detection.anomaly_map).any()
    assert [label for label, _ in legend(detection, truth=True)] == ["above threshold", "near threshold",
                                                                     "defect region", "ground truth"] + (
        [] if inspected_all else ["not inspected"])
    banded = np.hstack([np.full((painted.shape[0], 200, *painted.shape[2:]), 255, np.uint8), painted])
    assert legend(load_detector(trained[1]).detect(banded), truth=False)[-1][0] == "not inspected"  # a white band
    picture = np.asarray(overlay(painted, detection, mask)).astype(int)

    def has(colour):  # a swatch: a pixel of exactly the colour, which the blended tint never is
        return bool((picture == np.asarray(colour, int)).all(axis=2).any())

    assert has(RED) and has(YELLOW)
    # the clean weave under the red tint: its pixels still vary as much as half the weave's own do
    y, x = np.argwhere(detection.anomaly_map > detection.threshold).T
    far = (np.abs(y - 52) > 8) | (np.abs(x - 140) > 45)
    weave = painted[y[far], x[far]].astype(float)
    assert far.sum() > 20 and picture[y[far], x[far], 1].std() > 0.5 * weave.std()
    from PIL import ImageDraw

    from rdcae.inference.overlay import caption_layout

    def layout(image, truth):  # the caption as the overlay lays it out on `image`
        d = load_detector(trained[1]).detect(image)
        return caption_layout(ImageDraw.Draw(Image.new("RGB", image.shape[1::-1])), image.shape[1::-1], d, truth), d

    wide, _ = layout(painted, True)
    assert len(wide.verdict) == 1 and len(wide.rows) == 1 and wide.width <= painted.shape[1]
    tall = np.vstack([painted, painted[::-1]])[:, :256]  # too narrow for one row: the legend wraps, the verdict fits
    half, d = layout(tall, True)
    assert d.regions and len(half.rows) > 1 and sum(len(r) for r in half.rows) == len(legend(d, True))
    assert half.width <= 256 and half.height <= tall.shape[0] // 2
    noted = caption_layout(ImageDraw.Draw(Image.new("RGB", (1024, 256))), (1024, 256), d, True,
                           note="above the threshold in most windows; fabric brighter")  # each part on a line
    assert noted.noted == 1 and noted.verdict[1:] == ["above the threshold in most windows", "fabric brighter"]
    tiny, _ = layout(painted[:96, :96], False)  # the verdict wraps; no room for a legend under it
    assert len(tiny.verdict) > 1 and not tiny.rows and tiny.width <= 96
    assert " ".join(tiny.verdict).startswith(("ok: score", "defect: score"))


def test_edge_margin_and_texture_borders_replace_the_models_region_and_bad_values_are_refused(trained, clean_image,
                                                                                            tmp_path, capsys):
    Image.fromarray(np.hstack([np.full((clean_image.shape[0], 300), 255, np.uint8), clean_image])).save(
        tmp_path / "banded.png")  # a white band, then the fabric
    common = [f"model={trained[1]}", f"input={tmp_path / 'banded.png'}", "maps=false", "overlays=false"]
    assert main(common + [f"output_dir={tmp_path / 'a'}"]) == 0
    assert main(common + [f"output_dir={tmp_path / 'b'}", "edge_margin=64", "texture_borders=false"]) == 0
    out = capsys.readouterr().out
    assert "edge_margin=64, texture_borders=false instead of the model's" in out

    def tiles(folder):
        with open(folder / "detections.csv", newline="") as f:
            return int(next(csv.DictReader(f))["tiles"])

    rows = clean_image.shape[0] // 32
    assert tiles(tmp_path / "a") - tiles(tmp_path / "b") == 2 * rows  # the two columns of windows next to the band
    assert main(common + [f"output_dir={tmp_path / 'c'}", "edge_margin=auto"]) == 0  # the selvedge as found
    assert "edge_margin=auto instead of the model's" in capsys.readouterr().out
    for setting, message in [("edge_margin=-1", "edge_margin=-1 must be a whole number of pixels >= 0"),
                             ("texture_borders=maybe", "texture_borders=maybe must be true or false")]:
        assert main(common + [setting]) == 2
        err = capsys.readouterr().err.strip()
        assert err.count("\n") == 0 and message in err


def test_images_flagged_only_by_columns_at_the_fabrics_edge_are_named_in_a_warning():
    from rdcae.detect import flagged_at_the_edge, image_note
    from rdcae.inference.image import Detection, Region

    fabric = np.zeros((256, 1000), bool)
    fabric[:, 300:] = True

    def detection(*regions):
        return Detection(score=2.0, threshold=1.0, anomaly_map=np.zeros(fabric.shape, np.float32), fabric=fabric,
                         regions=list(regions))

    column = Region(300, 0, 364, 256, 64 * 256, 2.0)  # the selvedge just right of a band
    speck = Region(600, 100, 632, 132, 1024, 2.0)  # a defect in the fabric
    right = Region(940, 10, 1000, 240, 60 * 230, 2.0)  # a column at the image's right end
    done = [(Item("edge.png", "edge.png"), detection(column)), (Item("both.png", "both.png"), detection(column, speck)),
            (Item("speck.png", "speck.png"), detection(speck)), (Item("right.png", "right.png"), detection(right)),
            (Item("short.png", "short.png"), detection(Region(300, 0, 364, 100, 6400, 2.0))),
            (Item("broken.png", "broken.png"), detection(*[Region(300, y, 332, y + 32, 1024, 2.0)  # 5 of 8 rows
                                                           for y in (0, 64, 128, 160, 224)])),
            (Item("blob.png", "blob.png"), detection(Region(300, 0, 700, 200, 400 * 200, 2.0))),  # reaching inwards
            (Item("apart.png", "apart.png"), detection(Region(300, 0, 332, 96, 3072, 2.0),  # one edge, then the other
                                                       Region(968, 128, 1000, 256, 4096, 2.0)))]
    assert flagged_at_the_edge(done, 32) == ["edge.png", "right.png", "broken.png"]
    notes = {item.name: image_note(item, d, {}, 32) for item, d in done}  # detections.csv's and the overlay's
    edge = "flagged only by a column at the edge of the inspected fabric"
    assert notes == {name: edge if name in ("edge.png", "right.png", "broken.png") else "" for name in notes}
    most = dataclasses.replace(done[0][1], windows=10, defect_windows=8)  # the column, and most windows above
    assert image_note(done[0][0], most, {}, 32) == ("above the threshold in most windows: unlike the training surface "
                                                    "rather than defective")
    assert image_note(done[0][0], dataclasses.replace(most, threshold=3.0), {}, 32) == ""  # not flagged


def test_the_false_alarm_rate_is_restated_for_images_of_another_size():
    from rdcae.detect import rate_for_these_images
    from rdcae.inference.image import Detection

    def judged(windows):
        d = Detection(score=0.5, threshold=1.0, anomaly_map=np.zeros((8, 8), np.float32),
                      fabric=np.ones((8, 8), bool), windows=windows)
        return (Item("a.png", "a.png"), d)

    assert rate_for_these_images([judged(720), judged(740)], (0.01, 713)) == ""  # within a tenth: as stated
    note = rate_for_these_images([judged(1426)], (0.01, 713))  # twice the windows: about twice the rate
    assert "1426 windows on average" in note and "0.0199 false alarms per clean image of theirs" in note
    assert rate_for_these_images([judged(1426)], None) == ""  # threshold= given: no rate to restate


def test_detect_restates_the_rate_for_images_twice_the_training_size(trained, clean_image, tmp_path, capsys):
    Image.fromarray(np.hstack([clean_image, clean_image])).save(tmp_path / "wide.png")
    Image.fromarray(clean_image).save(tmp_path / "same.png")
    common = [f"model={trained[1]}", "maps=false", "overlays=false"]
    assert main(common + [f"input={tmp_path / 'wide.png'}", f"output_dir={tmp_path / 'a'}"]) == 0
    assert "false alarms per clean image of theirs" in capsys.readouterr().err
    assert main(common + [f"input={tmp_path / 'same.png'}", f"output_dir={tmp_path / 'b'}"]) == 0
    assert "of theirs" not in capsys.readouterr().err  # the training images' size: the rate as stated


def test_a_folder_given_as_input_leaves_out_masks_by_name_and_in_ground_truth_folders(tmp_path):
    from rdcae.detect import input_items

    pixels = np.zeros((40, 40), np.uint8)
    for name in ("test/crack/000.png", "test/crack/001.PNG", "ground_truth/crack/000.png", "ground_truth/crack/001.PNG",
                 "test/good/002_mask.png", "ground_truths/003.png"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(pixels).save(tmp_path / name, format="PNG")
    names = [item.name for item in input_items(str(tmp_path))]
    assert names == ["ground_truths/003.png", "test/crack/000.png", "test/crack/001.PNG"]


def test_a_colour_image_is_judged_on_its_luminance_where_the_model_trained_on_gray(trained, clean_image, tmp_path,
                                                                                    capsys):
    from dataclasses import replace

    from rdcae.data.images import to_channels
    from rdcae.inference.image import ImageDetector

    detector = load_detector(trained[1])
    assert detector.config["image_channels"] == 1  # the woven fabric is gray, and the model file says so
    image = bar(clean_image)[0].astype(np.float32)
    tinted = np.clip(np.rint(np.stack([image * 1.05, image * 0.9, image * 0.7], axis=2)), 0, 255).astype(np.uint8)
    luminance = to_channels(tinted.transpose(2, 0, 1)[None], 1)[0, 0]
    images = ImageDetector.from_detector(detector)
    as_colour, as_gray = images.detect(tinted), images.detect(luminance)
    assert as_colour.score == as_gray.score and as_colour.verdict == as_gray.verdict == "defect"
    alpha = np.full(tinted.shape[:2] + (1,), 255, np.uint8)  # alpha is dropped, as the image reader drops it
    assert images.detect(np.concatenate([tinted, alpha], axis=2)).score == as_colour.score
    assert images.detect(np.stack([luminance, alpha[..., 0]], axis=2)).score == as_gray.score
    np.testing.assert_array_equal(as_colour.anomaly_map, as_gray.anomaly_map)
    unrecorded = ImageDetector(images.score_fn, replace(images.preprocessing, image_channels=None), images.threshold)
    assert unrecorded.detect(tinted).score != as_gray.score  # files written before: the colour went in as it was

    folder = tmp_path / "images"
    folder.mkdir()
    Image.fromarray(tinted).save(folder / "tinted.png")
    Image.fromarray(np.stack([clean_image] * 3, axis=2)).save(folder / "gray_as_rgb.jpg", quality=90)
    assert main([f"model={trained[1]}", f"input={folder}", f"output_dir={tmp_path / 'out'}"]) == 0
    notes = [line for line in capsys.readouterr().err.splitlines() if line.startswith("note: ")]
    assert any(n.startswith("note: 1 of 2 images (tinted.png) are in colour and the model was trained on gray")
               for n in notes), notes


def test_the_colour_note_names_images_unlike_the_training_images_in_colour():
    from rdcae.detect import unlike_training_colour
    from rdcae.inference.image import Preprocessing

    rng = np.random.default_rng(0)
    gray = rng.integers(0, 256, (64, 64, 1), dtype=np.uint8)
    gray_as_rgb = np.repeat(gray, 3, axis=2)
    tinted = np.clip(gray_as_rgb * np.array([1.0, 0.9, 0.7]), 0, 255).astype(np.uint8)

    def unlike(image, image_channels, channels=3):
        return unlike_training_colour(image, Preprocessing(channels, 32, image_channels=image_channels))

    assert [unlike(i, 1) for i in (gray, gray_as_rgb, tinted)] == [False, False, True]  # trained on gray
    assert [unlike(i, 3) for i in (gray, gray_as_rgb, tinted)] == [True, True, False]  # on colour, in colour
    assert [unlike(i, 3, channels=1) for i in (gray, tinted)] == [False, False]  # on colour's luminance
    assert [unlike(i, None) for i in (gray, tinted)] == [False, False]  # a file that does not say


def test_patches_of_gray_saved_as_rgb_count_as_gray_images():
    from rdcae.data.images import looks_gray

    rng = np.random.default_rng(1)
    patches = rng.integers(0, 256, (10, 1, 32, 32), dtype=np.uint8)
    assert looks_gray(patches, axis=1) and looks_gray(np.repeat(patches, 3, axis=1), axis=1)
    rounded = np.repeat(patches, 3, axis=1).astype(np.int16)
    rounded[:, 2] += rng.integers(-1, 2, rounded[:, 2].shape)  # a JPEG's rounding: still gray
    assert looks_gray(np.clip(rounded, 0, 255).astype(np.uint8), axis=1)
    colour = np.repeat(patches, 3, axis=1)
    colour[:, 0] = 255 - colour[:, 0]
    assert not looks_gray(colour, axis=1)


@pytest.mark.parametrize("channels", [None, 1, 3])
def test_the_overlay_blends_the_tint_dims_what_was_not_inspected_and_outlines_the_truth_pixel_by_pixel(channels):
    from rdcae.inference.image import Detection
    from rdcae.inference.overlay import RED, TINT_FROM, YELLOW, overlay

    rng = np.random.default_rng(0)
    shape = (64, 200) if channels is None else (64, 200, channels)
    image = rng.integers(0, 256, shape, dtype=np.uint8)
    anomaly_map = rng.uniform(0, 1.5, (64, 200)).astype(np.float32)
    anomaly_map[:, :40] = np.nan  # a band never inspected
    mask = np.zeros((64, 200), bool)
    mask[20:30, 100:120] = True
    detection = Detection(score=1.5, threshold=1.2, anomaly_map=anomaly_map, fabric=~np.isnan(anomaly_map))
    picture = np.asarray(overlay(image, detection, mask))
    # the blend as written out: float32 pixels and alpha, float64 colours, the dimming in float64
    rgb = np.repeat(image.reshape(64, 200, -1), 3 // image.reshape(64, 200, -1).shape[2], axis=2).astype(np.float32)
    ratio = np.nan_to_num(anomaly_map / 1.2, nan=0.0)
    alpha = 0.15 + 0.3 * np.clip((ratio - TINT_FROM) / (1 - TINT_FROM), 0, 1)[..., None]
    colour = YELLOW + (RED - YELLOW) * (ratio > 1)[..., None]
    expected = np.where((ratio >= TINT_FROM)[..., None], rgb * (1 - alpha) + colour * alpha, rgb)
    expected[np.isnan(anomaly_map)] *= 0.55
    expected = expected.clip(0, 255).astype(np.uint8)
    edge = mask.copy()
    edge[21:29, 101:119] = False  # the truth's outline, one pixel wide
    expected[edge] = 255
    # pixels above the threshold in every corner: the caption goes in a strip below, the image whole above it
    assert picture.shape[0] > 64 and picture.shape[1] >= 200
    assert (picture[:64, :200] == expected).all()  # to the last bit
    assert (picture[:, :40][:64] == (rgb[:, :40] * 0.55).astype(np.uint8)).all()
    assert (picture[:64, :200][edge] == 255).all()


def test_the_caption_takes_a_corner_that_hides_no_flagged_pixel_and_else_a_strip_below_the_image():
    from rdcae.inference.image import Detection
    from rdcae.inference.overlay import overlay

    image = np.random.default_rng(0).integers(0, 256, (256, 1024), dtype=np.uint8)

    def picture(flagged: list[tuple[slice, slice]], mask=None, shape=(256, 1024)):
        anomaly_map = np.full(shape, 0.5, np.float32)
        for where in flagged:
            anomaly_map[where] = 2.0
        d = Detection(score=float(anomaly_map.max()), threshold=1.0, anomaly_map=anomaly_map,
                      fabric=np.ones(shape, bool))
        return np.asarray(overlay(image[:shape[0], :shape[1]], d, mask)).astype(int), anomaly_map

    def untouched(shown, anomaly_map):  # every flagged pixel tinted red, none under the caption's black box
        flagged = anomaly_map > 1.0
        return bool((shown[:256, :1024][flagged][:, 0] > shown[:256, :1024][flagged][:, 2]).all())

    corners = [(slice(0, 40), slice(0, 40)), (slice(216, 256), slice(0, 40)), (slice(0, 40), slice(984, 1024)),
               (slice(216, 256), slice(984, 1024))]
    for free in range(4):  # three corners flagged: the caption takes the fourth, the picture keeps its size
        shown, anomaly_map = picture([c for i, c in enumerate(corners) if i != free])
        assert shown.shape == (256, 1024, 3) and untouched(shown, anomaly_map)
        rows, cols = corners[free]
        assert (shown[rows, cols] == 0).all(axis=2).mean() > 0.3  # its black box
    shown, anomaly_map = picture(corners)  # every corner flagged: a strip below
    assert shown.shape[0] > 256 and shown.shape[1] == 1024 and untouched(shown, anomaly_map)
    assert (shown[256:] == 0).all(axis=2).mean() > 0.5
    missed = np.zeros((256, 1024), bool)
    missed[:20, :20] = True  # a defect missed in the corner that scores lowest: the caption takes the next one
    shown, anomaly_map = picture([], missed)
    assert shown.shape == (256, 1024, 3) and (shown[:20, :20] != 0).any(axis=2).mean() > 0.5
    truth = np.zeros((256, 1024), bool)
    truth[:, :600] = truth[:, 700:] = True  # ground truth in every corner, nothing flagged: a strip too
    assert picture([], truth)[0].shape[0] > 256
    small, _ = picture([], shape=(40, 60))  # the caption would cover the image: a strip, as wide as it needs
    assert small.shape[0] > 40 and small.shape[1] > 60
    assert (small[:40, :60] == np.repeat(image[:40, :60, None], 3, axis=2)).all()


def test_images_of_a_folder_in_the_mvtec_layout_show_their_ground_truth_in_the_overlay(trained, clean_image, tmp_path,
                                                                                       capsys):
    painted, (rows, cols) = bar(clean_image)
    for folder in ("test/bar", "ground_truth/bar", "test/good"):
        (tmp_path / "data" / folder).mkdir(parents=True)
    Image.fromarray(painted).save(tmp_path / "data" / "test" / "bar" / "000.png")
    Image.fromarray(painted).save(tmp_path / "data" / "test" / "bar" / "001.png")
    Image.fromarray(clean_image).save(tmp_path / "data" / "test" / "good" / "000.png")
    mask = np.zeros(painted.shape, np.uint8)
    mask[rows, cols] = 255
    Image.fromarray(mask).save(tmp_path / "data" / "ground_truth" / "bar" / "000_mask.png")
    Image.fromarray(mask[:40]).save(tmp_path / "data" / "ground_truth" / "bar" / "001_mask.png")  # the wrong size
    out = tmp_path / "out"
    assert main([f"model={trained[1]}", f"input={tmp_path / 'data' / 'test'}", f"output_dir={out}", "maps=false"]) == 0
    err = capsys.readouterr().err
    assert "001_mask.png is" in err and "bar/001.png's overlay is drawn without it" in err
    assert sorted(r["image"] for r in csv.DictReader(open(out / "detections.csv"))) == [
        "bar/000.png", "bar/001.png", "good/000.png"]  # the masks are no images to judge

    def white(name):  # the truth's outline: pure white where the bar's border is
        picture = np.asarray(Image.open(out / f"{name}_overlay.png"))
        return bool((picture[rows.start, cols.start + 10:cols.stop - 10] == 255).all())

    assert white("bar__000") and not white("bar__001") and not white("good__000")


def test_an_aitex_fabric_given_as_a_number_is_evaluated_as_its_two_digit_code_as_training_records_it():
    from rdcae.detect import parse

    assert parse(["model=m.pt", "dataset=aitex", "fabric=3", "data_dir=/nowhere"]).dataset["fabric"] == "03"


def test_a_glob_that_matches_only_an_earlier_detections_overlays_says_so(trained, clean_image, tmp_path, capsys):
    Image.fromarray(clean_image).save(tmp_path / "a.png")
    assert main([f"model={trained[1]}", f"input={tmp_path / 'a.png'}", f"output_dir={tmp_path / 'out'}"]) == 0
    capsys.readouterr()
    assert main([f"model={trained[1]}", f"input={tmp_path / 'out'}/*.png", f"output_dir={tmp_path / 'again'}"]) == 2
    assert "matches no image but the overlays an earlier detection wrote" in capsys.readouterr().err


def test_the_training_summary_gives_the_evaluation_command_where_the_run_kept_clean_images_out(trained):
    import json

    from rdcae.results.summary import summary

    out = Path(trained[1]).parent
    metrics = json.loads((out / "metrics.json").read_text())
    line = f"  evaluate        : python -m rdcae.detect model={out / 'model.pt'} dataset=woven  (image and pixel"
    assert line in summary(metrics, out, dataset="woven") and "the 1 defect-free image it never saw)" in summary(
        metrics, out, dataset="woven")
    metrics["patches"]["held_out_images"] = []  # a run that kept none out: nothing to evaluate on
    assert "evaluate" not in summary(metrics, out, dataset="woven")


def test_the_training_summary_notes_clean_patches_flagged_far_above_the_rate_and_thresholds_from_training_images(
        trained):
    import json

    from rdcae.results.summary import summary

    out = Path(trained[1]).parent
    metrics = json.loads((out / "metrics.json").read_text())
    metrics["test"].update(fp=2, tn=478)
    metrics["threshold_quantile"] = 0.99
    metrics["threshold_from"] = "4000 calibration patches of 3 images never trained on"
    quiet = summary(metrics, out, dataset="folder")
    assert "clean test patches" not in quiet and "windows of the training images" not in quiet
    metrics["test"].update(fp=34, tn=446)  # 7 % of the clean test patches, the threshold set for 1 %
    assert "34 of the 480 clean test patches (7.1 %) score above the threshold, set for 1 %" in summary(metrics, out)
    metrics["threshold_from"] = "normal training patches"  # too few clean images to spare calibration images
    assert "the thresholds come from windows of the training images" in summary(metrics, out, dataset="folder")
    assert "the thresholds come from windows of the training images" not in summary(metrics, out, dataset="woven")


def test_flagged_images_brighter_than_every_training_image_are_named_in_a_warning(trained, clean_image, tmp_path,
                                                                                   capsys):
    from rdcae.data.lighting import FABRIC_LEVELS
    from rdcae.detect import unlike_training_levels

    detector = load_detector(trained[1])
    known = detector.config[FABRIC_LEVELS]  # the training images' fabric, as the model file keeps it
    assert known["median"][0] <= known["median"][1] and 0 < known["spread"][0] <= known["spread"][1]
    # its one training image measured at detection as at training
    assert detector.detect(clean_image).levels == pytest.approx((known["median"][0], known["spread"][0]), abs=1e-3)
    folder = tmp_path / "images"
    folder.mkdir()
    Image.fromarray(clean_image).save(folder / "as_trained.png")
    Image.fromarray(bar(clean_image)[0]).save(folder / "with_a_bar.png")  # a defect on fabric lit as in training
    # the exposure drifted: the least gain that flags the image, in some of its windows (in most of them, it is
    # named as a surface unlike the training images' instead)
    drifts = (np.clip(clean_image.astype(np.float32) * gain, 0, 255).astype(np.uint8) for gain in (1.05, 1.1, 1.2))
    detections = ((image, detector.detect(image)) for image in drifts)
    brighter = next((image for image, d in detections if d.verdict == "defect" and d.defect_windows <= d.windows / 2),
                    None)
    assert brighter is not None, "no drift of 5-20 % flags the image in some of its windows"
    Image.fromarray(brighter).save(folder / "brighter.png")
    assert main([f"model={trained[1]}", f"input={folder}", f"output_dir={tmp_path / 'out'}"]) == 0
    with open(tmp_path / "out" / "detections.csv", newline="") as f:
        verdicts = {r["image"]: r["verdict"] for r in csv.DictReader(f)}
    assert verdicts == {"as_trained.png": "ok", "with_a_bar.png": "defect", "brighter.png": "defect"}
    with open(tmp_path / "out" / "detections.csv", newline="") as f:
        notes = {r["image"]: r["note"] for r in csv.DictReader(f)}
    assert notes["as_trained.png"] == notes["with_a_bar.png"] == ""
    assert re.fullmatch(r"fabric brighter than every image the model trained on \(median [\d.]+ against "
                        r"[\d.]+(-[\d.]+)? gray levels, spread [\d.]+ against [\d.]+(-[\d.]+)?\)",
                        notes["brighter.png"]), notes["brighter.png"]
    warnings = [line for line in capsys.readouterr().err.splitlines() if "than every image the model trained" in line]
    assert len(warnings) == 1
    assert "1 of the 3 images judged, flagged as defect (brighter.png), has its fabric brighter" in warnings[0]
    assert "dataset.lighting=gain" in warnings[0]
    done = [(Item("x.png", "x.png"), detector.detect(brighter))]
    assert unlike_training_levels(done, detector.config)[0] == ["x.png"]
    marked = Item("y.png", "y.png", mask=np.ones(clean_image.shape, bool))  # at an evaluation: a known defect,
    assert unlike_training_levels([(marked, done[0][1])], detector.config) == ([], "")  # flagged rightly
    assert unlike_training_levels(done, {k: v for k, v in detector.config.items() if k != FABRIC_LEVELS}) == ([], "")
    lit_model = {**detector.config, "dataset": {**detector.config["dataset"], "lighting": "image"}}
    assert unlike_training_levels(done, lit_model) == ([], "")  # a model that evens the lighting out
