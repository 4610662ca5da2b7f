"""The paper's patch protocol (sections 4.2-4.3), on the real AITEX sample and the embedded data."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from conftest import compose_config
from PIL import Image

import rdcae.data.patches as patches_module
from rdcae.data.__main__ import main as data_main
from rdcae.data.images import to_channels
from rdcae.data.patches import build_patches, cache_key, calibration_sources, check_patch_settings, prepare_patches
from rdcae.data.sources import calibration_count, load_sources
from rdcae.errors import ConfigError


@pytest.fixture(scope="module")
def aitex_patches(request):
    from conftest import AITEX_SAMPLE

    root = AITEX_SAMPLE
    if not root.is_dir():
        pytest.skip(f"real AITEX sample not present ({root}; RDCAE_TEST_AITEX= points elsewhere)")
    built = {}
    for fabric in ("00", "03"):
        # recipe=paper: the fabric up to the white band, as the paper counted its defect tiles
        cfg = compose_config(["dataset=aitex", f"fabric={fabric}", f"data_dir={root}", "recipe=paper", "cache_dir="])
        built[fabric] = build_patches(cfg)
    return built


@pytest.mark.parametrize("fabric,paper", [("00", 46), ("03", 690)])
def test_aitex_defect_patch_counts_match_the_paper(aitex_patches, fabric, paper):
    stats = aitex_patches[fabric].stats
    assert stats["patches"]["test_defect"] == paper == stats["paper_test_defect"]


@pytest.mark.parametrize("fabric", ["00", "03"])
def test_aitex_normal_patches_follow_the_1600_70_30_protocol(aitex_patches, fabric):
    p = aitex_patches[fabric]
    assert len(p.train_normal) == 1120 and len(p.test_normal) == 480
    assert p.train_normal.shape[1:] == (1, 32, 32) and p.train_normal.dtype == np.uint8


@pytest.mark.parametrize("fabric", ["00", "03"])
def test_every_defect_patch_overlaps_its_mask(aitex_patches, fabric):
    masks = aitex_patches[fabric].test_defect_mask
    assert masks.shape == (len(aitex_patches[fabric].test_defect), 32, 32)
    assert masks.any(axis=(1, 2)).all()


@pytest.mark.parametrize("fabric", ["00", "03"])
def test_no_normal_patch_comes_from_the_white_band(aitex_patches, fabric):
    p = aitex_patches[fabric]
    normals = np.concatenate([p.train_normal, p.test_normal])
    saturated = (normals >= 250).mean(axis=(1, 2, 3))
    assert saturated.max() < 0.05  # fabric has about 1 saturated pixel in 256; the band is all saturated
    assert p.stats["normal_positions_excluded"] > 0  # the band was there and was left out


def test_aitex_sampling_is_deterministic_per_seed(aitex_dir):
    def build(seed):
        return build_patches(compose_config(["dataset=aitex", "fabric=00", f"data_dir={aitex_dir}", f"seed={seed}",
                                             "cache_dir="]))

    a, b, c = build(0), build(0), build(1)
    assert np.array_equal(a.train_normal, b.train_normal) and np.array_equal(a.test_defect, b.test_defect)
    assert not np.array_equal(a.train_normal, c.train_normal)


def test_calibration_patches_are_extra_and_leave_train_and_test_unchanged(tmp_path):
    small = ["dataset.n_normal=120", "dataset.n_normal_images=2", "dataset.n_defect_images=2", "cache_dir="]
    plain = build_patches(compose_config(small + ["dataset.n_calibration=0"]))
    calibrated = build_patches(compose_config(small + ["dataset.n_calibration=50"]))
    assert plain.calibration_normal.shape == (0, *plain.train_normal.shape[1:])
    assert calibrated.calibration_normal.shape == (50, *plain.train_normal.shape[1:])
    assert calibrated.stats["patches"]["calibration_normal"] == 50
    for name in ("train_normal", "test_normal", "test_defect"):
        assert np.array_equal(getattr(plain, name), getattr(calibrated, name))
    # drawn from other positions than the training patches (not a copy of them)
    train = {p.tobytes() for p in calibrated.train_normal}
    assert sum(p.tobytes() in train for p in calibrated.calibration_normal) < 5
    # and kept by the cache
    cfg = compose_config(small[:-1] + ["dataset.n_calibration=50"], tmp_path)
    prepare_patches(cfg)
    assert np.array_equal(prepare_patches(cfg).calibration_normal, calibrated.calibration_normal)


def test_more_training_windows_top_up_the_training_set_and_leave_the_split_unchanged():
    small = ["dataset.n_normal=120", "dataset.n_normal_images=2", "dataset.n_defect_images=2",
             "dataset.n_calibration=40", "cache_dir="]
    plain = build_patches(compose_config(small))
    more = build_patches(compose_config(small + ["dataset.n_train=300"]))
    assert len(plain.train_normal) == 84 and len(more.train_normal) == 300
    assert more.stats["patches"]["train_normal"] == 300
    assert np.array_equal(more.train_normal[:84], plain.train_normal)  # the paper's windows first, as they were
    for name in ("test_normal", "test_defect", "calibration_normal"):
        assert np.array_equal(getattr(plain, name), getattr(more, name))
    # the top-up comes from other positions than the split's windows, not copies of them
    split = {p.tobytes() for p in plain.train_normal}
    assert sum(p.tobytes() in split for p in more.train_normal[84:]) < 5
    # the split's share alone: n_train equal to it adds nothing
    assert np.array_equal(build_patches(compose_config(small + ["dataset.n_train=84"])).train_normal,
                          plain.train_normal)


def test_unmarked_defect_images_add_training_windows_with_their_defects_and_leave_the_test_set():
    small = ["dataset.n_normal=120", "dataset.n_normal_images=2", "dataset.n_calibration=40", "dataset.width=256",
             "dataset.height=128", "cache_dir="]
    plain = build_patches(compose_config(small + ["dataset.n_defect_images=2"]))
    dirty = build_patches(compose_config(small + ["dataset.n_defect_images=4", "dataset.unmarked_defect_images=2"]))
    # the test set is that of the first two defect images, the test normals and calibration the checked images'
    for name in ("test_normal", "test_defect", "test_defect_mask", "calibration_normal"):
        assert np.array_equal(getattr(plain, name), getattr(dirty, name)), name
    assert dirty.stats["defect_images"] == plain.stats["defect_images"]
    # the split's 84 windows first, then as many again from the two unmarked images (as many on fabric as the two
    # checked ones), some of them on a defect
    assert np.array_equal(dirty.train_normal[:84], plain.train_normal)
    n = dirty.stats["unmarked_windows"]
    assert len(dirty.train_normal) == 84 + n and 60 < n < 110
    assert 0 < dirty.stats["unmarked_defect_windows"] < n
    indices = dirty.stats["unmarked_defect_indices"]  # where S should act: among the unmarked windows alone
    assert len(indices) == dirty.stats["unmarked_defect_windows"] and min(indices) >= 84 and max(indices) < 84 + n
    sources = [s for s in load_sources(compose_config(small + ["dataset.n_defect_images=4"]).dataset)
               if s.role == "defect"][2:]
    pixels = {s.image[y:y + 32, x:x + 32, 0].tobytes() for s in sources
              for y in range(s.image.shape[0] - 31) for x in range(s.image.shape[1] - 31)}
    assert all(w[0].tobytes() in pixels for w in dirty.train_normal[84:])  # cut from the unmarked images


@pytest.mark.parametrize("value", ["4", "-1", "true"])
def test_unmarked_defect_images_that_leave_nothing_to_test_are_refused_naming_the_setting(value):
    cfg = compose_config(["dataset.n_normal=120", "dataset.n_defect_images=4",
                          f"dataset.unmarked_defect_images={value}", "cache_dir="])
    with pytest.raises(ConfigError, match=f"(?i)dataset.unmarked_defect_images={value}"):
        check_patch_settings(cfg)
        build_patches(cfg)


@pytest.mark.parametrize("value", ["83", "-1", "true", "2.5"])
def test_fewer_training_windows_than_the_split_gives_are_refused_naming_the_setting(value):
    cfg = compose_config(["dataset.n_normal=120", f"dataset.n_train={value}", "cache_dir="])
    with pytest.raises(ConfigError, match=f"(?i)dataset.n_train={value}.*at least the 84 that train_fraction leaves"):
        check_patch_settings(cfg)


def test_every_defect_tile_knows_its_image(aitex_patches):
    p = aitex_patches["00"]
    names = p.stats["defect_images"]
    assert len(p.test_defect_source) == len(p.test_defect) and p.test_defect_source.min() >= 0
    counts = {names[i]: int(n) for i, n in enumerate(np.bincount(p.test_defect_source, minlength=len(names)))}
    # fabric 00's defect 022 images each hold a short line: a few tiles; 002 images a longer one
    assert counts["Defect_images/0001_002_00.png"] > counts["Defect_images/0063_022_00.png"] > 0
    assert sum(counts.values()) == 46


def test_negative_calibration_count_is_rejected_naming_the_setting():
    with pytest.raises(ConfigError, match="dataset.n_calibration=-1"):
        check_patch_settings(compose_config(["dataset.n_calibration=-1", "cache_dir="]))


def test_second_prepare_comes_from_the_cache(tmp_path, monkeypatch):
    cfg = compose_config(["dataset.n_normal=100", "dataset.n_normal_images=1", "dataset.n_defect_images=1"], tmp_path)
    first = prepare_patches(cfg)
    monkeypatch.setattr(patches_module, "build_patches", lambda cfg: pytest.fail("cache not used"))
    second = prepare_patches(cfg)
    assert np.array_equal(first.train_normal, second.train_normal)
    assert second.stats == first.stats


def test_what_reading_the_data_said_is_said_again_when_the_patches_come_from_the_cache(tmp_path, caplog,
                                                                                      monkeypatch):
    import logging

    from PIL import Image

    good = tmp_path / "data" / "train" / "good"
    good.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(2):
        Image.fromarray(rng.integers(0, 255, (64, 64), dtype=np.uint8)).save(good / f"{i}.png")
    Image.fromarray(np.zeros((20, 20), np.uint8)).save(good / "tiny.png")
    cfg = compose_config(["dataset=folder", f"data_dir={tmp_path / 'data'}", "dataset.n_normal=50"], tmp_path)

    def said():
        with caplog.at_level(logging.WARNING, logger="rdcae.data"):
            caplog.clear()
            prepare_patches(cfg)
            return sorted(r.getMessage() for r in caplog.records if r.levelno == logging.WARNING)

    first = said()
    assert any("tiny.png: image 20x20 is smaller than patch_size=32" in m for m in first)
    assert any("no defect images with masks" in m for m in first)
    monkeypatch.setattr(patches_module, "build_patches", lambda cfg: pytest.fail("cache not used"))
    assert said() == first


def test_cache_key_changes_with_any_setting_that_changes_patches(tmp_path):
    base = compose_config([], tmp_path)
    keys = {cache_key(base)}
    for override in ("patch_size=64", "seed=1", "dataset.n_normal=800", "dataset.defect_rule=any"):
        keys.add(cache_key(compose_config([override], tmp_path)))
    assert len(keys) == 5
    assert cache_key(compose_config(["lambda=2.5", "noise=gaussian"], tmp_path)) == cache_key(base)


def test_cache_key_changes_when_a_source_file_changes(tmp_path, aitex_dir):
    data = tmp_path / "aitex"
    shutil.copytree(aitex_dir / "Mask_images", data / "Mask_images")
    cfg = compose_config(["dataset=aitex", f"data_dir={data}"], tmp_path)
    before = cache_key(cfg)
    mask = next((data / "Mask_images").iterdir())
    os.utime(mask, ns=(mask.stat().st_atime_ns, mask.stat().st_mtime_ns + 10**9))
    assert cache_key(cfg) != before


def test_patch_larger_than_the_images_is_rejected(tmp_path):
    cfg = compose_config(["dataset.height=32", "dataset.width=64", "patch_size=48"], tmp_path)
    with pytest.raises(ValueError, match="patch_size=48"):
        build_patches(cfg)


def test_gray_patches_are_replicated_to_three_channels():
    gray = np.arange(2 * 4 * 4, dtype=np.uint8).reshape(2, 1, 4, 4)
    rgb = to_channels(gray, 3)
    assert rgb.shape == (2, 3, 4, 4)
    assert all(np.array_equal(rgb[:, c], gray[:, 0]) for c in range(3))
    assert np.array_equal(to_channels(rgb, 1), gray)


def test_data_summary_prints_counts_and_writes_a_contact_sheet(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    code = data_main(["summary", "dataset.n_normal=100", "dataset.n_normal_images=1", "dataset.n_defect_images=2",
                      f"cache_dir={tmp_path / 'c'}"])
    out = capsys.readouterr().out
    assert code == 0
    assert "normal patches  : 70 train + 30 test" in out
    sheets = [p for p in (tmp_path / "outputs" / "data_summary").glob("*.png") if not p.stem.endswith("_regions")]
    assert len(sheets) == 1 and sheets[0].stat().st_size > 1000
    regions = Image.open(sheets[0].with_name(f"{sheets[0].stem}_regions.png"))
    assert "fabric regions  :" in out and regions.height > 3 * 22  # one normal and two defect images, captioned

    head = np.asarray(Image.open(sheets[0]).convert("L"))[:22]  # the label above the normal patches
    assert (head == 255).mean() > 0.9 and head.min() < 80  # white, with dark text on it


def test_normal_image_smaller_than_the_patch_is_skipped_with_a_warning(caplog):
    from rdcae.data.patches import draw_windows, normal_positions
    from rdcae.data.sources import SourceImage

    rng = np.random.default_rng(0)
    small = SourceImage("tiny.png", rng.integers(0, 200, (16, 16), dtype=np.uint8), "normal")
    large = SourceImage("large.png", rng.integers(0, 200, (64, 64), dtype=np.uint8), "normal")
    with caplog.at_level("WARNING"):
        positions, stats = normal_positions([small, large], 32)
        patches = draw_windows([small, large], positions, 20, 32, rng)
    assert "tiny.png" in caplog.text and "patch_size=32" in caplog.text
    assert stats["normal_images_too_small"] == ["tiny.png"]
    assert patches.shape == (20, 1, 32, 32)


def test_calibration_images_are_taken_among_images_that_hold_a_patch_and_a_window_less_set_is_named():
    from rdcae.data.patches import normal_positions, split_calibration
    from rdcae.data.sources import SourceImage
    from rdcae.errors import DataError

    rng = np.random.default_rng(0)
    normal = [SourceImage(f"n{i}.png", rng.integers(0, 200, (64, 64, 1), dtype=np.uint8), "normal") for i in range(5)]
    normal += [SourceImage(f"zz_narrow{i}.png", rng.integers(0, 200, (20, 300, 1), dtype=np.uint8), "normal")
               for i in range(2)]  # sorted last, where the calibration images are taken from
    training, calibrating = split_calibration(normal, 2, 32)
    assert [s.path for s in calibrating] == ["n3.png", "n4.png"]
    assert [s.path for s in training] == ["n0.png", "n1.png", "n2.png", "zz_narrow0.png", "zz_narrow1.png"]
    assert split_calibration(normal, 0, 32) == (normal, [])
    with pytest.raises(DataError, match=r"in the 2 calibration image\(s\) \(zz_narrow0.png, zz_narrow1.png\)"):
        normal_positions(normal[-2:], 32, what="calibration")


def test_calibration_images_that_leave_no_image_holding_a_patch_to_train_on_are_refused_naming_the_small_ones(
        tmp_path):
    for folder in ("train/good", "test/good"):
        (tmp_path / folder).mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(3):
        Image.fromarray(rng.integers(0, 200, (64, 96), dtype=np.uint8)).save(tmp_path / "train" / "good" / f"n{i}.png")
    for i in range(2):
        Image.fromarray(rng.integers(0, 200, (20, 300), dtype=np.uint8)).save(tmp_path / "train" / "good" / f"z{i}.png")
    Image.fromarray(rng.integers(0, 200, (64, 96), dtype=np.uint8)).save(tmp_path / "test" / "good" / "t.png")
    cfg = compose_config(["dataset=folder", f"data_dir={tmp_path}", "dataset.calibration_images=3", "cache_dir="])
    with pytest.raises(ConfigError, match=r"dataset.calibration_images=3 leaves none of the 3 defect-free images of "
                                          r"dataset folder \(after dataset.holdout_images; 2 more are smaller than "
                                          r"the 32x32 patch\) to train on"):
        build_patches(cfg)


def test_held_out_clean_images_feed_no_patch_and_are_listed():
    common = ["dataset.n_normal_images=3", "dataset.n_defect_images=1", "dataset.width=256", "dataset.height=128",
              "dataset.n_normal=100", "dataset.n_calibration=20", "cache_dir="]
    plain = build_patches(compose_config(common))
    kept_out = build_patches(compose_config(common + ["dataset.holdout_images=1"]))
    assert plain.stats["held_out_images"] == [] and kept_out.stats["held_out_images"] == ["woven://twill/normal_002"]
    assert kept_out.stats["normal_positions"] == 2 * plain.stats["normal_positions"] // 3  # 2 of 3 equal images remain
    assert kept_out.stats["images"]["normal"] == 2
    with pytest.raises(ConfigError, match="dataset.holdout_images=3 leaves none of the 3 defect-free images"):
        build_patches(compose_config(common + ["dataset.holdout_images=3"]))
    with pytest.raises(ConfigError, match="dataset.holdout_images=-1"):
        check_patch_settings(compose_config(common + ["dataset.holdout_images=-1"]))


def test_calibration_images_give_the_calibration_patches_alone_and_no_training_window():
    common = ["dataset.n_normal_images=4", "dataset.n_defect_images=1", "dataset.width=256", "dataset.height=128",
              "dataset.n_normal=100", "dataset.n_calibration=40", "dataset.holdout_images=1", "cache_dir="]
    cfg = compose_config(common + ["dataset.calibration_images=1"])
    patches = build_patches(cfg)
    assert patches.stats["calibration_images"] == ["woven://twill/normal_002"]  # the last before the held-out one
    assert patches.stats["images"]["normal"] == 2 and len(patches.calibration_normal) == 40
    images = {Path(s.path).name: s.image[:, :, 0] for s in load_sources(cfg.dataset) if s.role == "normal"}

    def found_in(patch: np.ndarray, image: np.ndarray) -> bool:
        windows = np.lib.stride_tricks.sliding_window_view(image, patch.shape)
        return bool((windows == patch).all(axis=(2, 3)).any())

    assert all(found_in(p[0], images["normal_002"]) for p in patches.calibration_normal)
    assert not any(found_in(p[0], images["normal_002"]) for p in patches.train_normal[:50])
    assert not any(found_in(p[0], images["normal_002"]) for p in patches.test_normal[:20])
    plain = build_patches(compose_config(common))  # without it, normal_002 trains and calibrates with the others
    assert any(found_in(p[0], images["normal_002"]) for p in plain.calibration_normal)
    assert any(found_in(p[0], images["normal_002"]) for p in plain.train_normal[:50])
    with pytest.raises(ConfigError, match="dataset.calibration_images=3 leaves none of the 3 defect-free images"):
        build_patches(compose_config(common + ["dataset.calibration_images=3"]))
    with pytest.raises(ConfigError, match="dataset.calibration_images=1 must be a whole number >= 0 or auto, and needs "
                                          "dataset.n_calibration > 0"):
        check_patch_settings(compose_config(common + ["dataset.calibration_images=1", "dataset.n_calibration=0"]))


@pytest.mark.parametrize("clean_images, calibrating",
                         [(4, []), (6, ["normal_004"]), (11, ["normal_008", "normal_009"])])
def test_auto_calibration_images_spares_one_in_five_clean_images_and_none_of_a_few(clean_images, calibrating):
    common = [f"dataset.n_normal_images={clean_images}", "dataset.n_defect_images=1", "dataset.width=128",
              "dataset.height=64", "dataset.n_normal=60", "dataset.n_calibration=20", "dataset.holdout_images=1",
              "dataset.calibration_images=auto", "cache_dir="]
    patches = build_patches(compose_config(common))
    assert patches.stats.get("calibration_images", []) == [f"woven://twill/{name}" for name in calibrating]
    assert patches.stats["images"]["normal"] == clean_images - 1 - len(calibrating)  # the held-out one, then these
    assert calibration_sources(compose_config(common).dataset, 32)[-1].path.endswith(
        calibrating[-1] if calibrating else f"normal_{clean_images - 2:03d}")
    check_patch_settings(compose_config(common + ["dataset.n_calibration=0"]))  # auto then spares none
    assert calibration_count(compose_config(common + ["dataset.n_calibration=0"]).dataset, 100) == 0
    with pytest.raises(ConfigError, match="dataset.calibration_images=some must be a whole number >= 0 or auto"):
        check_patch_settings(compose_config(common + ["dataset.calibration_images=some"]))


def test_patches_of_an_unusable_channel_count_are_refused_naming_the_input_not_the_setting():
    with pytest.raises(ValueError, match="patches with 2 channels cannot become 3: images must be gray"):
        to_channels(np.zeros((1, 2, 8, 8), np.uint8), 3)


def test_the_summary_says_a_bad_setting_or_folder_in_one_line(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for args, message in ((["dataset=folder", f"data_dir={tmp_path / 'absent'}"], "absent does not exist"),
                          (["dataset.n_calibration=-1"], "dataset.n_calibration=-1"),
                          (["channels=2"], "channels=2 must be 1 (gray) or 3"),  # what training refuses too
                          (["notakey=1"], "notakey=1: unknown setting; python -m rdcae.data summary takes")):
        assert data_main(["summary", *args]) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("error: ") and message in err and len(err.splitlines()) == 1, err
        if args == ["notakey=1"]:  # the settings are the training config's: its --help lists them
            assert err.endswith("(python -m rdcae.train --help lists them)")
    assert not (tmp_path / "outputs").exists()


def test_the_contact_sheet_says_when_its_patches_are_shown_with_the_lighting_evened_out():
    from rdcae.data.__main__ import sheet_labels

    plain, evened = sheet_labels((48, 20), (1600, 428)), sheet_labels((48, 20), (1600, 428), "local")
    assert plain[0] == "normal patches (48 of 1600, drawn at random)" and "lighting" not in plain[0]
    assert "dataset.lighting=local" in evened[0] and evened[1] == plain[1]


def test_the_contact_sheet_is_wide_enough_for_its_captions_at_the_smallest_patch():
    from types import SimpleNamespace

    from PIL import ImageFont

    from rdcae.data.__main__ import contact_sheet, sheet_labels

    rng = np.random.default_rng(0)
    patches = SimpleNamespace(train_normal=rng.integers(0, 255, (40, 1, 8, 8), np.uint8),
                              test_normal=rng.integers(0, 255, (10, 1, 8, 8), np.uint8),
                              test_defect=rng.integers(0, 255, (5, 1, 8, 8), np.uint8),
                              test_defect_mask=np.ones((5, 8, 8), bool))
    sheet = contact_sheet(patches, lighting="local")
    caption = sheet_labels((48, 5), (50, 5), "local")[0]
    assert sheet.width >= ImageFont.load_default(size=14).getlength(caption) > 16 * 10 * 3  # wider than the grid


def test_the_region_sheet_tints_what_the_fabric_region_leaves_out_and_outlines_the_masks():
    from omegaconf import OmegaConf

    from rdcae.data.__main__ import region_sheet
    from rdcae.data.sources import SourceImage

    rng = np.random.default_rng(0)
    image = rng.integers(60, 120, (64, 300, 1), np.uint8)
    image[:, :100] = 255  # a white band, as left of AITEX's fabric
    mask = np.zeros((64, 300), bool)
    mask[20:40, 200:240] = True
    sources = [SourceImage("a/clean.png", image.copy(), "normal"), SourceImage("a/flaw.png", image.copy(), "defect",
                                                                                mask=mask)]
    sheet = np.asarray(region_sheet(sources, OmegaConf.create({"edge_margin": 0, "texture_borders": False})))
    clean, flaw = sheet[22 : 22 + 64], sheet[2 * 22 + 64 : 2 * 22 + 128]
    np.testing.assert_array_equal(clean[:, :100], np.broadcast_to([97, 118, 188], (64, 100, 3)))  # the band, tinted
    np.testing.assert_array_equal(clean[:, 100:300, 0], image[:, 100:, 0])  # the fabric as it is
    assert (flaw[20, 200:240] == 255).all() and (flaw[30, 220] != 255).any()  # the mask's outline, not its inside


def test_the_data_commands_settle_an_aitex_fabric_given_as_a_number_as_its_code():
    from rdcae.data.__main__ import composed

    assert composed(["dataset=aitex", "fabric=3", "data_dir=/nowhere"], "summary").fabric == "03"


@pytest.mark.parametrize("settings, trained_on", [
    ([], "the clean images but the held-out one"),
    (["dataset.normals_from_defect_images=true"], "the same: the defect images stay test images"),
    (["dataset.unmarked_defect_images=1"], "and the last defect image, trained on unmarked"),
])
def test_the_patches_name_the_images_the_model_trains_or_calibrates_on(settings, trained_on):
    from rdcae.data.images import SEEN, fingerprint

    cfg = compose_config(["dataset.n_normal_images=4", "dataset.n_defect_images=3", "dataset.width=256",
                          "dataset.height=128", "dataset.n_normal=120", "dataset.n_calibration=20",
                          "dataset.holdout_images=1", "dataset.calibration_images=1", "cache_dir=", *settings])
    sources = load_sources(cfg.dataset)
    normal = [fingerprint(s.image) for s in sources if s.role == "normal"]
    defect = [fingerprint(s.image) for s in sources if s.role == "defect"]
    expected = normal[:3] + (defect[-1:] if "dataset.unmarked_defect_images=1" in settings else [])
    assert build_patches(cfg).stats[SEEN] == sorted(expected), trained_on
