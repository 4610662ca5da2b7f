"""The embedded woven fabric dataset: woven texture, real-looking defects, exact masks."""

import numpy as np
import pytest
from omegaconf import OmegaConf

from rdcae.data.sources import load_sources
from rdcae.data.woven import (
    DEFECT_KINDS,
    MASK_LEVEL,
    WEAVES,
    Fabric,
    fabric_image,
    generate,
)

SMALL = dict(n_normal_images=2, n_defect_images=3, height=64, width=256)


def one_fabric(seed: int, weave: str) -> tuple[np.random.Generator, Fabric]:
    rng = np.random.default_rng(seed)
    return rng, Fabric.sample(rng, weave)


def kinds_in(path: str) -> list[str]:
    return path.rsplit("/", 1)[1].split("_", 2)[2].split("+")


def test_same_seed_gives_identical_images_and_masks():
    a, b = generate(7, **SMALL), generate(7, **SMALL)
    assert [s.path for s in a] == [s.path for s in b]
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x.image, y.image)
        assert (x.mask is None) == (y.mask is None)
        if x.mask is not None:
            np.testing.assert_array_equal(x.mask, y.mask)


def test_other_seed_gives_different_images():
    a, b = generate(7, **SMALL), generate(8, **SMALL)
    assert all(not np.array_equal(x.image, y.image) for x, y in zip(a, b))


def test_an_image_does_not_depend_on_how_many_images_are_asked_for():
    few, many = generate(3, 1, 1, 64, 128), generate(3, 3, 4, 64, 128)
    np.testing.assert_array_equal(few[0].image, many[0].image)
    assert few[1].path == many[3].path
    np.testing.assert_array_equal(few[1].image, many[3].image)


@pytest.mark.parametrize("weave", WEAVES)
def test_images_are_gray_uint8_of_the_requested_size_with_roles_group_and_path(weave):
    images = generate(1, **SMALL, weave=weave)
    assert [s.role for s in images] == ["normal"] * 2 + ["defect"] * 3
    for s in images:
        assert s.image.shape == (64, 256, 1) and s.image.dtype == np.uint8
        assert s.group == weave
        assert s.path.startswith(f"woven://{weave}/{s.role}_")


def test_every_defect_image_has_a_non_empty_mask_and_normal_images_have_none():
    for seed in range(4):
        for s in generate(seed, **SMALL):
            if s.role == "defect":
                assert s.mask.dtype == bool and s.mask.shape == (64, 256) and s.mask.any(), s.path
            else:
                assert s.mask is None


def test_every_defect_kind_appears_once_there_are_enough_defects():
    images = generate(0, 0, len(DEFECT_KINDS), 64, 128)
    assert {k for s in images for k in kinds_in(s.path)} == set(DEFECT_KINDS)


def test_asking_for_one_defect_kind_gives_only_that_kind():
    images = generate(0, 0, 4, 64, 128, defect_kinds=("stain",))
    assert all(set(kinds_in(s.path)) == {"stain"} for s in images)


@pytest.mark.parametrize("kind", DEFECT_KINDS)
def test_each_defect_kind_visibly_changes_the_fabric_inside_its_mask_and_nowhere_else(kind):
    for seed in range(4):
        rng, fabric = one_fabric(seed, WEAVES[seed % 2])
        image, clean, mask = fabric_image(rng, fabric, 96, 192, (kind,))
        change = np.abs(image.astype(int) - clean.astype(int))
        assert mask.any()
        # visible: well above the mask level, and the sensor noise is the same in both
        assert change[mask].mean() > 1.5 * MASK_LEVEL
        assert change[~mask].max() <= MASK_LEVEL + 1  # +1: rounding to uint8


def test_a_defect_image_is_its_clean_twin_outside_the_mask():
    rng, fabric = one_fabric(0, "twill")
    image, clean, mask = fabric_image(rng, fabric, 64, 128, ("hole", "knot", "stain"))
    assert (np.abs(image.astype(int) - clean.astype(int))[~mask] <= MASK_LEVEL + 1).all()
    assert not np.array_equal(image, clean)


