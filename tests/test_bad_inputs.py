"""A corpus of broken AITEX-style folders: each gives one clear message naming the file or folder
(what the commands print as one line, exit code 2), or works with a warning; none a bare traceback."""

from __future__ import annotations

import logging
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import TINY_TRAINING, compose_config
from PIL import Image

from rdcae.errors import ConfigError, DataError

USER_ERRORS = (ConfigError, DataError, FileNotFoundError)  # what rdcae.train prints as one line, exit code 2


def texture(height: int, width: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[:height, :width]
    weave = 128 + 40 * np.sin(x * 1.3) * np.cos(y * 0.9) + rng.normal(0, 8, (height, width))
    return weave.clip(0, 255).astype(np.uint8)


def layout(root: Path) -> Path:
    """Fabric 03: two clean images in a roll, two defect images with masks, 64x256 pixels."""
    for i in range(2):
        Image.fromarray(texture(64, 256, i)).save(_mkdir(root / "NODefect_images" / "roll") / f"000{i}_000_03.png")
    mask = np.zeros((64, 256), np.uint8)
    mask[20:30, 40:120] = 255
    for stem in ("0010_002_03", "0011_016_03"):
        Image.fromarray(texture(64, 256, 9)).save(_mkdir(root / "Defect_images") / f"{stem}.png")
        Image.fromarray(mask).save(_mkdir(root / "Mask_images") / f"{stem}_mask.png")
    return root


def _mkdir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path


def truncate(root):
    path = root / "Defect_images" / "0010_002_03.png"
    path.write_bytes(path.read_bytes()[:200])
    return "0010_002_03.png"


def zero_bytes(root):
    (root / "NODefect_images" / "roll" / "0000_000_03.png").write_bytes(b"")
    return "0000_000_03.png"


def text_as_png(root):
    (root / "Defect_images" / "0011_016_03.png").write_text("not an image")
    return "0011_016_03.png"


def mask_wrong_size(root):
    Image.fromarray(np.zeros((32, 64), np.uint8)).save(root / "Mask_images" / "0010_002_03_mask.png")
    return "0010_002_03_mask.png"


def no_clean_rolls(root):
    for path in (root / "NODefect_images" / "roll").iterdir():
        path.unlink()
    return "NODefect_images"


def missing_folder(root):
    for path in (root / "Mask_images").iterdir():
        path.unlink()
    (root / "Mask_images").rmdir()
    return "Mask_images"


def empty_folder(root):
    import shutil

    for sub in ("NODefect_images", "Defect_images", "Mask_images"):
        shutil.rmtree(root / sub)
    return "data_dir"


def all_smaller_than_the_patch(root):
    for path in (root / "NODefect_images" / "roll").iterdir():
        Image.fromarray(texture(16, 16, 0)).save(path)
    return "patch_size=32"


BROKEN = [truncate, zero_bytes, text_as_png, mask_wrong_size, no_clean_rolls, missing_folder, empty_folder,
          all_smaller_than_the_patch]


def missing_mask(root):
    (root / "Mask_images" / "0011_016_03_mask.png").unlink()


def rgba_image(root):
    image = np.stack([texture(64, 256, 0)] * 3 + [np.full((64, 256), 255, np.uint8)], axis=2)
    Image.fromarray(image, "RGBA").save(root / "NODefect_images" / "roll" / "0000_000_03.png")


def sixteen_bit_image(root):
    deep = texture(64, 256, 1).astype(np.uint16) * 257
    Image.fromarray(deep).save(root / "NODefect_images" / "roll" / "0001_000_03.png")


def one_image_smaller_than_the_patch(root):
    Image.fromarray(texture(16, 16, 0)).save(root / "NODefect_images" / "roll" / "0000_000_03.png")


WORKING = [missing_mask, rgba_image, sixteen_bit_image, one_image_smaller_than_the_patch]


def config(root: Path, tmp_path: Path):
    return compose_config(TINY_TRAINING + ["dataset=aitex", "fabric=03", f"data_dir={root}", "dataset.n_normal=60",
                                           "dataset.n_calibration=20", "dataset.edge_margin=0",
                                           "dataset.calibration_images=0"], tmp_path)


@pytest.mark.parametrize("breakage", BROKEN, ids=lambda f: f.__name__)
def test_a_broken_folder_is_one_message_that_names_what_is_wrong(breakage, tmp_path):
    from rdcae.train import build

    root = layout(tmp_path / "aitex")
    named = breakage(root)
    with pytest.raises(USER_ERRORS) as caught:
        build(config(root, tmp_path), tmp_path / "run")
    assert named in str(caught.value)


@pytest.mark.parametrize("quirk", WORKING, ids=lambda f: f.__name__)
def test_a_folder_with_a_quirk_still_trains(quirk, tmp_path):
    from rdcae.train import build

    root = layout(tmp_path / "aitex")
    quirk(root)
    datamodule, *_ = build(config(root, tmp_path), tmp_path / "run")
    assert len(datamodule.train_x) > 0


def test_the_command_prints_a_broken_folder_in_one_line(tmp_path):
    root = layout(tmp_path / "aitex")
    truncate(root)
    out = subprocess.run([sys.executable, "-m", "rdcae.train", "dataset=aitex", "fabric=03", f"data_dir={root}",
                          "dataset.edge_margin=0", f"hydra.run.dir={tmp_path / 'run'}", f"cache_dir={tmp_path / 'c'}"],
                         capture_output=True, text=True, timeout=120, cwd=tmp_path)
    lines = [line for line in out.stderr.strip().splitlines() if line.startswith("error:")]
    assert out.returncode == 2 and len(lines) == 1 and "0010_002_03.png" in lines[0], out.stderr[-2000:]
    assert "Traceback" not in out.stderr


def test_a_runs_note_about_its_data_is_printed_once_though_the_run_reads_the_data_again(tmp_path, caplog):
    from rdcae.train import run

    root = layout(tmp_path / "aitex")
    Image.fromarray(np.zeros((64, 256), np.uint8)).save(root / "Mask_images" / "0011_016_03_mask.png")
    with caplog.at_level(logging.WARNING):
        cfg = config(root, tmp_path)
        cfg.dataset.n_train = None
        run(cfg, tmp_path / "run")  # the patches, the overlap calibration, the detection figures
    notes = [r for r in caplog.records if "marks no pixel" in r.getMessage()]
    assert len(notes) == 1 and "0011_016_03" in notes[0].getMessage()


@pytest.mark.parametrize("settings, expected", [
    (["lamda=1.6"], "lamda=1.6: unknown setting; did you mean lambda=?"),
    (["+lamda=1.6"], "+lamda=1.6: unknown setting; did you mean lambda=?"),  # Hydra's own hint would add it unread
    (["dataset=aitx"], "dataset=aitx: no such dataset; did you mean dataset=aitex? choose one of aitex, folder"),
    (["-m", "seed=0,1", "noise=julia,julia_line"], "noise=julia_line: no such noise; did you mean noise=julia_lines?"),
    (["model.scor=norm"], "model.scor=norm: unknown setting; did you mean model.score=? model has"),
    (["dataset=aitex", "dataset.holdout_imgs=3"], "did you mean dataset.holdout_images=? dataset has"),
    (["trainer.max_epochs=2"], "the epochs are alternation.block_epochs × alternation.max_blocks"),
    (["+trainer.limit_train_batche=0.5"], "+trainer.limit_train_batche=0.5: unknown setting; did you mean "
                                          "+trainer.limit_train_batches=? trainer has"),  # Lightning's, passed on
    (["trainer.limit_train_batches=0.5"], "an argument of Lightning's Trainer that conf/trainer does not list; add it "
                                          "with a plus, +trainer.limit_train_batches=0.5"),
    (["trainer.max_epoch=2"], "trainer.max_epoch=2: unknown setting; did you mean trainer.max_epochs? the epochs are "
                              "alternation.block_epochs × alternation.max_blocks"),
    (["trainer.acelerator=cpu"], "did you mean trainer.accelerator=? trainer has"),
    (["trainer.foo=1"], "trainer.foo=1: unknown setting; trainer has"),
    (["seed=[0"], "seed=[0: a setting that cannot be read"),
    (["lambda=1.0,1.6"], "lambda=1.0,1.6: a sweep, one job per value; add -m"),
    # settings the run's dataset would ignore: without dataset=aitex the embedded fabric would train
    (["fabric=00", "data_dir=/data/aitex"], "fabric=00: an AITEX fabric, but dataset=woven (the embedded fabric, "
                                            "the default) has no fabrics; add dataset=aitex"),
    (["data_dir=/data/aitex"], "data_dir=/data/aitex: dataset=woven (the embedded fabric, the default) reads no "
                               "files; add dataset=aitex"),
    (["holdout_images=5"], "holdout_images=5: unknown setting; did you mean dataset.holdout_images=?"),
    (["output_dir=/tmp/x"], "output_dir=/tmp/x: the folder a run writes to is Hydra's: set hydra.run.dir=<folder>"),
    (["dataset=folder", "fabric=3"], "fabric=3: an AITEX fabric, but dataset=folder has no fabrics; drop fabric= or "
                                     "use dataset=aitex"),
])
def test_a_misspelt_training_setting_is_one_line_before_any_work(settings, expected, tmp_path):
    from rdcae.errors import ConfigError
    from rdcae.overrides import check_overrides

    with pytest.raises(ConfigError) as error:
        check_overrides([s for s in settings if s != "-m"], multirun="-m" in settings)
    assert expected in str(error.value) and "\n" not in str(error.value)
    if settings == ["lamda=1.6"]:  # and the command: one line, exit code 2, no run folder
        out = subprocess.run([sys.executable, "-m", "rdcae.train", *settings, f"hydra.run.dir={tmp_path / 'run'}"],
                             capture_output=True, text=True, timeout=120, cwd=tmp_path)
        assert out.returncode == 2 and out.stderr.strip() == f"error: {error.value}" and not (tmp_path / "run").exists()


def test_a_trainer_setting_lightning_refuses_is_one_line_before_any_data_and_leaves_no_run_folder(tmp_path):
    out = subprocess.run([sys.executable, "-m", "rdcae.train", "trainer.precision=fp16",
                          f"hydra.run.dir={tmp_path / 'run'}"],
                         capture_output=True, text=True, timeout=120, cwd=tmp_path)
    err = out.stderr.strip()
    assert out.returncode == 2 and len(err.splitlines()) == 1, err
    assert err.startswith("error: trainer.*: Lightning's Trainer cannot start with these settings (") and "fp16" in err
    assert not (tmp_path / "run").exists() and "patches" not in out.stdout  # refused before any data was read
    # the trainer is built once, quietly, to check it: a data error after it is still the only line there is
    for name in ("Defect_images", "Mask_images", "NODefect_images"):
        (tmp_path / "aitex" / name).mkdir(parents=True)
    out = subprocess.run([sys.executable, "-m", "rdcae.train", "dataset=aitex", "fabric=05",
                          f"data_dir={tmp_path / 'aitex'}", f"hydra.run.dir={tmp_path / 'run'}"],
                         capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert out.returncode == 2 and out.stderr.strip().startswith("error: fabric=05: no defect-free images")
    assert "GPU available" not in out.stdout + out.stderr and len(out.stderr.strip().splitlines()) == 1


def test_settings_the_config_has_pass_the_check():
    from rdcae.overrides import check_overrides

    # a fabric= that pins an experiment's own fabric sweep to one value, as docs/REPRODUCING.md runs KSDD2
    check_overrides(["experiment=table1", "dataset=ksdd2", "fabric=00", "data_dir=/data/ksdd2", "seed=0,1,2"])

    check_overrides(["dataset=aitex,folder", "dataset.holdout_images=5", "fabric=03,00", "seed=0,1,2", "model=dcae",
                     "recipe=paper", "experiment=table1", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2",
                     "+trainer.limit_train_batches=0.5", "trainer.precision=bf16-mixed", "lambda=2.5"])
