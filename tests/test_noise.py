import pytest
import torch
from omegaconf import OmegaConf

from rdcae.noise import (
    GaussianNoise,
    JuliaNoise,
    JuliaParams,
    LineNoise,
    MixedNoise,
    NoNoise,
    PoissonNoise,
    SaltPepperNoise,
    decorate,
    julia_image,
    random_julia_params,
)
from rdcae.noise.julia import escape_radius_ok


def params(**kw):
    base = dict(alpha=1.0, beta=1.0, dx=0.0, dy=0.0, cx=-0.8, cy=0.156, zf=1.0)
    base.update(kw)
    return JuliaParams(**{k: torch.tensor([v]) for k, v in base.items()})


def test_julia_image_has_the_requested_shape_and_range():
    p, _ = random_julia_params(6, torch.Generator().manual_seed(0))
    im = julia_image(p, w=32, h=24)
    assert im.shape == (6, 24, 32)
    assert im.min() >= 0 and im.max() <= 1


def test_julia_set_is_centro_symmetric_without_offsets():
    im = julia_image(params(dx=0.0, dy=0.0, cx=-0.7269, cy=0.1889), 32, 32)[0]
    torch.testing.assert_close(im, im.flip(0).flip(1))
    assert im.std() > 0  # not a blank image


def test_offsets_break_the_symmetry():
    im = julia_image(params(dx=0.3, dy=-0.2), 32, 32)[0]
    assert not torch.equal(im, im.flip(0).flip(1))


def test_julia_follows_the_standard_iteration_z_squared_plus_c():
    # c = 0: the Julia set is the unit disc; points with |z0| < 1 never escape (i reaches 0),
    # points with |z0| > R escape at once (i stays at max_iter).
    im = julia_image(params(cx=0.0, cy=0.0, zf=0.5, alpha=1.0, beta=1.0), 33, 33)[0]
    assert im[16, 16] == 0  # centre, |z0| ≈ 0
    assert im[0, 0] == 1  # corner, |z0| ≈ 2.8 > R = 2


def test_julia_generator_is_deterministic_per_seed():
    a, _ = random_julia_params(8, torch.Generator().manual_seed(3))
    b, _ = random_julia_params(8, torch.Generator().manual_seed(3))
    c, _ = random_julia_params(8, torch.Generator().manual_seed(4))
    torch.testing.assert_close(julia_image(a, 32, 32), julia_image(b, 32, 32))
    assert not torch.equal(julia_image(a, 32, 32), julia_image(c, 32, 32))


def test_escape_radius_condition_of_algorithm_1():
    assert escape_radius_ok(-0.8, 0.156, 2.0)
    assert not escape_radius_ok(-0.8, 0.156, 1.5)


def _extent(shape: str, n: int = 60) -> tuple[float, float, float]:
    p, names = random_julia_params(n, torch.Generator().manual_seed(1), shapes=(shape,))
    assert set(names) == {shape}
    mask = (1 - julia_image(p, 32, 32)) > 0.1  # (n, h, w)
    width = mask.any(1).float().sum(1).mean().item()  # columns touched
    height = mask.any(2).float().sum(1).mean().item()  # rows touched
    return width, height, mask.float().mean().item()


def test_the_three_shape_families_differ():
    hw, hh, _ = _extent("horizontal")
    vw, vh, _ = _extent("vertical")
    _, _, point_area = _extent("point")
    _, _, horizontal_area = _extent("horizontal")
    assert hw > hh  # horizontal defects are wider than tall
    assert vh > vw  # vertical defects are taller than wide
    assert point_area < horizontal_area  # point-like defects cover less


@pytest.mark.parametrize("noise", [JuliaNoise(), GaussianNoise(), PoissonNoise(), SaltPepperNoise(), LineNoise(),
                                   MixedNoise({"julia": JuliaNoise(), "lines": LineNoise()})], ids=repr)
