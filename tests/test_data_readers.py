"""Real-data readers: image files, the fabric region, and the AITEX, KSDD2 and MVTec-layout adapters."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
from conftest import AITEX_SAMPLE
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf
from PIL import Image

from rdcae.data import aitex, folder, ksdd2
from rdcae.data.images import read_image, read_mask
from rdcae.data.patches import normal_positions
from rdcae.data.region import fabric_region
from rdcae.data.sources import SourceImage, load_sources
from rdcae.errors import ConfigError, DataError

REPO = Path(__file__).resolve().parents[1]
SHARED_KEYS = {
    "name", "data_dir", "n_normal", "train_fraction", "n_train", "defect_rule", "defect_min_fraction",
    "exclude_background", "edge_margin", "texture_borders", "normals_from_defect_images", "holdout_images",
    "unmarked_defect_images", "lighting", "calibration_images",
}


def save(path: Path, array: np.ndarray, **kwargs) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path, **kwargs)
    return path


def texture(height: int, width: int, seed: int = 0, channels: int = 1) -> np.ndarray:
    """A woven-looking uint8 texture: a stripe pattern plus noise, far from saturation."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[:height, :width]
    weave = 110 + 25 * np.sin(x * 0.9) * np.sin(y * 0.7)
    shape = (height, width, channels) if channels > 1 else (height, width)
    noise = rng.normal(0, 12, shape)
    return np.clip((weave[..., None] if channels > 1 else weave) + noise, 0, 230).astype(np.uint8)


def band_width(region: np.ndarray) -> int:
    """Columns excluded on the left of a region."""
    fabric_columns = region.all(axis=0)
    return int(np.argmax(fabric_columns)) if fabric_columns.any() else region.shape[1]


# ---------------------------------------------------------------------------------------------
# The real AITEX sample (fabrics 00 and 03)


@pytest.fixture(scope="module")
def aitex_sources():
    if not AITEX_SAMPLE.is_dir():
        pytest.skip(f"AITEX sample not found at {AITEX_SAMPLE}")
    return {
        fabric: aitex.load(OmegaConf.create({"data_dir": str(AITEX_SAMPLE), "fabric": fabric}))
        for fabric in ("00", "03")
    }


@pytest.fixture(scope="module")
def aitex_regions(aitex_sources):
    return {s.path: fabric_region(s.image) for sources in aitex_sources.values() for s in sources}


def by_role(sources, role):
    return [s for s in sources if s.role == role]


@pytest.mark.parametrize("fabric, n_normal, n_defect", [("00", 20, 7), ("03", 20, 31)])
def test_aitex_sample_has_the_documented_image_counts(aitex_sources, fabric, n_normal, n_defect):
    sources = aitex_sources[fabric]
    assert len(by_role(sources, "normal")) == n_normal
    assert len(by_role(sources, "defect")) == n_defect
    assert {s.group for s in sources} == {fabric}
    assert all(s.image.shape == (256, 4096, 1) and s.image.dtype == np.uint8 for s in sources)


def test_aitex_normal_sources_are_defect_free_images_and_defect_sources_have_masks(aitex_sources):
    for sources in aitex_sources.values():
        for s in by_role(sources, "normal"):
            assert "NODefect_images" in s.path and Path(s.path).stem.split("_")[1] == "000"
            assert s.mask is None
        for s in by_role(sources, "defect"):
            assert Path(s.path).parent.name == "Defect_images"
            assert s.mask is not None and s.mask.dtype == bool and s.mask.shape == (256, 4096)


def test_aitex_mask_is_the_union_of_all_mask_files_of_an_image(aitex_sources):
    source = next(s for s in aitex_sources["03"] if Path(s.path).stem == "0097_030_03")
    masks = AITEX_SAMPLE / "Mask_images"
    one = read_mask([masks / "0097_030_03_mask1.png"], (256, 4096))
    two = read_mask([masks / "0097_030_03_mask2.png"], (256, 4096))
    assert one.any() and two.any() and not np.array_equal(one, two)
    np.testing.assert_array_equal(source.mask, one | two)
    # _mask.png duplicates the union; merging it as well must not add a pixel.
    assert source.mask.sum() == (one | two).sum()


def test_aitex_image_with_all_zero_mask_is_kept(aitex_sources):
    source = next(s for s in aitex_sources["03"] if Path(s.path).stem == "0106_010_03")
    assert source.role == "defect" and not source.mask.any()


def test_aitex_band_is_detected_on_every_image_that_has_it(aitex_sources, aitex_regions):
    widths = []
    for sources in aitex_sources.values():
        for s in sources:
            region = aitex_regions[s.path]
            fabric_columns = region.all(axis=0)
            # A full-height block of columns: the band runs over the whole height.
            np.testing.assert_array_equal(region, np.broadcast_to(fabric_columns, region.shape))
            median = np.median(s.image[:, :, 0], axis=0)
            assert (median[fabric_columns] < 250).all(), s.path
            widths.append(band_width(region))
    widths = np.array(widths)
    assert len(widths) == 78
    assert (widths > 0).sum() == 77
    assert ((widths[widths > 0] >= 900) & (widths[widths > 0] <= 1300)).all()


