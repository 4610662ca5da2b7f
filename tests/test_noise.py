import pytest
import torch

from rdcae.noise import (
    GaussianNoise,
    JuliaNoise,
    JuliaParams,
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


@pytest.mark.parametrize("noise", [JuliaNoise(), GaussianNoise(), PoissonNoise(), SaltPepperNoise()], ids=repr)
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