def test_noise_models_change_patches_within_range(noise):
    x = torch.full((10, 3, 32, 32), 0.5)
    y, mask = noise(x, torch.Generator().manual_seed(0))
    assert y.shape == x.shape and mask.shape == (10, 32, 32)
    assert y.min() >= 0 and y.max() <= 1
    assert (y != x).any(dim=(1, 2, 3)).all()  # every patch is decorated
    assert mask.any(dim=(1, 2)).all()


@pytest.mark.parametrize("ratio,expected", [(3, 30), (5, 50), (0, 0), (100, 1000), (2.5, 25)])
def test_noise_ratio_is_the_percentage_of_decorated_training_samples(ratio, expected):
    x = torch.full((1000, 1, 32, 32), 0.5)
    y, synthetic = decorate(x, ratio, SaltPepperNoise(amount=0.2), torch.Generator().manual_seed(0))
    assert synthetic.sum() == expected
    changed = (y != x).flatten(1).any(1)
    assert torch.equal(changed, synthetic)


def test_no_noise_decorates_nothing():
    x = torch.rand(100, 1, 32, 32)
    y, synthetic = decorate(x, 3, NoNoise(), torch.Generator().manual_seed(0))
    assert not synthetic.any() and torch.equal(x, y)


def test_noise_ratio_outside_0_100_is_rejected():
    with pytest.raises(ValueError, match="noise_ratio=120"):
        decorate(torch.rand(4, 1, 8, 8), 120, JuliaNoise(), torch.Generator())


def test_julia_tone_is_relative_to_the_patch_contrast():
    g = torch.Generator().manual_seed(0)
    x = 0.5 + 0.02 * torch.randn(64, 1, 32, 32, generator=g)  # low-contrast fabric
    relative, mask = JuliaNoise(contrast=(2.0, 4.0))(x, torch.Generator().manual_seed(1))
    black_white, _ = JuliaNoise(contrast=None)(x, torch.Generator().manual_seed(1))
    change = (relative - x).abs()[mask.unsqueeze(1)]
    assert change.max() < 4 * 0.05 + 0.1  # tone within 4 × max(std, floor) of the mean; x within 0.1 of it
    assert (black_white - x).abs().max() > 0.4  # pure black or white reaches far outside


def test_lines_are_bands_of_whole_rows_or_columns_of_the_requested_width():
    x = torch.full((200, 1, 32, 32), 0.5)
    _, mask = LineNoise(width=(2, 3), length=(1.0, 1.0))(x, torch.Generator().manual_seed(0))
    rows, cols = mask.all(2).sum(1), mask.all(1).sum(1)  # full rows, full columns
    horizontal = rows > 0
    assert 40 < horizontal.sum() < 160  # both orientations drawn
    assert ((rows[horizontal] >= 2) & (rows[horizontal] <= 3)).all() and (cols[horizontal] == 0).all()
    assert ((cols[~horizontal] >= 2) & (cols[~horizontal] <= 3)).all()
    assert torch.equal(mask.sum((1, 2)), 32 * torch.where(horizontal, rows, cols))  # nothing outside the band


def test_lines_shift_the_weave_by_a_multiple_of_its_std_and_keep_its_texture():
    g = torch.Generator().manual_seed(0)
    x = 0.5 + 0.05 * torch.randn(64, 1, 32, 32, generator=g)
    y, mask = LineNoise(contrast=(1.0, 2.0), length=(0.5, 0.5),
                        orientations=("vertical",))(x, torch.Generator().manual_seed(1))
    shift = (y - x)[mask.unsqueeze(1)]
    std = x.std(dim=(2, 3)).flatten().repeat_interleave(mask.sum((1, 2)))
    ratio = shift.abs() / std
    assert ratio.min() > 0.95 and ratio.max() < 2.05  # clamping aside, within the contrast range
    assert torch.equal(y[~mask.unsqueeze(1)], x[~mask.unsqueeze(1)])
    assert (mask.any(2).sum(1) == 16).all()  # vertical, half the side long: 16 rows touched


