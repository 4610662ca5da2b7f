"""Noise models that turn normal patches into synthetic defects (section 3.2, Table 3).

Every model is called as `model(x, generator) -> (decorated, mask)` with x a (N, C, P, P)
float batch in [0, 1]; `mask` (N, P, P) marks the pixels it changed. Config group: `conf/noise/`.
"""

from rdcae.noise.julia import JuliaNoise, JuliaParams, julia_image, random_julia_params
from rdcae.noise.lines import LineNoise
from rdcae.noise.random import GaussianNoise, MixedNoise, NoNoise, PoissonNoise, SaltPepperNoise, decorate

__all__ = [
    "GaussianNoise",
    "JuliaNoise",
    "JuliaParams",
    "LineNoise",
    "MixedNoise",
    "NoNoise",
    "PoissonNoise",
    "SaltPepperNoise",
    "decorate",
    "julia_image",
    "random_julia_params",
]