@pytest.mark.parametrize("weave", WEAVES)
def test_both_weaves_show_a_sharp_spectral_peak_at_the_yarn_period(weave):
    for seed in range(3):
        rng, fabric = one_fabric(seed, weave)
        image, _, _ = fabric_image(rng, fabric, 128, 512)
        x = image.astype(float)
        for axis, period, sharpness in ((1, fabric.period, 50), (0, fabric.weft_period, 5)):
            power = (np.abs(np.fft.rfft(x - x.mean(axis, keepdims=True), axis=axis)) ** 2).mean(1 - axis)
            freq = np.fft.rfftfreq(x.shape[axis])
            band = (freq > 1 / 12) & (freq < 1 / 3)  # periods of 3 to 12 px
            at_period = np.abs(freq - 1 / period) < 0.05 / period
            assert power[at_period].max() > sharpness * np.median(power[band]), (seed, axis)


def diagonal_asymmetry(image: np.ndarray, fabric: Fabric) -> float:
    """Spectral power along one diagonal over the other, below the yarn frequency."""
    x = image.astype(float) - image.mean()
    power = np.abs(np.fft.fft2(x)) ** 2
    fy = np.fft.fftfreq(x.shape[0])[:, None]
    fx = np.fft.fftfreq(x.shape[1])[None, :]
    band = (np.abs(fx) > 1 / 64) & (np.abs(fx) < 0.75 / fabric.period)
    band = band & (np.abs(fy) > 1 / 64) & (np.abs(fy) < 0.75 / fabric.weft_period)
    ratio = power[band & (fx * fy > 0)].sum() / power[band & (fx * fy < 0)].sum()
    return max(ratio, 1 / ratio)


def test_twill_runs_along_a_diagonal_and_plain_weave_does_not():
    for seed in range(4):
        rng, twill = one_fabric(seed, "twill")
        assert diagonal_asymmetry(fabric_image(rng, twill, 128, 256)[0], twill) > 1.4
        rng, plain = one_fabric(seed, "plain")
        assert diagonal_asymmetry(fabric_image(rng, plain, 128, 256)[0], plain) < 1.15


def test_no_saturated_or_empty_band_anywhere():
    for seed in range(3):
        for weave in WEAVES:
            for s in generate(seed, 1, 2, 128, 512, weave):
                x = s.image[:, :, 0].astype(float)
                for axis in (0, 1):
                    assert (np.median(x, axis) < 250).all() and (np.median(x, axis) > 5).all(), s.path
                    assert (x.std(axis) > 3).all(), s.path


def test_load_reads_the_dataset_config_node():
    cfg = OmegaConf.create(
        {"name": "woven", "seed": 4, "weave": "plain", "n_normal_images": 1, "n_defect_images": 2,
         "height": 64, "width": 128}
    )
    loaded, direct = load_sources(cfg), generate(4, 1, 2, 64, 128, "plain")
    assert [s.path for s in loaded] == [s.path for s in direct]
    for a, b in zip(loaded, direct):
        np.testing.assert_array_equal(a.image, b.image)


@pytest.mark.parametrize(
    "bad, key",
    [
        (dict(weave="satin"), "dataset.weave"),
        (dict(height=16), "dataset.height"),
        (dict(defect_kinds=("julia",)), "dataset.defect_kinds"),
        (dict(n_defect_images=-1), "dataset.n_defect_images"),
    ],
)
def test_bad_settings_are_rejected_naming_the_key(bad, key):
    with pytest.raises(ValueError, match=key):
        generate(**{"seed": 0, **SMALL, **bad})


