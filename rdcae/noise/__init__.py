"""Noise models that turn normal patches into synthetic defects (section 3.2, Table 3).

Every model is called as `model(x, generator) -> (decorated, mask)` with x a (N, C, P, P)
float batch in [0, 1]; `mask` (N, P, P) marks the pixels it changed. Config group: `conf/noise/`.
"""

import re

from rdcae.noise.decorate import MixedNoise, decorate
from rdcae.noise.julia import JuliaNoise, JuliaParams, julia_image, random_julia_params
from rdcae.noise.lines import LineNoise
from rdcae.noise.random import GaussianNoise, NoNoise, PoissonNoise, SaltPepperNoise


def noise_name(node) -> str:
    """The name of a `noise:` config node: its `name`, or for configs written before noise nodes had
    one, derived from its class: JuliaNoise -> julia, SaltPepperNoise -> salt_pepper, LineNoise ->
    lines, a MixedNoise of julia and lines -> julia_lines."""
    if "name" in node:
        return str(node["name"])
    if "models" in node:
        return "_".join(noise_name(model) for model in node["models"].values())
    cls = str(node["_target_"]).rsplit(".", 1)[-1].removesuffix("Noise")
    if cls == "Line":
        return "lines"
    name = re.sub(r"(?<!^)(?=[A-Z])", "_", cls).lower()
    return "none" if name in ("", "no") else name


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
    "noise_name",
    "random_julia_params",
]
