"""Images lit differently: dataset.lighting evens them out in training and in detection alike."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
from conftest import compose_config

from rdcae.data.lighting import even_lighting
from rdcae.data.patches import build_patches, check_patch_settings
from rdcae.data.sources import load_sources
from rdcae.data.woven import generate
from rdcae.errors import ConfigError
from rdcae.inference.image import ImageDetector, Preprocessing

SMALL = ["dataset.n_normal_images=2", "dataset.n_defect_images=1", "dataset.width=256", "dataset.height=128",
         "dataset.n_normal=120", "dataset.n_calibration=0", "cache_dir="]


@pytest.fixture(scope="module")
def surface() -> np.ndarray:
    return generate(seed=0, n_normal_images=1, n_defect_images=0, height=256, width=512)[0].image


def lit(image: np.ndarray, gain: float, ramp: float = 0.0, offset: float = 0.0) -> np.ndarray:
    across = 1 + ramp * np.linspace(-1, 1, image.shape[1])[None, :, None]
    return np.clip(image * gain * across + offset, 0, 255).round().astype(np.uint8)


def test_image_mode_undoes_a_gain_and_an_offset_and_none_leaves_the_image_alone(surface):
    darker, brighter = lit(surface, 0.6, offset=10), lit(surface, 1.3, offset=-15)
    assert np.abs(darker.astype(int) - brighter).mean() > 30  # as the camera saw them
    a, b = even_lighting(darker, "image"), even_lighting(brighter, "image")
    assert np.abs(a.astype(int) - b).mean() < 2.5
    assert abs(np.median(a) - 128) <= 1 and np.ptp(np.percentile(a, [25, 75])) == pytest.approx(2 * 0.674 * 32, abs=3)
    assert even_lighting(surface, "none") is surface


def test_local_mode_also_undoes_a_shading_across_the_image_that_image_mode_keeps(surface):
    left_dark, right_dark = lit(surface, 1.0, ramp=0.3), lit(surface, 1.0, ramp=-0.3)
    whole = np.abs(even_lighting(left_dark, "image").astype(int) - even_lighting(right_dark, "image"))
    local = np.abs(even_lighting(left_dark, "local").astype(int) - even_lighting(right_dark, "local"))
    assert whole[:, :64].mean() > 3 * local[:, :64].mean()  # at the ends of the ramp
    assert local.mean() < 2.5


def test_a_blank_band_is_not_blown_up_into_noise():
    image = np.full((64, 256, 1), 250, np.uint8)
    image[:, 128:] = np.random.default_rng(0).integers(60, 200, (64, 128, 1))
    for mode in ("image", "local"):
        band = even_lighting(image, mode)[:, :32].astype(int)
        assert band.std() < 1.0, mode


def test_the_noise_of_a_flat_area_is_amplified_at_most_spread_over_floor_times():
    from rdcae.data.lighting import FLOOR, SPREAD

    noise = np.random.default_rng(0).normal(0, 0.6, (256, 256, 1))
    image = np.clip(30 + noise, 0, 255).round().astype(np.uint8)  # a dark, flat part: sensor noise alone
    evened = even_lighting(image, "local").astype(float)
    assert evened.std() <= SPREAD / FLOOR * image.std() + 1
    assert evened.std() < 0.5 * SPREAD  # standardised by its own noise it would reach SPREAD


def test_training_patches_come_from_the_evened_images():
    raw = build_patches(compose_config(SMALL))
    even = build_patches(compose_config(SMALL + ["dataset.lighting=image"]))
    sources = [s for s in load_sources(compose_config(SMALL).dataset) if s.role == "normal"]
    pixels = {e[y:y + 32, x:x + 32, 0].tobytes() for e in (even_lighting(s.image, "image") for s in sources)
              for y in range(e.shape[0] - 31) for x in range(e.shape[1] - 31)}
    assert all(w[0].tobytes() in pixels for w in even.train_normal)
    assert not any(w[0].tobytes() in pixels for w in raw.train_normal)  # the same windows, as the camera saw them


def test_detection_evens_each_image_as_training_did(surface):
    def mean_score(windows: np.ndarray):  # any scorer that sees brightness
        return windows.mean(axis=(1, 2, 3)), np.zeros((len(windows), 32, 32), np.float32)

    def scores(lighting: str, image: np.ndarray) -> np.ndarray:
        detector = ImageDetector(mean_score, Preprocessing(channels=1, patch_size=32, lighting=lighting), 1e9)
        return detector.detect(image).window_scores

    darker, brighter = lit(surface, 0.6), lit(surface, 1.3)
    assert np.abs(scores("none", darker) - scores("none", brighter)).mean() > 30
    assert np.abs(scores("image", darker) - scores("image", brighter)).max() < 2
    np.testing.assert_allclose(scores("image", darker), even_lighting(darker, "image")[:256, :512].reshape(
        8, 32, 16, 32).mean(axis=(1, 3)).ravel(), rtol=1e-5)


@pytest.mark.parametrize("value", ["bright", "true", "1"])
def test_an_unknown_lighting_mode_is_refused_naming_the_setting(value):
    cfg = compose_config(SMALL + [f"dataset.lighting={value}"])
    with pytest.raises(ConfigError, match=f"(?i)dataset.lighting='?{value}'?: choose one of none, image, local, gain"):
        check_patch_settings(cfg)


def test_the_model_file_carries_the_runs_lighting_to_every_backend():
    spec = SimpleNamespace(channels=3, patch_size=32)
    assert Preprocessing.from_config({"dataset": {"lighting": "local"}}, spec).lighting == "local"
    assert Preprocessing.from_config({"dataset": {}}, spec).lighting == "none"  # files written before the setting


def test_own_folders_even_the_lighting_by_default_and_the_evenly_lit_datasets_do_not():
    assert compose_config(["dataset=folder"]).dataset.lighting == "local"
    for name in ("aitex", "ksdd2", "woven"):
        assert compose_config([f"dataset={name}"]).dataset.lighting == "none", name


def banded(seed: int) -> np.ndarray:
    """A texture with a blank band at the left, flat but for a little sensor noise, as a camera pads a part."""
    image = lit(generate(seed=0, n_normal_images=seed + 1, n_defect_images=0, height=128, width=512)[seed].image, 0.8)
    image[:, :96] = np.clip(30 + np.random.default_rng(seed).normal(0, 0.6, (128, 96, 1)), 0, 255).round()
    return image.astype(np.uint8)


def test_a_blank_band_is_found_on_the_image_as_read_not_on_its_evened_noise():
    from rdcae.data.region import fabric_region

    image = banded(0)
    assert not fabric_region(image)[:, :96].any()
    assert fabric_region(even_lighting(image, "local"))[:, :96].any()  # evened, the band's noise looks like texture
    detector = ImageDetector(lambda w: (w.mean(axis=(1, 2, 3)), np.zeros((len(w), 32, 32), np.float32)),
                             Preprocessing(channels=1, patch_size=32, lighting="local"), 1e9)
    detection = detector.detect(image)
    assert not detection.fabric[:, :96].any() and detection.corners[:, 1].min() >= 96


@pytest.mark.parametrize("mode", ["local", "image"])
def test_a_white_band_does_not_light_the_fabric_beside_it(surface, mode):
    from rdcae.data.region import fabric_region

    image = surface.copy()
    image[:, :96] = 255  # a white band, as a line-scan camera sees past the web's edge
    fabric = fabric_region(image)
    alone = even_lighting(surface[:, 96:], mode).astype(int)  # the same fabric, framed without the band
    measured_on_fabric = even_lighting(image, mode, fabric=fabric)[:, 96:].astype(int)
    assert np.abs(measured_on_fabric - alone)[:, :64].mean() < 0.5
    assert np.abs(even_lighting(image, mode)[:, 96:].astype(int) - alone)[:, :64].mean() > 5  # over the whole image
    assert (even_lighting(surface, mode, fabric=np.ones(surface.shape[:2], bool)) == even_lighting(surface, mode)).all()


def test_detection_measures_the_lighting_as_the_model_file_says_its_training_did(surface):
    from rdcae.data.lighting import LIGHTING_ON_FABRIC

    spec = SimpleNamespace(channels=1, patch_size=32)
    config = {"dataset": {"lighting": "local"}}
    assert Preprocessing.from_config(config | {LIGHTING_ON_FABRIC: True}, spec).lighting_on_fabric
    assert not Preprocessing.from_config(config, spec).lighting_on_fabric  # files written before: the whole image
    image = surface.copy()
    image[:, :96] = 255

    def windows(on_fabric: bool) -> np.ndarray:
        preprocessing = Preprocessing(channels=1, patch_size=32, lighting="local", lighting_on_fabric=on_fabric)
        return ImageDetector(lambda w: w, preprocessing, 1.0).windows(image)[1]

    new, old = windows(True), windows(False)
    assert len(new) == len(old) and not (new == old).all()


def test_training_windows_keep_off_a_blank_band_when_the_lighting_is_evened(tmp_path):
    from PIL import Image

    for folder, seeds in (("train/good", (0, 1)), ("test/good", (2,)), ("test/crack", (3,))):
        (tmp_path / folder).mkdir(parents=True)
        for seed in seeds:
            Image.fromarray(banded(seed)[..., 0]).save(tmp_path / folder / f"{seed:03d}.png")
    mask = np.zeros((128, 512), np.uint8)
    mask[40:60, 200:300] = 255
    (tmp_path / "ground_truth" / "crack").mkdir(parents=True)
    Image.fromarray(mask).save(tmp_path / "ground_truth" / "crack" / "003_mask.png")
    settings = ["dataset=folder", f"data_dir={tmp_path}", "dataset.n_normal=200", "dataset.n_calibration=0",
                "cache_dir="]
    evened = build_patches(compose_config(settings))  # dataset=folder evens the lighting by default
    raw = build_patches(compose_config(settings + ["dataset.lighting=none"]))
    assert evened.stats["normal_positions"] == raw.stats["normal_positions"]  # the same fabric, the band left out
    assert (evened.test_defect_position == raw.test_defect_position).all()
    assert evened.train_normal.std(axis=(1, 2, 3)).min() > 5  # no window of the flat band
    # evened as detection evens them: the lighting measured on the fabric, the band beside it left out
    from rdcae.data.region import fabric_region

    lit = [even_lighting(banded(seed), "local", fabric=fabric_region(banded(seed))) for seed in (0, 1)]
    pixels = {e[y:y + 32, x:x + 32, 0].tobytes() for e in lit for y in range(e.shape[0] - 31)
              for x in range(e.shape[1] - 31)}
    assert all(w[0].tobytes() in pixels for w in evened.train_normal)


def test_the_levels_of_an_image_unlike_the_training_images_are_named():
    from rdcae.data.lighting import fabric_levels, levels_range, unlike_levels

    rng = np.random.default_rng(0)
    image = np.clip(rng.normal(100, 20, (64, 64, 1)), 0, 255).round().astype(np.uint8)
    image[:, 40:] = 255  # a white band
    fabric = np.zeros((64, 64), bool)
    fabric[:, :40] = True
    pixels = image[:, :40].ravel().astype(float)
    q1, median, q3 = np.percentile(pixels, [25, 50, 75])
    assert fabric_levels(image, fabric) == pytest.approx((median, (q3 - q1) / 1.349), abs=1.0)
    assert fabric_levels(image)[0] > 110  # no region: the whole image, band and all
    image[:8, :8] = 0  # a defect on a small part of the fabric moves neither
    assert fabric_levels(image, fabric) == pytest.approx((median, (q3 - q1) / 1.349), abs=1.5)
    known = levels_range([(80.0, 27.0), (84.0, 29.0), (82.0, 28.0)])
    assert known == {"median": [80.0, 84.0], "spread": [27.0, 29.0]}
    slack = 0.1 * 28.0  # a tenth of the fabric's spread beyond the range of medians
    assert unlike_levels((84.0 + slack - 0.1, 28.0), known) == "" == unlike_levels((80.0 - slack + 0.1, 28.0), known)
    assert unlike_levels((84.0 + slack + 0.1, 28.0), known) == "brighter"
    assert unlike_levels((80.0 - slack - 0.1, 28.0), known) == "darker"
    assert unlike_levels((82.0, 29.0 * 1.1 + 0.1), known) == "of higher contrast"
    assert unlike_levels((90.0, 27.0 / 1.1 - 0.1), known) == "brighter and of lower contrast"


def test_the_model_file_keeps_the_levels_of_its_training_images_where_it_evens_no_lighting_out(tmp_path):
    from rdcae.data.lighting import FABRIC_LEVELS, fabric_levels
    from rdcae.data.region import fabric_region

    cfg = compose_config(SMALL + ["dataset.holdout_images=1"], tmp_path)
    stats = build_patches(cfg).stats
    normal = [s for s in load_sources(cfg.dataset) if s.role == "normal"]
    levels = [fabric_levels(s.image, fabric_region(s.image, cfg.dataset.edge_margin, cfg.dataset.texture_borders))
              for s in normal[:-1]]  # the held-out image is not among them
    assert stats[FABRIC_LEVELS]["median"] == pytest.approx([min(m for m, _ in levels), max(m for m, _ in levels)],
                                                         abs=1e-3)
    assert stats[FABRIC_LEVELS]["spread"] == pytest.approx([min(s for _, s in levels), max(s for _, s in levels)],
                                                        abs=1e-3)
    assert FABRIC_LEVELS not in build_patches(compose_config(SMALL + ["dataset.lighting=image"], tmp_path)).stats


def test_the_levels_of_a_colour_image_are_those_of_its_luminance():
    from rdcae.data.lighting import fabric_levels

    red = np.zeros((8, 8, 3), np.uint8)
    red[...] = (200, 60, 40)  # a flat colour: no contrast, whatever its channels
    assert fabric_levels(red) == (round(0.299 * 200 + 0.587 * 60 + 0.114 * 40), 0.0)


def test_without_defect_free_images_the_model_keeps_no_levels():
    from rdcae.data.lighting import FABRIC_LEVELS

    cfg = compose_config(["dataset.n_normal_images=0", "dataset.n_defect_images=2", "dataset.width=256",
                          "dataset.height=128", "dataset.n_normal=120", "dataset.n_calibration=0", "cache_dir=",
                          "dataset.normals_from_defect_images=true"])
    assert FABRIC_LEVELS not in build_patches(cfg).stats  # its normals are the defect images' clean windows


def test_gain_mode_scales_the_fabric_median_to_the_training_images_and_keeps_the_contrast(surface):
    from rdcae.data.lighting import LIGHTING_REFERENCE, fabric_levels

    darker, brighter = lit(surface, 0.8), lit(surface, 1.2)
    evened = [even_lighting(image, "gain", reference=120.0) for image in (darker, brighter)]
    assert [fabric_levels(e)[0] for e in evened] == pytest.approx([120.0, 120.0], abs=1.0)
    assert np.abs(evened[0].astype(int) - evened[1].astype(int)).mean() < 1.0  # one gain undone, the other too
    median, spread = fabric_levels(surface)
    assert fabric_levels(even_lighting(surface, "gain", reference=median))[1] == pytest.approx(spread, abs=1.0)
    with pytest.raises(ValueError, match="needs the training images' fabric median"):
        even_lighting(surface, "gain")

    cfg = compose_config(SMALL + ["dataset.lighting=gain", "dataset.holdout_images=1"])
    stats = build_patches(cfg).stats
    trained = [s for s in load_sources(cfg.dataset) if s.role == "normal"][:-1]
    assert stats[LIGHTING_REFERENCE] == pytest.approx(np.median([fabric_levels(s.image)[0] for s in trained]), abs=1)
    spec = SimpleNamespace(channels=1, patch_size=32)
    config = {"dataset": {"lighting": "gain", "exclude_background": False}, LIGHTING_REFERENCE: 120.0}
    detector = ImageDetector(lambda w: (w.mean(axis=(1, 2, 3)), np.zeros((len(w), 32, 32), np.float32)),
                             Preprocessing.from_config(config, spec), 1e9)
    scores = [detector.detect(image).window_scores for image in (darker, brighter)]
    assert np.abs(scores[0] - scores[1]).max() < 2  # detection evens each image as training did