def test_aitex_image_without_band_is_all_fabric(aitex_sources, aitex_regions):
    source = next(s for s in aitex_sources["00"] if Path(s.path).stem == "0062_022_00")
    assert aitex_regions[source.path].all()


@pytest.mark.parametrize("fabric, n_tiles", [("00", 46), ("03", 690)])
def test_aitex_defect_tiles_from_the_origin(aitex_sources, aitex_regions, fabric, n_tiles):
    size, count = 32, 0
    for s in by_role(aitex_sources[fabric], "defect"):
        h, w = s.mask.shape
        defective = s.mask.reshape(h // size, size, w // size, size).any(axis=(1, 3))
        count += int(defective.sum())
        region = aitex_regions[s.path]
        in_band = ~region.reshape(h // size, size, w // size, size).any(axis=(1, 3))
        assert not (defective & in_band).any(), s.path
        assert not (s.mask & ~region).any(), s.path
    assert count == n_tiles


def test_aitex_config_loads_through_the_adapter_registry(aitex_sources):
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        overrides = ["dataset=aitex", f"data_dir={AITEX_SAMPLE}", "fabric=00"]
        cfg = compose(config_name="train", overrides=overrides)
    sources = load_sources(cfg.dataset)
    assert [s.path for s in sources] == [s.path for s in aitex_sources["00"]]


# ---------------------------------------------------------------------------------------------
# Fabric region on generated images


def test_textured_image_without_band_is_all_fabric():
    assert fabric_region(texture(256, 4096)[:, :, None]).all()
    assert fabric_region(texture(64, 96, channels=3)).all()


def test_saturated_left_band_is_excluded_with_its_ragged_edge():
    image = texture(256, 2048)
    image[:, :1000] = 255
    image[:128, 1000:1010] = 255  # the band reaches further on half of the rows
    image[::8, 1010:1014] = 252  # and leaves a few white pixels beyond that
    region = fabric_region(image[:, :, None])
    assert band_width(region) == 1014
    assert region[:, 1014:].all()


def test_flat_borders_on_any_edge_are_excluded():
    image = texture(128, 512)
    image[:, -40:] = 0
    image[:10, :] = 30
    region = fabric_region(image[:, :, None])
    assert not region[:, -40:].any() and not region[:10].any()
    assert region[10:, :-40].all()


def test_edge_margin_shrinks_the_fabric_only_next_to_bands():
    image = texture(128, 512)
    image[:, :100] = 255  # a white band on the left; the other three sides are image edges
    image[:, -40:] = 0    # and a flat border on the right
    region = fabric_region(image[:, :, None], margin=24)
    assert not region[:, : 100 + 24].any() and not region[:, -40 - 24 :].any()
    assert region[:, 124:-64].all()  # full height: the top and bottom rows are image edges, not bands
    assert fabric_region(texture(64, 96)[:, :, None], margin=24).all()  # no band, nothing to leave out


@pytest.mark.parametrize("width", [40, 96])
def test_edge_margin_auto_leaves_out_the_selvedge_as_wide_as_each_image_shows_it(width):
    from rdcae.data.region import SELVEDGE_REACH

    image = texture(256, 4096)  # AITEX's size: 3,800 columns of fabric
    image[:, :300] = 255  # the white band, then a selvedge: lighter, with a finer warp than the weave
    noise = np.random.default_rng(1).normal(0, 12, (256, 4096))
    selvedge = np.clip(140 + 20 * np.sin(np.arange(4096)[None, :] * 2.2) + noise, 0, 230).astype(np.uint8)
    image[:, 300:300 + width] = selvedge[:, 300:300 + width]
    region = fabric_region(image[:, :, None], "auto")
    assert 300 + width <= band_width(region) <= 300 + width + 24  # to the last 32-column band that holds selvedge
    assert region[:, band_width(region):].all()
    image[:, 300:300 + width] = texture(256, 4096)[:, 300:300 + width]  # the weave right up to the band
    assert band_width(fabric_region(image[:, :, None], "auto")) == 300
    assert fabric_region(texture(256, 4096)[:, :, None], "auto").all()  # no band, no selvedge
    image[:, 300:300 + 2 * SELVEDGE_REACH] = selvedge[:, 300:300 + 2 * SELVEDGE_REACH]  # a wider one: the reach
    assert band_width(fabric_region(image[:, :, None], "auto")) <= 300 + SELVEDGE_REACH
    part = image[:, :900].copy()  # a part's image, a few hundred columns of it beside the band: its rim stays
    assert band_width(fabric_region(part[:, :, None], "auto")) == 300


def test_own_folders_leave_the_selvedge_out_as_found_by_default_and_the_paper_keeps_it():
    from conftest import compose_config

    assert compose_config(["dataset=folder"]).dataset.edge_margin == "auto"
    assert compose_config(["dataset=folder", "recipe=paper"]).dataset.edge_margin == 0


def test_aitex_edge_margin_auto_finds_a_selvedge_as_wide_as_the_fixed_margin(aitex_sources, aitex_regions):
    widths = []
    for src in (s for sources in aitex_sources.values() for s in sources):
        band = band_width(aitex_regions[src.path])
        if band:
            widths.append(band_width(fabric_region(src.image, "auto")) - band)
    assert widths and 40 <= min(widths) and max(widths) <= 104  # the 96 of conf/dataset/aitex.yaml, per image


def test_aitex_edge_margin_leaves_out_patches_next_to_the_band(aitex_dir):
    from conftest import compose_config

    from rdcae.data.patches import build_patches

    def build(margin):
        return build_patches(compose_config(["dataset=aitex", "fabric=00", f"data_dir={aitex_dir}",
                                             f"dataset.edge_margin={margin}", "cache_dir="]))

    plain, margin = build(0), build(96)
    assert plain.stats["patches"]["test_defect"] == 46 > margin.stats["patches"]["test_defect"] > 0
    assert margin.stats["normal_positions"] < plain.stats["normal_positions"]
    from rdcae.data.__main__ import describe

    summary = describe(compose_config(["dataset=aitex", "fabric=00"]), margin)
    assert ("beyond dataset.edge_margin=96 px from a band" in summary
            and "the paper reports 46 (dataset.edge_margin=0" in summary)
    assert f"; {len(margin.stats['calibration_images'])} more normal give the calibration patches alone" in summary
    assert len(margin.stats["calibration_images"]) == 3 and "held out" not in summary
    assert "edge_margin" not in describe(compose_config(["dataset=aitex", "fabric=00", "dataset.edge_margin=0"]), plain)
    from rdcae.data.patches import check_patch_settings

    with pytest.raises(ConfigError, match="dataset.edge_margin=-1"):
        check_patch_settings(compose_config(["dataset=aitex", "fabric=00", f"data_dir={aitex_dir}",
                                             "dataset.edge_margin=-1"]))


def test_bright_spots_inside_fabric_stay_fabric():
    image = texture(256, 1024)
    image[:, 500:504] = 255  # a bright vertical defect away from the edges
    image[np.random.default_rng(1).random(image.shape) < 0.05] = 255  # scattered highlights
    assert fabric_region(image[:, :, None]).all()


def test_blank_image_has_no_fabric():
    assert not fabric_region(np.full((32, 64, 1), 255, np.uint8)).any()


def brushed(rng: np.random.Generator, height: int, width: int, level: float, contrast: float = 20.0) -> np.ndarray:
    """Another surface of about the fabric's gray: streaks along the rows, like the brushed metal
    left of the fabric in AITEX 0062_022_00."""
    streaks = rng.normal(0, 1, (height, width + 127))
    streaks = np.stack([np.convolve(r, np.ones(128) / 128, "valid") for r in streaks])
    streaks += 0.3 * rng.normal(0, 1, (height, width))
    return level + contrast * (streaks - streaks.mean()) / streaks.std()


def bordered(gray: np.ndarray, fabric_from: int, seed: int = 0) -> np.ndarray:
    """gray (H, W) with its first `fabric_from` + 50 columns replaced by a border of the kind left of
    some AITEX fabrics: another surface, a dark band, a bright edge line 2 px wide over the full
    height, then 60 px of a looser selvedge weave; the fabric proper starts at fabric_from + 50."""
    rng = np.random.default_rng(seed)
    g = gray.astype(np.float32).copy()
    h, b = g.shape[0], fabric_from
    g[:, : b - 60] = brushed(rng, h, b - 60, level=float(g[:, b:].mean()))
    g[:, b - 60 : b - 12] = 40 + rng.normal(0, 4, (h, 48))
    g[:, b - 12 : b - 10] = 235
    g[:, b - 10 : b + 50] = np.repeat(g[:, b + 50 : b + 80], 2, axis=1) + 15
    return np.clip(g, 0, 255).astype(np.uint8)


def inspected_columns(image: np.ndarray, margin: int = 0) -> np.ndarray:
    """Left columns of the windows a detector with textured-border search would score."""
    from rdcae.inference.image import ImageDetector, Preprocessing

    preprocessing = Preprocessing(channels=1, patch_size=32, edge_margin=margin, texture_borders=True)
    detector = ImageDetector(lambda w: (np.zeros(len(w)), np.zeros((len(w), 32, 32))), preprocessing, 1.0)
    return detector.windows(image[:, :, None])[0][:, 1]


@pytest.mark.parametrize("weave", ["twill", "plain"])
def test_textured_border_with_an_edge_line_is_not_fabric(weave):
    from rdcae.data.woven import generate

    fabric = generate(0, 1, 0, 256, 1024, weave)[0].image[:, :, 0]
    image = bordered(fabric, 300)
    assert fabric_region(image[:, :, None]).all()  # the blank rule alone takes all of it for fabric
    region = fabric_region(image[:, :, None], texture=True)
    columns = np.flatnonzero(region.all(axis=0))
    assert not region[:, :300].any()  # no other surface, dark band or edge line
    assert columns[0] < 300 + 50 + 32 and columns[-1] == 1023  # and the fabric itself kept, full height
    np.testing.assert_array_equal(region, np.broadcast_to(region.all(axis=0), region.shape))
    assert inspected_columns(image).min() >= 300
    assert inspected_columns(image, margin=96).min() >= 300 + 50  # the selvedge too, as next to a white band


def test_defects_at_the_fabric_edge_stay_fabric():
    from rdcae.data.woven import generate

    near_left = generate(2, 0, 1, 256, 1024, "plain")[0]  # a missing yarn 80 px from the left edge
    at_left = generate(1, 0, 2, 256, 1024, "plain")[1]  # a missing and a broken yarn from column 15
    at_right = generate(1, 0, 3, 256, 1024, "plain")[2]  # holes and a thick bar up to the right edge
    assert near_left.mask[:, :100].any() and at_left.mask[:, :20].any() and at_right.mask[:, -8:].any()
    for source in (near_left, at_left, at_right):
        assert fabric_region(source.image, texture=True).all(), source.path


def test_aitex_band_replaced_by_another_surface_is_not_inspected(aitex_sources, aitex_regions):
    """Fabric C of the field: the band replaced by another surface, a dark band and an edge line, the fabric
    a low-contrast weave around gray 130 (std 20): no window there is used for training or inspected."""
    for fabric in ("00", "03"):
        for source in by_role(aitex_sources[fabric], "normal")[:3]:
            start = band_width(aitex_regions[source.path])
            gray = source.image[:, :, 0].astype(np.float32)
            weave = gray[:, start:]
            gray[:, start:] = 130 + (weave - weave.mean()) * 20 / weave.std()
            image = bordered(gray, start)
            assert inspected_columns(image, margin=96).min() >= start + 50, source.path
            region = fabric_region(image[:, :, None], 96, texture=True)
            assert np.flatnonzero(region.all(axis=0))[0] < start + 50 + 96 + 64, source.path
            positions = normal_positions([SourceImage(source.path, image[:, :, None], "normal", None, fabric)], 32,
                                         edge_margin=96, texture_borders=True)[0][0]
            assert positions[:, 1].min() >= start + 50, source.path


def framed_by_a_weave(gray: np.ndarray, fabric_from: int, weave: np.ndarray, to_the_edge: bool) -> np.ndarray:
    """gray (H, W) with the columns left of `fabric_from` replaced by another weave of the fabric's mean gray
    (`weave`, H × at least fabric_from), a dark band 24 px wide and a bright edge line 2 px wide over the
    full height; the weave is 640 px wide after what is left of the white band, or reaches the image's
    edge (`to_the_edge`)."""
    g = gray.astype(np.float32).copy()
    line, dark = fabric_from - 2, fabric_from - 26
    surface = 0 if to_the_edge else dark - 640
    other = weave[:, : dark - surface].astype(np.float32)
    g[:, surface:dark] = other - other.mean() + g[:, fabric_from:].mean()
    g[:, dark:line], g[:, line:fabric_from] = 25, 245
    return np.clip(np.rint(g), 0, 255).astype(np.uint8)


@pytest.mark.parametrize("to_the_edge", [False, True])
def test_aitex_framed_by_another_weave_and_an_edge_line_is_not_inspected(aitex_sources, aitex_regions, to_the_edge):
    """Another weave beside the fabric looks much like fabric to the weave's spectrum (its bands only 1-5
    robust deviations unlike it); the dark band and the edge line are the fence that bounds it, behind
    what is left of a white band or at the image's edge."""
    from rdcae.data.region import FENCE_Z, _weave_z

    other = [s.image[:, :, 0] for s in by_role(aitex_sources["00"], "normal")]
    for i, source in enumerate(by_role(aitex_sources["03"], "normal")[:4]):
        start = band_width(aitex_regions[source.path])
        image = framed_by_a_weave(source.image[:, :, 0], start, other[i][:, 1500:], to_the_edge)  # past 00's selvedge
        starts, z = _weave_z(image.astype(np.float32)[:, 0 if to_the_edge else start - 666:])
        assert z.max() >= FENCE_Z and np.median(z[starts < 600]) < 6  # a fence; a surface only mildly unlike fabric
        assert inspected_columns(image, margin=96).min() >= start, source.path
        region = fabric_region(image[:, :, None], 96, texture=True)
        assert np.flatnonzero(region.all(axis=0))[0] < start + 96 + 96, source.path  # the fabric itself kept


def test_a_weave_alike_in_its_spectrum_but_not_in_its_contrast_is_fenced_off(aitex_sources, aitex_regions):
    """Fabric 00, a low-contrast twill (std about 17), framed by fabric 03's weave out to the image's edge:
    the two spectra are so alike that the other surface is often less than one robust deviation unlike
    the fabric; its contrast, 1.7-2 times the fabric's, tells it apart behind the fence."""
    other = [s.image[:, 1500:, 0] for s in by_role(aitex_sources["03"], "normal")]
    sources = by_role(aitex_sources["00"], "normal")[:8]
    assert len(sources) == 8
    for i, source in enumerate(sources):
        start = band_width(aitex_regions[source.path])
        image = framed_by_a_weave(source.image[:, :, 0], start, other[i], to_the_edge=True)
        assert inspected_columns(image, margin=96).min() >= start, source.path
        region = fabric_region(image[:, :, None], 96, texture=True)
        assert np.flatnonzero(region.all(axis=0))[0] < start + 96 + 96, source.path  # the fabric itself kept


def test_a_stripe_in_the_other_surface_does_not_cut_its_border_short(aitex_sources, aitex_regions):
    other = by_role(aitex_sources["00"], "normal")[0].image[:, 1500:, 0]
    source = by_role(aitex_sources["03"], "normal")[0]
    start = band_width(aitex_regions[source.path])
    image = framed_by_a_weave(source.image[:, :, 0], start, other, to_the_edge=True)
    image[:, 400:408] = 240  # a bright seam in the other surface, strong enough for a fence of its own
    assert inspected_columns(image, margin=96).min() >= start


@pytest.mark.parametrize("width", [8, 16])
def test_a_bright_or_a_dark_warp_stripe_in_real_fabric_is_no_edge(aitex_sources, aitex_regions, width):
    """A full-height stripe 300 px inside fabric 03, bright (a crease's light side, a thick yarn) or dark:
    strong enough in the weave for a fence, but one side of an edge only, so the fabric is inspected
    from its selvedge on as without it; a dark band beside the bright stripe makes it an edge."""
    from rdcae.data.region import FENCE_Z, _edge_marks, _weave_z

    source = by_role(aitex_sources["03"], "normal")[0]
    start = band_width(aitex_regions[source.path])
    x, plain = start + 300, inspected_columns(source.image[:, :, 0], margin=96).min()
    for value in (240, 15):
        image = source.image[:, :, 0].copy()
        image[:, x : x + width] = value
        starts, z = _weave_z(image.astype(np.float32))
        near = (starts >= x - 32) & (starts <= x + width)
        assert value == 15 or z[near].max() >= FENCE_Z
        assert not _edge_marks(image.astype(np.float32), starts)[near].any()
        assert inspected_columns(image, margin=96).min() == plain
    image[:, x - 24 : x] = 15  # the dark band ...
    image[:, x : x + 2] = 245  # ... and the bright line of an edge
    starts, _ = _weave_z(image.astype(np.float32))
    assert _edge_marks(image.astype(np.float32), starts)[(starts >= x - 32) & (starts <= x)].any()


def test_a_full_height_line_inside_the_fabric_is_no_fence():
    """A warp defect over the full height, fabric on both sides of it: not a border, whatever its strength."""
    from rdcae.data.region import FENCE_Z, _weave_z
    from rdcae.data.woven import generate

    fabric = generate(0, 1, 0, 256, 1600, "twill")[0].image[:, :, 0].copy()
    fabric[:, :300] = 255  # a white band, the fabric from column 300
    fabric[:, 620:622], fabric[:, 596:620] = 245, 25  # an edge line's contrast, 320 px inside the fabric
    starts, z = _weave_z(fabric[:, 300:].astype(np.float32))
    assert z[(starts >= 296) & (starts <= 322)].max() >= FENCE_Z
    region = fabric_region(fabric[:, :, None], texture=True)
    assert band_width(region) == 300 and region[:, 300:].all()


def test_aitex_textured_border_search_changes_only_the_image_with_another_surface(aitex_sources, aitex_regions):
    changed = []
    for sources in aitex_sources.values():
        for source in sources:
            if not np.array_equal(fabric_region(source.image, texture=True), aitex_regions[source.path]):
                changed.append(Path(source.path).stem)
    assert changed == ["0062_022_00"]  # brushed metal over its first ~1,180 columns, no white band
    source = next(s for s in aitex_sources["00"] if Path(s.path).stem == "0062_022_00")
    start = band_width(fabric_region(source.image, texture=True))
    assert 1180 <= start <= 1250


# ---------------------------------------------------------------------------------------------
# Reading files


def test_read_image_keeps_gray_single_channel_and_rgb_three(tmp_path):
    gray = read_image(save(tmp_path / "g.png", texture(8, 12)))
    rgb = read_image(save(tmp_path / "c.png", texture(8, 12, channels=3)))
    assert gray.shape == (8, 12, 1) and rgb.shape == (8, 12, 3)
    assert gray.dtype == rgb.dtype == np.uint8


def test_read_image_converts_16_bit_palette_and_rgba(tmp_path):
    deep = np.array([[0, 257, 65535]], np.uint16)
    np.testing.assert_array_equal(read_image(save(tmp_path / "d.png", deep))[..., 0], [[0, 1, 255]])
    gray_palette = Image.fromarray(texture(8, 8)).convert("P")
    gray_palette.save(tmp_path / "p.png")
    assert read_image(tmp_path / "p.png").shape == (8, 8, 1)
    rgba = np.dstack([texture(8, 8, channels=3), np.full((8, 8), 128, np.uint8)])
    assert read_image(save(tmp_path / "a.png", rgba)).shape == (8, 8, 3)


def test_truncated_png_is_reported_with_its_name(tmp_path):
    path = save(tmp_path / "0001_002_00.png", texture(256, 256))
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(DataError, match="0001_002_00.png.*damaged"):
        read_image(path)


def test_non_image_named_png_is_reported_with_its_name(tmp_path):
    path = tmp_path / "notes.png"
    path.write_text("not an image")
    with pytest.raises(DataError, match="notes.png"):
        read_image(path)


def test_mask_is_binarised_and_unioned(tmp_path):
    first = np.zeros((4, 6), np.uint8)
    first[0, 0], first[1, 1] = 255, 12  # anti-aliased edge pixels count as defect
    second = np.zeros((4, 6), np.uint8)
    second[1, 1], second[3, 5] = 255, 255
    mask = read_mask([save(tmp_path / "m1.png", first), save(tmp_path / "m2.png", second)], (4, 6))
    assert mask.dtype == bool and mask.sum() == 3 and mask[0, 0] and mask[1, 1] and mask[3, 5]


def test_mask_size_mismatch_names_both_files_and_sizes(tmp_path):
    mask = save(tmp_path / "x_mask.png", np.zeros((4, 6), np.uint8))
    with pytest.raises(DataError, match=r"x_mask.png is 6x4 but .*x.png is 8x4"):
        read_mask([mask], (4, 8, 1), image_path=tmp_path / "x.png")


# ---------------------------------------------------------------------------------------------
# AITEX layout, generated


def aitex_layout(root: Path) -> Path:
    """Two fabrics, tiny images; fabric 03's normals sit in a roll folder named like fabric 00's."""
    for i, (name, roll) in enumerate(
        [("0001_000_00.png", "roll-a"), ("0002_000_00.png", "roll-a"), ("0001_000_03.png", "roll-b"),
         ("0002_000_03.png", "roll-a")]
    ):
        save(root / "NODefect_images" / roll / name, texture(16, 64, seed=i))
    mask = np.zeros((16, 64), np.uint8)
    mask[4:8, 10:20] = 255
    for stem in ("0010_002_00", "0011_002_03", "0012_016_03"):
        save(root / "Defect_images" / f"{stem}.png", texture(16, 64, seed=7))
        save(root / "Mask_images" / f"{stem}_mask.png", mask)
    return root


def aitex_cfg(root: Path, fabric="03"):
    return OmegaConf.create({"data_dir": str(root), "fabric": fabric})


def test_aitex_selects_normals_by_fabric_code_not_roll_folder(tmp_path):
    sources = aitex.load(aitex_cfg(aitex_layout(tmp_path)))
    names = {role: sorted(Path(s.path).name for s in by_role(sources, role)) for role in ("normal", "defect")}
    assert names == {
        "normal": ["0001_000_03.png", "0002_000_03.png"],
        "defect": ["0011_002_03.png", "0012_016_03.png"],
    }


def test_aitex_fabric_given_as_number_is_a_code(tmp_path):
    root = aitex_layout(tmp_path)
    as_number, as_code = aitex.load(aitex_cfg(root, 3)), aitex.load(aitex_cfg(root, "03"))
    assert [s.path for s in as_number] == [s.path for s in as_code]


def test_aitex_never_uses_a_defect_image_as_normal(tmp_path):
    root = aitex_layout(tmp_path)
    save(root / "NODefect_images" / "roll-b" / "0013_002_03.png", texture(16, 64))
    names = [Path(s.path).name for s in by_role(aitex.load(aitex_cfg(root)), "normal")]
    assert "0013_002_03.png" not in names


def test_aitex_defect_image_without_mask_is_skipped_with_a_warning(tmp_path, caplog):
    root = aitex_layout(tmp_path)
    (root / "Mask_images" / "0012_016_03_mask.png").unlink()
    with caplog.at_level(logging.WARNING):
        sources = aitex.load(aitex_cfg(root))
    assert "0012_016_03.png" not in [Path(s.path).name for s in sources]
    assert "0012_016_03.png" in caplog.text and "skipped" in caplog.text


def test_aitex_all_zero_mask_keeps_the_image_with_a_warning(tmp_path, caplog):
    root = aitex_layout(tmp_path)
    save(root / "Mask_images" / "0012_016_03_mask.png", np.zeros((16, 64), np.uint8))
    with caplog.at_level(logging.WARNING):
        sources = aitex.load(aitex_cfg(root))
    kept = next(s for s in sources if Path(s.path).name == "0012_016_03.png")
    assert kept.role == "defect" and not kept.mask.any()
    assert "0012_016_03.png" in caplog.text and "no pixel" in caplog.text


def test_aitex_missing_data_dir_says_where_to_get_the_data(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"data_dir=.*missing.*aitex\.es/afid"):
        aitex.load(aitex_cfg(tmp_path / "missing"))


def test_aitex_missing_folder_is_named(tmp_path):
    root = aitex_layout(tmp_path)
    for path in (root / "Mask_images").iterdir():
        path.unlink()
    (root / "Mask_images").rmdir()
    with pytest.raises(FileNotFoundError, match="Mask_images"):
        aitex.load(aitex_cfg(root))


def test_aitex_fabric_without_images_lists_the_codes_present(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"fabric=05.*00, 03"):
        aitex.load(aitex_cfg(aitex_layout(tmp_path), "05"))


def test_aitex_fabric_that_is_not_a_code_is_rejected(tmp_path):
    with pytest.raises(ValueError, match="fabric='fabric_03'"):
        aitex.load(aitex_cfg(aitex_layout(tmp_path), "fabric_03"))


# ---------------------------------------------------------------------------------------------
# KolektorSDD2 layout, generated


def ksdd2_layout(root: Path) -> Path:
    defect = np.zeros((20, 12), np.uint8)
    defect[5:9, 3:6] = 255
    for split, offset in (("train", 10000), ("test", 20000)):
        for i, mask in enumerate((np.zeros((20, 12), np.uint8), defect)):
            stem = f"{offset + i:05d}"
            save(root / split / f"{stem}.png", texture(20, 12, seed=i, channels=3))
            save(root / split / f"{stem}_GT.png", mask)
    return root


def test_ksdd2_roles_follow_the_masks(tmp_path):
    sources = ksdd2.load(OmegaConf.create({"data_dir": str(ksdd2_layout(tmp_path))}))
    assert [(Path(s.path).name, s.role, s.group) for s in sources] == [
        ("10000.png", "normal", "train"), ("10001.png", "defect", "train"),
        ("20000.png", "normal", "test"), ("20001.png", "defect", "test"),
    ]
    assert all(s.image.shape == (20, 12, 3) for s in sources)
    defect = sources[1]
    assert defect.mask.sum() == 12 and defect.mask[5:9, 3:6].all()


def test_ksdd2_splits_choose_which_folders_feed_which_role(tmp_path):
    cfg = OmegaConf.create(
        {"data_dir": str(ksdd2_layout(tmp_path)), "normal_splits": ["train"], "defect_splits": ["test"]}
    )
    sources = ksdd2.load(cfg)
    assert [(Path(s.path).name, s.role) for s in sources] == [("10000.png", "normal"), ("20001.png", "defect")]


def test_ksdd2_missing_mask_is_named(tmp_path):
    root = ksdd2_layout(tmp_path)
    (root / "test" / "20001_GT.png").unlink()
    with pytest.raises(FileNotFoundError, match="20001.png.*20001_GT.png"):
        ksdd2.load(OmegaConf.create({"data_dir": str(root)}))


def test_ksdd2_missing_data_dir_says_where_to_get_the_data(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"data_dir=.*vicos\.si"):
        ksdd2.load(OmegaConf.create({"data_dir": str(tmp_path / "nope")}))


# ---------------------------------------------------------------------------------------------
# MVTec AD layout, generated


def mvtec_layout(root: Path, channels: int = 1, suffix: str = ".png") -> Path:
    for i, sub in enumerate(("train/good/000", "train/good/001", "test/good/000", "test/crack/000")):
        save(root / f"{sub}{suffix}", texture(24, 24, seed=i, channels=channels))
    mask = np.zeros((24, 24), np.uint8)
    mask[2:5, 2:5] = 255
    save(root / "ground_truth" / "crack" / "000_mask.png", mask)
    return root


def folder_cfg(root: Path):
    return OmegaConf.create({"data_dir": str(root)})


def test_folder_reads_mvtec_roles_and_masks_keeping_gray_images_gray(tmp_path):
    sources = folder.load(folder_cfg(mvtec_layout(tmp_path)))
    assert [(s.group, s.role) for s in sources] == [
        ("train/good", "normal"), ("train/good", "normal"), ("test/crack", "defect"), ("test/good", "normal"),
    ]
    assert all(s.image.shape == (24, 24, 1) for s in sources)
    assert sources[2].mask.sum() == 9


@pytest.mark.parametrize("suffix", [".jpg", ".bmp", ".tif"])
def test_folder_reads_rgb_images_of_other_formats(tmp_path, suffix):
    sources = folder.load(folder_cfg(mvtec_layout(tmp_path, channels=3, suffix=suffix)))
    assert len(sources) == 4 and all(s.image.shape == (24, 24, 3) for s in sources)


def test_folder_mixing_gray_and_rgb_converts_all_to_rgb(tmp_path, caplog):
    root = mvtec_layout(tmp_path)
    save(root / "train" / "good" / "002.png", texture(24, 24, channels=3))
    with caplog.at_level(logging.INFO):
        sources = folder.load(folder_cfg(root))
    assert all(s.image.shape == (24, 24, 3) for s in sources)
    assert "3 channels" in caplog.text


def test_folder_reads_a_mask_named_as_its_image_and_prefers_the_mvtec_name(tmp_path):
    root = mvtec_layout(tmp_path)
    truth = root / "ground_truth" / "crack"
    (truth / "000_mask.png").rename(truth / "000.png")  # the Magnetic Tile way
    assert folder.load(folder_cfg(root))[2].mask.sum() == 9
    other = np.zeros((24, 24), np.uint8)
    other[10:12, 10:12] = 255
    save(truth / "000_mask.png", other)
    assert folder.load(folder_cfg(root))[2].mask.sum() == 4  # <name>_mask.png first, where both are
    (root / "test" / "crack" / "000.png").rename(root / "test" / "crack" / "000.PNG")
    (truth / "000_mask.png").unlink()
    (truth / "000.png").rename(truth / "000.PNG")  # suffixes in capitals, as images may have them
    assert folder.load(folder_cfg(root))[2].mask.sum() == 9


def test_folder_defect_image_without_mask_is_skipped_with_a_warning(tmp_path, caplog):
    root = mvtec_layout(tmp_path)
    save(root / "test" / "hole" / "000.png", texture(24, 24))
    with caplog.at_level(logging.WARNING):
        sources = folder.load(folder_cfg(root))
    assert "test/hole" not in {s.group for s in sources}
    assert str(Path("hole") / "000.png") in caplog.text and "skipped" in caplog.text
    assert "000_mask.png (nor 000.png)" in caplog.text


def test_folder_without_images_is_named(tmp_path):
    root = mvtec_layout(tmp_path)
    (root / "test" / "scratch").mkdir()
    with pytest.raises(FileNotFoundError, match=r"scratch holds no images"):
        folder.load(folder_cfg(root))


def test_a_training_folder_that_holds_folders_of_images_says_they_are_not_searched(tmp_path):
    root = mvtec_layout(tmp_path)
    (root / "train" / "good" / "roll1").mkdir()
    for name in ("000.png", "001.png"):
        (root / "train" / "good" / name).rename(root / "train" / "good" / "roll1" / name)
    with pytest.raises(FileNotFoundError, match=r"good holds no images \(.*\), only folders \(roll1\), which are not "
                                                r"searched; move their images into it$"):
        folder.load(folder_cfg(root))


def test_folder_missing_data_dir_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="data_dir=.*absent"):
        folder.load(folder_cfg(tmp_path / "absent"))


# ---------------------------------------------------------------------------------------------
# Config group files


@pytest.mark.parametrize(
    "name, own_keys", [("aitex", {"fabric"}), ("ksdd2", {"normal_splits", "defect_splits"}), ("folder", set())]
)
def test_dataset_configs_share_the_keys_the_patch_sampler_reads(name, own_keys):
    path = REPO / "conf" / "dataset" / f"{name}.yaml"
    assert path.read_text().startswith("# @package _global_\n")
    cfg = OmegaConf.load(path)
    assert set(cfg) == {"dataset", "alternation"}  # a real dataset sizes its blocks for the plateau stop
    # AITEX trains 8,000 windows, an S-update after each epoch of them; 84 epochs are the paper's 600 of 1,120
    expected = {"block_epochs": 1, "max_blocks": 84} if name == "aitex" else {"block_epochs": 5, "max_blocks": 120}
    assert dict(cfg.alternation) == expected
    assert cfg.dataset.n_train == (8000 if name == "aitex" else None)
    assert set(cfg.dataset) == SHARED_KEYS | own_keys
    assert cfg.dataset.name == name and cfg.dataset.n_normal == 1600 and cfg.dataset.train_fraction == 0.7


def test_the_summary_writes_one_contact_sheet_per_folder_dataset(tmp_path, monkeypatch, capsys):
    from rdcae.data.__main__ import main as data_main

    monkeypatch.chdir(tmp_path)
    for name in ("line_a", "line_b"):
        mvtec_layout(tmp_path / name)
        assert data_main(["summary", "dataset=folder", f"data_dir={tmp_path / name}", "patch_size=16",
                          "dataset.n_normal=20", f"cache_dir={tmp_path / 'cache'}"]) == 0, capsys.readouterr().err
    sheets = sorted(p.name for p in (tmp_path / "outputs" / "data_summary").glob("*.png"))
    contact = [name for name in sheets if not name.endswith("_regions.png")]
    assert len(contact) == 2 and "line_a" in contact[0] and "line_b" in contact[1]
    assert sheets == sorted(contact + [name.replace(".png", "_regions.png") for name in contact])  # each its regions


def test_the_summary_command_says_which_images_it_skipped_when_it_builds_the_patches_and_from_its_cache(tmp_path):
    import subprocess
    import sys

    root = mvtec_layout(tmp_path / "line")
    save(root / "test" / "scratch" / "007.png", texture(24, 24, seed=9))  # a defect image without its mask
    command = [sys.executable, "-m", "rdcae.data", "summary", "dataset=folder", f"data_dir={root}", "patch_size=16",
               "dataset.n_normal=20", f"cache_dir={tmp_path / 'cache'}"]
    for _ in ("built", "from the cache"):
        out = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=120)
        assert out.returncode == 0, out.stderr
        skipped = [line for line in out.stderr.splitlines() if "007.png: no mask" in line]
        assert len(skipped) == 1 and skipped[0].endswith("image skipped"), out.stderr


def test_an_aitex_data_dir_one_level_off_is_pointed_to_the_folder_that_holds_the_layout(tmp_path):
    from omegaconf import OmegaConf

    root = tmp_path / "data" / "aitex"
    for name in ("Defect_images", "Mask_images", "NODefect_images"):
        (root / name).mkdir(parents=True)
    for given in (tmp_path / "data", root / "Defect_images"):
        with pytest.raises(FileNotFoundError, match=f"did you mean data_dir={root}\\?$"):
            aitex.load(OmegaConf.create({"name": "aitex", "fabric": "03", "data_dir": str(given)}))
    with pytest.raises(FileNotFoundError) as error:  # nothing near: no guess
        aitex.load(OmegaConf.create({"name": "aitex", "fabric": "03", "data_dir": str(tmp_path / "elsewhere")}))
    assert "did you mean" not in str(error.value)