def test_the_images_written_in_the_mvtec_layout_read_back_as_a_folder_dataset(tmp_path, capsys):
    from conftest import compose_config
    from omegaconf import OmegaConf

    from rdcae.data import folder
    from rdcae.data.__main__ import main
    from rdcae.data.sources import load_sources

    settings = ["dataset.n_normal_images=3", "dataset.n_defect_images=2", "dataset.height=64", "dataset.width=128",
                "dataset.holdout_images=1"]
    out = tmp_path / "woven"
    assert main(["images", f"output_dir={out}", *settings]) == 0
    assert f"input={out / 'test'}" in capsys.readouterr().out
    sources = load_sources(compose_config(settings).dataset)
    back = folder.load(OmegaConf.create({"data_dir": str(out)}))
    assert [s.group for s in back] == ["train/good"] * 2 + ["test/defect"] * 2 + ["test/good"]
    written = {s.role: [] for s in sources}
    for s in sources:
        written[s.role].append(s)
    assert [np.array_equal(a.image, b.image) for a, b in zip(written["normal"], [*back[:2], back[4]])] == [True] * 3
    assert all(np.array_equal(a.mask, b.mask) and np.array_equal(a.image, b.image)
               for a, b in zip(written["defect"], back[2:4]))
    assert main(["images", f"output_dir={out}", *settings]) == 2  # nothing overwritten
    assert capsys.readouterr().err.strip() == f"error: output_dir={out} already holds files; give a new or empty folder"


def test_images_of_two_defect_types_with_one_name_are_both_written(tmp_path):
    from PIL import Image

    from rdcae.data.__main__ import main

    rng = np.random.default_rng(0)
    for path in ("train/good/000.png", "train/good/001.png", "test/a/000.png", "test/b/000.png"):
        (tmp_path / "in" / path).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 255, (64, 64), dtype=np.uint8)).save(tmp_path / "in" / path)
    for kind in "ab":
        (tmp_path / "in" / "ground_truth" / kind).mkdir(parents=True)
        Image.fromarray(np.full((64, 64), 255 * (kind == "a"), np.uint8)).save(
            tmp_path / "in" / "ground_truth" / kind / "000_mask.png")
    assert main(["images", "dataset=folder", f"data_dir={tmp_path / 'in'}", f"output_dir={tmp_path / 'out'}"]) == 0
    written = sorted(p.name for p in (tmp_path / "out" / "test" / "defect").iterdir())
    assert written == ["000.png", "000_2.png"]
    for name, kind in (("000", "a"), ("000_2", "b")):  # each image beside its own mask
        assert np.array_equal(np.asarray(Image.open(tmp_path / "out" / "test" / "defect" / f"{name}.png")),
                              np.asarray(Image.open(tmp_path / "in" / "test" / kind / "000.png")))
        assert np.array_equal(np.asarray(Image.open(tmp_path / "out" / "ground_truth" / "defect" / f"{name}_mask.png")),
                              np.asarray(Image.open(tmp_path / "in" / "ground_truth" / kind / "000_mask.png")))


def test_its_images_as_files_hold_clean_images_no_run_trained_on_beside_the_training_ones(tmp_path):
    from PIL import Image

    from rdcae.data.__main__ import main as data_main
    from rdcae.data.woven import UNSEEN as WOVEN_UNSEEN

    settings = [f"dataset.{k}={v}" for k, v in SMALL.items()]
    assert data_main(["images", f"output_dir={tmp_path}", *settings]) == 0
    trained = [s.image[:, :, 0] for s in load_sources(OmegaConf.create(
        {"name": "woven", "seed": 0, "weave": "twill", **SMALL})) if s.role == "normal"]
    train = [np.asarray(Image.open(p)) for p in sorted((tmp_path / "train/good").glob("*.png"))]
    unseen = [np.asarray(Image.open(p)) for p in sorted((tmp_path / "test/good").glob("*.png"))]
    assert len(train) == SMALL["n_normal_images"] and len(unseen) == WOVEN_UNSEEN
    assert all(np.array_equal(a, b) for a, b in zip(train, trained))  # the images a run with them trains on
    assert not any(np.array_equal(u, t) for u in unseen for t in trained)  # and others of the same fabric
    assert len(list((tmp_path / "test/defect").glob("*.png"))) == SMALL["n_defect_images"]