def test_gain_lines_scale_the_band_contrast_around_its_mean_and_leave_the_rest():
    g = torch.Generator().manual_seed(0)
    x = 0.5 + 0.05 * torch.randn(64, 1, 32, 32, generator=g)
    y, mask = LineNoise(width=(4, 4), gain=(2.0, 2.0), gain_share=1.0)(x, torch.Generator().manual_seed(1))
    band = mask.unsqueeze(1)
    assert torch.equal(y[~band], x[~band])
    for i in range(len(x)):
        inside, before = y[i][band[i]], x[i][band[i]]
        assert abs(float(inside.mean() - before.mean())) < 1e-5  # the band's mean does not move
        ratio = float(inside.std() / before.std())
        assert min(abs(ratio - 2.0), abs(ratio - 0.5)) < 1e-4  # its weave twice or half as strong
    ratios = torch.stack([y[i][band[i]].std() / x[i][band[i]].std() for i in range(len(x))])
    assert 10 < (ratios > 1).sum() < 54  # both directions drawn


def test_gain_share_zero_draws_the_same_shifted_lines_as_no_gain():
    x = 0.5 + 0.05 * torch.randn(32, 1, 32, 32, generator=torch.Generator().manual_seed(0))
    plain, plain_mask = LineNoise()(x, torch.Generator().manual_seed(3))
    none, none_mask = LineNoise(gain=(1.5, 3.0), gain_share=0.0)(x, torch.Generator().manual_seed(3))
    assert torch.equal(plain, none) and torch.equal(plain_mask, none_mask)


@pytest.mark.parametrize("kwargs, key", [({"width": (0, 2)}, "width"), ({"length": (0.5, 1.5)}, "length"),
                                         ({"contrast": (0.0, 1.0)}, "contrast"),
                                         ({"orientations": ("diagonal",)}, "orientations"),
                                         ({"gain": (0.5, 2.0)}, "gain"), ({"gain_share": 1.5}, "gain_share")])
def test_bad_line_settings_are_refused_with_the_setting_named(kwargs, key):
    with pytest.raises(ValueError, match=f"noise.{key}"):
        LineNoise(**kwargs)


def test_a_mixture_draws_each_defect_from_one_model_by_weight():
    x = torch.full((400, 1, 32, 32), 0.5)
    y, mask = MixedNoise({"lines": LineNoise(length=(1.0, 1.0)), "salt": SaltPepperNoise(amount=0.05)},
                         {"lines": 3, "salt": 1})(x, torch.Generator().manual_seed(0))
    is_line = (mask.all(2).any(1)) | (mask.all(1).any(1))
    assert 250 < is_line.sum() < 350  # three quarters lines
    salt = ~is_line
    assert ((y[salt] == 0) | (y[salt] == 1) | (y[salt] == 0.5)).all()


def test_mixture_weights_must_name_its_models():
    with pytest.raises(ValueError, match="noise.weights"):
        MixedNoise({"julia": JuliaNoise()}, {"lines": 1.0})
    with pytest.raises(ValueError, match="noise.weights"):
        MixedNoise({"julia": JuliaNoise()}, {"julia": 0.0})


@pytest.mark.parametrize("name, kinds", [("lines", {"lines"}), ("julia_lines", {"julia", "lines"})])
def test_line_noise_configs_compose_and_the_report_names_them(name, kinds):
    from conftest import compose_config
    from hydra.utils import instantiate

    from rdcae.noise import noise_name

    cfg = compose_config([f"noise={name}", "noise_ratio=5"])
    noise = instantiate(cfg.noise)
    assert (set(noise.names) if isinstance(noise, MixedNoise) else {"lines"} if isinstance(noise, LineNoise)
            else set()) == kinds
    assert noise_name(cfg.noise) == name
    unnamed = OmegaConf.to_container(cfg.noise)  # a config written before noise nodes had a name: named by its classes
    unnamed.pop("name")
    for model in unnamed.get("models", {}).values():
        model.pop("name")
    assert noise_name(unnamed) == name
    y, mask = noise(torch.full((20, 3, 32, 32), 0.5), torch.Generator().manual_seed(0))
    assert mask.any(dim=(1, 2)).all()
